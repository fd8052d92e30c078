"""Classifying a training run's early dynamics as lazy, catapult or divergent.

Inputs: the loss at every step L_0, L_1, …, the learning rate η, and the top Gauss–Newton
eigenvalue at the start (λ_start) and at the end (λ_end) of the run. With r_t = L_t/L_0:

* **divergent** — some L_t is non-finite or r_t ≥ ``EXPLODE_RATIO``; or the run ends with
  r ≥ ``GROW_RATIO`` and the loss still rising over the last quarter of the window;
* **catapult** — the run ends below its start, and either the curvature dropped through 2/η
  (η·λ_start > 2 and λ_end < 2/η, the decisive signature near η_crit on wide networks), or
  the loss rose (max r_t > ``RISE_ABOVE_START``, or L_t exceeded its running minimum by the
  factor ``REBOUND``) while the curvature fell (λ_end < λ_start);
* **lazy** — the run ends below its start without either. This includes a loss that rose
  while the curvature *grew* (λ_end ≥ λ_start): progressive sharpening up to the edge of
  stability 2/η, which is not the catapult of the initial curvature;
* **unresolved** — none of the above: the loss is still above its start when the window ends
  (raise the number of steps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..vocabulary import RunPhase

EXPLODE_RATIO = 1e6
GROW_RATIO = 10.0
RISE_ABOVE_START = 1.05
REBOUND = 1.25


@dataclass
class RiseTracker:
    """Follows a loss curve step by step: its peak over the start and its largest rebound."""

    start: float
    peak: float = 1.0
    peak_step: int = 0
    running_min: float = 1.0
    rebound: float = 1.0
    steps: int = 0

    def add(self, loss: float) -> None:
        """Record the next loss value (finite)."""
        ratio = loss / self.start
        if ratio > self.peak:
            self.peak, self.peak_step = ratio, self.steps
        self.running_min = min(self.running_min, ratio)
        if self.running_min > 0:
            self.rebound = max(self.rebound, ratio / self.running_min)
        self.steps += 1

    @property
    def rose(self) -> bool:
        """A meaningful rise: above ``RISE_ABOVE_START`` × start, or ``REBOUND`` × the running minimum."""
        return self.peak > RISE_ABOVE_START or self.rebound > REBOUND


@dataclass(frozen=True)
class Verdict:
    """The phase of one run with the numbers that decided it."""

    phase: RunPhase
    reason: str
    peak_loss_ratio: float
    peak_step: int
    final_loss_ratio: float
    rebound: float
    curvature_dropped: bool


def classify_run(
    losses: Sequence[float], lr: float, *, lambda_start: float | None = None, lambda_end: float | None = None
) -> Verdict:
    """Classify a run from its loss curve (``losses[0]`` is the initial loss) and curvature."""
    if not losses:
        raise ValueError("a run needs at least its initial loss")
    start = losses[0]
    if not math.isfinite(start) or start <= 0:
        raise ValueError(f"the initial loss must be finite and positive, got {start}")
    ratios = [x / start if math.isfinite(x) else math.inf for x in losses]
    tracker = RiseTracker(start)
    for x in losses:
        if not math.isfinite(x):
            break
        tracker.add(x)
    peak, peak_step, rebound, final = tracker.peak, tracker.peak_step, tracker.rebound, ratios[-1]
    dropped = lambda_start is not None and lambda_end is not None and lr * lambda_start > 2 and lr * lambda_end < 2

    def verdict(phase: RunPhase, reason: str) -> Verdict:
        return Verdict(phase, reason, peak, peak_step, final, rebound, dropped)

    if tracker.steps < len(ratios):
        return verdict("divergent", f"loss became non-finite at step {tracker.steps}")
    if peak >= EXPLODE_RATIO:
        return verdict("divergent", f"loss exploded to {peak:.3g}× its start")
    quarter = ratios[-max(2, len(ratios) // 4)]
    if final >= GROW_RATIO and final > quarter:
        return verdict("divergent", f"loss kept growing, to {final:.3g}× its start")
    rose = tracker.rose
    sharpened = lambda_start is not None and lambda_end is not None and lambda_end >= lambda_start
    if final < 1:
        if dropped:
            spike = f"loss rose to {peak:.3g}× its start (step {peak_step}) while " if rose else ""
            return verdict("catapult", f"{spike}curvature fell from above 2/η to below it, then the loss converged")
        if rose and not sharpened:
            return verdict("catapult", f"loss rose to {max(peak, rebound):.3g}× its start or running minimum, then converged")
        if rose:
            return verdict(
                "lazy",
                f"no catapult: the loss rose only as the curvature grew from {lambda_start:.3g} to {lambda_end:.3g} "
                "(progressive sharpening to the edge of stability 2/η)",
            )
        return verdict("lazy", "loss decreased without a spike")
    return verdict("unresolved", f"loss still at {final:.3g}× its start when the window ended; raise --steps")
