"""What lrphase advises: the paper's prediction where it is exact, the measured edge where it is not.

The prediction (:mod:`lrphase.theory.phases`) is exact for an MSE loss under full-batch gradient
descent (with or without weight decay) on a network whose activation has a measured c_act: there
the advice is the prediction. Everywhere else — cross-entropy, momentum, minibatches, unknown or
mixed activations — the divergence edge is measured (:mod:`lrphase.dynamics.stability`) and the advice follows
the measurement:

* η_max = the largest rate that trained in the search (the prediction c_act/(g(λ₀ + wd)) is
  reported beside it);
* η_rec = η_max/``RECOMMEND_DIVISOR``;
* η_crit = 2F/(λ + wd) with λ = max(λ₀, λ_sharp), the curvature the runs that trained reached
  (progressive sharpening lowers the lazy boundary), never above η_max.

If no rate failed up to the search's cap, η_max is that cap's rate, a lower bound; if no rate
trained, η_max is the smallest rate tried (which failed) and η_rec = η_max/(2·``RECOMMEND_DIVISOR``),
with a caveat. Adaptive optimizers are neither predicted nor measured (see :mod:`lrphase.theory.optimizers`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .curvature.losses import Loss
from .dynamics.stability import EdgeMeasurement
from .theory.activations import Activation
from .theory.optimizers import Optimizer
from .theory.phases import PhasePrediction
from .vocabulary import Confidence, Phase, Source

RECOMMEND_DIVISOR = 4.0


def prediction_exact(loss: Loss, optimizer: Optimizer, activation: Activation, *, full_batch: bool) -> bool:
    """Whether the paper's prediction is exact: MSE, full-batch gradient descent without momentum, a known activation."""
    return could_be_exact(loss, optimizer, full_batch=full_batch) and activation.known and activation.family != "mixed"


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
        """False for adaptive optimizers: neither predicted nor measured."""
        return self.prediction.applies

    @property
    def eta_max_predicted(self) -> float:
        """The paper's η_max = c_act/(g(λ₀ + wd)), shown beside a measured one."""
        return self.prediction.eta_max

    @property
    def lambda_sharp(self) -> float | None:
        """The curvature the measured runs reached, where it exceeds λ₀ (None otherwise)."""
        sharp = self.measurement.lambda_sharp if self.measurement else None
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


def measured_advice(prediction: PhasePrediction, measurement: EdgeMeasurement, *, exact: bool) -> Advice:
    """The advice from a stability search (module doc)."""
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
        eta_rec = edge / RECOMMEND_DIVISOR
        confidence = "high" if measurement.bracketed else "medium"
        rule = (
            f"η_max/4, η_max measured: the largest rate that trained in {steps}-step runs of "
            f"{opt.describe()} on minibatches of {measurement.batch_size}"
        )
        if not measurement.bracketed:
            caveats.insert(
                0,
                f"no tried rate failed, up to {edge:.4g}: η_max is a lower bound, and the recommendation is conservative",
            )
    lam = max(prediction.lambda0, measurement.lambda_sharp or 0.0)
    eta_crit = min(2.0 * opt.stability_factor / opt.curvature(lam), eta_max) if opt.applies else prediction.eta_crit
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
    )
