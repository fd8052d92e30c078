"""Short gradient-descent runs from the model's initialization, with the curvature tracked.

A run trains a private copy of the model (see :mod:`lrphase.curvature.isolation`) with the
user's optimizer (:class:`Stepper`: SGD's update written out, any other optimizer its own class)
on one fixed batch — full-batch gradient descent on that batch, as in
the paper — recording the loss L_t before every step and the top Gauss–Newton eigenvalue
λ_t every ``track_every`` steps and at the end. Each λ_t is a Lanczos run warm-started
from the previous top eigenvector, so tracking costs a few products per measurement.
A run stops early once its verdict is certain: a non-finite or exploding loss, or a loss
``converged_ratio`` times below its start.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..curvature.data import Inputs, make_batches, to_device
from ..curvature.isolation import preserved_rng, working_copy
from ..curvature.jacobian import JacobianProducts, Vector, seeded_forward
from ..curvature.lanczos import LanczosResult, lanczos_top
from ..curvature.losses import Loss
from ..curvature.operators import gauss_newton, preconditioned_gauss_newton
from ..curvature.preconditioner import inverse_preconditioner
from ..errors import InputError
from ..theory.optimizers import Optimizer
from .verdict import EXPLODE_RATIO, RiseTracker

CATAPULT_CHECK_EVERY = 5
WARM_START_NOISE = 0.1


@dataclass(frozen=True)
class Run:
    """One training run: the loss before every step and the tracked curvature."""

    lr: float
    losses: tuple[float, ...]
    curvature: tuple[tuple[int, float], ...]
    steps: int
    stopped: str | None = None  # "diverged", "converged" or "catapulted" when the run ended early

    @property
    def lambda_start(self) -> float:
        """λ at the shared initialization."""
        return self.curvature[0][1]

    @property
    def lambda_end(self) -> float:
        """λ after the last step; NaN when the run diverged before it could be measured."""
        step, value = self.curvature[-1]
        return value if step == len(self.losses) - 1 else math.nan


@dataclass
class Trainer:
    """Runs gradient descent on a prepared copy of a model, on one batch, for several rates.

    ``clone`` is a prepared private copy (never the user's model); each run starts from a
    fresh copy of it, so every learning rate starts from the same initialization.
    """

    clone: nn.Module
    x: Any
    target: torch.Tensor
    loss: Loss
    optimizer: Optimizer = field(default_factory=Optimizer)
    seed: int = 0
    jvp_mode: str = "double"
    tol: float = 1e-3
    max_iter: int = 100

    def __post_init__(self) -> None:
        self._inputs = Inputs.of(self.x)
        self._vectors: dict[bool, torch.Tensor] = {}  # the last top eigenvector, plain (False) and preconditioned (True)
        self._lambda_init: float | None = None
        self._lambda_p_init: float | None = None

    def start_from(self, initial: LanczosResult) -> None:
        """Use an already computed top pair at initialization (same batch, same loss)."""
        self._lambda_init = initial.eigenvalue
        self._vectors[False] = initial.eigenvector

    def _warm_start(self, dim: int, preconditioned: bool) -> torch.Tensor | None:
        """The previous top eigenvector plus a little noise (``WARM_START_NOISE`` of its norm).

        Warm starts make each λ_t cost a few products; the noise keeps every direction in the
        Krylov space, so a nearby eigenvalue that overtook the old top one is still found.
        """
        vector = self._vectors.get(preconditioned)
        if vector is None:
            return None
        noise = torch.randn(dim, generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64)
        noise = noise.to(vector) * (WARM_START_NOISE / noise.norm())
        return vector + noise

    def initial_curvature(self) -> float:
        """λ at the shared initialization, computed once for all runs."""
        if self._lambda_init is None:
            self._lambda_init = self.curvature(self.clone)
        return self._lambda_init

    def curvature(self, model: nn.Module, inverse_preconditioner: Vector | None = None) -> float:
        """Top Gauss–Newton eigenvalue at ``model``'s current parameters, warm-started.

        With ``inverse_preconditioner`` P⁻¹ (for ``model``'s trainable parameters), the preconditioned λᴾ = λ_max(P⁻¹G).
        """
        products = JacobianProducts(model, self.x, mode=self.jvp_mode, seed=self.seed)
        m, k = products.output.shape
        if not torch.isfinite(products.output).all():
            return math.inf
        weights = self.loss.row_weights(self.target)
        preconditioned = inverse_preconditioner is not None
        operator = (
            preconditioned_gauss_newton(products, self.loss, inverse_preconditioner, weights=weights)
            if inverse_preconditioner is not None
            else gauss_newton(products, self.loss, weights=weights)
        )
        result = lanczos_top(
            operator,
            m * k,
            device=products.output.device,
            dtype=products.output.dtype,
            tol=self.tol,
            max_iter=self.max_iter,
            seed=self.seed,
            v0=self._warm_start(m * k, preconditioned),
        )
        self._vectors[preconditioned] = result.eigenvector
        return result.eigenvalue

    def initial_preconditioned_curvature(self) -> float | None:
        """λᴾ₀ = λ_max(P⁻¹G) at initialization, P from the optimizer's state after one step.

        The step is taken at rate 0 on a fresh copy, with the gradient of this batch (the run's first), so
        P is the one the first real step divides by. None for SGD, or an optimizer whose P is unknown.
        Computed once for all runs.
        """
        if self.optimizer.applies or self._lambda_p_init is not None:
            return self._lambda_p_init
        model = copy.deepcopy(self.clone)
        stepper = Stepper(model, self.optimizer, 0.0)
        value = self.loss.value(seeded_forward(model, self._inputs, seed=self.seed), self.target)
        stepper.step(torch.autograd.grad(value, stepper.params, allow_unused=True))
        inverse = stepper.inverse_preconditioner()
        if inverse is not None:
            self._lambda_p_init = self.curvature(model, inverse)
        return self._lambda_p_init

    def run(
        self,
        lr: float,
        steps: int,
        *,
        track_every: int = 0,
        converged_ratio: float = 0.0,
        stop_when_catapulted: bool = False,
    ) -> Run:
        """Train a fresh copy for up to ``steps`` steps at ``lr``; λ_t every ``track_every`` steps (0: ends only).

        For an adaptive optimizer the tracked curvature is λᴾ_t/Fᴾ, with P its state at step t (λᴾ₀: after
        one step at rate 0), so that η·λ = 2 marks its predicted edge as it marks gradient descent's.

        With ``stop_when_catapulted``, a run that starts unstable (η·λ₀ > 2) also ends once its
        verdict is settled as a catapult: the loss rose, came back below its start, and the
        curvature fell to η·λ_t < 2 (checked every ``CATAPULT_CHECK_EVERY`` steps from then on).
        """
        model = copy.deepcopy(self.clone)
        stepper = Stepper(model, self.optimizer, lr)
        losses: list[float] = []
        scale = self.optimizer.preconditioned_factor or 1.0

        def measured(model: nn.Module) -> float:
            """λ_t, or λᴾ_t in units of Fᴾ for an adaptive optimizer (so that η·λ = 2 is its edge too)."""
            inverse = stepper.inverse_preconditioner()
            return self.curvature(model) if inverse is None else self.curvature(model, inverse) / scale

        start = self.initial_preconditioned_curvature()
        curvature = [(0, start / scale if start is not None else self.initial_curvature())]
        stopped, tracker, next_check = None, None, 0
        for step in range(steps + 1):
            value = self.loss.value(seeded_forward(model, self._inputs, seed=self.seed), self.target)
            losses.append(float(value.detach()))
            stopped = _early_stop(losses, converged_ratio)
            if stopped is None and stop_when_catapulted and lr * curvature[0][1] > 2:
                tracker = tracker or RiseTracker(losses[0])
                tracker.add(losses[-1])
                if tracker.rose and losses[-1] < losses[0] and step >= next_check and step < steps:
                    next_check = step + CATAPULT_CHECK_EVERY
                    curvature.append((step, measured(model)))
                    stopped = "catapulted" if lr * curvature[-1][1] < 2 else None
            if step == steps or stopped:
                break
            stepper.step(torch.autograd.grad(value, stepper.params, allow_unused=True))
            if track_every and (step + 1) % track_every == 0 and step + 1 < steps:
                curvature.append((step + 1, measured(model)))
        if stopped != "diverged" and curvature[-1][0] != len(losses) - 1:
            curvature.append((len(losses) - 1, measured(model)))
        return Run(lr=lr, losses=tuple(losses), curvature=tuple(curvature), steps=steps, stopped=stopped)


class Stepper:
    """The user's optimizer stepping the trainable parameters of a private copy at one rate.

    SGD with a single group runs :func:`sgd_step` (its exact update, written out); every other
    optimizer — Adam, AdamW, any ``torch.optim.Optimizer`` subclass, or SGD with parameter groups — is
    built from its own class with the user's options (:meth:`lrphase.theory.optimizers.Optimizer.build`).
    """

    def __init__(self, model: nn.Module, optimizer: Optimizer, lr: float) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.spec, self.lr, self.peak = optimizer, lr, lr
        self._buffers: list[torch.Tensor | None] = [None] * len(self.params)
        self._torch = None if optimizer.applies and not optimizer.groups else optimizer.build(list(model.parameters()), lr)
        self._group_rates = [group["lr"] for group in self._torch.param_groups] if self._torch is not None else []

    def scale_rate(self, factor: float) -> None:
        """Train at ``factor`` times the rate the stepper was built with (a schedule's f(t)), every group alike."""
        self.lr = self.peak * factor
        if self._torch is not None:
            for group, rate in zip(self._torch.param_groups, self._group_rates, strict=True):
                group["lr"] = rate * factor

    def step(self, grads: tuple[torch.Tensor | None, ...]) -> None:
        """One step with the gradients ``grads`` of ``params``."""
        if self._torch is None:
            sgd_step(self.params, grads, self._buffers, lr=self.lr, optimizer=self.spec)
            return
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g
        try:
            self._torch.step()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"{self.spec.describe()} could not take a step on a copy of the model: {exc}") from exc

    def inverse_preconditioner(self) -> Vector | None:
        """P⁻¹ of an adaptive optimizer's current state (:mod:`lrphase.curvature.preconditioner`); None otherwise."""
        return None if self._torch is None or self.spec.applies else inverse_preconditioner(self._torch, self.params)


def sgd_step(
    params: Sequence[torch.Tensor],
    grads: tuple[torch.Tensor | None, ...],
    buffers: list[torch.Tensor | None],
    *,
    lr: float,
    optimizer: Optimizer,
) -> None:
    """One ``torch.optim.SGD`` step, in place, with its exact conventions (see :mod:`lrphase.theory.optimizers`).

    d = g + wd·θ; with momentum β the buffer is b = d on the first step, then b ← β b + (1 − dampening) d,
    and d ← d + β b (Nesterov) or d ← b; finally θ ← θ − η d. Written out rather than calling
    ``torch.optim.SGD``, whose per-step wrappers cost as much as a small model's step.
    """
    beta, wd = optimizer.momentum, optimizer.weight_decay
    with torch.no_grad():
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if g is None:
                continue
            d = g.add(p, alpha=wd) if wd else g
            if beta:
                b = buffers[i]
                if b is None:
                    b = buffers[i] = d.clone()
                else:
                    b.mul_(beta).add_(d, alpha=1 - optimizer.dampening)
                d = d.add(b, alpha=beta) if optimizer.nesterov else b
            p.add_(d, alpha=-lr)


def _early_stop(losses: list[float], converged_ratio: float) -> str | None:
    last, start = losses[-1], losses[0]
    if not math.isfinite(last) or last >= EXPLODE_RATIO * start:
        return "diverged"
    if converged_ratio and last <= converged_ratio * start:
        return "converged"
    return None


def make_trainer(
    model: nn.Module,
    data: Any,
    *,
    loss: Loss,
    batch_size: int | None,
    device: torch.device,
    dtype: torch.dtype | None,
    seed: int = 0,
    optimizer: Optimizer | None = None,
    jvp_mode: str = "double",
    tol: float = 1e-3,
    max_iter: int = 100,
    initial: LanczosResult | None = None,
) -> Trainer:
    """A :class:`Trainer` on the first batch that :func:`lrphase.curvature.data.make_batches` draws for ``seed``.

    ``initial``, the top Gauss–Newton pair already computed on that batch at initialization
    (e.g. by the probe), saves recomputing it.
    """
    with preserved_rng():
        ((x, y),) = make_batches(data, batch_size=batch_size, batches=1, seed=seed)
        clone, _ = working_copy(model, device=device, dtype=dtype)
    x = to_device(x, device, dtype)
    with torch.no_grad():
        out = seeded_forward(clone, x, seed=seed)
    target = loss.prepare_targets(y, out)
    trainer = Trainer(
        clone=clone,
        x=x,
        target=target,
        loss=loss,
        optimizer=optimizer or Optimizer(),
        seed=seed,
        jvp_mode="double" if jvp_mode == "auto" else jvp_mode,
        tol=tol,
        max_iter=max_iter,
    )
    if initial is not None:
        trainer.start_from(initial)
    return trainer
