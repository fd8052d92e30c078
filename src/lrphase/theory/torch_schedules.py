"""Reading a ``torch.optim.lr_scheduler`` schedule as a :class:`~lrphase.theory.schedules.Schedule`.

The scheduler is replayed, never stepped: a copy of it (or of what a factory builds on a throwaway
optimizer) runs on a throwaway one-parameter optimizer whose group copies the user's first group, stepped
once per optimizer step, and f(t) is that group's rate before step t, divided by its largest value,
up to the scheduler's own length (``OneCycleLR``'s ``total_steps``, the milestones and last child of
``SequentialLR``, ``T_max``, ``total_iters``) or ``total_steps``. A scheduler that has already stepped is
refused (its start is gone). A Lightning scheduler dict (``{"scheduler": …, "interval": "step" | "epoch"}``)
with ``interval = "epoch"`` repeats each epoch's rate ``steps_per_epoch`` times.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
from torch.optim import lr_scheduler

from ..errors import InputError
from .schedules import Schedule

MAX_STEPS = 1_000_000


def read_scheduler(scheduler: Any, *, total_steps: int | None = None, steps_per_epoch: int | None = None) -> Schedule:
    """The schedule of a scheduler object, a factory taking an optimizer, or a Lightning scheduler dict (module doc)."""
    per = 1
    if isinstance(scheduler, dict):
        if "scheduler" not in scheduler:
            raise InputError("a scheduler dict needs a 'scheduler' key, as Lightning's configure_optimizers returns it")
        if scheduler.get("interval", "epoch") == "epoch":
            if steps_per_epoch is None:
                raise InputError(
                    "the scheduler steps once per epoch (Lightning's interval 'epoch') and the steps per epoch are "
                    "unknown: set interval 'step', or declare warmup_steps and total_steps"
                )
            per = steps_per_epoch * int(scheduler.get("frequency", 1))
        scheduler = scheduler["scheduler"]
    if not isinstance(scheduler, lr_scheduler.LRScheduler):
        if not callable(scheduler):
            raise InputError(
                f"scheduler must be a torch.optim.lr_scheduler scheduler or a factory taking the optimizer, "
                f"got {type(scheduler).__name__}"
            )
        try:
            scheduler = scheduler(_throwaway(1.0))
        except Exception as exc:  # noqa: BLE001 - user code can raise anything
            raise InputError(f"calling the scheduler factory on an optimizer failed with {type(exc).__name__}: {exc}") from exc
        if not isinstance(scheduler, lr_scheduler.LRScheduler):
            got = type(scheduler).__name__
            raise InputError(f"the scheduler factory must return a torch.optim.lr_scheduler scheduler, got {got}")
    length = _length(scheduler)
    steps = length if length is not None else (math.ceil(total_steps / per) if total_steps else None)
    if steps is None:
        raise InputError(f"{type(scheduler).__name__} has no end of its own: pass --total-steps (or set total_steps)")
    if steps * per > MAX_STEPS:
        raise InputError(f"the schedule is {steps * per} steps long, more than lrphase reads ({MAX_STEPS}): set total_steps")
    replay = _replay(scheduler)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": there is nothing to step
        for _ in range(steps):
            rates.extend([replay.optimizer.param_groups[0]["lr"]] * per)
            replay.step()
    if total_steps is not None:
        rates = rates[:total_steps]
    return Schedule.from_factors(rates, _name(scheduler))


def _throwaway(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def _replay(scheduler: lr_scheduler.LRScheduler) -> lr_scheduler.LRScheduler:
    """A copy of ``scheduler`` on a throwaway optimizer whose one group copies the first group's settings.

    The copy shares nothing with the user's scheduler and optimizer (their parameters are not copied).
    """
    if scheduler.last_epoch > 0:
        raise InputError(
            f"the {type(scheduler).__name__} has already stepped {scheduler.last_epoch} times: give lrphase a fresh "
            "scheduler, or a factory taking the optimizer"
        )
    user = scheduler.optimizer
    optimizer = _throwaway(user.param_groups[0]["lr"])
    optimizer.param_groups[0].update({k: copy.deepcopy(v) for k, v in user.param_groups[0].items() if k != "params"})
    return copy.deepcopy(scheduler, memo={id(user): optimizer})


def _length(scheduler: lr_scheduler.LRScheduler) -> int | None:
    """The number of steps the scheduler defines, where it has an end (None: it runs on forever)."""
    if isinstance(scheduler, lr_scheduler.OneCycleLR):
        return int(scheduler.total_steps)
    if isinstance(scheduler, lr_scheduler.SequentialLR):
        last = _length(scheduler._schedulers[-1])
        return None if last is None else int(scheduler._milestones[-1]) + last
    if isinstance(scheduler, lr_scheduler.ChainedScheduler):
        lengths = [_length(child) for child in scheduler._schedulers]
        return None if any(n is None for n in lengths) else max(n for n in lengths if n is not None)
    if isinstance(scheduler, lr_scheduler.CosineAnnealingLR):
        return int(scheduler.T_max)
    if isinstance(scheduler, (lr_scheduler.LinearLR, lr_scheduler.ConstantLR, lr_scheduler.PolynomialLR)):
        return int(scheduler.total_iters)
    return None


def _name(scheduler: lr_scheduler.LRScheduler) -> str:
    if isinstance(scheduler, (lr_scheduler.SequentialLR, lr_scheduler.ChainedScheduler)):
        return f"{type(scheduler).__name__}({', '.join(_name(child) for child in scheduler._schedulers)})"
    return type(scheduler).__name__
