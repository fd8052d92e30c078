"""Loading the user's model file: the model, the data and the training defaults it declares.

Contract (docs/cli.md): ``model.py`` is ordinary Python defining

* ``model``: an ``nn.Module`` or a zero-argument callable returning one;
* ``data``: a ``Dataset``, a ``DataLoader``, an ``(X, Y)`` pair of tensors (``(X₁, …, Xₙ, Y)``
  for several inputs, see :mod:`lrphase.curvature.data`), or a zero-argument callable returning
  one of these;
* optionally ``loss`` (``"mse"``, ``"cross_entropy"`` or an ``nn.Module`` loss),
  ``batch_size``, ``lr``, ``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``, ``betas``, ``eps``;
* optionally the schedule: ``warmup_steps``, ``total_steps``, ``decay``, ``warmup_start``, or ``scheduler``,
  a ``torch.optim.lr_scheduler`` scheduler or a factory taking the optimizer (:mod:`lrphase.theory.torch_schedules`).

A PyTorch Lightning file may give ``datamodule`` instead of ``data``, and leave ``data``,
``optimizer`` and ``loss`` to its modules' hooks (:mod:`lrphase.cli.lightning`).

``model.py:NAME`` selects ``NAME`` instead of ``model``: an ``nn.Module``, or a
zero-argument callable returning an ``nn.Module`` or a dict with the keys above.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..curvature.data import relabeled
from ..curvature.isolation import preserved_rng
from ..errors import InputError
from ..settings import MODEL_FILE_KEYS
from .lightning import lightning_entries

FILE_KEYS = ("data", "datamodule", "loss", "output", "label_key", "label_index")  # read here; MODEL_FILE_KEYS go to the settings
OBJECT_KEYS = ("scheduler",)  # objects that go to the settings as they are (a torch.optim.lr_scheduler scheduler or factory)


@dataclass(frozen=True)
class ModelSpec:
    """What a model file declares: the model, its data, the loss, and training defaults."""

    model: nn.Module
    data: Any
    loss: Any = None
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = "<python>"


def split_target(target: str) -> tuple[Path, str | None]:
    """Split ``path.py[:name]`` into the file path and the optional attribute name."""
    path, sep, name = target.rpartition(":")
    if sep and path and name.isidentifier():
        return Path(path), name
    return Path(target), None


def load_spec(target: str, *, seed: int = 0, data: str | None = None, loss_given: bool = False) -> ModelSpec:
    """Import ``path.py[:name]`` and build its :class:`ModelSpec`.

    The file runs with the global RNG seeded by ``seed`` (and restored afterwards), so the
    model's initialization is reproducible and the caller's RNG state is untouched. A model by
    name (``torchvision:resnet18``) is built on the data named by ``data`` instead, see
    :mod:`lrphase.cli.named`. ``loss_given``: the command line or config names the loss, so none is
    read from the model (Lightning's ``training_step``).
    """
    from .named import is_named, load_named  # named imports this module

    if is_named(target):
        return load_named(target, data, seed=seed)
    path, name = split_target(target)
    if not path.exists():
        raise InputError(f"model file '{path}' not found: pass the path of a Python file that defines `model` and `data`")
    if path.is_dir() or path.suffix != ".py":
        raise InputError(f"'{path}' is not a Python file: pass a .py file that defines `model` and `data`")
    if data is not None:
        raise InputError(
            f"--data is for models by name (torchvision:NAME, timm:NAME, hf:TYPE); {path} defines its own data: drop --data"
        )
    with preserved_rng():
        torch.manual_seed(seed)
        namespace = _import_file(path)
        return _spec_from_namespace(namespace, name, str(path), loss_given)


def _import_file(path: Path) -> dict[str, Any]:
    module_name = f"lrphase_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import '{path}': pass a regular Python source file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise InputError(f"syntax error in {path}, line {exc.lineno}: {exc.msg}; fix the file and run again") from exc
    except SystemExit as exc:  # exit code 3 and the like would mean something else from lrphase
        code = "" if exc.code is None else repr(exc.code)
        raise InputError(
            f"{path} called sys.exit({code}) while it was imported: lrphase imports the file, so put its script code "
            'under `if __name__ == "__main__":`'
        ) from exc
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        raise InputError(
            f"importing {path} failed with {type(exc).__name__}: {exc}; fix the file (run with --debug for the traceback)"
        ) from exc
    finally:
        sys.modules.pop(module_name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return vars(module)


def _call_factory(obj: Any, what: str, source: str) -> Any:
    try:
        return obj()
    except TypeError as exc:
        raise InputError(f"{what} in {source} must be a zero-argument factory, but calling it failed: {exc}") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code can raise anything, sys.exit() too
        raise InputError(f"calling {what} in {source} failed with {type(exc).__name__}: {exc}") from exc


def _spec_from_namespace(namespace: dict[str, Any], name: str | None, source: str, loss_given: bool = False) -> ModelSpec:
    entries = {key: namespace[key] for key in (*FILE_KEYS, *MODEL_FILE_KEYS, *OBJECT_KEYS) if key in namespace}
    model_name = name or "model"
    if model_name not in namespace:
        hint = f"`{name}` is not defined there" if name else "define `model = MyNet()` (or `path.py:factory`)"
        raise InputError(f"no model found in {source}: {hint}")
    model = namespace[model_name]
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise InputError(
                f"`{model_name}` in {source} is a {type(model).__name__}, not an nn.Module or a factory returning one"
            )
        model = _call_factory(model, f"`{model_name}`", source)
        if isinstance(model, dict):
            unknown = set(model) - {"model", *FILE_KEYS, *MODEL_FILE_KEYS, *OBJECT_KEYS}
            if unknown:
                raise InputError(f"`{model_name}` in {source} returned unknown keys {sorted(unknown)}")
            entries.update({k: v for k, v in model.items() if k != "model"})
            model = model.get("model")
        if not isinstance(model, nn.Module):
            raise InputError(f"`{model_name}` in {source} must return an nn.Module, got {type(model).__name__}")
    for key in ("data", "datamodule"):
        if callable(entries.get(key)) and not isinstance(entries[key], (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
            entries[key] = _call_factory(entries[key], f"`{key}`", source)
    entries = lightning_entries(model, entries, source=source, loss_given=loss_given)
    if "data" not in entries:
        raise InputError(f"no data found in {source}: define `data` as a Dataset, a DataLoader or an (X, Y) pair")
    data = entries.pop("data")
    label_key, label_index = entries.pop("label_key", None), entries.pop("label_index", None)
    if label_key is not None and label_index is not None:
        raise InputError(f"{source} sets both `label_key` and `label_index`: keep the one for its samples (mappings, tuples)")
    if label_key is not None:
        if not isinstance(label_key, str):
            raise InputError(f"`label_key` in {source} must be a string naming the labels' key, got {type(label_key).__name__}")
        data = relabeled(data, label_key)
    if label_index is not None:
        if not isinstance(label_index, int) or isinstance(label_index, bool):
            raise InputError(
                f"`label_index` in {source} must be an integer (the label's position in a sample), got {label_index!r}"
            )
        data = relabeled(data, label_index)
    output = entries.pop("output", None)
    if output is not None:
        model = OutputSelector(model, output, source)
    loss = entries.pop("loss", None)
    if loss is None:
        loss = hugging_face_loss(model)
    return ModelSpec(model=model, data=data, loss=loss, defaults=entries, source=source)


def hugging_face_loss(model: nn.Module) -> str | None:
    """The loss a Hugging Face model computes itself from ``labels`` (None for any other model).

    Causal language models: next-token cross-entropy (``causal_lm``); token and sequence
    classifiers, masked language models: ``cross_entropy``; ``problem_type="regression"``: MSE.
    """
    config = getattr(model, "config", None)
    if not type(model).__module__.startswith("transformers.") or config is None:
        return None
    name = type(model).__name__
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal_lm"
    if getattr(config, "problem_type", None) == "regression" or (
        name.endswith("ForSequenceClassification") and getattr(config, "num_labels", 2) == 1
    ):
        return "mse_loss_mean"
    return "cross_entropy"


class OutputSelector(nn.Module):
    """The model, answering with one member of its output: ``output = "name"`` (a key or attribute) or an index."""

    def __init__(self, model: nn.Module, member: Any, source: str) -> None:
        super().__init__()
        if not isinstance(member, (str, int)) or isinstance(member, bool):
            raise InputError(f"`output` in {source} must name a key or attribute (a string) or an index, got {member!r}")
        self.model, self.member, self.source = model, member, source

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The chosen member of the model's output."""
        out = self.model(*args, **kwargs)
        try:
            chosen = out[self.member] if isinstance(self.member, int) or isinstance(out, Mapping) else getattr(out, self.member)
        except (KeyError, IndexError, AttributeError, TypeError):
            chosen = None
        if not isinstance(chosen, torch.Tensor):
            raise InputError(f"the model's output has no tensor member {self.member!r} (`output` in {self.source})")
        return chosen
