"""PyTorch Lightning model files (docs/cli.md, "PyTorch Lightning"): what a ``LightningModule`` already declares.

Lightning is optional: its classes are recognised by name in the class hierarchy, never imported.
For a model file whose ``data`` (or ``datamodule``) is a ``LightningDataModule``, or whose model is
a ``LightningModule`` and that leaves keys out, :func:`lightning_entries` fills them in:

* ``data``: the datamodule's ``train_dataloader()`` after ``prepare_data()`` and ``setup("fit")``;
  without one, the module's own ``train_dataloader()`` (on a copy);
* ``optimizer``: the first optimizer ``configure_optimizers()`` returns (on a copy), at the rate
  it was built with (before a scheduler's warmup scaled it);
* ``scheduler``: the first learning-rate scheduler it returns, read as a schedule
  (:mod:`lrphase.theory.torch_schedules`; an ``interval = "epoch"`` one with the loader's batches per epoch;
  one without an end of its own, such as ``StepLR``, only with ``total_steps`` in the model file);
* ``loss``: the loss whose value on one batch equals what ``training_step`` returns (on a copy,
  without gradients, the global RNG restored).

The user's module is only deep-copied (a copy drops its trainer): its parameters, buffers, mode
and trainer are never touched.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..curvature.data import Inputs, _as_pair, make_batches
from ..curvature.isolation import preserved_rng
from ..curvature.jacobian import output_rows, select_output
from ..curvature.losses import resolve_loss
from ..errors import InputError
from ..theory.optimizers import Optimizer
from ..theory.torch_schedules import read_scheduler

# the losses training_step may compute, in the order a match is taken
CANDIDATE_LOSSES = ("cross_entropy", "cross_entropy_sum", "mse_loss_mean", "mse_loss_sum", "mse")
_PACKAGES = ("lightning", "pytorch_lightning")


def lightning_entries(model: nn.Module, entries: Mapping[str, Any], *, source: str, loss_given: bool = False) -> dict[str, Any]:
    """``entries`` of a model file with ``data``, ``optimizer`` and ``loss`` filled in from Lightning's hooks.

    ``datamodule`` is another name for ``data``; ``loss_given``: the loss comes from elsewhere (``--loss``).
    """
    entries = dict(entries)
    if "datamodule" in entries:
        if "data" in entries:
            raise InputError(f"{source} defines both `data` and `datamodule`: keep one of them")
        entries["data"] = entries.pop("datamodule")
    if _is_lightning(entries.get("data"), "LightningDataModule"):
        entries["data"] = _datamodule_loader(entries["data"])
    if not _is_lightning(model, "LightningModule"):
        return entries
    wants_data = "data" not in entries and _defines(model, "train_dataloader")
    wants_optimizer = "optimizer" not in entries and _defines(model, "configure_optimizers")
    wants_loss = not loss_given and "loss" not in entries and _defines(model, "training_step")
    if not (wants_data or wants_optimizer or wants_loss):
        return entries
    name = type(model).__name__
    clone: Any = _copy(model)  # a LightningModule: its hooks are not known to nn.Module
    if wants_data:
        entries["data"] = _module_loader(clone, name)
    if wants_optimizer:
        configured = _call(clone.configure_optimizers, f"{name}.configure_optimizers()")
        scheduler = _first_scheduler(configured)
        if scheduler is not None and "scheduler" not in entries:  # read before the optimizer's rate is reset
            loader = entries.get("data")
            per_epoch = len(loader) if isinstance(loader, DataLoader) else None
            total = entries.get("total_steps") if isinstance(entries.get("total_steps"), int) else None
            try:
                entries["scheduler"] = read_scheduler(scheduler, total_steps=total, steps_per_epoch=per_epoch)
            except InputError:  # no end of its own (StepLR) and no total_steps: the advice stays for a constant rate
                pass
        optimizer = _first_optimizer(configured)
        if optimizer is not None:  # built on the copy: its groups are placed in the copy's parameters
            entries["optimizer"] = Optimizer.from_torch(optimizer, list(clone.parameters()))
            entries.setdefault("lr", float(optimizer.param_groups[0]["lr"]))
    if wants_loss and "data" in entries:
        entries["loss"] = _training_step_loss(clone, entries["data"], name, source)
    return entries


def _is_lightning(obj: Any, class_name: str) -> bool:
    """Whether ``obj`` is an instance of Lightning's ``class_name`` (from ``lightning`` or ``pytorch_lightning``)."""
    return any(
        cls.__name__ == class_name and cls.__module__.split(".")[0] in _PACKAGES for cls in type(obj).__mro__
    )  # fmt: skip


def _defines(obj: Any, hook: str) -> bool:
    """Whether ``obj`` implements ``hook`` itself rather than inheriting Lightning's placeholder."""
    if hook in vars(obj):
        return True
    owner = next(cls for cls in type(obj).__mro__ if hook in vars(cls))
    return owner.__module__.split(".")[0] not in _PACKAGES


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise InputError(
            f"cannot copy {type(model).__name__} ({type(exc).__name__}: {exc}); lrphase calls its hooks on a deep copy "
            "so your module is never modified: make it deep-copyable"
        ) from exc


def _call(hook: Callable[[], Any], what: str) -> Any:
    """``hook()``, with a failure as one line and Lightning's warnings about a missing trainer silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hook()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code can raise anything, sys.exit() too
        raise InputError(
            f"{what} failed outside a Trainer ({_first_line(exc)}); fix it, or define `data`, `optimizer` and `loss` "
            "in the model file"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _datamodule_loader(datamodule: Any) -> DataLoader:
    name = type(datamodule).__name__
    if not _defines(datamodule, "train_dataloader"):
        raise InputError(f"the datamodule {name} has no train_dataloader(): define one, or give `data` as a DataLoader")
    _call(datamodule.prepare_data, f"{name}.prepare_data()")
    _call(lambda: datamodule.setup("fit"), f'{name}.setup("fit")')
    return _loader(_call(datamodule.train_dataloader, f"{name}.train_dataloader()"), name)


def _module_loader(clone: Any, name: str) -> DataLoader:
    _call(clone.prepare_data, f"{name}.prepare_data()")
    _call(lambda: clone.setup("fit"), f'{name}.setup("fit")')
    return _loader(_call(clone.train_dataloader, f"{name}.train_dataloader()"), name)


def _loader(loader: Any, name: str) -> DataLoader:
    if not isinstance(loader, DataLoader):
        raise InputError(
            f"{name}.train_dataloader() returned a {type(loader).__name__}; lrphase needs one DataLoader: "
            "return one, or define `data` in the model file"
        )
    return loader


def _first_optimizer(configured: Any) -> torch.optim.Optimizer | None:
    """The first optimizer of any form ``configure_optimizers`` may return, at its rate before any scheduler.

    The forms: an optimizer; a list or tuple of them; ``([optimizers], [schedulers])``; a dict with
    key ``optimizer``; a list of such dicts. A scheduler keeps the rate it scales as ``initial_lr``.
    """
    if isinstance(configured, Mapping):
        return _first_optimizer(configured.get("optimizer"))
    if isinstance(configured, (list, tuple)):
        return _first_optimizer(configured[0]) if configured else None
    if not isinstance(configured, torch.optim.Optimizer):
        return None
    for group in configured.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])
    return configured


def _first_scheduler(configured: Any) -> Any:
    """The first scheduler ``configure_optimizers`` returns (an object or Lightning's dict), else None.

    The forms: ``([optimizers], [schedulers])``; a dict with key ``lr_scheduler``; a list of such dicts.
    """
    if isinstance(configured, Mapping):
        return configured.get("lr_scheduler")
    if isinstance(configured, (list, tuple)) and configured:
        if len(configured) == 2 and isinstance(configured[0], (list, tuple)) and isinstance(configured[1], (list, tuple)):
            return configured[1][0] if configured[1] else None
        return _first_scheduler(configured[0]) if isinstance(configured[0], Mapping) else None
    return None


def _training_step_loss(clone: Any, data: Any, name: str, source: str) -> str:
    """The name of the loss whose value on one batch equals what ``clone.training_step`` returns."""
    hint = f'add `loss = "cross_entropy"` (or another lrphase loss, or an nn.Module loss) to {source}, or pass --loss'
    outputs: list[Any] = []
    forward = clone.forward

    def recorded(*args: Any, **kwargs: Any) -> Any:
        outputs.append(forward(*args, **kwargs))
        return outputs[-1]

    clone.forward = recorded  # records self(x) and self.forward(x) alike
    with preserved_rng(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() without a Trainer warns and does nothing
        torch.manual_seed(0)
        batch = _first_batch(data, name)
        inputs, target = _as_pair(batch)
        step = clone.training_step
        try:
            torch.manual_seed(0)
            returned = step(batch, 0) if _takes_batch_index(step) else step(batch)
            if not outputs:  # training_step called a submodule directly: the forward pass under the same seed
                torch.manual_seed(0)
                outputs.append(Inputs.of(inputs).call(forward))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code can raise anything, sys.exit() too
            raise InputError(
                f"could not tell the loss of {name}.training_step, which failed outside a Trainer ({_first_line(exc)}): {hint}"
            ) from exc
    value = returned.get("loss") if isinstance(returned, Mapping) else returned
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        found = _matching_loss(float(value), outputs, target)
        if found is not None:
            return found
    raise InputError(f"could not tell the loss of {name}.training_step from the model's output: {hint}")


def _first_batch(data: Any, name: str) -> Any:
    """The first batch as ``training_step`` receives it: a DataLoader's own, else lrphase's first ``(x, y)``."""
    if not isinstance(data, DataLoader):
        return make_batches(data, batch_size=None, batches=1, seed=0)[0]
    batch = next(iter(data), None)
    if batch is None:
        raise InputError(f"the training DataLoader of {name} yielded no batch: give it at least one sample")
    return batch


def _takes_batch_index(step: Callable[..., Any]) -> bool:
    """Whether Lightning would pass ``batch_idx``: two parameters or ``*args``, as its training loop decides."""
    try:
        params = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _matching_loss(value: float, outputs: list[Any], target: Any) -> str | None:
    """The first of :data:`CANDIDATE_LOSSES` equal to ``value`` (relative 1e-5) on one of the recorded outputs."""
    for output in outputs:
        try:
            rows = output_rows(select_output(output)).detach()
        except Exception:  # noqa: BLE001 - an output lrphase cannot read is not the loss's
            continue
        for name in CANDIDATE_LOSSES:
            loss = resolve_loss(name)
            try:
                candidate = float(loss.value(rows, loss.prepare_targets(target, rows)))
            except (InputError, RuntimeError, ValueError, TypeError):  # targets this loss cannot take
                continue
            if math.isclose(candidate, value, rel_tol=1e-5, abs_tol=1e-12):
                return name
    return None
