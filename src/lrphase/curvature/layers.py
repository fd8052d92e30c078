"""Standard layers made differentiable in every J·v mode, on the private copy only.

* Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) run the native kernels: oneDNN's LSTM
  has no forward-mode rule and cuDNN's RNNs have neither a forward-mode rule nor a double
  backward, while the native kernels compute the same recurrence with both.
* ``nn.EmbeddingBag`` is computed from ``F.embedding`` and scatter ops: with E the weight,
  x_i the indices of bag b and w_i the per-sample weights (1 without them),
  out_b = Σ_{i∈b} w_i E[x_i] (``"sum"``), that sum over the bag's count of entries (``"mean"``),
  or the elementwise max of the E[x_i] (``"max"``); entries equal to ``padding_idx`` are left out,
  and a bag with no entry left is 0. The fused kernel's backward has no derivative, so neither
  forward mode nor the double backward could go through it.

The module keeps its parameters, their names and its hooks: it only changes class, to a
subclass of its own class whose ``forward`` differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


def differentiable_layers(model: nn.Module) -> None:
    """Switch the recurrent layers and embedding bags of ``model`` (a private copy) to differentiable forwards, in place."""
    for sub in model.modules():
        if isinstance(sub, nn.EmbeddingBag) and not isinstance(sub, _ComposedEmbeddingBag):
            if sub.max_norm is not None:
                raise InputError(
                    "nn.EmbeddingBag with max_norm rescales its weights in place during the forward pass, so the "
                    "network has no fixed Jacobian: set max_norm=None (or renormalize the weights before calling lrphase)"
                )
            sub.__class__ = _subclass(_ComposedEmbeddingBag, type(sub))
        elif isinstance(sub, nn.RNNBase) and not isinstance(sub, _NativeKernels):
            sub.__class__ = _subclass(_NativeKernels, type(sub))


def _subclass(mixin: type, cls: type) -> type:
    """``cls`` with ``mixin``'s forward, under ``cls``'s own name (made once per pair)."""
    if (mixin, cls) not in _SUBCLASSES:
        _SUBCLASSES[mixin, cls] = type(cls.__name__, (mixin, cls), {"__qualname__": cls.__qualname__})
    return _SUBCLASSES[mixin, cls]


_SUBCLASSES: dict[tuple[type, type], type] = {}


@contextmanager
def native_kernels() -> Iterator[None]:
    """The native kernels instead of oneDNN's (CPU) and cuDNN's (CUDA); the switches are restored on exit.

    The switches are set directly: ``flags()`` would also reset the backends' other settings.
    """
    mkldnn, cudnn = torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a ContextProp, whose setter takes a bool
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn
        torch.backends.cudnn.enabled = cudnn


class _NativeKernels(nn.Module):
    """A recurrent layer whose forward runs the native kernels, which have every derivative rule."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with native_kernels():
            return super().forward(*args, **kwargs)


class _ComposedEmbeddingBag(nn.Module):
    """``nn.EmbeddingBag``'s forward from differentiable ops (see :func:`embedding_bag`)."""

    def forward(
        self, input: torch.Tensor, offsets: torch.Tensor | None = None, per_sample_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        assert isinstance(self, nn.EmbeddingBag)
        return embedding_bag(self, input, offsets, per_sample_weights)


def embedding_bag(
    bag: nn.EmbeddingBag, input: torch.Tensor, offsets: torch.Tensor | None = None, per_sample_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """What ``bag(input, offsets, per_sample_weights)`` computes, by ``F.embedding``, ``index_add`` and ``scatter_reduce``.

    A 2-D ``input`` (B, L) is B bags of L entries; a 1-D one is cut into bags at ``offsets``, the
    bags' starts (with ``include_last_offset``, all but the last element, the input's length).
    Every entry goes to its bag's row of the result, and padding entries to one extra row, dropped.
    """
    if per_sample_weights is not None and bag.mode != "sum":
        raise NotImplementedError(
            f"embedding_bag: per_sample_weights was not None. per_sample_weights is only supported for mode='sum' "
            f"(got mode='{bag.mode}')"
        )
    if bag.mode == "max" and bag.scale_grad_by_freq:
        raise ValueError("max mode does not support scaling the gradient by the frequency")
    if input.dim() == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None: each row of input is a bag")
        count, length = input.shape
        members = torch.arange(count, device=input.device).repeat_interleave(length)
    elif offsets is None:
        raise ValueError("offsets has to be a 1D Tensor, but got None")
    else:
        count = offsets.numel() - 1 if bag.include_last_offset else offsets.numel()
        positions = torch.arange(input.numel(), device=input.device, dtype=offsets.dtype)
        members = torch.searchsorted(offsets[:count].contiguous(), positions, right=True).long() - 1
    indices = input.reshape(-1)
    if bag.padding_idx is not None:
        members = torch.where(indices == bag.padding_idx, count, members)
    rows = F.embedding(indices, bag.weight, scale_grad_by_freq=bag.scale_grad_by_freq)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.reshape(-1, 1)
    empty = rows.new_zeros(count + 1, rows.shape[1])
    if bag.mode == "max":
        spread = members.unsqueeze(1).expand_as(rows)
        return empty.scatter_reduce(0, spread, rows, "amax", include_self=False)[:count]
    total = empty.index_add(0, members, rows)[:count]
    if bag.mode == "sum":
        return total
    sizes = rows.new_zeros(count + 1).index_add(0, members, rows.new_ones(members.shape))[:count]
    return total / sizes.clamp(min=1).unsqueeze(1)
