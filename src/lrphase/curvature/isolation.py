"""Working on a private copy of the user's model, with the global RNG state preserved.

The user's module is never run, moved or mutated: every computation happens on a
deep copy prepared so that the curvature operator is a fixed symmetric matrix:

* every module except a BatchNorm layer in training mode is put in eval mode, which switches
  off whatever a module gates on ``self.training``: ``nn.Dropout*``, functional dropout
  (``F.dropout(x, training=self.training)``), stochastic depth (DropPath), the attention
  dropout of ``nn.MultiheadAttention``, recurrent inter-layer dropout; and every forward pass
  runs under the same RNG seed, so any randomness left is frozen as well;
* BatchNorm layers that are in training mode keep using batch statistics (as in the
  first training step) but stop tracking running statistics, so no in-place buffer
  update happens (that update is what breaks ``torch.func`` transforms);
* BatchNorm layers the user put in eval mode keep using their running statistics;
* recurrent layers and ``nn.EmbeddingBag`` get forwards that every J·v mode can differentiate
  (see :mod:`lrphase.curvature.layers`).
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .layers import differentiable_layers


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global torch (CPU and CUDA), NumPy and ``random`` RNG states on exit."""
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@dataclass(frozen=True)
class ModeReport:
    """How the private copy treats the layers whose behaviour depends on train/eval mode."""

    batchnorm: str
    dropout: str

    def describe(self) -> str:
        """One line for people."""
        return f"BatchNorm: {self.batchnorm}; dropout: {self.dropout}"


def working_copy(model: nn.Module, *, device: torch.device, dtype: torch.dtype | None) -> tuple[nn.Module, ModeReport]:
    """Return a deep copy of ``model`` on ``device``/``dtype`` prepared for curvature products."""
    try:
        clone = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise InputError(
            f"cannot copy the model ({type(exc).__name__}: {exc}); lrphase works on a deep copy "
            "so your model is never modified: make the model deep-copyable"
        ) from exc
    clone = clone.to(device=device)
    if dtype is not None:
        clone = clone.to(dtype=dtype)
    return clone, prepare_for_curvature(clone)


def prepare_for_curvature(module: nn.Module) -> ModeReport:
    """Eval mode for every module but train-mode BatchNorm, whose running-stat updates stop; in place on a copy.

    Recurrent layers and embedding bags are made differentiable in every J·v mode
    (:func:`~lrphase.curvature.layers.differentiable_layers`).
    """
    differentiable_layers(module)
    batchnorm_modes = set()
    train_mode_switched = False
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            if sub.training or not sub.track_running_stats:
                sub.track_running_stats = False
                sub.running_mean = None
                sub.running_var = None
                sub.num_batches_tracked = None
                batchnorm_modes.add("batch statistics (train mode, running stats not updated)")
            else:
                batchnorm_modes.add("running statistics (eval mode, as you set it)")
        elif sub.training:  # functional dropout cannot be seen from outside: any train-mode module may gate it
            train_mode_switched = True
            sub.training = False  # this module alone: eval() would also switch its BatchNorm children
    batchnorm = "; ".join(sorted(batchnorm_modes)) if batchnorm_modes else "none"
    dropout = "off during the estimate" if train_mode_switched else "none"
    return ModeReport(batchnorm=batchnorm, dropout=dropout)
