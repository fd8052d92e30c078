"""One probe: λ₀ of a model, the activation it uses, and the phases they predict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .activations import Activation, classify
from .estimate import Lambda0Estimate, estimate_lambda0
from .optimizers import Optimizer
from .phases import PhasePrediction, predict_phases


@dataclass(frozen=True)
class ProbeResult:
    """λ₀ with its diagnostics, the detected activation, and the predicted phases."""

    estimate: Lambda0Estimate
    activation: Activation
    phases: PhasePrediction


def probe(
    model: nn.Module,
    data: Any,
    *,
    loss: Any = None,
    c_act: float | None = None,
    optimizer: Optimizer | None = None,
    **options: Any,
) -> ProbeResult:
    """Estimate λ₀ (see :func:`lrphase.estimate_lambda0` for ``options``) and predict the phases.

    ``c_act`` overrides the constant in η_max = c_act/λ₀ that is otherwise chosen from the
    nonlinearities the forward pass calls; ``optimizer`` (default: plain gradient descent)
    moves the boundaries, see :mod:`lrphase.optimizers`.
    """
    estimate = estimate_lambda0(model, data, loss=loss, **options)
    activation = classify(estimate.nonlinearities)
    phases = predict_phases(
        estimate.lambda0, activation, cross_entropy=estimate.loss.is_cross_entropy, c_act=c_act, optimizer=optimizer
    )
    return ProbeResult(estimate=estimate, activation=activation, phases=phases)
