"""Short gradient-descent runs from the model's initialization, with the curvature tracked.

A run trains a private copy of the model (see :mod:`lrphase.curvature.isolation`) with
``torch.optim.SGD``'s update on one fixed batch — full-batch gradient descent on that batch, as in
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
from ..curvature.jacobian import JacobianProducts, seeded_forward
from ..curvature.lanczos import LanczosResult, lanczos_top
from ..curvature.losses import Loss
from ..curvature.operators import gauss_newton
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
        self._vector: torch.Tensor | None = None
        self._lambda_init: float | None = None

    def start_from(self, initial: LanczosResult) -> None:
        """Use an already computed top pair at initialization (same batch, same loss)."""
        self._lambda_init = initial.eigenvalue
        self._vector = initial.eigenvector

    def _warm_start(self, dim: int) -> torch.Tensor | None:
        """The previous top eigenvector plus a little noise (``WARM_START_NOISE`` of its norm).

        Warm starts make each λ_t cost a few products; the noise keeps every direction in the
        Krylov space, so a nearby eigenvalue that overtook the old top one is still found.
        """
        if self._vector is None:
            return None
        noise = torch.randn(dim, generator=torch.Generator().manual_seed(self.seed), dtype=torch.float64)
        noise = noise.to(self._vector) * (WARM_START_NOISE / noise.norm())
        return self._vector + noise

    def initial_curvature(self) -> float:
        """λ at the shared initialization, computed once for all runs."""
        if self._lambda_init is None:
            self._lambda_init = self.curvature(self.clone)
        return self._lambda_init

    def curvature(self, model: nn.Module) -> float:
        """Top Gauss–Newton eigenvalue at ``model``'s current parameters, warm-started."""
        products = JacobianProducts(model, self.x, mode=self.jvp_mode, seed=self.seed)
        m, k = products.output.shape
        if not torch.isfinite(products.output).all():
            return math.inf
        result = lanczos_top(
            gauss_newton(products, self.loss, weights=self.loss.row_weights(self.target)),
            m * k,
            device=products.output.device,
            dtype=products.output.dtype,
            tol=self.tol,
            max_iter=self.max_iter,
            seed=self.seed,
            v0=self._warm_start(m * k),
        )
        self._vector = result.eigenvector
        return result.eigenvalue

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

        With ``stop_when_catapulted``, a run that starts unstable (η·λ₀ > 2) also ends once its
        verdict is settled as a catapult: the loss rose, came back below its start, and the
        curvature fell to η·λ_t < 2 (checked every ``CATAPULT_CHECK_EVERY`` steps from then on).
        """
        model = copy.deepcopy(self.clone)
        params = [p for p in model.parameters() if p.requires_grad]
        buffers: list[torch.Tensor | None] = [None] * len(params)
        losses: list[float] = []
        curvature = [(0, self.initial_curvature())]
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
                    curvature.append((step, self.curvature(model)))
                    stopped = "catapulted" if lr * curvature[-1][1] < 2 else None
            if step == steps or stopped:
                break
            grads = torch.autograd.grad(value, params, allow_unused=True)
            sgd_step(params, grads, buffers, lr=lr, optimizer=self.optimizer)
            if track_every and (step + 1) % track_every == 0 and step + 1 < steps:
                curvature.append((step + 1, self.curvature(model)))
        if stopped != "diverged" and curvature[-1][0] != len(losses) - 1:
            curvature.append((len(losses) - 1, self.curvature(model)))
        return Run(lr=lr, losses=tuple(losses), curvature=tuple(curvature), steps=steps, stopped=stopped)


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
