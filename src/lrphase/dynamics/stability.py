"""The divergence edge, measured: short training runs from the model's initialization.

The paper's η_max = c_act/λ₀ is exact only where the paper is: the MSE loss under gradient
descent. With cross-entropy the curvature grows in the first steps (progressive sharpening),
momentum moves the edge, and other activations have no measured c_act; there the largest rate
that trains has been seen anywhere from 0.02/λ₀ to 20/λ₀. So lrphase measures it.

**A run** trains a private copy of the model (see :mod:`lrphase.curvature.isolation`) from its
initialization for at most ``steps`` steps, with ``torch.optim.SGD``'s update for the user's
optimizer (:func:`lrphase.dynamics.runs.sgd_step`: momentum, Nesterov, weight decay) on the user's
data stream (:func:`lrphase.curvature.data.batch_stream`: minibatches of the user's batch size,
reshuffled every epoch, as training draws them). Every ``CHECK_EVERY`` steps and at the end it
measures L_t, the loss on a fixed evaluation batch (the stream's first batch), and at the end
the curvature λ_t, the top Gauss–Newton eigenvalue on that batch (Lanczos to ``TRACK_TOL``,
warm-started). With r_t = L_t/L_0 the run **fails**, and stops at once, when

* a training loss is non-finite, or r_t ≥ ``EXPLODE_RATIO`` = 10⁶ (blow-up; a catapult's spike
  near the edge can reach 10³–10⁵);
* after r fell to ``FALLEN_RATIO`` or below, r_t ≥ 1 at ``REBOUND_CHECKS`` checks in a row (an
  instability undid the training; one noisy check is not enough);

and fails at the end when r ≥ 1 (no progress), or when its curvature stays far past the edge of
stability: η·(λ_t + wd) ≥ ``SHARPNESS_LIMIT``·min(F, 1) at the end and again ``SHARPNESS_GAP``
steps later (the run goes on that long only then), with F the optimizer's stability factor
(:mod:`lrphase.theory.optimizers`). Otherwise it **trains**; a catapult, a spike before the loss first
falls and then convergence, trains.

The curvature test is what makes short runs predictive for cross-entropy, where the curvature
keeps growing (5–40× λ₀ within 50 steps on ReLU MLPs): minibatch training at its best rates sits
at η·λ_batch ≈ 1–3 with excursions above, and runs that stayed above 4 were seen to train for a
while and then diverge or die. min(F, 1): momentum's larger linear-stability factor was not seen
to buy room against minibatch noise, Nesterov's smaller one is kept. The constants were
calibrated on the training-quality benchmark (``benchmarks/training_quality.py``), whose
results are in ``benchmarks/RESULTS.md``.

**An adaptive optimizer** (Adam, AdamW, any optimizer but SGD) runs as its own class
(:class:`lrphase.dynamics.runs.Stepper`) for ``ADAPTIVE_STEPS`` steps, with L_t measured after each
of the first ``SPIKE_STEPS`` steps and every ``CHECK_EVERY`` after. Such optimizers rarely blow up
at a bad rate: the loss jumps in the first steps, then plateaus or limps on, and the full run ends
far below the best score. So the run fails, and stops at once, when r_t > ``SPIKE_RATIO`` = 1 (the
loss rose above its start), besides a non-finite loss and no progress; there is no curvature test
(Adam trains at its edge of stability, λᴾ ≈ 2Fᴾ/η). On the Adam calibration models
(``benchmarks/adam_quality.py``) no rate below the edge ever rose above its start, and every jump
came within the first 7 steps. A run that trained ends with λᴾ, with the run's own P.

**A declared schedule** (:mod:`lrphase.theory.schedules`) makes each run's rate a peak η: at step t it
trains at η·f(t), through the schedule's warmup (at most ``MAX_FOLLOWED_WARMUP`` steps of it) and then
``steps`` more steps of what follows; an adaptive run's loss is checked after every step of the warmup
and ``SPIKE_STEPS`` more. The verdicts are the same.

**The search** runs rates on the lattice η_s·2^(j/4). It starts at η_s, placed by λ₀:
η_s = c_s √(1 − β)/(λ₀ + wd) with c_s = ``START_CROSS_ENTROPY`` for cross-entropy and
c_s = c_act/2 otherwise; with momentum β = 0.9 the edge was seen 1–20× below plain SGD's (up to
momentum's long-run gain 1/(1 − β)), and √(1 − β) starts in the middle. It doubles the
rate while runs train and halves it while they fail (at most ``MAX_DOUBLINGS`` times), then
``BISECTIONS`` runs at geometric midpoints narrow the bracket to a factor 2^(1/4). The measured
η_max is the largest rate that trained below the smallest that failed; the λ_t of the runs show
how far the curvature sharpened from λ₀. An adaptive optimizer's search starts at its predicted
edge 2Fᴾ/λᴾ₀ (:mod:`lrphase.theory.adaptive`), or at ``ADAPTIVE_FALLBACK_START`` without one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..curvature.data import Inputs, batch_stream, to_device
from ..curvature.isolation import preserved_rng
from ..curvature.jacobian import seeded_forward
from ..curvature.lanczos import LanczosResult
from ..curvature.losses import Loss
from ..theory.optimizers import Optimizer
from ..theory.schedules import CONSTANT, Schedule
from .runs import Stepper, Trainer, make_trainer
from .verdict import EXPLODE_RATIO

DEFAULT_STEPS = 40
CHECK_EVERY = 5
FALLEN_RATIO = 0.5
REBOUND_CHECKS = 2
SHARPNESS_LIMIT = 4.0
SHARPNESS_GAP = 10
START_CROSS_ENTROPY = 0.5
START_GRID = 16  # the start is a power of 2^(1/START_GRID)
MAX_DOUBLINGS = 6
BISECTIONS = 2
TRACK_TOL = 1e-2
ADAPTIVE_STEPS = 20
SPIKE_STEPS = 10
SPIKE_RATIO = 1.0
ADAPTIVE_FALLBACK_START = 1e-3  # where no prediction places the search: Adam's usual rate
MAX_FOLLOWED_WARMUP = 200  # the longest warmup a run follows step by step; a longer one is measured at this length


@dataclass(frozen=True)
class EdgeRun:
    """One short training run of the search: its rate, its verdict and the loss curve that decided it."""

    lr: float
    trains: bool
    reason: str
    losses: tuple[tuple[int, float], ...]  # (step, r_t = L_t/L_0) on the evaluation batch
    curvature: tuple[tuple[int, float], ...]  # (step, λ_t), or λᴾ_t for an adaptive optimizer, on the evaluation batch
    steps_run: int
    warmup_steps: int = 0  # the schedule's warmup the run followed (its rate at step t: lr·f(t))

    @property
    def lambda_end(self) -> float | None:
        """λ on the evaluation batch after the last step; None when the run stopped before it."""
        return self.curvature[-1][1] if self.curvature and self.curvature[-1][0] == self.steps_run else None


@dataclass(frozen=True)
class EdgeMeasurement:
    """The runs of a stability search, in the order they ran, and the edge they bracket."""

    runs: tuple[EdgeRun, ...]
    steps: int
    batch_size: int
    start_lr: float
    lambda0: float
    adaptive: bool = False  # an adaptive optimizer's runs: judged by their spikes, their curvature is λᴾ
    schedule: Schedule = CONSTANT  # the runs' schedule: their rates are its peaks, each run follows its warmup

    @property
    def eta_max(self) -> float | None:
        """The largest rate that trained below the smallest that failed (None if none trained)."""
        failed = [r.lr for r in self.runs if not r.trains]
        ceiling = min(failed, default=math.inf)
        trained = [r.lr for r in self.runs if r.trains and r.lr < ceiling]
        return max(trained, default=None)

    @property
    def first_failure(self) -> float | None:
        """The smallest rate that failed (None if none did)."""
        return min((r.lr for r in self.runs if not r.trains), default=None)

    @property
    def bracketed(self) -> bool:
        """Whether a rate that trained and a rate that failed enclose the edge."""
        return self.eta_max is not None and self.first_failure is not None

    @property
    def lambda_sharp(self) -> float | None:
        """The largest λ_end of the runs that trained: the curvature training reached in ``steps`` steps."""
        return max((r.lambda_end for r in self.runs if r.trains and r.lambda_end is not None), default=None)

    @property
    def steps_trained(self) -> int:
        """Training steps spent over all runs."""
        return sum(r.steps_run for r in self.runs)


def start_rate(lambda0: float, loss: Loss, optimizer: Optimizer, c_act: float) -> float:
    """η_s = c_s √(1 − β)/(λ₀ + wd) (module doc), snapped to the nearest power of 2^(1/16).

    The snap makes the search's rates, and so its runs, identical whatever the last bits of λ₀
    (they differ between J·v modes, which ``auto`` picks by timing): near the edge a training
    run is chaotic, and a rate moved by 1e-8 can end 2% elsewhere.
    """
    c_start = START_CROSS_ENTROPY if loss.is_cross_entropy else c_act / 2.0
    exact = c_start * math.sqrt(1.0 - optimizer.momentum) / optimizer.curvature(lambda0)
    return _on_grid(exact)


def adaptive_start_rate(eta_edge: float | None) -> float:
    """An adaptive optimizer's first rate: its predicted edge, else ``ADAPTIVE_FALLBACK_START``, on the 2^(1/16) grid."""
    return _on_grid(eta_edge if eta_edge is not None and math.isfinite(eta_edge) and eta_edge > 0 else ADAPTIVE_FALLBACK_START)


def followed(schedule: Schedule) -> Schedule:
    """The schedule the runs follow: ``schedule``, its warmup cut to ``MAX_FOLLOWED_WARMUP`` steps.

    A shorter warmup climbs faster, so a peak that trains with it trains with the declared one too,
    as far as anything was seen: the measured edge is then a lower bound (the output says so).
    """
    return schedule if schedule.warmup_steps <= MAX_FOLLOWED_WARMUP else schedule.with_warmup(MAX_FOLLOWED_WARMUP)


def _on_grid(rate: float) -> float:
    """``rate`` snapped to the nearest power of 2^(1/``START_GRID``) (see :func:`start_rate`)."""
    return 2.0 ** (round(START_GRID * math.log2(rate)) / START_GRID)


@dataclass
class EdgeTrainer:
    """Short training runs from one prepared private copy of a model, on its data stream.

    ``tracker`` holds the copy, the loss, the optimizer and the seed, and measures the curvature on
    the evaluation batch, the stream's first batch.
    """

    tracker: Trainer
    data: Any
    batch_size: int | None
    device: torch.device
    dtype: torch.dtype | None

    @property
    def samples(self) -> int:
        """Samples in a batch (a batch of sequences has more rows of outputs: one per token)."""
        return Inputs.of(self.tracker.x).size or self.tracker.target.shape[0]

    def batches(self) -> Any:
        """The data stream, the same for every run."""
        for x, y in batch_stream(self.data, batch_size=self.batch_size, seed=self.tracker.seed):
            yield to_device(x, self.device, self.dtype), y

    def run(self, lr: float, steps: int, schedule: Schedule = CONSTANT, track: Sequence[int] = ()) -> EdgeRun:
        """Train a fresh copy at peak ``lr`` for ``schedule``'s warmup plus ``steps`` steps and judge it (module doc).

        The rate at step t is lr·f(t) (:class:`lrphase.theory.schedules.Schedule`); ``SHARPNESS_GAP`` more steps
        confirm a sharp end. ``track``: steps after which λ (λᴾ for an adaptive optimizer) is measured as well.
        """
        tracker, loss, optimizer, seed = self.tracker, self.tracker.loss, self.tracker.optimizer, self.tracker.seed
        eval_inputs = Inputs.of(tracker.x)
        model = copy.deepcopy(tracker.clone)
        stepper = Stepper(model, optimizer, lr)
        batches = self.batches()
        losses: list[tuple[int, float]] = [(0, 1.0)]
        curvature: list[tuple[int, float]] = []
        warmup = schedule.warmup_steps
        total = warmup + steps
        adaptive = optimizer.adaptive

        def advance(step: int) -> bool:
            """Training step ``step`` (from 1) at rate lr·f(step − 1); False when its loss is not finite."""
            inputs, y = next(batches)
            out = seeded_forward(model, inputs, seed=seed)
            value = loss.value(out, loss.prepare_targets(y, out))
            if not torch.isfinite(value):
                return False
            stepper.scale_rate(schedule.factor(step - 1))
            stepper.step(torch.autograd.grad(value, stepper.params, allow_unused=True))
            return True

        def evaluate() -> float:
            with torch.no_grad():
                return float(loss.value(seeded_forward(model, eval_inputs, seed=seed), tracker.target))

        def measure(step: int) -> float | None:
            """λ_step, or λᴾ_step with the optimizer's current P, recorded in the run's curvature (None: P unknown)."""
            inverse = stepper.inverse_preconditioner() if adaptive else None
            if adaptive and inverse is None:
                return None
            curvature.append((step, tracker.curvature(model) if inverse is None else tracker.curvature(model, inverse)))
            return curvature[-1][1]

        def sharpness(step: int) -> float:
            value = measure(step)
            assert value is not None  # SGD's curvature is always measured
            return lr * schedule.factor(step) * optimizer.curvature(value)

        def judged(trains: bool, reason: str, step: int) -> EdgeRun:
            return EdgeRun(lr, trains, reason, tuple(losses), tuple(curvature), step, warmup)

        start = evaluate()
        lowest, climbed = 1.0, 0
        for step in range(1, total + 1):
            if not advance(step):
                return judged(False, f"training loss became non-finite at step {step}", step)
            if step in track and step < total:
                measure(step)
            if step % CHECK_EVERY and step != total and not (adaptive and step <= warmup + SPIKE_STEPS):
                continue
            ratio = evaluate() / start
            losses.append((step, ratio))
            if not ratio < EXPLODE_RATIO:
                return judged(False, f"loss blew up to {ratio:.3g}× its start by step {step}", step)
            if adaptive and ratio > SPIKE_RATIO:
                return judged(False, f"loss jumped to {ratio:.3g}× its start at step {step}", step)
            climbed = climbed + 1 if ratio >= 1.0 and lowest <= FALLEN_RATIO else 0
            if climbed == REBOUND_CHECKS:
                return judged(
                    False, f"loss fell to {lowest:.2g}× its start, then climbed back above it (×{ratio:.3g} at step {step})", step
                )
            lowest = min(lowest, ratio)
        final = losses[-1][1]
        if final >= 1.0:
            return judged(False, f"no progress: loss at {final:.3g}× its start after {total} steps", total)
        trained = f"loss at {final:.2g}× its start after {total} steps (lowest {lowest:.2g}×)"
        if adaptive:
            factor, value = optimizer.preconditioned_factor, measure(total)
            rate = lr * schedule.factor(total)
            sharp = f", η·λᴾ = {rate * value:.3g} (edge 2Fᴾ = {2 * factor:.3g})" if value is not None and factor else ""
            return judged(True, f"{trained}{sharp}", total)
        limit = SHARPNESS_LIMIT * min(optimizer.stability_factor, 1.0)
        at_end = sharpness(total)
        if at_end < limit:
            return judged(True, f"{trained}, η·λ = {at_end:.2g}", total)
        for step in range(total + 1, total + SHARPNESS_GAP + 1):
            if not advance(step):
                return judged(False, f"training loss became non-finite at step {step}", step)
        later = sharpness(total + SHARPNESS_GAP)
        if later < limit:
            return judged(True, f"{trained}; η·λ = {at_end:.2g}, back to {later:.2g} {SHARPNESS_GAP} steps later", step)
        reason = (
            f"ends past the edge of stability: η·λ = {at_end:.2g}, then {later:.2g} ≥ {limit:.3g} "
            f"(λ sharpened to {curvature[-1][1]:.3g})"
        )
        return judged(False, reason, step)


def make_edge_trainer(
    model: nn.Module,
    data: Any,
    *,
    loss: Loss,
    optimizer: Optimizer,
    batch_size: int | None,
    device: torch.device,
    dtype: torch.dtype | None,
    seed: int = 0,
    jvp_mode: str = "double",
    initial: LanczosResult | None = None,
) -> EdgeTrainer:
    """An :class:`EdgeTrainer` on a private copy of ``model``.

    ``jvp_mode`` computes the tracked curvature's products (see :class:`lrphase.curvature.jacobian.JacobianProducts`);
    ``initial`` is λ₀'s Lanczos result on the stream's first batch, the warm start of the first λ_t.
    """
    tracker = make_trainer(
        model, data, loss=loss, batch_size=batch_size, device=device, dtype=dtype, seed=seed, optimizer=optimizer,
        jvp_mode=jvp_mode, tol=TRACK_TOL, initial=initial,
    )  # fmt: skip
    return EdgeTrainer(tracker, data, batch_size, device, dtype)


def search_edge(
    trainer: EdgeTrainer,
    *,
    start: float,
    lambda0: float,
    steps: int = DEFAULT_STEPS,
    on_run: Callable[[EdgeRun], None] | None = None,
    adaptive: bool = False,
    schedule: Schedule = CONSTANT,
) -> EdgeMeasurement:
    """Bracket the largest rate that trains, from ``start`` on the lattice start·2^(j/4) (module doc).

    With a ``schedule`` the rates are peaks: each run follows its warmup, then ``steps`` more steps.
    """
    runs: dict[int, EdgeRun] = {}

    def at(j: int) -> EdgeRun:
        if j not in runs:
            with preserved_rng():
                runs[j] = trainer.run(start * 2.0 ** (j / 4), steps, schedule)
            if on_run is not None:
                on_run(runs[j])
        return runs[j]

    j, first = 0, at(0).trains
    while abs(j) < 4 * MAX_DOUBLINGS:
        j += 4 if first else -4
        if at(j).trains != first:
            break
    for _ in range(BISECTIONS):
        trained = [k for k, r in runs.items() if r.trains]
        failed = [k for k, r in runs.items() if not r.trains and (not trained or k > max(trained))]
        if not trained or not failed or min(failed) - max(trained) < 2:
            break
        at((max(trained) + min(failed)) // 2)
    return EdgeMeasurement(tuple(runs.values()), steps, trainer.samples, start, lambda0, adaptive, schedule)
