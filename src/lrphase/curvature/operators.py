"""Output-space curvature operators, built from a batch's Jacobian products (:class:`Products`).

Both are symmetric positive semi-definite on R^{m·k} and cost one vjp and one jvp per product:

* :func:`gauss_newton` — A = Sᵀ J Jᵀ S with H = S Sᵀ the loss Hessian in output space;
  its non-zero eigenvalues are those of the Gauss–Newton matrix G = Jᵀ H J.
* :func:`ntk` — the paper's empirical NTK Θ = J Jᵀ/(k m) (Supplement A);
* :func:`preconditioned_gauss_newton` — A = Sᵀ J P⁻¹ Jᵀ S for a diagonal preconditioner P
  (an adaptive optimizer's √v̂ + ε, :mod:`lrphase.curvature.preconditioner`); its non-zero
  eigenvalues are those of P^(−1/2) G P^(−1/2), i.e. of P⁻¹G: the preconditioned curvature λᴾ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch

from .jacobian import Vector
from .losses import Loss

MatVec = Callable[[torch.Tensor], torch.Tensor]


class Products(Protocol):
    """A batch's Jacobian J = ∂f/∂θ as the operators use it: the outputs f (m × k), Jᵀu and J v.

    :class:`~lrphase.curvature.jacobian.JacobianProducts` (one batch),
    :class:`~lrphase.curvature.chunked.ChunkedJacobianProducts` (micro-batched) and
    :class:`~lrphase.curvature.distributed.ShardedProducts` (one rank's shard) implement it.
    """

    @property
    def output(self) -> torch.Tensor:
        """The model's outputs on the batch, (m, k), detached."""

    @property
    def mode(self) -> str:
        """How J v is computed (see :class:`~lrphase.curvature.jacobian.JacobianProducts`)."""

    @property
    def fallback(self) -> str | None:
        """Why J v fell back to another mode, if it did."""

    def vjp(self, u: torch.Tensor) -> Vector:
        """Jᵀu for u of the outputs' shape: one tensor per trainable parameter."""

    def jvp(self, v: Vector) -> torch.Tensor:
        """J v, of the outputs' shape."""


def _sandwich(products: Products, left: MatVec, right: MatVec, middle: Vector | None = None) -> MatVec:
    shape = products.output.shape

    def matvec(u: torch.Tensor) -> torch.Tensor:
        v = products.vjp(left(u.reshape(shape)))
        if middle is not None:
            v = tuple(part * scale for part, scale in zip(v, middle, strict=True))
        return right(products.jvp(v)).reshape(-1)

    return matvec


def gauss_newton(products: Products, loss: Loss, *, samples: int | None = None, weights: torch.Tensor | None = None) -> MatVec:
    """U ↦ Sᵀ J Jᵀ S u, the output-space Gauss–Newton operator of ``loss``.

    ``samples``: the m of the normalization when ``products`` cover one shard; ``weights``: the
    loss's row weights (:meth:`~lrphase.curvature.losses.Loss.row_weights`), 0 on ignored rows.
    """
    apply_s, apply_st = loss.sqrt_hessian(products.output, samples=samples, weights=weights)
    return _sandwich(products, apply_s, apply_st)


def preconditioned_gauss_newton(
    products: Products, loss: Loss, inverse_preconditioner: Vector, *, weights: torch.Tensor | None = None
) -> MatVec:
    """U ↦ Sᵀ J P⁻¹ Jᵀ S u: the Gauss–Newton operator of ``loss`` seen through a diagonal preconditioner P.

    ``inverse_preconditioner`` is P⁻¹, one tensor per trainable parameter (in the products' order).
    """
    apply_s, apply_st = loss.sqrt_hessian(products.output, weights=weights)
    return _sandwich(products, apply_s, apply_st, inverse_preconditioner)


def ntk(products: Products, *, samples: int | None = None) -> MatVec:
    """U ↦ Θ u with Θ = J Jᵀ/(k m), the paper's normalized empirical NTK."""
    m, k = products.output.shape
    scale = 1.0 / math.sqrt(k * (samples or m))
    return _sandwich(products, lambda u: scale * u, lambda z: scale * z)
