"""compare.py's benchmark case: one example as every method receives it, and whether a method changed it.

Not a script: imported by ``compare.py``, ``anchors.py`` and ``reference.py``.

* :class:`Case` / :func:`load_case` — the pristine model at initialization (never handed to a
  method: each run gets a fresh deep copy), its data, the benchmark batch (the one lrphase itself
  draws for ``batches=1``), and the loss as a torch criterion with lrphase's normalization;
* :class:`PaperMSELoss` — the paper's L = 1/(2km) Σ (f − y)² as an ``nn.MSELoss`` (mean reduction),
  so that libraries reading ``loss.reduction`` normalize as lrphase does;
* :func:`snapshot` / :func:`model_changes` — what a method changed on the model handed to it:
  train/eval mode, BatchNorm and other buffers, parameters, ``.grad``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common import has_sample_coupling, load_example, parameter_count
from lrphase.curvature.losses import Loss

# --------------------------------------------------------------------------- the losses


class PaperMSELoss(nn.MSELoss):
    """The paper's L = 1/(2km) Σ (f − y)²: half of ``F.mse_loss`` averaged over all m·k entries.

    A subclass of ``nn.MSELoss`` with ``reduction="mean"``, so libraries that read
    ``loss.reduction`` (curvlinops) normalize over the data exactly as for ``nn.MSELoss()``.
    """

    def __init__(self) -> None:
        super().__init__(reduction="mean")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return 0.5 * F.mse_loss(input, target, reduction="mean")


def make_criterion(loss: Loss) -> nn.Module:
    """The torch loss module with exactly the normalization lrphase uses for ``loss``."""
    if loss.kind == "cross_entropy":
        return nn.CrossEntropyLoss(reduction=loss.reduction)
    if loss.reduction == "paper":
        return PaperMSELoss()
    return nn.MSELoss(reduction=loss.reduction)


def make_targets(y: torch.Tensor, loss: Loss, k: int) -> torch.Tensor:
    """Targets as the loss needs them: integer labels become one-hot under MSE, as in lrphase."""
    if loss.kind == "cross_entropy":
        return y.long()
    if not y.dtype.is_floating_point:
        return F.one_hot(y.long().reshape(-1), k).float()
    return y.float()


# --------------------------------------------------------------------------- one example


@dataclass
class Case:
    """One example: the pristine model (never handed to a method), its data and the benchmark batch."""

    name: str
    path: str
    batch_size: int
    model: nn.Module
    data: Any
    loss_arg: Any
    loss: Loss
    criterion: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    output_dim: int
    parameters: int
    coupled: bool

    def fresh_model(self) -> nn.Module:
        """What a user would hand to a method: their model at initialization (a fresh copy per run)."""
        return copy.deepcopy(self.model)


def load_case(name: str) -> Case:
    example = load_example(name)
    spec, x, y = example.spec, example.x, example.y
    with torch.no_grad():  # on a copy: a train-mode forward would update BatchNorm buffers
        out = copy.deepcopy(spec.model)(x)
    k = out.reshape(out.shape[0], -1).shape[1]
    return Case(
        name=name,
        path=example.path,
        batch_size=example.batch_size,
        model=spec.model,
        data=spec.data,
        loss_arg=spec.loss,
        loss=example.loss,
        criterion=make_criterion(example.loss),
        x=x,
        y=y,
        target=make_targets(y, example.loss, k),
        output_dim=k,
        parameters=parameter_count(spec.model),
        coupled=has_sample_coupling(spec.model),
    )


# --------------------------------------------------------------------------- was the model changed?


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "buffers": {n for n, _ in model.named_buffers()},
        "training": {n: m.training for n, m in model.named_modules()},
        "grads": {n for n, p in model.named_parameters() if p.grad is not None},
    }


def model_changes(before: dict[str, Any], model: nn.Module) -> list[str]:
    """What differs from the snapshot: mode flags, BatchNorm/other buffers, parameters, .grad."""
    changes = []
    now_training = {n: m.training for n, m in model.named_modules()}
    flipped = [n for n, t in before["training"].items() if now_training.get(n, t) != t]
    if flipped:
        to_eval = sum(1 for n in flipped if not now_training[n])
        what = "train→eval" if to_eval == len(flipped) else "eval→train" if to_eval == 0 else "train/eval"
        changes.append(f"mode {what} ({len(flipped)}/{len(now_training)} modules)")
    state = model.state_dict()
    gone = [k for k in before["state"] if k not in state]
    if gone:
        changes.append(f"{len(gone)} state entries removed")
    differ = [k for k, v in before["state"].items() if k in state and not _same(v, state[k])]
    buffers = [k for k in differ if k in before["buffers"]]
    params = [k for k in differ if k not in before["buffers"]]
    if buffers:
        bn = sum(1 for k in buffers if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"))
        changes.append(f"BN buffers ({bn} tensors)" if bn == len(buffers) else f"buffers ({len(buffers)} tensors)")
    if params:
        changes.append(f"parameters ({len(params)} tensors)")
    grads = {n for n, p in model.named_parameters() if p.grad is not None} - before["grads"]
    if grads:
        changes.append(f".grad set on {len(grads)} parameters")
    return changes


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b.detach())
