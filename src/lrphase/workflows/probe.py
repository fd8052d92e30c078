"""One probe: λ₀ of a model, the activation it uses, the phases they predict, and the advice.

Where the paper's prediction is not exact (see :func:`lrphase.advice.prediction_exact`), the probe
also measures the divergence edge with short training runs (:mod:`lrphase.dynamics.stability`) and
advises from the measurement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..advice import (
    Advice,
    could_be_exact,
    measured_advice,
    predicted_adaptive_advice,
    predicted_advice,
    prediction_exact,
)
from ..curvature.data import is_full_batch
from ..curvature.distributed import world
from ..curvature.estimate import Lambda0Estimate, estimate_lambda0
from ..curvature.losses import resolve_loss
from ..dynamics.stability import (
    ADAPTIVE_STEPS,
    DEFAULT_STEPS,
    MAX_FOLLOWED_WARMUP,
    EdgeMeasurement,
    EdgeRun,
    EdgeTrainer,
    adaptive_start_rate,
    followed,
    make_edge_trainer,
    search_edge,
    start_rate,
)
from ..dynamics.warmup import measure_warmup
from ..errors import InputError
from ..theory.activations import Activation, classify
from ..theory.adaptive import AdaptivePrediction, predict_adaptive
from ..theory.optimizers import Optimizer, resolve_optimizer
from ..theory.phases import PhasePrediction, predict_phases
from ..theory.schedules import resolve_schedule


@dataclass(frozen=True)
class ProbeResult:
    """λ₀ with its diagnostics, the detected activation, the predicted phases and the advice."""

    estimate: Lambda0Estimate
    activation: Activation
    phases: PhasePrediction
    advice: Advice

    @property
    def lambda0(self) -> float:
        """λ₀, the mean top Gauss–Newton eigenvalue over the probed batches."""
        return self.estimate.lambda0

    @property
    def measurement(self) -> EdgeMeasurement | None:
        """The stability search, where one ran."""
        return self.advice.measurement

    @property
    def eta_recommended(self) -> float:
        """The learning rate lrphase recommends."""
        return self.advice.eta_recommended

    @property
    def eta_max(self) -> float:
        """The divergence edge: measured where the prediction is not exact, else c_act/(g(λ₀ + wd))."""
        return self.advice.eta_max

    @property
    def adaptive(self) -> AdaptivePrediction | None:
        """λᴾ₀ and the edge it predicts, for an adaptive optimizer whose preconditioner lrphase knows."""
        return self.advice.adaptive


def edge_trainer(model: nn.Module, data: Any, estimate: Lambda0Estimate, *, optimizer: Optimizer, **options: Any) -> EdgeTrainer:
    """The probe's :class:`~lrphase.dynamics.stability.EdgeTrainer`: on ``estimate``'s device, warm-started from its λ₀."""
    return make_edge_trainer(
        model,
        data,
        loss=estimate.loss,
        optimizer=optimizer,
        batch_size=options.get("batch_size"),
        device=torch.device(estimate.device),
        dtype=options.get("dtype"),
        seed=options.get("seed", 0),
        jvp_mode=estimate.jvp_mode,
        initial=estimate.per_batch[0].gn if world()[1] == 1 else None,
    )


def probe(
    model: nn.Module,
    data: Any,
    *,
    loss: Any = None,
    c_act: float | None = None,
    optimizer: Any = None,
    measure: bool | None = None,
    measure_steps: int | None = None,
    on_run: Callable[[EdgeRun], None] | None = None,
    schedule: Any = None,
    warmup_advice: bool = False,
    **options: Any,
) -> ProbeResult:
    """Estimate λ₀ (see :func:`lrphase.estimate_lambda0` for ``options``), predict the phases, and advise.

    ``c_act`` overrides the constant in η_max = c_act/λ₀ that is otherwise chosen from the
    nonlinearities the forward pass calls. ``optimizer`` (default: plain gradient descent) is an
    :class:`~lrphase.theory.optimizers.Optimizer`, a name, a ``torch.optim.Optimizer`` subclass or an
    optimizer object built on ``model``'s parameters: for SGD it moves the predicted boundaries, see
    :mod:`lrphase.theory.optimizers`; any other optimizer is run as itself, with λᴾ₀ predicting its
    edge (:mod:`lrphase.theory.adaptive`). ``measure``: None (default) measures
    the edge where the prediction is not exact (always for an adaptive optimizer), True always,
    False never (the advice is then the prediction, flagged as unverified where it is not exact);
    ``measure_steps`` is the length of each run of the search (default 40, 20 for an adaptive
    optimizer) and ``on_run`` is called after each. When the edge will be measured,
    λ₀ only places the search, so by default it is estimated on one batch (``batches``, else 3)
    and, for cross-entropy, without the NTK λ₀ (``ntk``), a second Lanczos run per batch.

    ``schedule``: the :class:`~lrphase.theory.schedules.Schedule` the model trains with (or a
    ``torch.optim.lr_scheduler`` scheduler or factory); every rate is then its peak, always measured with runs
    that follow its warmup (:mod:`lrphase.advice`). ``warmup_advice`` also measures the edge at shorter warmups
    and the shortest warmup the recommended peak needs (:mod:`lrphase.dynamics.warmup`).
    """
    opt = resolve_optimizer(optimizer, model)
    plan = resolve_schedule(schedule)
    if measure is False and plan.declared:
        raise InputError("a schedule's peak is always measured (the paper predicts a constant rate only): drop --no-measure")
    if warmup_advice and not plan.warmup_steps:
        raise InputError("warmup advice needs a schedule with a warmup: declare its warmup steps (--warmup-steps)")
    steps = measure_steps if measure_steps is not None else (ADAPTIVE_STEPS if opt.adaptive else DEFAULT_STEPS)
    if steps < 1:
        raise InputError(f"--measure-steps must be at least 1, got {steps}")
    loss_spec = resolve_loss(loss)
    full_batch = is_full_batch(data, options.get("batch_size"))
    runnable = opt.cannot_step is None
    exact_possible = could_be_exact(loss_spec, opt, full_batch=full_batch) and not plan.declared
    measuring = runnable and (measure or (measure is None and not exact_possible))
    if options.get("batches") is None:
        options["batches"] = 1 if measuring else 3
    if measuring and loss_spec.is_cross_entropy:
        options.setdefault("ntk", False)
    estimate = estimate_lambda0(model, data, loss=loss_spec, **options)
    activation = classify(estimate.nonlinearities)
    phases = predict_phases(estimate.lambda0, activation, cross_entropy=loss_spec.is_cross_entropy, c_act=c_act, optimizer=opt)
    exact = prediction_exact(loss_spec, opt, activation, full_batch=full_batch) and not plan.declared
    if not runnable or (opt.applies and (measure is False or (measure is None and exact))):
        advice = predicted_advice(phases, exact=exact)
        return ProbeResult(estimate, activation, phases, advice)
    trainer = edge_trainer(model, data, estimate, optimizer=opt, **options)
    measured = followed(plan)
    adaptive = None
    if opt.adaptive:
        initial = trainer.tracker.initial_preconditioned_curvature()
        adaptive = predict_adaptive(initial, opt) if initial is not None else None
        if measure is False:
            return ProbeResult(estimate, activation, phases, predicted_adaptive_advice(phases, adaptive))
        start = adaptive_start_rate(adaptive.eta_edge if adaptive else None)
    else:
        start = start_rate(estimate.lambda0, loss_spec, opt, phases.c_act)
    measurement = search_edge(
        trainer, start=start, lambda0=estimate.lambda0, steps=steps, on_run=on_run, adaptive=opt.adaptive, schedule=measured
    )  # fmt: skip
    advice = measured_advice(phases, measurement, exact=exact, adaptive=adaptive)
    if measured != plan:
        cut = (
            f"your {plan.warmup_steps}-step warmup was measured as a {measured.warmup_steps}-step one (runs follow at most "
            f"{MAX_FOLLOWED_WARMUP} steps of it): a faster climb, so η_max is a lower bound for your schedule"
        )
        advice = replace(advice, caveats=(*advice.caveats, cut))
    if warmup_advice:
        warmup = measure_warmup(trainer, measurement, advice.eta_recommended, margin=advice.margin, on_run=on_run)
        advice = replace(advice, warmup=warmup)
    return ProbeResult(estimate, activation, phases, advice)
