"""λ₀ and sweeps across processes with ``torch.distributed`` (launched by ``torchrun``).

Each batch is sharded by sample across the ranks: rank r holds samples
[r·m/R, (r+1)·m/R) and the matching slice of every Lanczos vector. One operator product
is the local Jᵀ(S u) (a vjp), one all-reduce of that parameter-space vector (flattened
into a single buffer), and the local Sᵀ J g (a jvp); Lanczos sums its inner products over
ranks, so every rank follows the same iteration and ends with the same λ₀.

The loss normalization uses the global batch size m, so the operator is exactly the
single-process one. Train-mode BatchNorm would normalize each shard with its own
statistics — a different network — so such models are refused here.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import InputError
from .data import Inputs
from .jacobian import Vector
from .operators import Products


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment() -> bool:
    """Start the process group when launched by ``torchrun`` (WORLD_SIZE > 1); True if running distributed."""
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return True


def shutdown(*, in_step: bool) -> None:
    """End the process group; with ``in_step`` (every rank finished normally) after a barrier.

    Exiting with a live gloo group can abort a rank whose peer is already gone.
    """
    if dist.is_available() and dist.is_initialized():
        if in_step:
            dist.barrier()
        dist.destroy_process_group()


def shard_bounds(m: int) -> tuple[int, int]:
    """This rank's [start, stop) slice of a batch of m samples."""
    rank, size = world()
    if m < size:
        raise InputError(f"a batch of {m} samples cannot be sharded over {size} processes: use a larger --batch-size")
    return rank * m // size, (rank + 1) * m // size


def shard(x: Inputs) -> Inputs:
    """This rank's samples of a batch of batch-major inputs."""
    assert x.size is not None
    return x.slice(*shard_bounds(x.size))


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over ranks (``t`` itself when not distributed)."""
    if world()[1] == 1:
        return t
    t = t.clone()
    dist.all_reduce(t)
    return t


def all_reduce_vector(parts: Vector) -> Vector:
    """Sum a parameter-space vector over ranks with a single all-reduce."""
    if world()[1] == 1:
        return parts
    flat = torch.cat([p.reshape(-1) for p in parts])
    dist.all_reduce(flat)
    out, start = [], 0
    for p in parts:
        out.append(flat[start : start + p.numel()].view_as(p))
        start += p.numel()
    return tuple(out)


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on some rank (keeps ranks in step before an error)."""
    if world()[1] == 1:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def gather_objects(items: list) -> list:
    """The concatenation over ranks of every rank's ``items`` (picklable objects)."""
    if world()[1] == 1:
        return list(items)
    gathered: list = [None] * world()[1]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


class ShardedProducts:
    """Local products of this rank's shard whose Jᵀu is summed over all ranks."""

    def __init__(self, local: Products) -> None:
        self._local = local
        self.output = local.output

    @property
    def mode(self) -> str:
        """The wrapped products' J·v mode."""
        return self._local.mode

    @property
    def fallback(self) -> str | None:
        """Why the wrapped products fell back to another J·v mode, if they did."""
        return self._local.fallback

    def vjp(self, u: torch.Tensor) -> Vector:
        """Jᵀu over the whole batch: the local vjp, summed across ranks (one all-reduce)."""
        return all_reduce_vector(self._local.vjp(u))

    def jvp(self, v: Vector) -> torch.Tensor:
        """J v on this rank's shard of the batch."""
        return self._local.jvp(v)
