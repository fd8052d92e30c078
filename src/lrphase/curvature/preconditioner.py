"""The diagonal preconditioner P of an adaptive optimizer, read from its state.

An adaptive step is θ ← θ − η m/P (m: the gradient or its running mean), so the curvature it sees
is P⁻¹G; :func:`lrphase.curvature.operators.preconditioned_gauss_newton` turns P into λᴾ. P per
optimizer, as ``torch.optim`` computes it after t steps:

* Adam, AdamW, NAdam, RAdam: P = √(v/(1 − β₂ᵗ)) + ε with v = ``exp_avg_sq`` (``max_exp_avg_sq``
  with amsgrad); NAdam's momentum schedule and RAdam's rectification are left out;
* Adamax: P = u, its ``exp_inf`` (ε already inside);
* RMSprop: P = √(s − ḡ²) + ε, with s = ``square_avg`` and ḡ = ``grad_avg`` when centered (else 0);
* Adagrad: P = √(Σ g²) + ε, its ``sum``.

Any other optimizer has no P lrphase knows: :func:`inverse_preconditioner` returns None.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .jacobian import Vector


def _preconditioner(optimizer: torch.optim.Optimizer, group: dict, state: dict) -> torch.Tensor | None:
    eps = float(group.get("eps", 0.0))
    if isinstance(optimizer, torch.optim.Adamax):
        return state["exp_inf"]
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam)):
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        correction = 1.0 - group["betas"][1] ** float(state["step"])
        return (v / correction).sqrt() + eps
    if isinstance(optimizer, torch.optim.RMSprop):
        v = state["square_avg"] - state["grad_avg"] ** 2 if group.get("centered") else state["square_avg"]
        return v.clamp(min=0).sqrt() + eps
    if isinstance(optimizer, torch.optim.Adagrad):
        return state["sum"].sqrt() + eps
    return None


def inverse_preconditioner(optimizer: torch.optim.Optimizer, parameters: Sequence[torch.Tensor]) -> Vector | None:
    """P⁻¹ for each of ``parameters`` (the products' trainable parameters) after at least one step; None if unknown.

    A parameter the optimizer does not hold, or holds no state for yet, gets P⁻¹ = 0: it does not move.
    """
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    inverse = []
    for p in parameters:
        state = optimizer.state.get(p)
        if id(p) not in group_of or not state:
            inverse.append(torch.zeros_like(p))
            continue
        preconditioner = _preconditioner(optimizer, group_of[id(p)], state)
        if preconditioner is None:
            return None
        inverse.append(preconditioner.reciprocal().to(p.dtype))
    return tuple(inverse)
