"""Turning the user's data into a few fixed batches ``(x, y)`` at the user's batch size.

Accepted forms: a ``Dataset`` whose items are ``(x, y)``, a ``DataLoader``, or an
``(X, Y)`` pair of tensors with the samples along the first dimension. Batches are drawn
without replacement by a generator seeded with ``seed``, so they are reproducible and
the global RNG is never consumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from .errors import InputError
from .isolation import preserved_rng

Batch = tuple[Any, Any]


def make_batches(data: Any, *, batch_size: int | None, batches: int, seed: int) -> list[Batch]:
    """Return ``batches`` disjoint batches (fewer when the data holds fewer) of ``batch_size`` samples."""
    if batches < 1:
        raise InputError(f"--batches must be at least 1, got {batches}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if isinstance(data, DataLoader):
        if batch_size is None:
            return _from_loader(data, batches, seed)
        return _from_dataset(data.dataset, batch_size, batches, seed, data.collate_fn)
    if _is_tensor_pair(data):
        x, y = data
        if len(x) != len(y):
            raise InputError(f"data X has {len(x)} samples but Y has {len(y)}: give one label per sample")
        return _from_tensors(x, y, batch_size, batches, seed)
    if isinstance(data, (Dataset, Sequence)):
        return _from_dataset(data, batch_size, batches, seed, default_collate)
    raise InputError(
        f"data is a {type(data).__name__}; give a Dataset, a DataLoader or an (X, Y) pair of tensors"
    )


def _is_tensor_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
        and data[0].dim() > 0
    )


def _counts(size: int, batch_size: int | None, batches: int) -> tuple[int, int]:
    if size == 0:
        raise InputError("the dataset is empty: give at least one sample")
    batch_size = min(batch_size or min(size, 128), size)
    return batch_size, max(1, min(batches, size // batch_size))


def _from_tensors(x: torch.Tensor, y: torch.Tensor, batch_size: int | None, batches: int, seed: int) -> list[Batch]:
    batch_size, count = _counts(len(x), batch_size, batches)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    picks = [order[i * batch_size : (i + 1) * batch_size].to(x.device) for i in range(count)]
    return [(x[idx], y[idx]) for idx in picks]


def _from_dataset(dataset: Any, batch_size: int | None, batches: int, seed: int, collate: Any) -> list[Batch]:
    try:
        size = len(dataset)
    except TypeError as exc:
        raise InputError("the dataset has no length: give a map-style Dataset or a DataLoader") from exc
    batch_size, count = _counts(size, batch_size, batches)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    out = []
    for i in range(count):
        items = [dataset[j] for j in order[i * batch_size : (i + 1) * batch_size]]
        out.append(_as_pair(collate(items)))
    return out


def _from_loader(loader: DataLoader, batches: int, seed: int) -> list[Batch]:
    out = []
    with preserved_rng():
        torch.manual_seed(seed)
        for batch in loader:
            out.append(_as_pair(batch))
            if len(out) == batches:
                break
    if not out:
        raise InputError("the DataLoader yielded no batches: the dataset is empty")
    return out


def _as_pair(batch: Any) -> Batch:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, dict) and {"x", "y"} <= set(batch):
        return batch["x"], batch["y"]
    raise InputError(
        f"a batch of data is a {type(batch).__name__}; each sample must be an (input, target) pair"
    )


def to_device(x: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Move model inputs (a tensor or a tuple of tensors) to ``device``; cast floating ones to ``dtype``."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(t, device, dtype) for t in x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"model inputs must be tensors, got {type(x).__name__}")
    x = x.to(device)
    return x.to(dtype) if dtype is not None and x.is_floating_point() else x


def as_args(x: Any) -> tuple:
    """Model inputs as the tuple of positional arguments of the forward pass."""
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)
