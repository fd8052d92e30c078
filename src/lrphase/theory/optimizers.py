"""The optimizer a model is trained with, and how it moves the phase boundaries.

The paper's thresholds are for plain gradient descent. For ``torch.optim.SGD`` (its exact
conventions: buffer b ← β b + (1 − d) g, first step b ← g; heavy ball θ ← θ − η b; Nesterov
θ ← θ − η (g + β b); weight decay g ← ∇L + wd θ) the linear stability of one curvature
direction λ follows from the recursion's characteristic polynomial. With a = η λ:

* **weight decay** adds wd to every curvature: λ → λ + wd (the loss ½λθ² becomes ½(λ + wd)θ²);
* **plain GD**: θ' = (1 − a) θ, stable iff a < 2;
* **heavy ball**: η b_t = θ_{t−1} − θ_t gives θ' = θ − (1 − d) a θ + β (θ − θ_prev), so
  z² − (1 + β − (1 − d) a) z + β = 0. For 0 ≤ β < 1 the roots leave the unit disk first through
  z = −1: 1 + (1 + β − (1 − d) a) + β > 0, i.e. a < 2(1 + β)/(1 − d);
* **Nesterov** (PyTorch's form, d = 0): b' = β b + λθ and θ' = (1 − a(1 + β)) θ − η β² b give the
  matrix [[1 − a(1 + β), −η β²], [λ, β]] with trace T = (1 + β)(1 − a) and determinant
  D = β(1 − a). The Jury conditions for z² − T z + D are 1 − T + D = a > 0, |D| < 1
  (a < 1 + 1/β) and 1 + T + D = 2(1 + β) − a(1 + 2β) > 0, the binding one for β < 1:
  a < 2(1 + β)/(1 + 2β).

So η_crit = 2F/(λ₀ + wd) with the stability factor F = 1 (GD), (1 + β)/(1 − d) (heavy ball) or
(1 + β)/(1 + 2β) (Nesterov). The tests bisect the stability edge of ``torch.optim.SGD`` itself
on quadratics and match these to 1%.

**η_max does not scale with F.** Simulating the paper's warmup model f = n^(-1/2) vᵀ u x (whose
GD divergence boundary is exactly 4/λ₀) shows heavy-ball momentum diverging near 4–4.5/λ₀ for
every β in [0.3, 0.99] — not 4(1 + β)/λ₀ — and Nesterov near 4/((1 + β)λ₀). The catapult lasts a
few steps, fewer than the ~1/(1 − β) the momentum buffer needs to build up, so what decides
divergence is the step taken on the *current* gradient: its gain g = 1 − d for heavy ball (1 for
GD) and 1 + β for Nesterov (g + β b' contains g twice). lrphase therefore uses
η_max = c_act/(g (λ₀ + wd)), never below η_crit; ``tests/test_optimizers.py`` checks this on the
warmup model. It is calibrated on that model only, not on real networks.

Adaptive optimizers (Adam, AdamW, RMSprop, Adagrad, …) divide each coordinate by running
gradient statistics: their stability is set by the curvature of the preconditioned loss, not by
λ₀, so the paper's prediction does not apply to them and lrphase says so instead of giving numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InputError

ADAPTIVE = (
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "radam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "sparseadam",
    "lbfgs",
    "adafactor",
    "lion",
    "lamb",
    "other",
)
OPTIMIZERS = ("sgd", *ADAPTIVE)


@dataclass(frozen=True)
class Optimizer:
    """An optimizer as lrphase models it: ``torch.optim.SGD``'s hyperparameters, or a name it cannot model."""

    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dampening: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise InputError(
                f"unknown optimizer '{self.name}': use sgd, or one of {', '.join(ADAPTIVE)} "
                "(for those the prediction does not apply)"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum:g}")
        if not 0.0 <= self.dampening < 1.0:
            raise InputError(f"dampening must be in [0, 1), got {self.dampening:g}")
        if self.weight_decay < 0.0:
            raise InputError(f"weight decay must be ≥ 0, got {self.weight_decay:g}")
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise InputError("Nesterov momentum needs momentum > 0 and no dampening (as in torch.optim.SGD)")

    @classmethod
    def from_torch(cls, optimizer: Any) -> Optimizer:
        """The spec of a ``torch.optim`` optimizer instance, from its first parameter group."""
        name = type(optimizer).__name__.lower()
        if name != "sgd":
            return cls(name=name if name in ADAPTIVE else "other")
        group = optimizer.param_groups[0]
        return cls(
            momentum=float(group.get("momentum", 0.0)),
            nesterov=bool(group.get("nesterov", False)),
            weight_decay=float(group.get("weight_decay", 0.0)),
            dampening=float(group.get("dampening", 0.0)),
        )

    @property
    def applies(self) -> bool:
        """Whether the linear-stability prediction holds for this optimizer (SGD and its variants only)."""
        return self.name == "sgd"

    @property
    def plain(self) -> bool:
        """Plain gradient descent: the paper's setting."""
        return self.applies and self.momentum == 0.0 and self.weight_decay == 0.0

    @property
    def reason(self) -> str | None:
        """Why the prediction does not apply (None when it does)."""
        if self.applies:
            return None
        return (
            f"{self.name} is adaptive: it rescales each coordinate by running gradient statistics, so its "
            "stability is set by the preconditioned curvature, not by λ₀; the catapult paper's thresholds "
            "do not apply to it"
        )

    @property
    def stability_factor(self) -> float:
        """F in η_crit = 2F/(λ₀ + wd): 1, (1 + β)/(1 − d) (heavy ball) or (1 + β)/(1 + 2β) (Nesterov)."""
        beta = self.momentum
        if self.nesterov:
            return (1.0 + beta) / (1.0 + 2.0 * beta)
        return (1.0 + beta) / (1.0 - self._dampening)

    @property
    def step_gain(self) -> float:
        """G in η_max = c_act/(g (λ₀ + wd)): the coefficient of the current gradient in one step."""
        return 1.0 + self.momentum if self.nesterov else 1.0 - self._dampening

    @property
    def _dampening(self) -> float:
        """Dampening acts on the momentum buffer only: without momentum there is none."""
        return self.dampening if self.momentum else 0.0

    def curvature(self, lambda0: float) -> float:
        """The curvature the optimizer sees: λ₀ + wd."""
        return lambda0 + self.weight_decay

    def crit_formula(self) -> str:
        """η_crit as a formula in λ₀."""
        denominator = "(λ₀+wd)" if self.weight_decay else "λ₀"
        if self.nesterov:
            return f"2(1+β)/((1+2β){denominator})"
        numerator = "2(1+β)" if self.momentum else "2"
        if self._dampening:
            return f"{numerator}/((1−d){denominator})"
        return f"{numerator}/{denominator}"

    def max_formula(self) -> str:
        """η_max as a formula in λ₀ and c_act."""
        denominator = "(λ₀+wd)" if self.weight_decay else "λ₀"
        if self.nesterov:
            return f"c_act/((1+β){denominator})"
        if self._dampening:
            return f"c_act/((1−d){denominator})"
        return f"c_act/{denominator}"

    def describe(self) -> str:
        """One line for people, e.g. ``SGD with Nesterov momentum 0.9, weight decay 0.0005``."""
        if not self.applies:
            return self.name
        if self.plain:
            return "plain gradient descent"
        parts = []
        if self.momentum:
            kind = "Nesterov" if self.nesterov else "heavy-ball"
            parts.append(f"{kind} momentum {self.momentum:g}" + (f" (dampening {self.dampening:g})" if self._dampening else ""))
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        return "SGD with " + ", ".join(parts) if parts else "SGD"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, with the factors when the prediction applies."""
        return {
            "name": self.name,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "dampening": self.dampening,
            "applies": self.applies,
            "stability_factor": self.stability_factor if self.applies else None,
            "step_gain": self.step_gain if self.applies else None,
            "eta_crit_formula": self.crit_formula() if self.applies else None,
            "eta_max_formula": self.max_formula() if self.applies else None,
            "description": self.describe(),
        }
