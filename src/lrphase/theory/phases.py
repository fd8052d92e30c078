"""The three learning-rate phases of the catapult paper, predicted from λ₀.

For gradient descent on a loss whose Gauss–Newton matrix has top eigenvalue λ₀:

* lazy:      η < η_crit = 2/λ₀ (linear stability of gradient descent);
* catapult:  η_crit < η < η_max = c_act/λ₀ (the loss spikes, curvature drops below 2/η);
* divergent: η > η_max.

Recommended rate: the midpoint of (η_crit, c_safe/λ₀), i.e. η_rec = (2 + c_safe)/(2 λ₀),
where c_safe = min(c_act, 3.5) unless you calibrated c_act yourself (``--c-act``), in
which case c_safe = c_act. Divergence of real ReLU networks has been measured from about
3.5/λ₀ (shallow nets, PyTorch's default initialization) up to the paper's 12/λ₀ (deep,
NTK parameterization), so trusting c_act = 12 blindly would recommend divergent rates.

For SGD with momentum or weight decay (see :mod:`lrphase.theory.optimizers`) the curvature becomes
λ₀ + wd, η_crit = 2F/(λ₀ + wd) with the optimizer's stability factor F, η_max = c_act/(g (λ₀ + wd))
with its step gain g (never below η_crit), and η_rec is the midpoint of η_crit and
c_safe/(g (λ₀ + wd)) — or η_crit/2 where that window is empty. F = g = 1 gives the formulas above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..vocabulary import Confidence
from .activations import Activation
from .optimizers import Optimizer

SMALLEST_MEASURED_C_ACT = 3.5

CROSS_ENTROPY_CAVEAT = (
    "cross-entropy: curvature usually grows in the first steps (progressive sharpening), so this "
    "init-only prediction is an upper bound of unknown slack (on a ReLU MLP the instability began "
    "near 0.3/λ₀); run `lrphase probe --confirm` or `lrphase sweep` to measure the real boundary"
)
MOMENTUM_CAVEAT = (
    "momentum: η_crit is the exact linear-stability threshold of {optimizer}, but η_max with momentum is "
    "extrapolated from the paper's warmup model, not measured on real networks; run `lrphase sweep` to measure it"
)
RELU_MOMENTUM_CAVEAT = (
    "ReLU with momentum: the paper (Supplement C.2) saw the curvature change already above about (1−β)·2/λ₀, "
    "so rates below η_crit are stable but not lazy"
)


@dataclass(frozen=True)
class PhasePrediction:
    """Phase boundaries and a recommended learning rate for (stochastic) gradient descent at λ₀."""

    lambda0: float
    c_act: float
    c_act_source: str  # "activation" or "user"
    eta_crit: float
    eta_max: float
    eta_recommended: float
    rule: str
    confidence: Confidence
    caveats: tuple[str, ...]
    optimizer: Optimizer = field(default_factory=Optimizer)

    @property
    def applies(self) -> bool:
        """False for adaptive optimizers: the boundaries are then plain gradient descent's, for reference only."""
        return self.optimizer.applies

    def phase_of(self, lr: float) -> str:
        """The predicted phase of learning rate ``lr``."""
        if lr < self.eta_crit:
            return "lazy"
        return "catapult" if lr < self.eta_max else "divergent"

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Learning-rate interval of each phase."""
        return {
            "lazy": (0.0, self.eta_crit),
            "catapult": (self.eta_crit, self.eta_max),
            "divergent": (self.eta_max, float("inf")),
        }


def predict_phases(
    lambda0: float,
    activation: Activation,
    *,
    cross_entropy: bool = False,
    c_act: float | None = None,
    optimizer: Optimizer | None = None,
) -> PhasePrediction:
    """Predict the phases from λ₀ and the network's activation (``c_act`` overrides it).

    ``optimizer`` (default: plain gradient descent) moves the boundaries as described above; for an
    optimizer the prediction does not apply to, the boundaries are plain gradient descent's and a
    caveat says they do not apply.
    """
    opt = optimizer or Optimizer()
    if not lambda0 > 0:
        raise ValueError(f"lambda0 must be positive, got {lambda0}")
    if c_act is not None and not c_act > 2:
        raise ValueError(f"c_act must exceed 2 (η_max above η_crit), got {c_act}")
    user = c_act is not None
    c = float(c_act) if c_act is not None else activation.c_act
    c_safe = c if user else min(c, SMALLEST_MEASURED_C_ACT)
    caveats = []
    if not activation.known:
        caveats.append(activation.reason)
    if cross_entropy:
        caveats.append(CROSS_ENTROPY_CAVEAT)
    confidence: Confidence
    if cross_entropy or not activation.known or activation.family == "mixed":
        confidence = "low"
    elif activation.family == "relu" and not user:
        confidence = "medium"
        caveats.append(
            "ReLU: divergence has been measured anywhere from 3.5/λ₀ to 12/λ₀; the recommendation "
            "stays below 3.5/λ₀; calibrate c_act with `lrphase sweep`"
        )
    else:
        confidence = "high"
    source = "your --c-act" if user else "smallest divergence boundary measured on real networks"
    rule = f"midpoint of η_crit = 2/λ₀ and {c_safe:g}/λ₀ ({source}): η = {(2 + c_safe) / 2:g}/λ₀"
    model = opt if opt.applies else Optimizer()
    curvature, gain = model.curvature(lambda0), model.step_gain
    eta_crit = 2.0 * model.stability_factor / curvature
    eta_safe = c_safe / (gain * curvature)
    eta_recommended = (eta_crit + eta_safe) / 2.0 if eta_safe > eta_crit else eta_crit / 2.0
    if not opt.applies:
        caveats.insert(0, f"{opt.reason}; the numbers shown are for plain gradient descent")
        confidence = "low"
    elif not opt.plain:
        bound = f"{c_safe:g}/(g·{'(λ₀+wd)' if opt.weight_decay else 'λ₀'}) ({source}; step gain g = {gain:.3g})"
        rule = (
            f"midpoint of η_crit = {opt.crit_formula()} and {bound} for {opt.describe()}"
            if eta_safe > eta_crit
            else f"η_crit/2, in the lazy phase: {bound} is below η_crit = {opt.crit_formula()} for "
            f"{opt.describe()}, so no catapult rate is trusted"
        )
    if opt.applies and opt.momentum:
        caveats.append(MOMENTUM_CAVEAT.format(optimizer=opt.describe()))
        confidence = "medium" if confidence == "high" else confidence
        if activation.family == "relu":
            caveats.append(RELU_MOMENTUM_CAVEAT)
    return PhasePrediction(
        lambda0=lambda0,
        c_act=c,
        c_act_source="user" if user else "activation",
        eta_crit=eta_crit,
        eta_max=max(c / (gain * curvature), eta_crit),
        eta_recommended=eta_recommended,
        rule=rule,
        confidence=confidence,
        caveats=tuple(caveats),
        optimizer=opt,
    )
