"""The learning-rate schedule a model is trained with: a peak rate η and its shape f, η_t = η·f(t).

Steps count from t = 0, the first update. A declared schedule (:class:`Schedule`) has

* a **warmup** of w steps from f(0) = s (``warmup_start``, a fraction of the peak; 0 by default):
  linear, f(t) = s + (1 − s)·t/w — the Hugging Face and timm warmup, ``torch.optim.lr_scheduler.LinearLR``
  — or, for ``one-cycle``, cosine, f(t) = s + (1 − s)(1 − cos(πt/w))/2 with s = 1/25 unless given
  (``OneCycleLR``'s ``div_factor``);
* then a **decay** over the remaining T − w steps (T = ``total_steps``), with progress p = (t − w)/(T − w):
  constant f = 1, linear f = 1 − p, cosine and one-cycle f = (1 + cos πp)/2, down to 0 at t = T.

A schedule read from ``torch.optim.lr_scheduler`` (:mod:`lrphase.theory.torch_schedules`) is tabulated:
f(t) for every step, divided by its largest value, whose first step is the end of the warmup.

The peak η is what lrphase advises and ``check`` judges; with the constant schedule (no warmup, no
decay) it is the constant rate, and every run and figure is the constant-rate one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from ..vocabulary import DECAYS, Decay

ONE_CYCLE_START = 1.0 / 25.0  # torch.optim.lr_scheduler.OneCycleLR's default div_factor
ONE_CYCLE_WARMUP = 0.3  # and its pct_start


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule as multiples of its peak: η_t = η·f(t) (module doc)."""

    warmup_steps: int = 0
    total_steps: int | None = None
    decay: Decay = "constant"
    warmup_start: float | None = None  # f(0); None: 0, or 1/25 for one-cycle
    factors: tuple[float, ...] | None = None  # f(t) for every step, for a schedule read from torch
    source: str | None = None  # where it was read from, e.g. "OneCycleLR"

    def __post_init__(self) -> None:
        if self.factors is not None:
            return
        if self.decay not in DECAYS:
            raise InputError(f"unknown decay '{self.decay}': use one of {', '.join(DECAYS)}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise InputError(f"warmup steps must be an integer ≥ 0, got {self.warmup_steps!r}")
        if self.total_steps is not None and (
            isinstance(self.total_steps, bool) or not isinstance(self.total_steps, int) or self.total_steps < 1
        ):
            raise InputError(f"total steps must be an integer ≥ 1, got {self.total_steps!r}")
        if self.decay != "constant" and self.total_steps is None:
            raise InputError(f"a {self.decay} decay needs the total number of training steps: pass --total-steps")
        if self.total_steps is not None and self.warmup_steps >= self.total_steps and self.decay != "constant":
            raise InputError(
                f"the warmup ({self.warmup_steps} steps) must end before the last step ({self.total_steps}): "
                "lower --warmup-steps or raise --total-steps"
            )
        if self.warmup_start is not None and not 0.0 <= self.warmup_start <= 1.0:
            raise InputError(f"the warmup's start must be a fraction of the peak in [0, 1], got {self.warmup_start!r}")

    @classmethod
    def from_factors(cls, factors: list[float] | tuple[float, ...], source: str) -> Schedule:
        """A tabulated schedule: ``factors[t]`` ∝ η_t for every step, scaled so that the largest is 1."""
        peak = max(factors, default=0.0)
        if not factors or not all(math.isfinite(f) and f >= 0 for f in factors) or peak <= 0:
            raise InputError(f"the learning-rate schedule from {source} gives no positive, finite rates")
        table = tuple(f / peak for f in factors)
        return cls(warmup_steps=table.index(1.0), total_steps=len(table), decay="constant", factors=table, source=source)

    @property
    def declared(self) -> bool:
        """Whether this is anything but a constant rate."""
        return self.factors is not None or self.warmup_steps > 0 or self.decay != "constant"

    @property
    def decays(self) -> bool:
        """Whether the rate falls after its peak."""
        if self.factors is not None:
            return self.factors[-1] < 1.0
        return self.decay != "constant"

    @property
    def start(self) -> float:
        """f(0), the first step's rate as a fraction of the peak."""
        if self.factors is not None:
            return self.factors[0]
        if self.warmup_start is not None:
            return self.warmup_start
        return ONE_CYCLE_START if self.decay == "one-cycle" else 0.0

    def factor(self, step: int) -> float:
        """f(t) = η_t/η at step ``step`` (0 past the end of a decaying schedule)."""
        if self.factors is not None:
            return self.factors[step] if step < len(self.factors) else self.factors[-1]
        w, s = self.warmup_steps, self.start
        if step < w:
            u = step / w
            return s + (1.0 - s) * ((1.0 - math.cos(math.pi * u)) / 2.0 if self.decay == "one-cycle" else u)
        if self.decay == "constant" or self.total_steps is None:
            return 1.0
        p = min((step - w) / (self.total_steps - w), 1.0)
        return 1.0 - p if self.decay == "linear" else (1.0 + math.cos(math.pi * p)) / 2.0

    def with_warmup(self, steps: int) -> Schedule:
        """The same schedule with a warmup of ``steps`` steps, from the same start, and the same decay after it.

        A tabulated schedule keeps its table from the peak on, after a linear warmup of ``steps`` steps.
        """
        if self.factors is None:
            return replace(self, warmup_steps=steps)
        ramp = tuple(self.start + (1.0 - self.start) * t / steps for t in range(steps))
        table = ramp + self.factors[self.warmup_steps :]
        return replace(self, warmup_steps=steps, total_steps=len(table), factors=table)

    def describe(self) -> str:
        """One line for people, e.g. ``linear warmup over 100 steps, then cosine decay to step 2000``."""
        if not self.declared:
            return "constant rate"
        if self.factors is not None:
            return f"{self.source or 'a torch scheduler'} (peak at step {self.warmup_steps} of {self.total_steps})"
        shape = "cosine" if self.decay == "one-cycle" else "linear"
        start = f" from {self.start:g}×" if self.start else ""
        warmup = f"{shape} warmup{start} over {self.warmup_steps} steps" if self.warmup_steps else "no warmup"
        if self.decay == "constant":
            return f"{warmup}, then constant"
        end = "cosine" if self.decay == "one-cycle" else self.decay
        return f"{warmup}, then {end} decay to 0 at step {self.total_steps}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (docs/cli.md)."""
        return {
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": None if self.factors is not None else self.decay,
            "warmup_start": self.start,
            "source": self.source,
            "description": self.describe(),
        }


CONSTANT = Schedule()


def resolve_schedule(schedule: Any, total_steps: int | None = None) -> Schedule:
    """A :class:`Schedule` from a schedule, None (constant), or a ``torch.optim.lr_scheduler`` object or factory.

    ``total_steps`` bounds how far a torch scheduler is read (:mod:`lrphase.theory.torch_schedules`).
    """
    if schedule is None:
        return CONSTANT
    if isinstance(schedule, Schedule):
        return schedule
    from .torch_schedules import read_scheduler

    return read_scheduler(schedule, total_steps=total_steps)
