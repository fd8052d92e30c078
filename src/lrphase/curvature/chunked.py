"""Micro-batched Jacobian products: λ₀ at any batch size within one device's memory.

The output-space operator decomposes over samples: Jᵀu = Σ_c J_cᵀ u_c is a sum over
micro-batches c, and J v is computed micro-batch by micro-batch, (J v)_c = J_c v. Each
Jᵀu re-runs the forward pass of one micro-batch at a time with its graph (freed before the
next), and each J v uses forward mode, which keeps no graph at all; so peak memory stays
near one training step at the micro-batch size, at the price of recomputing the primal.

Train-mode BatchNorm couples the samples of a batch through its statistics, so splitting
the batch would change the network: such models are never micro-batched.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from .data import Inputs
from .jacobian import (
    FAILURES,
    JacobianProducts,
    Vector,
    forward_mode_jvp,
    record_failure,
    seeded_forward,
    unsupported_modes,
)

MEMORY_FRACTION = 0.5  # of the free device memory that one product may use
DOUBLE_BACKWARD_FACTOR = 3.0  # a retained graph plus its create_graph backward, relative to the graph


def batch_coupled(model: nn.Module) -> bool:
    """Whether some layer mixes samples within a batch (BatchNorm using batch statistics)."""
    return any(
        isinstance(sub, nn.modules.batchnorm._BatchNorm) and (sub.training or not sub.track_running_stats)
        for sub in model.modules()
    )


def graph_bytes_per_sample(model: nn.Module, x: Any, *, seed: int = 0, probe_samples: int = 4) -> float:
    """Bytes autograd saves per sample for one forward pass, measured on a few samples."""
    inputs = Inputs.of(x)
    if inputs.size is None:
        raise ValueError("only batch-major inputs have a size per sample")
    count = min(probe_samples, inputs.size)
    probe = inputs.slice(0, count)
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with saved_tensors_hooks(pack, lambda t: t), torch.enable_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe.call(model)
    return total / count


def free_memory(device: torch.device) -> float | None:
    """Free memory in bytes on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def auto_chunk_size(model: nn.Module, x: Any, *, seed: int = 0) -> int | None:
    """The micro-batch size that keeps a product within budget, or None when the whole batch fits."""
    inputs = Inputs.of(x)
    m = inputs.size
    free = free_memory(inputs.device)
    if free is None or m is None or batch_coupled(model):
        return None
    per_sample = graph_bytes_per_sample(model, x, seed=seed) * DOUBLE_BACKWARD_FACTOR
    budget = MEMORY_FRACTION * free
    if per_sample * m <= budget:
        return None
    return max(1, int(budget // per_sample))


class ChunkedJacobianProducts:
    """The interface of :class:`~lrphase.curvature.jacobian.JacobianProducts`, computed ``chunk_size`` samples at a time."""

    def __init__(self, model: nn.Module, x: Any, *, chunk_size: int, seed: int = 0) -> None:
        inputs = Inputs.of(x)
        m = inputs.size
        if m is None:
            raise ValueError("only batch-major inputs can be micro-batched")
        self._model = model
        self._seed = seed
        self._chunks = [inputs.slice(start, start + chunk_size) for start in range(0, m, chunk_size)]
        self.chunk_size = chunk_size
        self.mode = "jvp"
        self.fallback: str | None = None
        with torch.no_grad():
            outputs = [seeded_forward(model, c, seed=seed) for c in self._chunks]
        self._rows = [out.shape[0] for out in outputs]  # a chunk of sequences has a row per token
        self.output = torch.cat(outputs)

    def vjp(self, u: torch.Tensor) -> Vector:
        """Jᵀu = Σ_c J_cᵀ u_c, one micro-batch graph alive at a time."""
        total: list[torch.Tensor] | None = None
        start = 0
        for chunk, size in zip(self._chunks, self._rows, strict=True):
            part = JacobianProducts(self._model, chunk, mode=None, seed=self._seed).vjp(u[start : start + size])
            total = list(part) if total is None else [a + b for a, b in zip(total, part, strict=True)]
            start += size
        assert total is not None
        return tuple(total)

    def jvp(self, v: Vector) -> torch.Tensor:
        """J v, micro-batch by micro-batch: in forward mode, else in the next mode of the fallback order that works."""
        if "jvp" not in unsupported_modes(self._model):
            try:
                return torch.cat([forward_mode_jvp(self._model, chunk, v, seed=self._seed) for chunk in self._chunks])
            except torch.cuda.OutOfMemoryError:
                raise
            except FAILURES as exc:
                record_failure(self._model, "jvp", exc)
        parts = []
        for chunk in self._chunks:
            products = JacobianProducts(self._model, chunk, mode="jvp", seed=self._seed)  # skips the modes that failed
            parts.append(products.jvp(v))
            self.mode, self.fallback = products.mode, products.fallback
        return torch.cat(parts)
