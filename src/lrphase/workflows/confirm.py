"""``probe --confirm``: watch the predicted catapult happen on the user's own model.

Two short runs from the same initialization on one fixed batch (see :mod:`lrphase.dynamics`):
at the recommended rate, and at 0.5·η_crit as a lazy reference. Each is classified by
:func:`lrphase.dynamics.verdict.classify_run`, with λ_t tracked every ``track_every`` steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..dynamics.runs import Run, make_trainer
from ..dynamics.verdict import Verdict, classify_run
from ..theory.optimizers import Optimizer
from .probe import ProbeResult


@dataclass(frozen=True)
class ConfirmedRun:
    """A confirmation run: its role, curve, verdict, and the phase the theory predicted."""

    role: str  # "recommended" or "reference"
    predicted: str
    run: Run
    verdict: Verdict


@dataclass(frozen=True)
class Confirmation:
    """Both confirmation runs and, if the recommended rate did not catapult, what to try."""

    runs: tuple[ConfirmedRun, ...]
    optimizer: Optimizer
    advice: str | None


def confirm(
    model: nn.Module,
    data: Any,
    probed: ProbeResult,
    *,
    steps: int = 40,
    track_every: int = 5,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    optimizer: Optimizer | None = None,
) -> Confirmation:
    """Train at ``probed``'s recommended rate and at 0.5·η_crit of its advice; classify both runs."""
    est, ph = probed.estimate, probed.advice
    trainer = make_trainer(
        model,
        data,
        loss=est.loss,
        batch_size=batch_size,
        device=torch.device(est.device),
        dtype=dtype,
        seed=seed,
        optimizer=optimizer,
        jvp_mode=est.jvp_mode,
        tol=est.tol,
        initial=est.per_batch[0].gn,
    )
    runs = []
    for role, lr in (("recommended", ph.eta_recommended), ("reference", 0.5 * ph.eta_crit)):
        run = trainer.run(lr, steps, track_every=track_every)
        verdict = classify_run(run.losses, lr, lambda_start=run.lambda_start, lambda_end=run.lambda_end)
        runs.append(ConfirmedRun(role, ph.phase_of(lr), run, verdict))
    return Confirmation(tuple(runs), trainer.optimizer, _advice(runs[0], steps, adaptive=trainer.optimizer.adaptive))


def _advice(recommended: ConfirmedRun, steps: int, *, adaptive: bool = False) -> str | None:
    phase = recommended.verdict.phase
    if phase == "catapult" or (adaptive and phase == "lazy"):  # an adaptive optimizer's recommendation is meant to be stable
        return None
    if adaptive and phase == "divergent":
        return (
            "the recommended rate diverged on this batch: its edge lies lower than the runs measured; "
            "rerun with more --measure-steps"
        )
    if phase == "lazy":
        return (
            "the recommended rate stayed lazy: the real η_crit is higher than 2/λ₀ here (λ₀ from other "
            "batches, or curvature that fell early); run `lrphase sweep` to locate it"
        )
    if phase == "divergent":
        return (
            "the recommended rate diverged: this model's divergence boundary is lower than assumed "
            "(common with cross-entropy or shallow ReLU nets); use a rate nearer η_crit or calibrate with `lrphase sweep`"
        )
    return f"the loss had not settled after {steps} steps: rerun with more --steps"
