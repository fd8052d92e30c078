"""λ₀: the top eigenvalue of the training loss's Gauss–Newton matrix at initialization.

For each of a few batches, Lanczos runs in output space on A = Sᵀ J Jᵀ S (see
:mod:`lrphase.curvature.operators`), and λ₀ is the mean over batches (spread reported as the
sample standard deviation), as in the paper's Supplement A. Gradient descent on the
loss is linearly unstable exactly when η > 2/λ₀. The paper's plain NTK eigenvalue
λ_max(J Jᵀ/(km)) is reported alongside (``ntk_lambda0``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..theory.activations import NonlinearityRecorder
from ..vocabulary import JVP_MODES
from .chunked import ChunkedJacobianProducts, auto_chunk_size, batch_coupled
from .data import Inputs, make_batches, to_device
from .distributed import ShardedProducts, all_reduce_sum, any_rank, shard, shard_bounds, world
from .isolation import ModeReport, preserved_rng, working_copy
from .jacobian import JacobianProducts, math_attention, select_output
from .lanczos import LanczosResult, lanczos_top
from .losses import Loss, resolve_loss
from .operators import Products, gauss_newton, ntk

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchCurvature:
    """Curvature of one batch: the loss's Gauss–Newton λ and the paper's NTK λ, with Lanczos diagnostics."""

    lambda_gn: float
    lambda_ntk: float
    gn: LanczosResult
    ntk: LanczosResult | None  # None where λ_ntk follows from λ_gn in closed form (MSE) or was skipped
    jvp_mode: str

    @property
    def runs(self) -> tuple[LanczosResult, ...]:
        """The Lanczos runs of this batch: λ_gn's, and λ_ntk's where it needed one."""
        return (self.gn,) if self.ntk is None else (self.gn, self.ntk)

    @property
    def converged(self) -> bool:
        """Whether every Lanczos run of this batch met its tolerance."""
        return all(r.converged for r in self.runs)

    @property
    def iterations(self) -> int:
        """Products used by this batch's Lanczos runs."""
        return sum(r.iterations for r in self.runs)

    @property
    def relative_residual(self) -> float:
        """The largest relative residual of this batch's Lanczos runs."""
        return max(r.relative_residual for r in self.runs)


@dataclass(frozen=True)
class Lambda0Estimate:
    """λ₀ averaged over batches, with everything needed to judge and reproduce it."""

    lambda0: float
    lambda0_std: float
    ntk_lambda0: float
    ntk_lambda0_std: float
    loss: Loss
    per_batch: tuple[BatchCurvature, ...]
    batch_size: int
    output_dim: int
    jvp_mode: str
    chunk_size: int | None  # micro-batch size of every product; None: the whole batch at once
    modes: ModeReport
    nonlinearities: tuple[str, ...]
    device: str
    dtype: str
    tol: float
    notes: tuple[str, ...]

    @property
    def converged(self) -> bool:
        """Whether every batch converged."""
        return all(b.converged for b in self.per_batch)

    @property
    def iterations(self) -> int:
        """Products summed over batches."""
        return sum(b.iterations for b in self.per_batch)

    @property
    def max_relative_residual(self) -> float:
        """The largest Lanczos residual relative to its Ritz value (the stopping quantity)."""
        return max(b.relative_residual for b in self.per_batch)


def resolve_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    """``None``: the model's own device; ``"auto"``: CUDA, else MPS, else CPU; otherwise as given."""
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps") if mps is not None and mps.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(f"device '{device}' is not usable here ({exc}); use --device cpu or auto") from exc
    return resolved


def estimate_lambda0(
    model: nn.Module,
    data: Any,
    *,
    loss: Any = None,
    batch_size: int | None = None,
    batches: int = 3,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
    jvp_mode: str = "auto",
    chunk_size: int | None = None,
    distributed: bool | None = None,
    ntk: bool = True,
    progress: ProgressCallback | None = None,
) -> Lambda0Estimate:
    """Estimate λ₀ of ``model`` on ``data`` for ``loss``, matrix-free, without touching ``model``.

    ``data`` is a Dataset, DataLoader or (X, Y) pair; ``loss`` is ``"mse"`` (the paper's
    L = 1/(2km) Σ(f−y)², the default), ``"cross_entropy"``, ``nn.MSELoss()`` or
    ``nn.CrossEntropyLoss()``. Lanczos stops once its residual is ≤ ``tol``·λ (see
    :mod:`lrphase.curvature.lanczos`); the result says whether every batch converged within ``max_iter`` steps.
    ``chunk_size`` micro-batches every product (see :mod:`lrphase.curvature.chunked`); ``None`` chooses
    automatically from the device's free memory. Under ``torch.distributed`` each batch is
    sharded across the ranks (see :mod:`lrphase.curvature.distributed`); ``distributed=False`` keeps
    every rank on whole batches. For cross-entropy the paper's NTK eigenvalue needs a second
    Lanczos run; ``ntk=False`` skips it (``ntk_lambda0`` is then NaN).
    """
    if jvp_mode not in JVP_MODES:
        raise InputError(f"unknown J·v mode '{jvp_mode}': use one of {', '.join(JVP_MODES)}")
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"--chunk-size must be at least 1, got {chunk_size}")
    loss_spec = resolve_loss(loss)
    target = resolve_device(device, model)
    with preserved_rng():
        batch_list = make_batches(data, batch_size=batch_size, batches=batches, seed=seed)
        clone, modes = working_copy(model, device=target, dtype=dtype)
        inputs = [to_device(x, target, dtype) for x, _ in batch_list]
        nonlinearities = _validating_forward(clone, inputs[0], batch_list[0][1], seed)
        mode: str = jvp_mode
        results: list[BatchCurvature] = []
        notes: list[str] = []
        sharded = world()[1] > 1 and distributed is not False
        if sharded and batch_coupled(clone):
            raise InputError(
                "train-mode BatchNorm cannot be sharded across processes (each shard would use its own "
                "statistics): run lrphase in a single process, or put BatchNorm in eval mode"
            )
        chunk = _chunking(clone, inputs[0], chunk_size, seed, notes)
        for index, (full, (_, y)) in enumerate(zip(inputs, batch_list, strict=True)):
            samples = full.size
            if sharded and samples is None:
                raise InputError("inputs that are not batch-major cannot be sharded across processes: run lrphase in one process")
            x = shard(full) if sharded else full
            products: Products
            if chunk is not None:
                products = ChunkedJacobianProducts(clone, x, chunk_size=chunk, seed=seed)
            else:
                products = JacobianProducts(clone, x, mode=mode, seed=seed)
            _check_outputs(products.output, loss_spec, index)
            local_rows = products.output.shape[0]
            total_rows = int(all_reduce_sum(products.output.new_tensor([local_rows])).item()) if sharded else local_rows
            first_row = _first_row(local_rows, x.size, samples) if sharded else 0
            weights = _row_weights(loss_spec, y, products.output, total_rows, first_row)
            if sharded:
                products = ShardedProducts(products)
            curvature = _batch_curvature(products, loss_spec, tol, max_iter, seed + index, (first_row, total_rows), weights, ntk)
            results.append(curvature)
            mode = products.mode  # "auto" decides on the first batch
            if products.fallback:
                notes.append(products.fallback)
            if progress is not None:
                progress(index + 1, len(inputs))
    lambda0, lambda0_std = _mean_and_spread([b.lambda_gn for b in results])
    ntk_lambda0, ntk_lambda0_std = _mean_and_spread([b.lambda_ntk for b in results])
    if not lambda0 > 0:
        raise InputError(
            "λ₀ is not positive: the outputs do not depend on the trainable parameters at initialization; "
            "check that trainable weights reach the outputs (e.g. not all zero-initialized)"
        )
    k = products.output.shape[1]
    return Lambda0Estimate(
        lambda0=lambda0,
        lambda0_std=lambda0_std,
        ntk_lambda0=ntk_lambda0,
        ntk_lambda0_std=ntk_lambda0_std,
        loss=loss_spec,
        per_batch=tuple(results),
        batch_size=samples or products.output.shape[0],
        output_dim=k,
        jvp_mode=products.mode,
        chunk_size=chunk,
        modes=modes,
        nonlinearities=nonlinearities,
        device=str(target),
        dtype=str(products.output.dtype).replace("torch.", ""),
        tol=tol,
        notes=tuple(dict.fromkeys(notes)),
    )


def _mean_and_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over batches (0 for one batch); NaN for skipped values."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _chunking(clone: nn.Module, x: Inputs, chunk_size: int | None, seed: int, notes: list[str]) -> int | None:
    """The micro-batch size to use (None: whole batches), explaining any override in ``notes``."""
    m = x.size
    if m is None:
        if chunk_size is not None:
            notes.append("not micro-batched: the inputs are not batch-major (their first dimensions differ)")
        return None
    if chunk_size is None:
        chunk = auto_chunk_size(clone, x, seed=seed)
        if chunk is not None:
            notes.append(f"micro-batched by {chunk} samples to fit the device's free memory")
        return chunk
    if chunk_size >= m:
        return None
    if batch_coupled(clone):
        notes.append(
            "not micro-batched: train-mode BatchNorm couples the samples of a batch through its "
            "statistics, so splitting the batch would change the network"
        )
        return None
    return chunk_size


def _validating_forward(clone: nn.Module, x: Inputs, y: Any, seed: int) -> tuple[str, ...]:
    """Run one forward pass on the copy: check the data fits (``y``: the batch's targets), and record the nonlinearities."""
    recorder = NonlinearityRecorder()
    try:
        with torch.no_grad(), recorder, recorder.naming_modules(clone), math_attention():
            torch.manual_seed(seed)
            out = x.call(clone)
    except Exception as exc:  # noqa: BLE001 - any failure here means the data does not fit the model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fix = _labels_first(x, y) or "make the data match the model's expected inputs (shape, dtype, names)"
        raise InputError(
            f"the model failed on a batch of inputs of shape {x.describe()} ({type(exc).__name__}: {first}); {fix}"
        ) from exc
    select_output(out)
    return tuple(sorted(recorder.seen))


def _labels_first(x: Inputs, y: Any) -> str | None:
    """The fix when the first input looks like the batch's labels: a 1-D integer tensor, one value per sample."""
    label = x.args[0] if x.args else None
    samples = y.shape[0] if isinstance(y, torch.Tensor) and y.dim() > 0 else None
    if not isinstance(label, torch.Tensor) or label.dim() != 1 or label.shape[0] != samples:
        return None
    if label.dtype.is_floating_point or label.dtype.is_complex or label.dtype == torch.bool:
        return None
    return (
        f"the first input looks like the labels ({samples} integers, one per sample): if the batch puts them first, "
        "as in (label, text, offsets), set `label_index = 0` in the model file"
    )


def _first_row(local_rows: int, local_samples: int | None, samples: int | None) -> int:
    """This rank's first row of the batch's outputs, when the batch is sharded by samples."""
    assert local_samples is not None and samples is not None  # sharding needs batch-major inputs
    return shard_bounds(samples)[0] * (local_rows // local_samples)


def _row_weights(loss: Loss, y: Any, out: torch.Tensor, total_rows: int, first_row: int) -> tuple[torch.Tensor | None, int]:
    """The loss's weights on the rows of ``out`` (None: all count) and the batch's number of counted rows.

    ``out`` holds rows ``first_row`` onwards of the batch's ``total_rows``; ``y`` is the whole batch's.
    """
    weights = loss.row_weights(loss.prepare_targets(y, out.new_empty(total_rows, out.shape[1])))
    if weights is None:
        return None, total_rows
    return weights[first_row : first_row + out.shape[0]].to(out), int(weights.sum().item())


def _check_outputs(out: torch.Tensor, loss: Loss, index: int) -> None:
    if any_rank(not bool(torch.isfinite(out).all())):
        raise InputError(
            f"the model's outputs contain NaN or inf on batch {index}: check its initialization and the inputs' scale"
        )
    if loss.is_cross_entropy and out.shape[1] < 2:
        raise InputError("cross-entropy needs at least 2 outputs (classes) per sample; use loss='mse' for a scalar output")


def _batch_curvature(
    products: Products,
    loss: Loss,
    tol: float,
    max_iter: int,
    seed: int,
    rows: tuple[int, int],
    weights: tuple[torch.Tensor | None, int],
    with_ntk: bool,
) -> BatchCurvature:
    """Lanczos on one batch; ``rows`` = (first row, m): under torch.distributed ``products`` cover this rank's rows.

    ``weights``: the loss's weights on these rows and the batch's number of counted rows.
    """
    local, k = products.output.shape
    start, m = rows
    stop = start + local
    row_weights, counted = weights
    v0 = torch.randn(m * k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)[start * k : stop * k]

    def top(operator: Callable[[torch.Tensor], torch.Tensor]) -> LanczosResult:
        return lanczos_top(
            operator, local * k, device=products.output.device, dtype=products.output.dtype, tol=tol,
            max_iter=max_iter, v0=v0, reduce=all_reduce_sum, total_dim=m * k,
        )  # fmt: skip

    gn = top(gauss_newton(products, loss, samples=counted, weights=row_weights))
    if loss.is_cross_entropy:
        if not with_ntk:
            return BatchCurvature(gn.eigenvalue, math.nan, gn, None, products.mode)
        ntk_result = top(ntk(products, samples=m))
        return BatchCurvature(gn.eigenvalue, ntk_result.eigenvalue, gn, ntk_result, products.mode)
    # For the MSE losses A = c·J Jᵀ with H = c·I, so λ_ntk = λ_gn / (c k m) exactly.
    lambda_ntk = gn.eigenvalue / (loss.mse_hessian_scale(m, k) * k * m)
    return BatchCurvature(gn.eigenvalue, lambda_ntk, gn, None, products.mode)
