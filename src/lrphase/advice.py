"""What lrphase advises: the paper's prediction where it is exact, the measured edge where it is not.

The prediction (:mod:`lrphase.theory.phases`) is exact for an MSE loss under full-batch gradient
descent (with or without weight decay) on a network whose c_act is derived, not fitted: the paper's
linear-output models (no nonlinearity called, c_act = 4). There the advice is the prediction.
Everywhere else — ReLU's 12 and tanh's 4 are empirical constants (held-out full-batch ReLU nets
failed at 3.5–5/λ₀), cross-entropy, momentum, minibatches, unknown or mixed activations — the
divergence edge is measured (:mod:`lrphase.dynamics.stability`) and the advice follows
the measurement:

* η_max = the largest rate that trained in the search (the prediction c_act/(g(λ₀ + wd)) is
  reported beside it);
* η_rec = η_max/``RECOMMEND_DIVISOR``;
* η_crit = 2F/(λ + wd) with λ = max(λ₀, λ_sharp), the curvature the runs that trained reached
  (progressive sharpening lowers the lazy boundary), never above η_max.

If no rate failed up to the search's cap, η_max is that cap's rate, a lower bound; if no rate
trained, η_max is the smallest rate tried (which failed) and η_rec = η_max/(2·``RECOMMEND_DIVISOR``),
with a caveat.

An **adaptive optimizer** (Adam, AdamW, …; :mod:`lrphase.theory.adaptive`) is always measured, with
its own class: a run fails when its loss jumps above its start (:mod:`lrphase.dynamics.stability`),
so η_max is the largest rate whose loss fell from the first step, and η_rec = η_max/``ADAPTIVE_DIVISOR``
= η_max/2^(5/2): on the Adam calibration set (``benchmarks/adam_quality.py``) η_max/4 sat at the top
of the 99% window, whose top lay 0.7–9× and bottom 6.5–700× below η_max; half an octave lower
centres it without leaving the narrow window of the MSE regression. Its phases are its own: stable
below η_max, unstable above (η_crit = η_max: no lazy/catapult split), and λᴾ₀'s predicted edge
2Fᴾ/λᴾ₀ is printed beside the measurement; with ``--no-measure`` the advice is that prediction/2^(5/2),
flagged as unverified. An optimizer lrphase cannot step (LBFGS) gets no numbers.

**A declared schedule** (:mod:`lrphase.theory.schedules`: a warmup, a decay) makes every rate a peak.
The search's runs follow the warmup and the decay's first steps, so η_max is the largest peak that
trained with that warmup, always measured (the paper's prediction is for a constant rate). A schedule
that decays has divisors of its own, calibrated on the warmup + cosine protocol of
``benchmarks/training_quality.py`` (η_max/D looked up at the nearest grid peak): η_rec = η_max/``DECAY_DIVISOR``
= η_max/2^(3/2) for SGD, a higher peak than the constant rate's (≥ 99% of the grid's best on 30 of 33
pairs, against 28 for D = 4), and η_max/``DECAY_ADAPTIVE_DIVISOR`` = η_max/2^(11/4) for an adaptive
optimizer, a quarter octave lower than its constant rate's (20 of 21 pairs, against 18 for 2^(5/2)).
A warmup with a constant rate after it keeps the constant divisors.
``check`` keeps more room from an edge measured under a schedule (:attr:`Advice.margin`): with a warmup, full
training failed up to 1.8× (SGD) and 2.6× (the causal LM's noisy failure rule) below it on that benchmark.
The warmup advice (:mod:`lrphase.dynamics.warmup`) is measured at η_rec·(1 + that margin); beside it
the catapult's prediction: a warmup that starts below η_crit = 2F/(λ₀ + wd) (λᴾ₀'s edge for an
adaptive optimizer) is stable at its first step, so a peak below it needs no warmup.
"""

from __future__ import annotations

from dataclasses import dataclass

from .curvature.losses import Loss
from .dynamics.stability import EdgeMeasurement
from .dynamics.warmup import WarmupMeasurement
from .theory.activations import Activation
from .theory.adaptive import AdaptivePrediction
from .theory.optimizers import Optimizer
from .theory.phases import PhasePrediction
from .theory.schedules import CONSTANT, Schedule
from .vocabulary import PHASES, Confidence, Phase, Source

RECOMMEND_DIVISOR = 4.0
ADAPTIVE_DIVISOR = 2.0**2.5
MEASURED_MARGIN = 0.5  # the room kept below a measured edge: check's default margin (lrphase.workflows.check)
SCHEDULE_MARGIN = 1.0  # the room kept below an edge measured under a declared schedule
DECAY_DIVISOR = 2.0**1.5
DECAY_ADAPTIVE_DIVISOR = 2.0**2.75


def prediction_exact(loss: Loss, optimizer: Optimizer, activation: Activation, *, full_batch: bool) -> bool:
    """Whether the paper's prediction is exact: MSE, full-batch gradient descent without momentum, a derived c_act."""
    return could_be_exact(loss, optimizer, full_batch=full_batch) and activation.family == "linear"


def could_be_exact(loss: Loss, optimizer: Optimizer, *, full_batch: bool) -> bool:
    """Whether the prediction can be exact whatever the activation (known before λ₀ is estimated)."""
    return not loss.is_cross_entropy and optimizer.applies and optimizer.momentum == 0.0 and full_batch


@dataclass(frozen=True)
class Advice:
    """The phase boundaries and the recommended rate lrphase prints, with where each comes from."""

    prediction: PhasePrediction
    exact: bool  # whether the prediction is exact here (see prediction_exact)
    measurement: EdgeMeasurement | None
    eta_crit: float
    eta_max: float
    eta_recommended: float
    source: Source
    rule: str
    confidence: Confidence
    caveats: tuple[str, ...]
    adaptive: AdaptivePrediction | None = None  # λᴾ₀ and its predicted edge, for an adaptive optimizer
    warmup: WarmupMeasurement | None = None  # the edge against the warmup, and the warmup η_rec needs

    @property
    def schedule(self) -> Schedule:
        """The schedule the advice is for: every rate is its peak (constant when none was declared)."""
        return self.measurement.schedule if self.measurement is not None else CONSTANT

    @property
    def margin(self) -> float:
        """``check``'s default margin: 0, ``MEASURED_MARGIN``, or ``SCHEDULE_MARGIN`` under a declared schedule.

        0 from a predicted edge, which is exact; a measured edge keeps room, more under a schedule (module doc).
        """
        if self.measurement is None:
            return 0.0
        return SCHEDULE_MARGIN if self.schedule.declared else MEASURED_MARGIN

    @property
    def stable_start(self) -> float | None:
        """The catapult's prediction: rates below it are stable at the first step, 2F/(λ₀ + wd) or λᴾ₀'s edge."""
        if self.optimizer.adaptive:
            return self.adaptive.eta_edge if self.adaptive is not None else None
        return self.prediction.eta_crit if self.prediction.applies else None

    @property
    def lambda0(self) -> float:
        """λ₀ of the prediction."""
        return self.prediction.lambda0

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer the boundaries are for."""
        return self.prediction.optimizer

    @property
    def applies(self) -> bool:
        """Whether there is advice for this optimizer: False only for one lrphase can neither predict nor run."""
        return self.prediction.applies or self.measurement is not None or self.adaptive is not None

    @property
    def phase_names(self) -> dict[Phase, str]:
        """What each phase is called for this optimizer: an adaptive one's are stable and unstable."""
        if self.optimizer.adaptive:
            return {"lazy": "stable", "catapult": "stable", "divergent": "unstable"}
        return {phase: phase for phase in PHASES}

    @property
    def eta_max_predicted(self) -> float:
        """The paper's η_max = c_act/(g(λ₀ + wd)), shown beside a measured one."""
        return self.prediction.eta_max

    @property
    def lambda_sharp(self) -> float | None:
        """The curvature the measured runs reached, where it exceeds λ₀ (None otherwise)."""
        sharp = self.measurement.lambda_sharp if self.measurement and not self.measurement.adaptive else None
        return sharp if sharp is not None and sharp > self.lambda0 else None

    def phase_of(self, lr: float) -> Phase:
        """The phase of learning rate ``lr``: lazy below η_crit, divergent from η_max."""
        if lr < self.eta_crit:
            return "lazy"
        return "catapult" if lr < self.eta_max else "divergent"

    def ranges(self) -> dict[Phase, tuple[float, float]]:
        """Learning-rate interval of each phase."""
        return {
            "lazy": (0.0, self.eta_crit),
            "catapult": (self.eta_crit, self.eta_max),
            "divergent": (self.eta_max, float("inf")),
        }


def divisor_for(optimizer: Optimizer, schedule: Schedule) -> float:
    """η_max/η_rec: the constant rate's divisor, or a decaying schedule's (module doc)."""
    if schedule.decays:
        return DECAY_ADAPTIVE_DIVISOR if optimizer.adaptive else DECAY_DIVISOR
    return ADAPTIVE_DIVISOR if optimizer.adaptive else RECOMMEND_DIVISOR


def predicted_advice(prediction: PhasePrediction, *, exact: bool) -> Advice:
    """The advice when nothing was measured: the prediction itself, flagged where it is not ``exact``."""
    caveats = prediction.caveats
    confidence = prediction.confidence
    if not exact and prediction.applies:
        caveats = (
            "not measured: outside the paper's exact setting this η_max and this rate are "
            "extrapolations that have diverged in real training; run without --no-measure",
            *caveats,
        )
        confidence = "low"
    return Advice(
        prediction,
        exact,
        None,
        prediction.eta_crit,
        prediction.eta_max,
        prediction.eta_recommended,
        "predicted",
        prediction.rule,
        confidence,
        caveats,
    )


def predicted_adaptive_advice(prediction: PhasePrediction, adaptive: AdaptivePrediction | None) -> Advice:
    """An adaptive optimizer's advice with ``--no-measure``: λᴾ₀'s predicted edge and that edge/2^(5/2), unverified."""
    if adaptive is None:
        return predicted_advice(prediction, exact=False)
    edge = adaptive.eta_edge
    caveat = (
        f"not measured: {adaptive.formula} = {edge:.4g} is the linear-stability edge for the preconditioner of the first "
        "step, which adapts as training goes; run without --no-measure"
    )
    rule = f"predicted edge/{ADAPTIVE_DIVISOR:.3g}: {adaptive.formula} with λᴾ₀ = {adaptive.lambda_p0:.4g}"
    return Advice(prediction, False, None, edge, edge, edge / ADAPTIVE_DIVISOR, "predicted", rule, "low", (caveat,), adaptive)


def measured_advice(
    prediction: PhasePrediction, measurement: EdgeMeasurement, *, exact: bool, adaptive: AdaptivePrediction | None = None
) -> Advice:
    """The advice from a stability search (module doc); ``adaptive`` is λᴾ₀'s prediction for an adaptive optimizer."""
    opt = prediction.optimizer
    steps = measurement.steps
    edge = measurement.eta_max
    caveats: list[str] = []  # the prediction's caveats are all about the extrapolation the measurement replaces
    confidence: Confidence
    if edge is None:
        eta_max = measurement.first_failure
        assert eta_max is not None
        eta_rec = eta_max / (2.0 * RECOMMEND_DIVISOR)
        confidence = "low"
        rule = f"no rate trained, down to {eta_max:.4g}: η = (smallest rate tried)/8"
        caveats.insert(
            0,
            f"no rate down to {eta_max:.4g} trained in {steps}-step runs (the loss never settled below its start): "
            "check the data and the loss, or raise --measure-steps",
        )
    else:
        eta_max = edge
        divisor = divisor_for(opt, measurement.schedule)
        eta_rec = edge / divisor
        confidence = "high" if measurement.bracketed else "medium"
        trained = "whose loss never rose above its start" if opt.adaptive else "that trained"
        schedule = measurement.schedule
        runs = f"{steps}-step runs" if not schedule.declared else f"runs of its first {schedule.warmup_steps + steps} steps"
        rate = f"peak for {schedule.describe()}" if schedule.declared else "rate"
        rule = (
            f"η_max/{divisor:.3g}, η_max measured: the largest {rate} {trained} in {runs} of "
            f"{opt.describe()} on minibatches of {measurement.batch_size}"
        )
        if not measurement.bracketed:
            caveats.insert(
                0,
                f"no tried rate failed, up to {edge:.4g}: η_max is a lower bound, and the recommendation is conservative",
            )
    lam = max(prediction.lambda0, measurement.lambda_sharp or 0.0)
    eta_crit = min(2.0 * opt.stability_factor / opt.curvature(lam), eta_max) if opt.applies else eta_max
    return Advice(
        prediction,
        exact,
        measurement,
        eta_crit,
        eta_max,
        eta_rec,
        "measured",
        rule,
        confidence,
        tuple(caveats),
        adaptive,
    )
