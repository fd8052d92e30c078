"""Turning the user's data into batches ``(x, y)`` at the user's batch size.

Accepted forms: a ``Dataset`` whose items are ``(x, y)``, a ``DataLoader``, or an
``(X, Y)`` pair of tensors with the samples along the first dimension. A sample, a batch or a
tuple of tensors with more than two members is ``(x₁, …, xₙ, y)``: every member but the last is a
model input, as ``TensorDataset(ids, mask, labels)`` yields them (the model is called with
``model(ids, mask)``). Batches are drawn
without replacement by a generator seeded with ``seed``, so they are reproducible and
the global RNG is never consumed: a few fixed batches for λ₀ (:func:`make_batches`), or the
endless stream of a training run (:func:`batch_stream`), whose first epoch they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import InputError
from .isolation import preserved_rng

Batch = tuple[Any, Any]


def make_batches(data: Any, *, batch_size: int | None, batches: int, seed: int) -> list[Batch]:
    """Return ``batches`` disjoint batches (fewer when the data holds fewer) of ``batch_size`` samples.

    They are the first batches of :func:`batch_stream` for the same ``seed``: the first epoch's.
    """
    if batches < 1:
        raise InputError(f"--batches must be at least 1, got {batches}")
    if isinstance(data, DataLoader) and batch_size is None:
        out = list(itertools.islice(batch_stream(data, batch_size=None, seed=seed), batches))
        if not out:
            raise InputError("the DataLoader yielded no batches: the dataset is empty")
        return out
    size, batch_size = _sizes(data, batch_size)
    return list(itertools.islice(batch_stream(data, batch_size=batch_size, seed=seed), max(1, min(batches, size // batch_size))))


def batch_stream(data: Any, *, batch_size: int | None, seed: int) -> Iterator[Batch]:
    """Minibatches as training draws them, without end.

    Every epoch is a permutation of the samples from one generator seeded with ``seed``, cut into
    batches of ``batch_size`` (default: min(128, the dataset's size)); an epoch's incomplete last
    batch is dropped. A ``DataLoader`` given with no ``batch_size`` is iterated as it is, epoch
    after epoch, each draw under a global RNG seeded from ``seed`` and the draw's index (the
    caller's RNG state is restored), so shuffling and random transforms are reproducible.
    """
    if isinstance(data, DataLoader) and batch_size is None:
        return _loader_stream(data, seed)
    size, batch_size = _sizes(data, batch_size)
    if isinstance(data, DataLoader):
        data, collate = data.dataset, data.collate_fn
    else:
        collate = default_collate
    if _is_tensor_tuple(data):
        return _permuted(size, batch_size, seed, lambda idx: _as_pair([t[idx.to(t.device)] for t in data]))
    return _permuted(size, batch_size, seed, lambda idx: _as_pair(collate([data[j] for j in idx.tolist()])))


def is_full_batch(data: Any, batch_size: int | None) -> bool:
    """Whether one batch holds every sample, so that training on it is full-batch gradient descent."""
    if isinstance(data, DataLoader) and batch_size is None:
        try:
            return data.batch_size is not None and data.batch_size >= len(data.dataset)  # type: ignore[arg-type]
        except TypeError:  # an iterable dataset has no length
            return False
    size, drawn = _sizes(data, batch_size)
    return drawn >= size


def _sizes(data: Any, batch_size: int | None) -> tuple[int, int]:
    """The number of samples in ``data`` and the batch size to draw (at most that number)."""
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if isinstance(data, DataLoader):
        data = data.dataset
    if _is_tensor_tuple(data):
        sizes = [len(t) for t in data]
        if len(set(sizes)) > 1:
            counts = " and ".join(f"{n}" for n in sizes)
            raise InputError(f"the tensors of data have {counts} samples: give one target per sample (and one row of each input)")
        size = sizes[0]
    elif isinstance(data, (Dataset, Sequence)):
        try:
            size = len(data)  # type: ignore[arg-type]  # a map-style Dataset has a length; an iterable one raises
        except TypeError as exc:
            raise InputError("the dataset has no length: give a map-style Dataset or a DataLoader") from exc
    else:
        raise InputError(f"data is a {type(data).__name__}; give a Dataset, a DataLoader or an (X, Y) pair of tensors")
    if size == 0:
        raise InputError("the dataset is empty: give at least one sample")
    return size, min(batch_size or min(size, 128), size)


def _is_tensor_tuple(data: Any) -> bool:
    """``(X, Y)`` or ``(X₁, …, Xₙ, Y)``: tensors with the samples along their first dimension."""
    return isinstance(data, (tuple, list)) and len(data) >= 2 and all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in data)


def _permuted(size: int, batch_size: int, seed: int, take: Callable[[torch.Tensor], Batch]) -> Iterator[Batch]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(size, generator=generator)
        for start in range(0, size - batch_size + 1, batch_size):
            yield take(order[start : start + batch_size])


def _loader_stream(loader: DataLoader, seed: int) -> Iterator[Batch]:
    draws = itertools.count()
    while True:
        iterator, empty = iter(loader), True
        while True:
            with preserved_rng():
                torch.manual_seed(seed + 1_000_003 * next(draws))
                batch = next(iterator, None)
            if batch is None:
                break
            empty = False
            yield _as_pair(batch)
        if empty:
            return


def _as_pair(batch: Any) -> Batch:
    """``(x, y)`` from a collated batch; with more than two members every member but the last is an input."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, (tuple, list)) and len(batch) > 2:
        return tuple(batch[:-1]), batch[-1]
    if isinstance(batch, dict) and {"x", "y"} <= set(batch):
        return batch["x"], batch["y"]
    raise InputError(f"a batch of data is a {type(batch).__name__}; each sample must be an (input, target) pair")


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
