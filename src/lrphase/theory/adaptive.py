"""The edge of an adaptive optimizer, predicted from the preconditioned curvature λᴾ₀.

With P the optimizer's diagonal preconditioner after its first step (:mod:`lrphase.curvature.preconditioner`)
and λᴾ₀ = λ_max(P⁻¹G) at initialization, a frozen P makes the optimizer linearly stable on the
quadratic model iff η < η_edge = 2Fᴾ/λᴾ₀, with Fᴾ from :attr:`lrphase.theory.optimizers.Optimizer.preconditioned_factor`
((1 + β₁)/(1 − β₁) for Adam: η_edge = 38/λᴾ₀ at β₁ = 0.9). P adapts as training goes (Cohen et al.
2022 find λᴾ settling at 2Fᴾ/η under Adam; Kalra & Barkeshli 2024 find it starts high and falls),
so this is a prediction of where the loss starts to spike, printed beside the measured edges;
it places the measuring runs and is the advice only with ``--no-measure``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .optimizers import Optimizer


@dataclass(frozen=True)
class AdaptivePrediction:
    """λᴾ₀ of an adaptive optimizer and the edge 2Fᴾ/λᴾ₀ it predicts (module doc)."""

    lambda_p0: float
    factor: float  # Fᴾ
    formula: str  # the edge as a formula in λᴾ

    @property
    def eta_edge(self) -> float:
        """η_edge = 2Fᴾ/λᴾ₀."""
        return 2.0 * self.factor / self.lambda_p0

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready: λᴾ₀, Fᴾ, the predicted edge and its formula."""
        return {"lambda_p0": self.lambda_p0, "factor": self.factor, "eta_edge": self.eta_edge, "formula": self.formula}


def predict_adaptive(lambda_p0: float, optimizer: Optimizer) -> AdaptivePrediction | None:
    """The prediction for ``optimizer`` at λᴾ₀; None where no theory gives Fᴾ or λᴾ₀ is not a positive number."""
    factor, formula = optimizer.preconditioned_factor, optimizer.edge_formula()
    if factor is None or formula is None or not lambda_p0 > 0 or lambda_p0 == float("inf"):
        return None
    return AdaptivePrediction(lambda_p0, factor, formula)
