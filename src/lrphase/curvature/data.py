"""Turning the user's data into batches ``(inputs, y)`` at the user's batch size.

Accepted forms: a ``Dataset`` (or anything indexable with a length, such as a Hugging Face
``datasets.Dataset``) whose items are ``(x, y)`` or mappings, a ``DataLoader``, an
``(X, Y)`` pair of tensors with the samples along the first dimension, or a mapping of such
tensors (a tokenizer's output plus ``labels``). A sample, a batch or a
tuple of tensors with more than two members is ``(x₁, …, xₙ, y)``: every member but the last is a
model input, as ``TensorDataset(ids, mask, labels)`` yields them (the model is called with
``model(ids, mask)``; another member as the label: :func:`relabeled`). A sample or batch that
is a mapping (Hugging Face style) is keyword arguments: the model is called with
``model(**batch)`` less the labels, which are the first of ``LABEL_KEYS`` present (another key:
:func:`relabeled`). Batches are drawn
without replacement by a generator seeded with ``seed``, so they are reproducible and
the global RNG is never consumed: a few fixed batches for λ₀ (:func:`make_batches`), or the
endless stream of a training run (:func:`batch_stream`), whose first epoch they are.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import InputError
from .isolation import preserved_rng

Batch = tuple[Any, Any]
LABEL_KEYS = ("labels", "label", "y", "target", "targets")
_NAMED_LABEL = "lrphase.label"  # where :func:`relabeled` puts the labels of the key the user named
Label = str | int  # a mapping sample's label key, or a tuple sample's label index


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
    if _is_tensor_mapping(data):
        return _permuted(size, batch_size, seed, lambda idx: _as_pair({k: t[idx.to(t.device)] for k, t in data.items()}))
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
    if _is_tensor_tuple(data) or _is_tensor_mapping(data):
        sizes = [len(t) for t in (data.values() if isinstance(data, Mapping) else data)]
        if len(set(sizes)) > 1:
            counts = " and ".join(f"{n}" for n in sizes)
            raise InputError(f"the tensors of data have {counts} samples: give one target per sample (and one row of each input)")
        size = sizes[0]
    elif isinstance(data, (Dataset, Sequence)) or (hasattr(data, "__getitem__") and not isinstance(data, Mapping)):
        # a Hugging Face `datasets.Dataset` (with_format("torch")) indexes like a map-style Dataset
        try:
            size = len(data)  # type: ignore[arg-type]  # a map-style Dataset has a length; an iterable one raises
        except TypeError as exc:
            raise InputError("the dataset has no length: give a map-style Dataset or a DataLoader") from exc
    else:
        raise InputError(f"data is a {type(data).__name__}; give a Dataset, a DataLoader or an (X, Y) pair of tensors")
    if size == 0:
        raise InputError("the dataset is empty: give at least one sample")
    return size, min(batch_size or min(size, 128), size)


def _is_tensor_mapping(data: Any) -> bool:
    """Columns of a tokenized batch: ``{"input_ids": …, "attention_mask": …, "labels": …}``, samples first."""
    return (
        isinstance(data, Mapping) and len(data) >= 2 and all(isinstance(t, torch.Tensor) and t.dim() > 0 for t in data.values())
    )


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
    if isinstance(batch, Mapping):
        if {"x", "y"} == set(batch):
            return batch["x"], batch["y"]
        key = next((k for k in (_NAMED_LABEL, *LABEL_KEYS) if k in batch), None)
        if key is None:
            raise InputError(
                f"a batch of data is a mapping with keys {sorted(map(str, batch))} and no labels among "
                f'{", ".join(LABEL_KEYS)}: name its label key with `label_key = "..."` in the model file'
            )
        return Inputs((), {k: v for k, v in batch.items() if k != key}), batch[key]
    raise InputError(f"a batch of data is a {type(batch).__name__}; each sample must be an (input, target) pair")


@dataclass(frozen=True)
class Inputs:
    """A batch's model inputs: the positional and keyword arguments of the forward pass.

    An input may itself be a tuple or mapping of tensors (``model({"image": …, "meta": …})``).
    Tensors whose first dimensions agree hold the samples (``size``); inputs that are not all
    batch-major (EmbeddingBag's flat ``(text, offsets)``) have no ``size`` and are never split.
    """

    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, x: Any) -> Inputs:
        """``x`` as inputs: a tuple or list is several positional inputs; anything else is one."""
        if isinstance(x, Inputs):
            return x
        return cls(tuple(x) if isinstance(x, (tuple, list)) else (x,))

    def call(self, model: Callable[..., Any]) -> Any:
        """The model's raw output on these inputs."""
        return model(*self.args, **self.kwargs)

    @property
    def tensors(self) -> list[torch.Tensor]:
        """Every tensor among the inputs."""
        found: list[torch.Tensor] = []

        def collect(t: torch.Tensor) -> torch.Tensor:
            found.append(t)
            return t

        self.map(collect)
        return found

    @property
    def size(self) -> int | None:
        """The number of samples: the common first dimension of the tensors (None if they differ)."""
        leading = {t.shape[0] if t.dim() > 0 else None for t in self.tensors}
        return leading.pop() if len(leading) == 1 else None

    @property
    def device(self) -> torch.device:
        """The device of the first tensor (the CPU when there is none)."""
        tensors = self.tensors
        return tensors[0].device if tensors else torch.device("cpu")

    def describe(self) -> str:
        """The inputs' shapes, for messages."""
        named = [str(tuple(t.shape)) for t in Inputs(self.args).tensors]
        named += [f"{k}={tuple(t.shape)}" for k, t in self.kwargs.items() if isinstance(t, torch.Tensor)]
        return ", ".join(named) or "no tensors"

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Inputs:
        """``fn`` applied to every tensor input, inside tuples and mappings too; other values are kept."""

        def apply(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return fn(value)
            if isinstance(value, Mapping):
                return {k: apply(v) for k, v in value.items()}
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
                return type(value)(*map(apply, value))
            if isinstance(value, (tuple, list)):
                return type(value)(apply(v) for v in value)
            return value

        return Inputs(tuple(apply(a) for a in self.args), {k: apply(v) for k, v in self.kwargs.items()})

    def slice(self, start: int, stop: int) -> Inputs:
        """Samples ``start:stop`` (batch-major inputs only)."""
        return self.map(lambda t: t[start:stop])

    def to(self, device: torch.device, dtype: torch.dtype | None) -> Inputs:
        """On ``device``, with floating tensors cast to ``dtype``."""
        return self.map(lambda t: t.to(device, dtype) if dtype is not None and t.is_floating_point() else t.to(device))


def to_device(x: Any, device: torch.device, dtype: torch.dtype | None) -> Inputs:
    """Model inputs as :class:`Inputs` on ``device``; floating tensors cast to ``dtype``."""
    inputs = Inputs.of(x)
    if not inputs.tensors:
        raise InputError(f"the model inputs hold no tensor ({type(x).__name__}): give tensors as inputs")
    return inputs.to(device, dtype)


def relabeled(data: Any, key: Label) -> Any:
    """``data`` whose samples (or batches) take their labels from ``key``: a mapping's key, or a tuple's index."""
    if isinstance(key, int) and _is_tensor_tuple(data):
        return _move_label(key, data)
    if isinstance(data, DataLoader):
        collate = functools.partial(_after_collate, key, data.collate_fn)
        if data.batch_size is None:
            return DataLoader(data.dataset, batch_sampler=data.batch_sampler, collate_fn=collate, num_workers=data.num_workers)
        return DataLoader(
            data.dataset, batch_size=data.batch_size, sampler=data.sampler, drop_last=data.drop_last,
            collate_fn=collate, num_workers=data.num_workers,
        )  # fmt: skip
    if _is_tensor_mapping(data):
        return _RelabeledDataset(Columns(data), key)
    if (isinstance(data, (Dataset, Sequence)) or hasattr(data, "__getitem__")) and not _is_tensor_tuple(data):
        return _RelabeledDataset(data, key)
    if isinstance(key, int):
        raise InputError(f"label_index {key} needs data whose samples are tuples (a Dataset, a DataLoader or tensors)")
    raise InputError(f"label_key '{key}' needs data whose samples are mappings (a Dataset or DataLoader of dicts)")


def _move_label(key: Label, item: Any) -> Any:
    """``item`` with its ``key`` entry under the key that marks labels named by the user, or its ``key``-th member last."""
    if isinstance(key, int):
        if not isinstance(item, (tuple, list)):
            raise InputError(f"label_index {key} needs tuple samples, got a {type(item).__name__}: use label_key for mappings")
        if not -len(item) <= key < len(item):
            raise InputError(f"label_index {key} is out of range for samples of {len(item)} members: 0 is the first, -1 the last")
        index = key % len(item)
        return (*item[:index], *item[index + 1 :], item[index])
    if not isinstance(item, Mapping) or key not in item:
        keys = sorted(map(str, item)) if isinstance(item, Mapping) else type(item).__name__
        raise InputError(f"label_key '{key}' is not a key of the data's samples ({keys}): name one of them")
    return {**{k: v for k, v in item.items() if k != key}, _NAMED_LABEL: item[key]}


def _after_collate(key: Label, collate: Callable[[list], Any], samples: list) -> Any:
    return _move_label(key, collate(samples))


class Columns(Dataset):
    """A mapping of tensors read as samples: item i is ``{key: column[i]}``."""

    def __init__(self, columns: Mapping[str, torch.Tensor]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.columns.items()}


class _RelabeledDataset(Dataset):
    def __init__(self, dataset: Any, key: Label) -> None:
        self.dataset, self.key = dataset, key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _move_label(self.key, self.dataset[index])
