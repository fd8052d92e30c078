"""Side-by-side benchmark: lrphase's λ₀ against curvature libraries and the learning-rate range test.

For each example model (digits MLP batch 256 with the paper's MSE, small CNN batch 128 with
the paper's MSE, ResNet-18 batch 32 with BatchNorm in train mode and cross-entropy), on the
same initialization and the same batch, in one run, it measures for every method the top
eigenvalue it reports, its relative error against an independent float64 reference, the
number of operator products it used (G·v, H·v, or lrphase's Sᵀ J Jᵀ S·u), the wall time (median of
``--repeats`` interleaved rounds after a warm-up), the time relative to lrphase, and whether
the model object handed to it was changed (train/eval mode, BatchNorm buffers, parameters,
``.grad``):

* lrphase — ``lrphase.estimate_lambda0(model, data, loss=..., batches=1, batch_size=B, tol=1e-3)``;
* curvlinops — ``GGNLinearOperator`` (defaults, incl. its determinism check) with scipy ``eigsh``;
* PyHessian — ``hessian(...).eigenvalues()`` (power iteration on the *Hessian*, defaults);
* hessian-eigenthings — ``lanczos`` and ``power_iteration_one`` on its ``HessianOperator``
  (the README's default operator), and ``lanczos`` on its ``GGNOperator``, all at defaults;
* torch-lr-finder — a 100-iteration range test with SGD, against ``lrphase.probe`` (3 batches,
  in-process) and a cold ``lrphase probe examples/X.py --json`` subprocess.

Every method computes the curvature of the example's own loss with its own normalization:
for ``loss="mse"`` that is the paper's L = 1/(2km) Σ (f − y)² on one-hot targets, given to
the libraries as ``PaperMSELoss`` (0.5 · ``F.mse_loss`` with mean reduction over all m·k
entries); for cross-entropy ``nn.CrossEntropyLoss()``. PyHessian and the eigenthings Hessian
rows compute the Hessian, not the Gauss–Newton matrix: their relative error is still taken
against the GGN reference, since that gap is exactly what a user picking them would get.

Where a library cannot handle BatchNorm in train mode (functorch refuses the running-stat
update), its row says so, and an extra row ``(BN workaround)`` runs it on a copy whose
BatchNorm layers use batch statistics without tracking running statistics — what lrphase does
internally — so that the quantity is still the same.

The reference λ on the benchmark batch (the table says which was used):
``dense`` — per-sample Jacobians (``torch.func.jacrev``) in float64, K = J Jᵀ, top eigenvalue of
S K S with S the symmetric square root of the loss's output-space Hessian; only without
sample coupling and when J fits in ``--dense-budget-gb``. ``exact`` — the same K assembled
column by column (K e_i = J (Jᵀ e_i), batched autograd), any model. ``lanczos`` — Lanczos
with full reorthogonalization in float64, run to a residual ≤ 1e-9·λ (checked with one more
explicit product), on the output-space operator S J Jᵀ S built here with plain autograd —
code independent of lrphase's. ``auto`` (default): dense where allowed, else lanczos. A
float64 lrphase run at tol=1e-10 is reported alongside as a cross-check. float64 convolutions
are slow on CPU, so references are cached in ``out/compare_reference_cache.json``, keyed by a
hash of the weights, the batch, the loss, the mode and the torch version
(``--no-reference-cache`` recomputes).

The methods run interleaved, round by round, in a rotating order, on a fresh copy of the model
each time. Warm-up: a full untimed round (MLP, CNN), or for ResNet-18 one product with each
method's own machinery (``--warmup``).

Run: ``python benchmarks/compare.py [--models mlp,cnn,resnet] [--repeats 3] [--json PATH]
[--skip curvlinops,pyhessian,eigenthings,workaround,range-test,probe,cli,crosscheck] [--threads N]``.
On a shared machine use ``--threads 1``: with torch's default of one OpenMP thread per core, a
single foreign process can slow every method ten-fold or more.
The anchors are benchmark-only extras: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import hashlib
import importlib
import inspect
import io
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

import lrphase
from lrphase.curvature.data import make_batches
from lrphase.curvature.losses import Loss, resolve_loss
from lrphase.cli.model_file import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {  # name: (file, batch size)
    "mlp": ("examples/digits_mlp.py", 256),
    "cnn": ("examples/small_cnn.py", 128),
    "resnet": ("examples/resnet18.py", 32),
}
TOL = 1e-3
SEED = 0
LANCZOS_RTOL = 1e-9  # residual target of the float64 Lanczos reference
SKIPPABLE = ("curvlinops", "pyhessian", "eigenthings", "workaround", "range-test", "probe", "cli", "crosscheck")
console = Console(width=None if sys.stdout.isatty() else 180, highlight=False)


# --------------------------------------------------------------------------- the losses


class PaperMSELoss(nn.MSELoss):
    """The paper's L = 1/(2km) Σ (f − y)²: half of ``F.mse_loss`` averaged over all m·k entries.

    A subclass of ``nn.MSELoss`` with ``reduction="mean"``, so libraries that read
    ``loss.reduction`` (curvlinops) normalize over the data exactly as for ``nn.MSELoss()``.
    """

    def __init__(self) -> None:
        super().__init__(reduction="mean")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002
        return 0.5 * F.mse_loss(input, target, reduction="mean")


def make_criterion(loss: Loss) -> nn.Module:
    """The torch loss module with exactly the normalization lrphase uses for ``loss``."""
    if loss.kind == "cross_entropy":
        return nn.CrossEntropyLoss(reduction=loss.reduction)
    if loss.reduction == "paper":
        return PaperMSELoss()
    return nn.MSELoss(reduction=loss.reduction)


def make_targets(y: torch.Tensor, loss: Loss, k: int) -> torch.Tensor:
    """Targets as the loss needs them: integer labels become one-hot under MSE, as in lrphase."""
    if loss.kind == "cross_entropy":
        return y.long()
    if not y.dtype.is_floating_point:
        return F.one_hot(y.long().reshape(-1), k).float()
    return y.float()


# --------------------------------------------------------------------------- one example


@dataclass
class Case:
    """One example: the pristine model (never handed to a method), its data and the benchmark batch."""

    name: str
    path: str
    batch_size: int
    model: nn.Module
    data: Any
    loss_arg: Any
    loss: Loss
    criterion: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    output_dim: int
    parameters: int
    coupled: bool

    def fresh_model(self) -> nn.Module:
        """What a user would hand to a method: their model at initialization (a fresh copy per run)."""
        return copy.deepcopy(self.model)


def has_sample_coupling(model: nn.Module) -> bool:
    """BatchNorm on batch statistics (train mode or no running stats) couples the samples of a batch."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
        for m in model.modules()
    )


def load_case(name: str) -> Case:
    path, default_batch = EXAMPLES[name]
    spec = load_spec(str(ROOT / path), seed=SEED)
    batch_size = int(spec.defaults.get("batch_size", default_batch))
    loss = resolve_loss(spec.loss)
    # The batch lrphase itself draws for batches=1 (seeded, without replacement).
    ((x, y),) = make_batches(spec.data, batch_size=batch_size, batches=1, seed=SEED)
    with torch.no_grad():  # on a copy: a train-mode forward would update BatchNorm buffers
        out = copy.deepcopy(spec.model)(x)
    k = out.reshape(out.shape[0], -1).shape[1]
    return Case(
        name=name,
        path=path,
        batch_size=batch_size,
        model=spec.model,
        data=spec.data,
        loss_arg=spec.loss,
        loss=loss,
        criterion=make_criterion(loss),
        x=x,
        y=y,
        target=make_targets(y, loss, k),
        output_dim=k,
        parameters=sum(p.numel() for p in spec.model.parameters() if p.requires_grad),
        coupled=has_sample_coupling(spec.model),
    )


def batch_statistics_copy(model: nn.Module) -> nn.Module:
    """A copy whose train-mode BatchNorm layers use batch statistics without tracking running stats.

    The forward function (and so the curvature) is unchanged; only the in-place running-stat
    update, which functorch transforms refuse, is gone. Dropout is switched off.
    """
    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return net


# --------------------------------------------------------------------------- was the model changed?


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "buffers": {n for n, _ in model.named_buffers()},
        "training": {n: m.training for n, m in model.named_modules()},
        "grads": {n for n, p in model.named_parameters() if p.grad is not None},
    }


def model_changes(before: dict[str, Any], model: nn.Module) -> list[str]:
    """What differs from the snapshot: mode flags, BatchNorm/other buffers, parameters, .grad."""
    changes = []
    now_training = {n: m.training for n, m in model.named_modules()}
    flipped = [n for n, t in before["training"].items() if now_training.get(n, t) != t]
    if flipped:
        to_eval = sum(1 for n in flipped if not now_training[n])
        what = "train→eval" if to_eval == len(flipped) else "eval→train" if to_eval == 0 else "train/eval"
        changes.append(f"mode {what} ({len(flipped)}/{len(now_training)} modules)")
    state = model.state_dict()
    gone = [k for k in before["state"] if k not in state]
    if gone:
        changes.append(f"{len(gone)} state entries removed")
    differ = [k for k, v in before["state"].items() if k in state and not _same(v, state[k])]
    buffers = [k for k in differ if k in before["buffers"]]
    params = [k for k in differ if k not in before["buffers"]]
    if buffers:
        bn = sum(1 for k in buffers if k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked"))
        changes.append(f"BN buffers ({bn} tensors)" if bn == len(buffers) else f"buffers ({len(buffers)} tensors)")
    if params:
        changes.append(f"parameters ({len(params)} tensors)")
    grads = {n for n, p in model.named_parameters() if p.grad is not None} - before["grads"]
    if grads:
        changes.append(f".grad set on {len(grads)} parameters")
    return changes


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b.detach())


# --------------------------------------------------------------------------- counting products


class Counter:
    def __init__(self) -> None:
        self.n = 0


@contextlib.contextmanager
def counting(owner: Any, name: str, weight: Callable[..., int] | None = None) -> Iterator[Counter]:
    """Temporarily wrap ``owner.name`` (a module function or a class method) to count its calls."""
    counter = Counter()
    had_own = name in vars(owner)
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter.n += 1 if weight is None else weight(*args, **kwargs)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)
    try:
        yield counter
    finally:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the libraries' prints, progress bars and warnings during a timed call."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- the methods


@dataclass
class Outcome:
    value: float | None  # the top eigenvalue it reports (None for the range test)
    products: int | None
    converged: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Method:
    key: str  # for --skip
    label: str
    matrix: str  # what it computes: "GGN", "Hessian", "—"
    run: Callable[[nn.Module, Case], Outcome]
    role: str = "eigen"  # "lrphase" (the baseline), "variant" (of lrphase), "eigen", "probe", "range"
    only_coupled: bool = False  # the BN workaround rows exist only for models with sample coupling
    only_cross_entropy: bool = False
    warm: Callable[[nn.Module, Case], None] | None = None  # light warm-up: one product with the method's machinery


def run_lrphase(model: nn.Module, case: Case, **options: Any) -> Outcome:
    est = lrphase.estimate_lambda0(
        model, case.data, loss=case.loss_arg, batches=1, batch_size=case.batch_size, tol=TOL, seed=SEED, **options
    )
    b = est.per_batch[0]
    return Outcome(
        est.lambda0,
        est.iterations,
        est.converged,
        {
            "gn_products": b.gn.iterations,
            "ntk_products": b.ntk.iterations if b.ntk is not None else 0,
            "jvp_mode": est.jvp_mode,
            "relative_residual": est.max_relative_residual,
        },
    )


def run_probe(model: nn.Module, case: Case) -> Outcome:
    result = lrphase.probe(model, case.data, loss=case.loss_arg, batch_size=case.batch_size)
    est = result.estimate
    return Outcome(
        est.lambda0,
        est.iterations,
        est.converged,
        {
            "batches": len(est.per_batch),
            "per_batch_lambda0": [b.lambda_gn for b in est.per_batch],
            "eta_crit": result.phases.eta_crit,
            "eta_recommended": result.phases.eta_recommended,
        },
    )


def run_curvlinops(model: nn.Module, case: Case, *, eigsh_tol: float, workaround: bool = False) -> Outcome:
    from curvlinops import GGNLinearOperator
    from scipy.sparse.linalg import eigsh

    net = batch_statistics_copy(model) if workaround else model
    params = [p for p in net.parameters() if p.requires_grad]
    columns = lambda self, X, y, M: int(M[0].shape[-1])  # noqa: E731 - products = matrix columns
    with counting(GGNLinearOperator, "_matmat_batch", columns) as counter:
        op = GGNLinearOperator(net, case.criterion, params, [(case.x, case.target)])  # defaults: determinism check on
        in_check = counter.n
        v0 = np.random.default_rng(SEED).standard_normal(op.shape[1])
        (value,) = eigsh(op.to_scipy(), k=1, which="LA", tol=eigsh_tol, v0=v0, return_eigenvectors=False)
    return Outcome(float(value), counter.n, True, {"products_in_determinism_check": in_check, "eigsh_tol": eigsh_tol})


def run_pyhessian(model: nn.Module, case: Case) -> Outcome:
    module = importlib.import_module("pyhessian.hessian")  # `pyhessian.hessian` the attribute is the class
    with counting(module, "hessian_vector_product") as counter:
        torch.manual_seed(SEED)  # its start vector comes from the global RNG
        h = module.hessian(model, case.criterion, data=(case.x, case.target), cuda=False)
        values, _ = h.eigenvalues()  # defaults: maxIter=100, tol=1e-3 (relative change), top_n=1
    del h
    return Outcome(float(values[0]), counter.n, counter.n < 100, {"max_iter": 100})


def _eigenthings_operator(model: nn.Module, case: Case, matrix: str, workaround: bool) -> tuple[Any, Counter]:
    import hessian_eigenthings as he

    net = batch_statistics_copy(model) if workaround else model
    batches = [(case.x, case.target)]
    if matrix == "Hessian":
        op = he.HessianOperator(net, batches, he.supervised_loss(case.criterion))
    else:
        op = he.GGNOperator(net, batches, he.supervised_forward, he.supervised_loss_of_output(case.criterion))
    counter = Counter()

    def matvec(v: torch.Tensor) -> torch.Tensor:
        counter.n += 1
        return op.matvec(v)

    return he.LambdaOperator(matvec, size=op.size, device=op.device, dtype=op.dtype), counter


def run_eigenthings_lanczos(model: nn.Module, case: Case, *, matrix: str, workaround: bool = False) -> Outcome:
    import hessian_eigenthings as he

    op, counter = _eigenthings_operator(model, case, matrix, workaround)
    result = he.lanczos(op, seed=SEED)  # defaults: k=10, max_iter=2k=20 steps, tol=1e-4, which="LM"
    values = result.eigenvalues.tolist()
    return Outcome(
        float(values[0]), counter.n, bool(result.converged[0]), {"k": len(values), "steps": result.iterations}
    )


def run_eigenthings_power(model: nn.Module, case: Case, *, matrix: str) -> Outcome:
    import hessian_eigenthings as he

    op, counter = _eigenthings_operator(model, case, matrix, False)
    value, _, residual, iterations, converged = he.power_iteration_one(op, seed=SEED)  # max_iter=100, tol=1e-4
    return Outcome(float(value), counter.n, bool(converged), {"iterations": iterations, "residual": residual})


def range_test_loader(case: Case) -> torch.utils.data.DataLoader:
    data = case.data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x_all, y_all = data
        dataset = torch.utils.data.TensorDataset(x_all, make_targets(y_all, case.loss, case.output_dim))
    else:
        raise ValueError("the range test here needs an (X, Y) tensor pair as the example's data")
    gen = torch.Generator().manual_seed(SEED)
    return torch.utils.data.DataLoader(dataset, batch_size=case.batch_size, shuffle=True, generator=gen)


def run_range_test(model: nn.Module, case: Case, *, iters: int, start_lr: float, end_lr: float) -> Outcome:
    from torch_lr_finder import LRFinder

    optimizer = torch.optim.SGD(model.parameters(), lr=start_lr)
    finder = LRFinder(model, optimizer, case.criterion, device="cpu")
    torch.manual_seed(SEED)
    # All `iters` steps are run (diverge_th=inf), so the cost is that of the full test; where the
    # library's default early stop (diverge_th=5) would have ended it is reported from the history.
    finder.range_test(range_test_loader(case), start_lr=start_lr, end_lr=end_lr, num_iter=iters, diverge_th=math.inf)
    lrs, losses = finder.history["lr"], finder.history["loss"]
    return Outcome(
        None,
        None,
        None,
        {
            "steps": len(lrs),
            "start_lr": start_lr,
            "end_lr": end_lr,
            "default_early_stop_step": _default_stop(losses),
            "suggested_lr": _steepest_lr(lrs, losses),
        },
    )


def _default_stop(losses: list[float], threshold: float = 5.0) -> int | None:
    """The step at which torch-lr-finder's default rule (smoothed loss > 5 × best) would have stopped."""
    best = None
    for i, loss in enumerate(losses):
        best = loss if best is None or loss < best else best
        if i > 0 and loss > threshold * best:
            return i + 1
    return None


def _steepest_lr(lrs: list[float], losses: list[float], skip_start: int = 10, skip_end: int = 5) -> float | None:
    """torch-lr-finder's plot(suggest_lr=True) rule: the rate of the steepest descent of the smoothed loss."""
    lrs, losses = lrs[skip_start:-skip_end], np.asarray(losses[skip_start:-skip_end], dtype=float)
    finite = np.isfinite(losses)
    if finite.sum() < 3:
        return None
    lrs, losses = [lr for lr, ok in zip(lrs, finite) if ok], losses[finite]
    return float(lrs[int(np.gradient(losses).argmin())])


def warm_curvlinops(model: nn.Module, case: Case, *, workaround: bool = False) -> None:
    from curvlinops import GGNLinearOperator

    net = batch_statistics_copy(model) if workaround else model
    params = [p for p in net.parameters() if p.requires_grad]
    op = GGNLinearOperator(net, case.criterion, params, [(case.x, case.target)], check_deterministic=False)
    op @ torch.ones(op.shape[1])


def warm_pyhessian(model: nn.Module, case: Case) -> None:
    module = importlib.import_module("pyhessian.hessian")
    h = module.hessian(model, case.criterion, data=(case.x, case.target), cuda=False)
    module.hessian_vector_product(h.gradsH, h.params, [torch.ones_like(p) for p in h.params])


def warm_eigenthings(model: nn.Module, case: Case, *, matrix: str, workaround: bool = False) -> None:
    op, _ = _eigenthings_operator(model, case, matrix, workaround)
    op.matvec(torch.ones(op.size, dtype=op.dtype))


def warm_range_test(model: nn.Module, case: Case) -> None:
    from torch_lr_finder import LRFinder

    finder = LRFinder(model, torch.optim.SGD(model.parameters(), lr=1e-7), case.criterion, device="cpu")
    finder.range_test(range_test_loader(case), end_lr=1e-6, num_iter=2)


def build_methods(args: argparse.Namespace) -> list[Method]:
    skip = set(args.skip)
    methods = [Method("lrphase", "lrphase estimate_lambda0 (1 batch)", "GGN", run_lrphase, role="lrphase")]
    if "ntk" in inspect.signature(lrphase.estimate_lambda0).parameters:  # for cross-entropy, λ_ntk is a 2nd Lanczos run
        methods.append(
            Method(
                "lrphase", "lrphase estimate_lambda0 (1 batch, ntk=False)", "GGN", lambda m, c: run_lrphase(m, c, ntk=False),
                role="variant", only_cross_entropy=True, warm=lambda m, c: None,
            )
        )
    if "curvlinops" not in skip:
        methods.append(
            Method(
                "curvlinops", "curvlinops GGN + eigsh", "GGN", lambda m, c: run_curvlinops(m, c, eigsh_tol=args.eigsh_tol),
                warm=warm_curvlinops,
            )
        )
        if "workaround" not in skip:
            methods.append(
                Method(
                    "curvlinops", "curvlinops GGN + eigsh (BN workaround)", "GGN",
                    lambda m, c: run_curvlinops(m, c, eigsh_tol=args.eigsh_tol, workaround=True), only_coupled=True,
                    warm=lambda m, c: warm_curvlinops(m, c, workaround=True),
                )
            )
    if "pyhessian" not in skip:
        methods.append(Method("pyhessian", "PyHessian power iteration", "Hessian", run_pyhessian, warm=warm_pyhessian))
    if "eigenthings" not in skip:
        warm_h = lambda m, c: warm_eigenthings(m, c, matrix="Hessian")  # noqa: E731
        warm_g = lambda m, c: warm_eigenthings(m, c, matrix="GGN")  # noqa: E731
        methods += [
            Method(
                "eigenthings", "eigenthings Lanczos", "Hessian",
                lambda m, c: run_eigenthings_lanczos(m, c, matrix="Hessian"), warm=warm_h,
            ),
            Method(
                "eigenthings", "eigenthings power iteration", "Hessian",
                lambda m, c: run_eigenthings_power(m, c, matrix="Hessian"), warm=warm_h,
            ),
            Method(
                "eigenthings", "eigenthings Lanczos", "GGN", lambda m, c: run_eigenthings_lanczos(m, c, matrix="GGN"), warm=warm_g
            ),
        ]
        if "workaround" not in skip:
            methods.append(
                Method(
                    "eigenthings", "eigenthings Lanczos (BN workaround)", "GGN",
                    lambda m, c: run_eigenthings_lanczos(m, c, matrix="GGN", workaround=True), only_coupled=True,
                    warm=lambda m, c: warm_eigenthings(m, c, matrix="GGN", workaround=True),
                )
            )
    if "probe" not in skip:
        methods.append(  # its code paths are warmed by the lrphase row
            Method("probe", "lrphase probe (3 batches)", "GGN", run_probe, role="probe", warm=lambda m, c: None)
        )
    if "range-test" not in skip:
        methods.append(
            Method(
                "range-test", f"torch-lr-finder range test ({args.range_iters} it)", "—",
                lambda m, c: run_range_test(m, c, iters=args.range_iters, start_lr=args.range_start_lr, end_lr=args.range_end_lr),
                role="range", warm=warm_range_test,
            )
        )
    return methods


# --------------------------------------------------------------------------- the reference


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


def block_diag_root(root: torch.Tensor) -> torch.Tensor:
    return torch.block_diag(*root)


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
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    theta, second, s_vec = 0.0, -math.inf, np.ones(1)
    for j in range(min(max_steps, dim)):
        w = matvec(basis[j]).double()
        alphas.append(float(w @ basis[j]))
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        values, vectors = eigh_tridiagonal(np.asarray(alphas), np.asarray(betas)) if j else (np.array(alphas), np.ones((1, 1)))
        theta, s_vec = float(values[-1]), vectors[:, -1]
        second = float(values[-2]) if j else -math.inf
        if beta * abs(s_vec[-1]) <= rtol * abs(theta) or beta <= 1e-14 * abs(theta):
            break
        betas.append(beta)
        basis.append(w / beta)
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


def reference_key(case: Case, mode: str) -> str:
    digest = hashlib.sha256(f"{case.name}|{case.loss.name}|{mode}|{torch.__version__}|{LANCZOS_RTOL}".encode())
    for t in (case.x, case.y, *case.model.state_dict().values()):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_reference(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """The reference (and the lrphase float64 cross-check), from the cache when its key matches."""
    need = case.batch_size * case.output_dim * case.parameters * 8
    mode = args.reference
    if mode == "auto":
        mode = "dense" if not case.coupled and need <= args.dense_budget_gb * 2**30 else "lanczos"
    crosscheck = "crosscheck" not in args.skip
    path: Path | None = args.reference_cache
    cache = {}
    if path is not None and path.exists():
        with contextlib.suppress(ValueError, OSError):
            cache = json.loads(path.read_text())
    key = reference_key(case, mode)
    ref = cache.get(key)
    if ref is not None and (not crosscheck or "lrphase_float64" in ref):
        return {**ref, "cached": True}
    ref = compute_reference(case, mode, crosscheck)
    if path is not None:
        cache[key] = ref
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    return {**ref, "cached": False}


def compute_reference(case: Case, mode: str, crosscheck: bool) -> dict[str, Any]:
    start = time.perf_counter()
    need = case.batch_size * case.output_dim * case.parameters * 8
    if mode == "dense" and case.coupled:
        raise SystemExit(f"{case.name}: --reference dense needs uncoupled samples (no BatchNorm batch statistics)")
    ref: dict[str, Any] = {"mode": mode}
    if mode == "dense":
        kernel = dense_kernel(case.model, case.x)
        with torch.no_grad():
            out = float64_net(case.model)(case.x.double())
        root = block_diag_root(hessian_root(out.reshape(out.shape[0], -1), case.loss))
        values = torch.linalg.eigvalsh(root @ kernel @ root)
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


# --------------------------------------------------------------------------- timing


def cpu_counters() -> tuple[float, float] | None:
    """(busy CPU seconds of the machine, CPU seconds of this process and its children); Linux only."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    busy = (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
    mine = sum(
        getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime")
    )
    return busy, mine


def others_load(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float) -> float | None:
    """Cores other processes kept busy on average (they skew every timing on a shared machine)."""
    if before is None or after is None or wall <= 0:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)


def light_warmup(case: Case) -> None:
    """One of each kind of product on a copy: fills oneDNN/autograd/functorch caches for this shape."""
    from torch.func import functional_call, jvp, vjp

    with quiet():
        net = batch_statistics_copy(case.model)
        params = [p for p in net.parameters() if p.requires_grad]
        loss = case.criterion(net(case.x), case.target)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(grads, params, [torch.ones_like(p) for p in params])
        names = [n for n, p in net.named_parameters() if p.requires_grad]
        with fwAD.dual_level():
            duals = {n: fwAD.make_dual(p.detach(), torch.ones_like(p)) for n, p in zip(names, params)}
            functional_call(net, duals, (case.x,))
        primals = {n: p.detach() for n, p in zip(names, params)}
        f = lambda p: functional_call(net, p, (case.x,))  # noqa: E731
        _, fn = vjp(f, primals)
        _, tangent = jvp(f, (primals,), ({n: torch.ones_like(p) for n, p in primals.items()},))
        fn(tangent)


@dataclass
class Row:
    method: Method
    runs: list[Outcome] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    warmup_seconds: float | None = None
    changed: list[str] | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def outcome(self) -> Outcome | None:
        return self.runs[-1] if self.runs else None


def call(row: Row, case: Case, timed: bool) -> None:
    """One run of one method on a fresh copy of the user's model; records time, result and changes."""
    model = case.fresh_model()
    before = snapshot(model)
    gc.collect()
    try:
        with quiet(), torch.random.fork_rng():
            start = time.perf_counter()
            outcome = row.method.run(model, case)
            elapsed = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a failing anchor is a result, not a crash
        first = (str(exc).strip().splitlines() or [""])[0]
        row.error = f"{type(exc).__name__}: {first}"
        row.changed = model_changes(before, model)
        return
    row.changed = model_changes(before, model)
    row.runs.append(outcome)
    if timed:
        row.seconds.append(elapsed)
    else:
        row.warmup_seconds = elapsed
    del model
    gc.collect()


def warm_once(row: Row, case: Case) -> None:
    """Light warm-up of one method: one product with its own machinery (a full run for lrphase)."""
    model = case.fresh_model()
    warm = row.method.warm or row.method.run
    with contextlib.suppress(Exception), quiet(), torch.random.fork_rng():
        warm(model, case)
    del model
    gc.collect()


def cold_cli(case: Case) -> dict[str, Any]:
    exe = Path(sys.executable).parent / "lrphase"
    if not exe.exists():
        return {"error": f"{exe} not found"}
    cmd = [str(exe), "probe", case.path, "--json"]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"command": " ".join(["lrphase", *cmd[1:]]), "seconds": seconds, "returncode": proc.returncode}
    try:
        payload = json.loads(proc.stdout)
        result.update(lambda0=payload.get("lambda0"), iterations=payload.get("iterations"), converged=payload.get("converged"))
    except json.JSONDecodeError:
        result["error"] = (proc.stderr.strip().splitlines() or ["no JSON on stdout"])[-1][:200]
    return result


def bench_case(name: str, methods: list[Method], args: argparse.Namespace) -> dict[str, Any]:
    wall0, cpu0 = time.perf_counter(), cpu_counters()
    case = load_case(name)
    console.print(
        f"[bold]{name}[/]: {case.path}, batch {case.batch_size}, {case.parameters:,} parameters, loss {case.loss.name}"
        + (", BatchNorm in train mode (samples coupled)" if case.coupled else "")
    )
    ref = cached_reference(case, args)
    console.print(
        f"  reference λ = {ref['value']:.10g}  ({escape(ref['method'])}; "
        + ("cached" if ref["cached"] else f"{ref['seconds']:.1f} s") + ")"
    )
    if "lrphase_float64" in ref:
        x = ref["lrphase_float64"]
        console.print(
            f"  cross-check: lrphase float64 tol=1e-10 λ = {x['value']:.10g} (rel. diff {x['relative_difference']:.1e}, "
            f"{x['products']} products)"
        )

    repeats = args.repeats if name != "resnet" else args.resnet_repeats
    warmup = args.warmup or ("light" if name == "resnet" else "full")
    rows = [
        Row(m) for m in methods
        if (case.coupled or not m.only_coupled) and (case.loss.is_cross_entropy or not m.only_cross_entropy)
    ]
    if warmup == "light":
        light_warmup(case)
        for row in rows:
            warm_once(row, case)
    for round_index in range(repeats + (warmup == "full")):
        timed = warmup != "full" or round_index > 0
        shift = round_index % len(rows)  # rotate the order: bursts of foreign load hit every method alike
        for row in rows[shift:] + rows[:shift]:
            if row.error is None:
                call(row, case, timed)
        console.print(f"  round {round_index + 1}/{repeats + (warmup == 'full')} done ({time.perf_counter() - wall0:.0f} s)")
    cli = cold_cli(case) if "cli" not in args.skip else {"skipped": True}
    other = others_load(cpu0, cpu_counters(), time.perf_counter() - wall0)
    return summarize(case, ref, rows, cli, other, repeats, warmup, time.perf_counter() - wall0)


def summarize(
    case: Case, ref: dict[str, Any], rows: list[Row], cli: dict[str, Any], other: float | None, repeats: int, warmup: str, wall: float
) -> dict[str, Any]:
    base = next((r for r in rows if r.method.role == "lrphase"), None)
    base_s = base.median if base is not None else None
    out_rows = []
    for row in rows:
        o = row.outcome
        rel = abs(o.value - ref["value"]) / abs(ref["value"]) if o is not None and o.value is not None else None
        out_rows.append(
            {
                "method": row.method.label,
                "key": row.method.key,
                "role": row.method.role,
                "matrix": row.method.matrix,
                "lambda": o.value if o else None,
                "relative_error": rel if row.method.role != "probe" else None,
                "relative_error_vs_batch_reference": rel,
                "products": o.products if o else None,
                "converged": o.converged if o else None,
                "seconds_median": row.median,
                "seconds_min": min(row.seconds) if row.seconds else None,
                "seconds": row.seconds,
                "warmup_seconds": row.warmup_seconds,
                "ratio_to_lrphase": row.median / base_s if row.median is not None and base_s else None,
                "model_changed": bool(row.changed),
                "changes": row.changed or [],
                "error": row.error,
                "info": o.info if o else {},
            }
        )
    probe = next((r for r in out_rows if r["role"] == "probe" and r["seconds_median"]), None)
    rng = next((r for r in out_rows if r["role"] == "range" and r["seconds_median"]), None)
    accurate = [
        r for r in out_rows
        if r["role"] == "eigen" and r["error"] is None and r["relative_error"] is not None and r["relative_error"] <= TOL
    ]
    fastest = min(accurate, key=lambda r: r["seconds_median"]) if accurate else None
    lr_row = next((r for r in out_rows if r["role"] == "lrphase"), None)
    targets = {
        "lrphase_accurate": lr_row is not None and lr_row["relative_error"] is not None and lr_row["relative_error"] <= TOL,
        "fastest_accurate_library": fastest["method"] + f" [{fastest['matrix']}]" if fastest else None,
        "speedup_vs_fastest_accurate": fastest["ratio_to_lrphase"] if fastest else None,
        "speedup_target_10x_met": (fastest["ratio_to_lrphase"] >= 10) if fastest else None,
        "range_test_over_probe": rng["seconds_median"] / probe["seconds_median"] if rng and probe else None,
        "range_test_over_cold_cli": rng["seconds_median"] / cli["seconds"] if rng and cli.get("seconds") else None,
    }
    variant = next((r for r in out_rows if r["role"] == "variant" and r["seconds_median"]), None)
    targets["speedup_vs_fastest_accurate_with_ntk_false"] = (
        fastest["seconds_median"] / variant["seconds_median"] if fastest and variant else None
    )
    targets["range_test_target_5x_met"] = (
        targets["range_test_over_probe"] >= 5 if targets["range_test_over_probe"] is not None else None
    )
    return {
        "model": case.name,
        "file": case.path,
        "batch_size": case.batch_size,
        "parameters": case.parameters,
        "output_dim": case.output_dim,
        "loss": case.loss.name,
        "criterion_given_to_libraries": type(case.criterion).__name__,
        "batchnorm_train_mode": case.coupled,
        "reference": ref,
        "repeats": repeats,
        "warmup": warmup,
        "rows": out_rows,
        "cold_cli": cli,
        "targets": targets,
        "others_load_cores": other,
        "wall_seconds": wall,
    }


# --------------------------------------------------------------------------- output


def _fmt(x: float | None, spec: str, missing: str = "—") -> str:
    return missing if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def print_result(res: dict[str, Any]) -> None:
    ref = res["reference"]
    title = escape(
        f"{res['model']}: {res['file']}, B={res['batch_size']}, {res['parameters']:,} params, loss {res['loss']} — "
        f"reference λ = {ref['value']:.8g} ({ref['mode']}); median of {res['repeats']} "
        f"({'after a full warm-up round' if res['warmup'] == 'full' else res['warmup'] + ' warm-up'})"
    )
    table = Table(title=title, title_justify="left")
    for col, just in (
        ("method", "left"), ("matrix", "left"), ("λ", "right"), ("rel. error", "right"), ("products", "right"),
        ("seconds", "right"), ("× lrphase", "right"), ("model changed", "left"), ("notes", "left"),
    ):
        table.add_column(col, justify=just, overflow="fold")
    for r in res["rows"]:
        if r["error"] is not None:
            table.add_row(
                r["method"], r["matrix"], "—", "—", "—", "—", "—",
                ("yes: " + escape("; ".join(r["changes"]))) if r["changes"] else "no",
                f"[red]FAILED[/] {escape(short_error(r['error']))}",
            )
            continue
        err = r["relative_error"]
        err_s = "n/a" if err is None else f"[{'green' if err <= TOL else 'red'}]{err:.1e}[/]"
        notes = _row_notes(r)
        table.add_row(
            r["method"], r["matrix"], _fmt(r["lambda"], ".6g"), err_s,
            _fmt(r["products"], "d"), _fmt(r["seconds_median"], ".2f"), _fmt(r["ratio_to_lrphase"], ".1f"),
            ("[yellow]yes[/]: " + escape("; ".join(r["changes"]))) if r["model_changed"] else "no", notes,
        )
    console.print(table)
    t = res["targets"]
    cli = res["cold_cli"]
    if t["fastest_accurate_library"]:
        ok = t["speedup_target_10x_met"]
        console.print(
            f"  fastest library within {TOL:g}: {escape(t['fastest_accurate_library'])}, {t['speedup_vs_fastest_accurate']:.1f}× "
            f"lrphase's time — target ≥ 10×: {'[green]met[/]' if ok else '[red]missed[/]'}"
        )
        if t.get("speedup_vs_fastest_accurate_with_ntk_false") is not None:
            console.print(
                f"  (with ntk=False — λ₀ only, no second Lanczos run for λ_ntk: "
                f"{t['speedup_vs_fastest_accurate_with_ntk_false']:.1f}×)"
            )
    else:
        console.print(f"  no library reached rel. error ≤ {TOL:g} on this model")
    if t["range_test_over_probe"] is not None:
        ok = t["range_test_target_5x_met"]
        console.print(
            f"  range test / lrphase probe (in-process) = {t['range_test_over_probe']:.1f}× — target ≥ 5×: "
            f"{'[green]met[/]' if ok else '[red]missed[/]'}"
            + (f"; range test / cold `{cli.get('command')}` ({cli['seconds']:.1f} s) = {t['range_test_over_cold_cli']:.1f}×"
               if t["range_test_over_cold_cli"] is not None else "")
        )
    if cli.get("error") or cli.get("returncode"):
        console.print(f"  [red]cold CLI: exit {cli.get('returncode')}: {cli.get('error')}[/]")
    if res["others_load_cores"] is not None and res["others_load_cores"] > 0.2:
        console.print(f"  [yellow]other processes kept {res['others_load_cores']:.1f} cores busy on average: timings are skewed[/]")


KNOWN_ERRORS = {
    "mutate a captured Tensor": "torch.func refuses BatchNorm's in-place running-stat update (train mode)",
}


def short_error(error: str) -> str:
    for needle, meaning in KNOWN_ERRORS.items():
        if needle in error:
            return f"{error.split(':', 1)[0]}: {meaning}"
    return error if len(error) <= 140 else error[:139] + "…"


def _row_notes(r: dict[str, Any]) -> str:
    info, notes = r["info"], []
    if r["role"] in ("lrphase", "variant"):
        notes.append(f"GN {info.get('gn_products')} + NTK {info.get('ntk_products')} products; residual {info.get('relative_residual', 0):.0e}")
    if r["role"] == "probe":
        notes.append(f"mean over {info.get('batches')} batches (not the reference batch)")
    if "products_in_determinism_check" in info:
        notes.append(f"{info['products_in_determinism_check']} in its determinism check; eigsh tol {info['eigsh_tol']:g}")
    if "steps" in info and r["key"] == "eigenthings":
        notes.append(f"top of k={info['k']}, {info['steps']} steps")
    if r["role"] == "range":
        stop = info.get("default_early_stop_step")
        notes.append(
            f"{info['steps']} SGD steps, lr {info['start_lr']:g}→{info['end_lr']:g}; default early stop "
            + (f"at step {stop}" if stop else "not triggered")
            + (f"; suggested lr {info['suggested_lr']:.3g}" if info.get("suggested_lr") else "")
        )
    if r["converged"] is False:
        notes.append("[red]not converged[/]")
    if r["key"] == "pyhessian":
        notes.append("Hessian, model put in eval mode")
    elif r["matrix"] == "Hessian":
        notes.append("Hessian, not GGN")
    return "; ".join(notes)


def print_summary(results: list[dict[str, Any]]) -> None:
    table = Table(title="targets: lrphase ≥ 10× faster than the fastest library within 1e-3; range test ≥ 5× a full probe", title_justify="left")
    for col in (
        "model", "lrphase s", "rel. err", "fastest library within 1e-3", "its s", "speed-up", "≥10×",
        "range test s", "probe s", "range/probe", "≥5×", "cold CLI s", "range/CLI",
    ):
        table.add_column(col, justify="left" if col in ("model", "fastest library within 1e-3") else "right")
    yes_no = lambda ok: "—" if ok is None else "[green]yes[/]" if ok else "[red]no[/]"  # noqa: E731
    for res in results:
        rows = {r["role"]: r for r in res["rows"] if r["role"] != "eigen"}
        t, cli = res["targets"], res["cold_cli"]
        lr, probe, rng = rows.get("lrphase"), rows.get("probe"), rows.get("range")
        fastest = next((r for r in res["rows"] if r["method"] + f" [{r['matrix']}]" == t["fastest_accurate_library"]), None)
        table.add_row(
            res["model"],
            _fmt(lr and lr["seconds_median"], ".2f"),
            _fmt(lr and lr["relative_error"], ".1e"),
            escape(t["fastest_accurate_library"] or "none"),
            _fmt(fastest and fastest["seconds_median"], ".2f"),
            _fmt(t["speedup_vs_fastest_accurate"], ".1f"),
            yes_no(t["speedup_target_10x_met"]),
            _fmt(rng and rng["seconds_median"], ".2f"),
            _fmt(probe and probe["seconds_median"], ".2f"),
            _fmt(t["range_test_over_probe"], ".1f"),
            yes_no(t["range_test_target_5x_met"]),
            _fmt(cli.get("seconds"), ".1f"),
            _fmt(t["range_test_over_cold_cli"], ".2f"),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,resnet", help="comma-separated subset of mlp,cnn,resnet")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method (MLP, CNN)")
    parser.add_argument("--resnet-repeats", type=int, default=1, help="timed rounds per method for ResNet-18")
    parser.add_argument(
        "--warmup", choices=("full", "light", "none"), default=None,
        help="full: one untimed round of every method; light: one product with each method's own machinery "
        "(a full run for lrphase) (default: full; light for ResNet-18)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated subset of {','.join(SKIPPABLE)}")
    parser.add_argument("--reference", choices=("auto", "dense", "exact", "lanczos"), default="auto")
    parser.add_argument(
        "--reference-cache", type=Path, default=ROOT / "out" / "compare_reference_cache.json", metavar="PATH",
        help="where references are cached (keyed by weights, batch, loss, mode, torch version)",
    )
    parser.add_argument("--no-reference-cache", dest="reference_cache", action="store_const", const=None)
    parser.add_argument("--dense-budget-gb", type=float, default=4.0, help="largest float64 Jacobian the dense reference builds")
    parser.add_argument("--eigsh-tol", type=float, default=TOL, help="scipy eigsh tol for the curvlinops rows")
    parser.add_argument("--range-iters", type=int, default=100)
    parser.add_argument("--range-start-lr", type=float, default=1e-7)
    parser.add_argument("--range-end-lr", type=float, default=10.0)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads, also for the cold CLI (default: torch's choice); on a shared machine "
        "--threads 1 is far more stable (OpenMP threads stall when another process takes a core)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "compare.json", metavar="PATH")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    bad = [n for n in names if n not in EXAMPLES] + [s for s in args.skip if s not in SKIPPABLE]
    if bad or args.repeats < 1 or args.resnet_repeats < 1:
        parser.error(f"unknown models or --skip entries {bad}, or a repeat count < 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    versions = {"torch": torch.__version__, "lrphase": lrphase.__version__}
    for dist in ("curvlinops-for-pytorch", "pyhessian", "hessian-eigenthings", "torch-lr-finder"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001
            versions[dist] = None
    missing = [d for d, v in versions.items() if v is None]
    if missing:
        console.print(f"[yellow]not installed: {', '.join(missing)} — their rows will say so (pip install -e '.[bench]')[/]")

    started, cpu0 = time.perf_counter(), cpu_counters()
    methods = build_methods(args)
    results = []
    for name in names:
        results.append(bench_case(name, methods, args))
        print_result(results[-1])
    print_summary(results)
    total = time.perf_counter() - started
    other = others_load(cpu0, cpu_counters(), total)
    console.print(
        f"total {total:.0f} s on {torch.get_num_threads()} torch threads / {os.cpu_count()} CPUs"
        + ("" if other is None else f"; other processes used {other:.2f} cores on average")
    )
    payload = {
        "schema": "lrphase.compare/1",
        "tol": TOL,
        "versions": versions,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": results,
        "total_seconds": total,
        "others_load_cores": other,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
