"""Lanczos for the top eigenvalue of a symmetric positive semi-definite operator.

Runs on the operator's device with full reorthogonalization; only the tridiagonal
coefficients travel to the host, where scipy's ``eigh_tridiagonal`` gives the Ritz values.
It stops on an error bound, never on a fixed iteration count. For the top Ritz pair (θ, y),
the residual r = ‖A y − θ y‖ = β_j |s_j| (β_j the last off-diagonal, s_j the last component
of the tridiagonal eigenvector) bounds |θ − λ| for some eigenvalue λ of A; where the top
eigenvalue is separated by a gap δ from the rest of the spectrum, |θ − λ| ≤ r²/δ
(Kato–Temple). δ is estimated from the top two Ritz values as θ₁ − (θ₂ + r₂), with r₂ the
residual of the second Ritz pair: θ₂ + r₂ bounds the eigenvalue θ₂ approximates from above,
so a second Ritz value that has not settled yet cannot fake a large gap. The error bound is
min(r, r²/δ) (just r while δ ≤ 0); iteration stops once it is ≤ tol·θ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

INITIAL_BASIS_ROWS = 16


@dataclass(frozen=True)
class LanczosResult:
    """Top Ritz pair of a symmetric operator with its convergence diagnostics.

    ``residual`` is ‖A y − θ y‖ for the unit Ritz vector y; ``error_bound`` is
    min(residual, residual²/(θ₁ − θ₂ − r₂)); ``converged`` means error_bound ≤ tol·|θ| (or an exact
    invariant subspace was found).
    """

    eigenvalue: float
    eigenvector: torch.Tensor
    residual: float
    error_bound: float
    iterations: int
    converged: bool

    @property
    def relative_residual(self) -> float:
        return self.residual / abs(self.eigenvalue) if self.eigenvalue else float("inf")

    @property
    def relative_error(self) -> float:
        """The error bound relative to the eigenvalue."""
        return self.error_bound / abs(self.eigenvalue) if self.eigenvalue else float("inf")


def lanczos_top(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
    tol: float = 1e-3,
    max_iter: int = 100,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    total_dim: int | None = None,
) -> LanczosResult:
    """Top eigenpair of the symmetric ``matvec`` on R^dim, to relative error bound ``tol``.

    ``v0`` warm-starts the iteration (e.g. the previous top eigenvector); otherwise the
    start is a seeded Gaussian vector.
    Vectors may be sharded across processes: then ``dim`` is the local length, ``v0`` the
    local part of the start, ``total_dim`` the global dimension, and ``reduce`` sums a small
    tensor over all processes (every inner product goes through it).
    """
    reduce = reduce or (lambda t: t)
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    steps = min(max_iter, total_dim or dim)
    if v0 is None:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v0 = torch.randn(dim, generator=gen, dtype=torch.float64)
    q = v0.reshape(-1).to(device=device, dtype=dtype)
    q = q / reduce(torch.dot(q, q)).sqrt()
    basis = torch.empty(min(steps, INITIAL_BASIS_ROWS), dim, device=device, dtype=dtype)
    alphas: list[float] = []
    betas: list[float] = []
    breakdown = 100 * torch.finfo(dtype).eps
    theta, s_top, residual, bound, converged = 0.0, np.ones(1), float("inf"), float("inf"), False
    for j in range(steps):
        if j == basis.shape[0]:  # grow by doubling: memory follows the iterations actually run
            basis = torch.cat([basis, torch.empty(min(j, steps - j), dim, device=device, dtype=dtype)])
        basis[j] = q
        w = matvec(q)
        active = basis[: j + 1]
        coefficients = reduce(active @ w)  # full reorthogonalization, applied twice
        alpha = coefficients[j]  # q·w, as q is the newest basis vector
        w = w - active.T @ coefficients
        w = w - active.T @ reduce(active @ w)
        beta = reduce(torch.dot(w, w)).sqrt()
        alpha_host, beta_host = torch.stack([alpha, beta]).tolist()  # the one sync per step
        alphas.append(alpha_host)
        theta, second, s_top, s_second = _top_ritz_pairs(alphas, betas)
        residual = beta_host * abs(s_top[-1])
        gap = theta - (second + beta_host * abs(s_second[-1])) if np.isfinite(second) else 0.0
        bound = min(residual, residual * residual / gap) if gap > 0 else residual
        invariant = beta_host <= breakdown * max(abs(a) for a in alphas)
        if invariant or bound <= tol * abs(theta):
            converged = True
            break
        betas.append(beta_host)
        q = w / beta
    iterations = len(alphas)
    ritz = torch.as_tensor(s_top, device=device, dtype=dtype)
    vector = basis[:iterations].T @ ritz
    return LanczosResult(
        theta, vector / reduce(torch.dot(vector, vector)).sqrt(), float(residual), float(bound), iterations, converged
    )


def _top_ritz_pairs(alphas: list[float], betas: list[float]) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The two largest eigenvalues of the Lanczos tridiagonal and their (unit) eigenvectors.

    With a single Ritz value the second is -inf (no gap estimate yet).
    """
    if len(alphas) == 1:
        return alphas[0], -np.inf, np.ones(1), np.ones(1)
    n = len(alphas)
    values, vectors = eigh_tridiagonal(
        np.asarray(alphas), np.asarray(betas[: n - 1]), select="i", select_range=(n - 2, n - 1)
    )
    return float(values[1]), float(values[0]), vectors[:, 1], vectors[:, 0]
