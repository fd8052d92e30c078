"""How the divergence edge moves with the warmup, measured: searches at shorter warmups and runs at one peak.

Warmup lets a network train at peaks it could not start at: the first steps, at small rates, move it
to flatter regions (sharpness reduction, the catapult at work; Kalra & Barkeshli 2024), or it sharpens
(progressive sharpening) and the peak must come down. lrphase measures both, on the schedule's own
terms (:mod:`lrphase.dynamics.stability`, runs that follow the warmup, then the decay's first steps):

* **the edge against the warmup**: a stability search at each warmup length of ``warmup_lengths``
  (0, w/4, w/2 and the declared w), on the same lattice of rates, each starting from the declared
  warmup's edge (a shorter warmup rarely tolerates more);
* **the shortest warmup for a peak** η: runs at η·(1 + m) with those lengths, shortest first, until one
  trains (m: the margin ``check`` keeps from a measured edge, so that the peak itself has room);
  the run with the declared warmup tracks the curvature (λ, or λᴾ for an adaptive optimizer) at
  ``TRACK_POINTS`` fractions of the warmup, so the output shows why it trains;
* **a longer warmup** for a peak that fails (``check``): runs at ``LONGER_WARMUPS`` times the declared
  warmup (from ``BASE_WARMUP_FRACTION`` of the total steps when none is declared), shortest first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..curvature.isolation import preserved_rng
from ..theory.schedules import Schedule
from .stability import EdgeMeasurement, EdgeRun, EdgeTrainer, search_edge

TRACK_POINTS = (0.25, 0.5, 0.75, 1.0)
LONGER_WARMUPS = (2, 4, 8)
BASE_WARMUP_FRACTION = 0.05
MIN_WARMUP = 8  # the shortest warmup suggested where none was declared and the total is unknown


@dataclass(frozen=True)
class WarmupMeasurement:
    """The edge at each measured warmup length, and the runs at one peak that give its shortest warmup."""

    peak: float
    margin: float  # the peak runs are at peak·(1 + margin)
    edges: tuple[tuple[int, EdgeMeasurement], ...]  # (warmup steps, its search), shortest first
    peak_runs: tuple[EdgeRun, ...]  # runs at peak·(1 + margin), shortest warmup first, up to the first that trained
    trajectory: EdgeRun | None  # the run at peak·(1 + margin) with the declared warmup, curvature tracked through it

    @property
    def recommended_steps(self) -> int | None:
        """The shortest measured warmup at which peak·(1 + margin) trained (None: none did)."""
        return next((run.warmup_steps for run in self.peak_runs if run.trains), None)

    @property
    def edge_by_warmup(self) -> tuple[tuple[int, float | None], ...]:
        """(warmup steps, the largest peak that trained with it)."""
        return tuple((steps, search.eta_max) for steps, search in self.edges)

    @property
    def steps_trained(self) -> int:
        """Training steps spent over all its runs (the declared warmup's search not included)."""
        runs = [*self.peak_runs, *([self.trajectory] if self.trajectory else [])]
        return sum(s.steps_trained for _, s in self.edges[:-1]) + sum(r.steps_run for r in runs)


def warmup_lengths(warmup: int) -> tuple[int, ...]:
    """0, w/4, w/2 and w (rounded, without repeats)."""
    return tuple(sorted({0, warmup // 4, warmup // 2, warmup}))


def measure_warmup(
    trainer: EdgeTrainer,
    declared: EdgeMeasurement,
    peak: float,
    *,
    margin: float,
    on_run: Callable[[EdgeRun], None] | None = None,
) -> WarmupMeasurement:
    """The edge at each warmup length up to ``declared``'s, and the shortest at which peak·(1 + ``margin``) trains."""
    schedule, steps = declared.schedule, declared.steps
    warmup = schedule.warmup_steps
    top = declared.eta_max or declared.start_lr
    edges: list[tuple[int, EdgeMeasurement]] = []
    for length in warmup_lengths(warmup)[:-1]:
        search = search_edge(
            trainer, start=top, lambda0=declared.lambda0, steps=steps, on_run=on_run, adaptive=declared.adaptive,
            schedule=schedule.with_warmup(length),
        )  # fmt: skip
        edges.append((length, search))
    edges.append((warmup, declared))
    track = sorted({max(1, round(fraction * warmup)) for fraction in TRACK_POINTS}) if warmup else []
    peak_runs: list[EdgeRun] = []
    trajectory = None
    for length in warmup_lengths(warmup):
        with preserved_rng():
            run = trainer.run(peak * (1.0 + margin), steps, schedule.with_warmup(length), track if length == warmup else ())
        if on_run is not None:
            on_run(run)
        peak_runs.append(run)
        if length == warmup:
            trajectory = run
        if run.trains:
            break
    if trajectory is None:
        with preserved_rng():
            trajectory = trainer.run(peak * (1.0 + margin), steps, schedule, track)
        if on_run is not None:
            on_run(trajectory)
    return WarmupMeasurement(peak, margin, tuple(edges), tuple(peak_runs), trajectory)


def longer_warmup(
    trainer: EdgeTrainer, schedule: Schedule, rate: float, steps: int, *, on_run: Callable[[EdgeRun], None] | None = None
) -> EdgeRun | None:
    """The first run at ``rate`` that trained with a warmup ``LONGER_WARMUPS`` times the declared one (None: none did).

    Lengths stay below the schedule's last step; without a declared warmup they start from
    ``BASE_WARMUP_FRACTION`` of the total steps (``MIN_WARMUP`` steps when the total is unknown).
    """
    base = schedule.warmup_steps or (
        max(MIN_WARMUP, round(BASE_WARMUP_FRACTION * schedule.total_steps)) if schedule.total_steps else MIN_WARMUP
    )
    factors = LONGER_WARMUPS if schedule.warmup_steps else (1, *LONGER_WARMUPS)
    for factor in factors:
        length = base * factor
        if schedule.total_steps is not None and length >= schedule.total_steps:
            break
        with preserved_rng():
            run = trainer.run(rate, steps, schedule.with_warmup(length))
        if on_run is not None:
            on_run(run)
        if run.trains:
            return run
    return None
