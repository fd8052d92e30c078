"""``lrphase check``: place one learning rate in its phase, and pass or fail it.

The phases are the probe's advice (:mod:`lrphase.advice`): the paper's prediction where it is
exact, the measured divergence edge where it is not, so a rate that diverges in short training
runs of the user's optimizer on the user's minibatches never passes. A rate η passes when it
lies in an accepted phase (default: lazy or catapult; divergent never passes). With a margin
m ≥ 0 every rate in [η/(1+m), η·(1+m)] must lie in an accepted phase: η must be at least a
factor 1+m away from each boundary between an accepted and a rejected phase, while a boundary
between two accepted phases needs no distance. m = 0 checks η alone; that is the default
against a predicted edge, which is exact. A measured edge comes from 40-step runs, and on the
training-quality benchmark a full training run failed at up to 1.9× below it (7–9 of 33 pairs at
or below it across reruns), so against a measured edge the default is m = 0.5: a rate passes
only at least a factor 1.5 below the edge; under a declared schedule m = 1, a factor 2
(:attr:`lrphase.advice.Advice.margin`).

A failing rate gets a suggestion: the first that passes of the recommended rate η_rec, the
catapult window's geometric centre √(η_crit·η_max) and η_crit/(2(1+m)), deep in the lazy phase
(none when none passes).

An adaptive optimizer (Adam, AdamW, any ``torch.optim`` optimizer but SGD) is judged against its
measured edge (:mod:`lrphase.advice`): stable below η_max, unstable above, with the same margin.

With a declared schedule the rate is its peak, judged against the largest peak that trained with the
schedule's warmup. A peak that fails also gets the measured alternative of keeping it: the shortest
longer warmup (:func:`lrphase.dynamics.warmup.longer_warmup`: 2, 4, 8 times the declared one) with which
a run at lr·(1 + m) trained, if any did.

Exit codes, stable and shared with the CLI: 0 the rate passes, 1 it fails, 3 λ₀ did not converge
(the verdict is unreliable), 5 lrphase cannot run the optimizer (LBFGS, which needs a closure:
nothing was checked). The CLI adds 2 (bad input or usage) and 4 (internal error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..advice import Advice
from ..dynamics.stability import EdgeRun
from ..dynamics.warmup import longer_warmup
from ..errors import ExitCode, InputError
from ..settings import ACCEPTABLE_PHASES, validate
from ..theory.optimizers import Optimizer, group_rate, resolve_optimizer
from ..theory.schedules import CONSTANT, Schedule
from ..vocabulary import PHASES, Phase
from .probe import ProbeResult, edge_trainer, probe


@dataclass(frozen=True)
class Placement:
    """Where a rate falls: its phase, whether it passes, and what to try instead when it does not."""

    phase: Phase
    accepted: bool
    suggested_lr: float | None
    message: str


@dataclass(frozen=True)
class CheckResult:
    """One checked learning rate. ``probe`` and ``placement`` are None when the prediction does not apply."""

    lr: float
    optimizer: Optimizer
    accept: tuple[str, ...]
    margin: float
    probe: ProbeResult | None
    placement: Placement | None
    warmup_run: EdgeRun | None = None  # for a declared schedule: a run at lr·(1 + margin) that trained with a longer warmup

    @property
    def schedule(self) -> Schedule:
        """The schedule the rate is the peak of (constant when none was declared)."""
        return self.probe.advice.schedule if self.probe else CONSTANT

    @property
    def suggested_warmup(self) -> int | None:
        """The longer warmup that made this peak train, when it fails with the declared one (None otherwise)."""
        return self.warmup_run.warmup_steps if self.warmup_run else None

    @property
    def applies(self) -> bool:
        """False for an optimizer lrphase cannot run: nothing was checked."""
        return self.placement is not None

    @property
    def phases(self) -> Advice | None:
        """The boundaries the rate was judged against (the probe's advice)."""
        return self.probe.advice if self.probe else None

    @property
    def phase(self) -> str | None:
        """The rate's phase (None when not checked)."""
        return self.placement.phase if self.placement else None

    @property
    def accepted(self) -> bool | None:
        """Whether the rate passes (None when not checked)."""
        return self.placement.accepted if self.placement else None

    @property
    def suggested_lr(self) -> float | None:
        """A rate that passes, when this one does not (None when it passes, or none does)."""
        return self.placement.suggested_lr if self.placement else None

    @property
    def lambda0(self) -> float | None:
        """λ₀ (None when not checked)."""
        return self.probe.estimate.lambda0 if self.probe else None

    @property
    def eta_lambda0(self) -> float | None:
        """η·λ₀: the rate in units of 1/λ₀ (plain GD: lazy below 2, divergent above c_act)."""
        return self.lr * self.probe.estimate.lambda0 if self.probe else None

    @property
    def converged(self) -> bool | None:
        """Whether λ₀ converged (None when not checked)."""
        return self.probe.estimate.converged if self.probe else None

    @property
    def message(self) -> str:
        """The verdict in one line."""
        if self.placement is None:
            return f"lr {self.lr:.4g} was not checked: lrphase cannot run {self.optimizer.name}: {self.optimizer.cannot_step}"
        message = self.placement.message
        if self.warmup_run is not None:
            message += (
                f"; or keep the peak and warm up over {self.warmup_run.warmup_steps} steps (a run at "
                f"{self.warmup_run.lr:.4g} trained with that warmup)"
            )
        if not self.converged:
            return f"λ₀ did not converge, so the verdict is unreliable (raise --max-iter or loosen --tol): {message}"
        return message

    @property
    def exit_code(self) -> ExitCode:
        """The command's exit code (module doc)."""
        if self.placement is None:
            return ExitCode.NOT_APPLICABLE
        if not self.converged:
            return ExitCode.NOT_CONVERGED
        return ExitCode.OK if self.placement.accepted else ExitCode.FAILED


def passes(phases: Advice, lr: float, *, accept: Sequence[str], margin: float = 0.0) -> bool:
    """Whether every rate in [lr/(1+margin), lr·(1+margin)] lies in an accepted phase."""
    first = PHASES.index(phases.phase_of(lr / (1.0 + margin)))
    last = PHASES.index(phases.phase_of(lr * (1.0 + margin)))
    return all(name in accept for name in PHASES[first : last + 1])


def place(phases: Advice, lr: float, *, accept: Sequence[str], margin: float = 0.0) -> Placement:
    """Place ``lr`` in ``phases`` and judge it against the accepted phases and the margin (module doc)."""
    phase = phases.phase_of(lr)
    ok = passes(phases, lr, accept=accept, margin=margin)
    if phases.optimizer.adaptive:
        where = (
            f"lr {lr:.4g} is {phases.phase_names[phase]} for {phases.optimizer.describe()} "
            f"(unstable from η_max = {phases.eta_max:.4g}, {phases.source})"
        )
    else:
        where = (
            f"lr {lr:.4g} is {phase} (η·λ₀ = {lr * phases.lambda0:.3g}; lazy below η_crit = {phases.eta_crit:.4g}, "
            f"divergent from η_max = {phases.eta_max:.4g}, {phases.source})"
        )
    names: dict[str, str] = {str(phase): name for phase, name in phases.phase_names.items()}
    accepted = ", ".join(dict.fromkeys(names.get(name, name) for name in accept))
    if ok:
        return Placement(phase, True, None, f"{where}: passes (accepted: {accepted})")
    suggestion = _suggest(phases, accept=accept, margin=margin)
    advice = f"; try lr = {suggestion:.4g}" if suggestion is not None else "; no rate passes these settings"
    if phase not in accept:
        name = phases.phase_names[phase]
        return Placement(phase, False, suggestion, f"{where}: {name} is not accepted (accepted: {accepted}){advice}")
    bound, name = _nearest_rejected_boundary(phases, lr, accept)
    side = f"≤ {bound / (1.0 + margin):.4g}" if lr < bound else f"≥ {bound * (1.0 + margin):.4g}"
    return Placement(
        phase,
        False,
        suggestion,
        f"{where}: within the margin {margin:g} of {name} = {bound:.4g} (needs lr {side}){advice}",
    )


def _nearest_rejected_boundary(phases: Advice, lr: float, accept: Sequence[str]) -> tuple[float, str]:
    boundaries = [
        (phases.eta_crit, "η_crit", ("lazy", "catapult")),
        (phases.eta_max, "η_max", ("catapult", "divergent")),
    ]
    separating = [(b, name) for b, name, (below, above) in boundaries if (below in accept) != (above in accept)]
    return min(separating, key=lambda item: abs(math.log(item[0] / lr)))


def _suggest(phases: Advice, *, accept: Sequence[str], margin: float) -> float | None:
    candidates = (
        phases.eta_recommended,
        math.sqrt(phases.eta_crit * phases.eta_max),
        phases.eta_crit / (2.0 * (1.0 + margin)),
    )
    return next((c for c in candidates if passes(phases, c, accept=accept, margin=margin)), None)


def check(
    model: nn.Module,
    data: Any,
    *,
    lr: float | None = None,
    optimizer: str | Optimizer | type | Any = "sgd",
    momentum: float | None = None,
    nesterov: bool | None = None,
    weight_decay: float | None = None,
    dampening: float | None = None,
    accept: Sequence[str] | str = ACCEPTABLE_PHASES,
    margin: float | None = None,
    loss: Any = None,
    c_act: float | None = None,
    jvp_mode: str = "double",
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> CheckResult:
    """Estimate λ₀ of ``model`` on ``data`` and judge the learning rate ``lr`` for ``optimizer``.

    ``optimizer`` is a name (``"sgd"``, ``"adamw"``, …) with ``momentum``, ``nesterov``,
    ``weight_decay`` and ``dampening`` as in ``torch.optim.SGD`` (``betas``, ``eps`` and
    ``weight_decay`` for Adam and the like, in ``options``); an :class:`Optimizer`; a ``torch.optim.Optimizer``
    subclass; or an optimizer object built on ``model``, whose first parameter group also supplies ``lr`` when it
    is not given. For an optimizer lrphase cannot run (LBFGS), λ₀ is not estimated and the
    result says why. ``margin`` defaults to :attr:`lrphase.advice.Advice.margin` (module doc).
    ``options`` go to :func:`lrphase.probe` (``measure``, ``measure_steps``) and
    :func:`lrphase.estimate_lambda0`; ``jvp_mode`` defaults
    to ``"double"`` so the arithmetic, and the verdict, never depend on timing, and ``ntk`` to
    False: the verdict needs λ₀ alone, and for cross-entropy the NTK λ₀ would be a second Lanczos
    run per batch.
    """
    hyper = {key: options.pop(key) for key in ("betas", "eps") if key in options}
    spec, group_lr = _optimizer(
        optimizer, model, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, dampening=dampening, **hyper
    )
    lr = lr if lr is not None else group_lr
    if lr is None:
        raise InputError("no learning rate to check: pass --lr (lr= in Python), or set lr in [tool.lrphase] or the model file")
    where = "passed to lrphase.check"
    lr = validate("lr", lr, where)
    accepted: tuple[str, ...] = validate("accept", accept, where)
    if margin is not None:
        margin = validate("margin", margin, where)
    if spec.cannot_step is not None:
        return CheckResult(lr, spec, accepted, margin or 0.0, None, None)
    options.setdefault("ntk", False)
    on_run = options.pop("on_run", None)
    probed = probe(
        model, data, loss=loss, c_act=c_act, optimizer=spec, jvp_mode=jvp_mode, progress=progress, on_run=on_run, **options
    )  # fmt: skip
    if margin is None:
        margin = probed.advice.margin
    placement = place(probed.advice, lr, accept=accepted, margin=margin)
    warmup_run = None
    measurement = probed.advice.measurement
    if not placement.accepted and measurement is not None and measurement.schedule.declared:
        trainer = edge_trainer(model, data, probed.estimate, optimizer=spec, **options)
        warmup_run = longer_warmup(trainer, measurement.schedule, lr * (1.0 + margin), measurement.steps, on_run=on_run)
    return CheckResult(lr, spec, accepted, margin, probed, placement, warmup_run)


def _optimizer(optimizer: str | Optimizer | Any, model: nn.Module, **hyper: Any) -> tuple[Optimizer, float | None]:
    """The optimizer spec with ``hyper`` on top, and the learning rate of an optimizer object's first group."""
    if isinstance(optimizer, str):
        return Optimizer.named(optimizer, **hyper), None
    if any(value is not None for value in hyper.values()):
        raise InputError("momentum, nesterov, weight_decay and dampening go with an optimizer name, not an optimizer object")
    groups = getattr(optimizer, "param_groups", None)
    return resolve_optimizer(optimizer, model).with_hyperparameters(**hyper), group_rate(groups[0]) if groups else None
