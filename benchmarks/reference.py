"""float64 references for λ₀ = λ_max(R J Jᵀ R) on one batch, and compare.py's reference cache.

Not a script: imported by ``compare.py``, ``speed.py`` and ``stopping.py``. J is the Jacobian of
the model's outputs on the batch (m·k of them) with respect to its parameters, R the symmetric
square root of the loss's output-space Hessian (block diagonal, one k × k block per sample).

Written independently of lrphase:

* :func:`hessian_root` — R, from the loss definitions (not from ``lrphase.curvature.losses``);
* :func:`dense_kernel` / :func:`dense_spectrum` — K = J Jᵀ from per-sample Jacobians
  (``torch.func.jacrev``), then every eigenvalue of R K R; valid only without sample coupling;
* :class:`OutputSpaceGGN` — u ↦ R J Jᵀ R u with plain autograd (any model), and K assembled
  column by column from it (K e_i = J (Jᵀ e_i));
* :func:`lanczos_steps` / :func:`tight_lanczos` — Lanczos with full reorthogonalization in float64
  (not ``lrphase.curvature.lanczos``), run to a residual ≤ ``LANCZOS_RTOL``·λ and checked with
  one more explicit product.

lrphase's own pipeline in float64, as a cross-check or where only it is affordable:
:func:`lrphase_gauss_newton` (its operator Sᵀ J Jᵀ S on one batch: speed.py's fallback
reference, the operator stopping.py replays its stopping rules on) and, in
:func:`compute_reference`, ``estimate_lambda0(dtype=float64, tol=1e-10)``.

compare.py's reference (:func:`cached_reference`): ``dense`` where the samples are independent
and J fits in the budget, else ``lanczos`` (``exact`` on request), cached in a JSON file keyed by a
hash of the weights, the batch, the loss, the mode and the torch version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

import lrphase
from common import SEED, batch_statistics_copy
from lrphase.curvature.isolation import working_copy
from lrphase.curvature.jacobian import JacobianProducts
from lrphase.curvature.losses import Loss
from lrphase.curvature.operators import gauss_newton

if TYPE_CHECKING:
    from cases import Case

LANCZOS_RTOL = 1e-9  # residual target of the float64 Lanczos reference


def float64_net(model: nn.Module) -> nn.Module:
    return batch_statistics_copy(model).double()


def hessian_root(out: torch.Tensor, loss: Loss) -> torch.Tensor:
    """Per-sample symmetric square roots (m, k, k) of the loss's output-space Hessian, in float64.

    Written from the loss definitions, independently of lrphase.curvature.losses: for L = c/2 Σ(f−y)²
    (paper: c = 1/(km); MSELoss mean: c = 2/(km); sum: c = 2) H = c·I; for softmax
    cross-entropy H_a = (diag p_a − p_a p_aᵀ)/m (mean) or without 1/m (sum).
    """
    m, k = out.shape
    eye = torch.eye(k, dtype=torch.float64).expand(m, k, k)
    if loss.kind == "mse":
        c = {"paper": 1.0 / (k * m), "mean": 2.0 / (k * m), "sum": 2.0}[loss.reduction]
        return math.sqrt(c) * eye
    p = torch.softmax(out.double(), dim=1)
    h = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    if loss.reduction == "mean":
        h = h / m
    w, v = torch.linalg.eigh(h)
    return v @ torch.diag_embed(w.clamp_min(0).sqrt()) @ v.transpose(1, 2)


def block_diag_root(root: torch.Tensor) -> torch.Tensor:
    return torch.block_diag(*root)


class OutputSpaceGGN:
    """u ↦ R J Jᵀ R u on R^{m·k} (R the Hessian root), float64, with plain autograd.

    Jᵀu is a backward pass through one recorded forward pass; J v is the derivative of the
    (linear) map u ↦ Jᵀu, built once with create_graph.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, loss: Loss) -> None:
        self.net = float64_net(model)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        out = self.net(x.double())
        self.out = out.reshape(out.shape[0], -1)
        self.shape = self.out.shape
        self.dim = self.out.numel()
        self.root = hessian_root(self.out.detach(), loss)
        self.u = torch.zeros_like(self.out, requires_grad=True)
        grads = torch.autograd.grad(self.out, self.params, self.u, create_graph=True, allow_unused=True)
        self.pairs = [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self.products = 0

    def jt(self, u: torch.Tensor, batched: bool = False) -> list[torch.Tensor]:
        return list(torch.autograd.grad(self.out, self.params, u, retain_graph=True, is_grads_batched=batched))

    def j(self, v: list[torch.Tensor], batched: bool = False) -> torch.Tensor:
        (result,) = torch.autograd.grad(
            [g for g, _ in self.pairs], self.u, [v[i] for _, i in self.pairs], retain_graph=True, is_grads_batched=batched
        )
        return result

    def r(self, u: torch.Tensor) -> torch.Tensor:
        return torch.einsum("aij,...aj->...ai", self.root, u)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        self.products += 1
        u = u.reshape(self.shape)
        return self.r(self.j(self.jt(self.r(u)))).reshape(-1)

    def kernel_columns(self, chunk: int = 64) -> torch.Tensor:
        """K = J Jᵀ (m·k × m·k) assembled column by column: K e_i = J (Jᵀ e_i)."""
        n = self.dim
        kernel = torch.empty(n, n, dtype=torch.float64)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            e = torch.zeros(stop - start, n, dtype=torch.float64)
            e[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            e = e.reshape(stop - start, *self.shape)
            try:
                cols = self.j(self.jt(e, batched=True), batched=True)
            except RuntimeError:  # an op without a batching rule: one column at a time
                cols = torch.stack([self.j(self.jt(ei)) for ei in e])
            kernel[:, start:stop] = cols.reshape(stop - start, n).T
            self.products += stop - start
        return (kernel + kernel.T) / 2


def lanczos_steps(
    matvec: Callable[[torch.Tensor], torch.Tensor], basis: list[torch.Tensor], steps: int
) -> Iterator[tuple[list[float], list[float], float]]:
    """Lanczos with full reorthogonalization in float64 from ``basis`` = [q₀] (a unit vector), one item per step.

    After step j it yields (α₀…α_j, β₀…β_{j−1}, β_j): the tridiagonal T_j so far and the norm of
    the new residual vector (β_j·|s_j| is the residual of the Ritz pair with eigenvector s of T_j);
    ``basis`` holds q₀…q_j then (it is extended in place when the next step starts). Each new
    vector is orthogonalized against the whole basis twice (classical Gram–Schmidt). Independent
    of lrphase.curvature.lanczos.
    """
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        w = matvec(basis[j]).double()
        alphas.append(float(w @ basis[j]))
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        yield alphas, betas, beta
        betas.append(beta)
        basis.append(w / beta)


def tight_lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, *, rtol: float, max_steps: int = 300
) -> tuple[float, float, float, int]:
    """Top two Ritz values of a symmetric PSD operator by Lanczos with full reorthogonalization, float64.

    Stops when β_j |s_j| ≤ rtol·θ₁ (the residual of the top Ritz pair); the residual returned is then
    recomputed explicitly, ‖A y − θ₁ y‖, with one more product. Independent of lrphase.curvature.lanczos.
    """
    from scipy.linalg import eigh_tridiagonal

    q = torch.from_numpy(np.random.default_rng(SEED + 1).standard_normal(dim))
    q /= q.norm()
    theta, second, s_vec = 0.0, -math.inf, np.ones(1)
    alphas: list[float] = []
    basis = [q]
    for alphas, betas, beta in lanczos_steps(matvec, basis, min(max_steps, dim)):
        j = len(alphas) - 1
        values, vectors = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas)) if j else (np.array(alphas), np.ones((1, 1)))
        theta, s_vec = float(values[-1]), vectors[:, -1]
        second = float(values[-2]) if j else -math.inf
        if beta * abs(s_vec[-1]) <= rtol * abs(theta) or beta <= 1e-14 * abs(theta):
            break
    y = torch.stack(basis[: len(alphas)]).T @ torch.from_numpy(s_vec)
    y /= y.norm()
    residual = float((matvec(y).double() - theta * y).norm())
    return theta, second, residual, len(alphas)


def dense_kernel(model: nn.Module, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """K = J Jᵀ from per-sample Jacobians (valid only without sample coupling), float64."""
    from torch.func import functional_call, jacrev, vmap

    net = float64_net(model)
    params = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    buffers = {n: b for n, b in net.named_buffers()}
    xd = x.double()

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(net, (p, buffers), (xi.unsqueeze(0),)).reshape(-1)

    rows = []
    for start in range(0, len(xd), chunk):
        jac = vmap(jacrev(one), in_dims=(None, 0))(params, xd[start : start + chunk])
        rows.append(torch.cat([j.reshape(j.shape[0] * j.shape[1], -1) for j in jac.values()], dim=1))
        del jac
    jmat = torch.cat(rows)
    del rows
    kernel = jmat @ jmat.T
    return (kernel + kernel.T) / 2


def dense_spectrum(model: nn.Module, x: torch.Tensor, loss: Loss) -> torch.Tensor:
    """Every eigenvalue (ascending) of R J Jᵀ R, J from per-sample Jacobians, float64 (no sample coupling)."""
    kernel = dense_kernel(model, x)
    with torch.no_grad():
        out = float64_net(model)(x.double())
    root = block_diag_root(hessian_root(out.reshape(out.shape[0], -1), loss))
    return torch.linalg.eigvalsh(root @ kernel @ root)


def lrphase_gauss_newton(model: nn.Module, x: torch.Tensor, loss: Loss) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """The output-space operator Sᵀ J Jᵀ S of lrphase itself on the batch ``x``, float64 (J·v mode "double"), and its size m·k."""
    clone, _ = working_copy(model, device=torch.device("cpu"), dtype=torch.float64)
    products = JacobianProducts(clone, x.double(), mode="double", seed=SEED)
    return gauss_newton(products, loss), products.output.numel()


# --------------------------------------------------------------------------- compare.py's reference, cached


def reference_key(case: Case, mode: str) -> str:
    digest = hashlib.sha256(f"{case.name}|{case.loss.name}|{mode}|{torch.__version__}|{LANCZOS_RTOL}".encode())
    for t in (case.x, case.y, *case.model.state_dict().values()):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_reference(
    case: Case, *, mode: str, dense_budget_bytes: float, crosscheck: bool, cache_path: Path | None
) -> dict[str, Any]:
    """The reference (and the lrphase float64 cross-check), from the cache when its key matches.

    ``mode`` "auto" is dense where the samples are independent and J fits in ``dense_budget_bytes``,
    else lanczos; ``cache_path`` None recomputes and stores nothing.
    """
    need = case.batch_size * case.output_dim * case.parameters * 8
    if mode == "auto":
        mode = "dense" if not case.coupled and need <= dense_budget_bytes else "lanczos"
    cache = {}
    if cache_path is not None and cache_path.exists():
        with contextlib.suppress(ValueError, OSError):
            cache = json.loads(cache_path.read_text())
    key = reference_key(case, mode)
    ref = cache.get(key)
    if ref is not None and (not crosscheck or "lrphase_float64" in ref):
        return {**ref, "cached": True}
    ref = compute_reference(case, mode, crosscheck)
    if cache_path is not None:
        cache[key] = ref
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(cache_path)
    return {**ref, "cached": False}


def compute_reference(case: Case, mode: str, crosscheck: bool) -> dict[str, Any]:
    start = time.perf_counter()
    need = case.batch_size * case.output_dim * case.parameters * 8
    if mode == "dense" and case.coupled:
        raise SystemExit(f"{case.name}: --reference dense needs uncoupled samples (no BatchNorm batch statistics)")
    ref: dict[str, Any] = {"mode": mode}
    if mode == "dense":
        values = dense_spectrum(case.model, case.x, case.loss)
        ref.update(value=values[-1].item(), second=values[-2].item())
        ref["method"] = f"dense float64: per-sample jacrev J ({need / 2**30:.2f} GiB), eigvalsh of R J Jᵀ R"
    elif mode == "exact":
        op = OutputSpaceGGN(case.model, case.x, case.loss)
        kernel = op.kernel_columns()
        root = block_diag_root(op.root)
        values = torch.linalg.eigvalsh(root @ kernel @ root)
        ref.update(value=values[-1].item(), second=values[-2].item(), products=op.products)
        ref["method"] = f"exact float64 Θ assembled column by column ({op.products} columns J(Jᵀe_i)), eigvalsh"
    else:
        op = OutputSpaceGGN(case.model, case.x, case.loss)
        top, second, residual, steps = tight_lanczos(op, op.dim, rtol=LANCZOS_RTOL)
        gap = top - second
        bound = min(residual, residual**2 / gap) if gap > 0 else residual
        ref.update(
            value=top, second=second, products=op.products, relative_residual=residual / top, relative_bound=bound / top
        )
        ref["method"] = (
            f"float64 Lanczos (own, full reorth.) on R J Jᵀ R via plain autograd, {op.products} products, "
            f"explicit rel. residual {residual / top:.1e}"
        )
    ref["seconds"] = time.perf_counter() - start
    if crosscheck:
        t0 = time.perf_counter()
        est = lrphase.estimate_lambda0(
            case.model, case.data, loss=case.loss_arg, batches=1, batch_size=case.batch_size,
            dtype=torch.float64, tol=1e-10, max_iter=500, seed=SEED,
        )
        ref["lrphase_float64"] = {
            "value": est.lambda0,
            "relative_difference": abs(est.lambda0 - ref["value"]) / abs(ref["value"]),
            "products": est.per_batch[0].gn.iterations,
            "converged": est.per_batch[0].gn.converged,
            "seconds": time.perf_counter() - t0,
        }
    return ref
