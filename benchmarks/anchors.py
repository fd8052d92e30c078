"""The methods compare.py puts side by side: lrphase's rows and one adapter per anchor library.

Not a script: imported by ``compare.py``. Every method has the same two calls, on a fresh copy
of the user's model and the :class:`~cases.Case` (batch, targets, criterion):
``run(model, case) -> Outcome`` (the top eigenvalue it reports, the operator products it
used, whether it converged, and what else it says), and an optional ``warm(model, case)``, one
product with the method's own machinery for the light warm-up. Products are counted by wrapping
each library's own product function (:func:`counting`).

* lrphase — ``estimate_lambda0(..., batches=1, tol=1e-3)`` (for cross-entropy also with
  ``ntk=False``), and ``lrphase.probe`` (3 batches);
* curvlinops — ``GGNLinearOperator`` (defaults, incl. its determinism check) + scipy ``eigsh``;
* PyHessian — ``hessian(...).eigenvalues()``, power iteration on the Hessian, defaults;
* hessian-eigenthings — ``lanczos`` and ``power_iteration_one`` on ``HessianOperator``, and
  ``lanczos`` on ``GGNOperator``, at its defaults;
* torch-lr-finder — the range test with SGD, all iterations run; where its default early stop
  would have ended it and its steepest-descent suggestion are read from the history;
* the BN workaround — curvlinops and eigenthings GGN rows again, on
  :func:`common.batch_statistics_copy` of a model whose BatchNorm is in train mode.

The anchor libraries are imported inside their adapters: one that is missing fails its own rows.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

import lrphase
from cases import Case, make_targets
from common import SEED, TOL, batch_statistics_copy

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
    lrs, losses = [lr for lr, ok in zip(lrs, finite, strict=True) if ok], losses[finite]
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


def build_methods(
    *, skip: Iterable[str], eigsh_tol: float, range_iters: int, range_start_lr: float, range_end_lr: float
) -> list[Method]:
    """Every method not in ``skip`` (keys as in compare.py's ``--skip``), in the order of the table's rows."""
    skip = set(skip)
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
                "curvlinops", "curvlinops GGN + eigsh", "GGN", lambda m, c: run_curvlinops(m, c, eigsh_tol=eigsh_tol),
                warm=warm_curvlinops,
            )
        )
        if "workaround" not in skip:
            methods.append(
                Method(
                    "curvlinops", "curvlinops GGN + eigsh (BN workaround)", "GGN",
                    lambda m, c: run_curvlinops(m, c, eigsh_tol=eigsh_tol, workaround=True), only_coupled=True,
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
                "range-test", f"torch-lr-finder range test ({range_iters} it)", "—",
                lambda m, c: run_range_test(m, c, iters=range_iters, start_lr=range_start_lr, end_lr=range_end_lr),
                role="range", warm=warm_range_test,
            )
        )
    return methods
