"""The losses lrphase understands, and the factor S of their Hessian in output space.

For outputs f ∈ R^{m×k} (m samples, k outputs each) and a loss L(f), the Gauss–Newton
matrix is G = Jᵀ H J with H = ∂²L/∂f². Writing H = S Sᵀ, the non-zero eigenvalues of G
are those of the output-space matrix Sᵀ J Jᵀ S, which is what lrphase's Lanczos sees.

========================  =================================  =======================
name                      loss                               H (output space)
========================  =================================  =======================
``mse`` (paper)           L = 1/(2km) Σ (f − y)²             I/(km)
``mse_loss_mean``         ``nn.MSELoss()``: 1/(km) Σ (f − y)²  2 I/(km)
``mse_loss_sum``          ``nn.MSELoss(reduction="sum")``    2 I
``cross_entropy_mean``    ``nn.CrossEntropyLoss()``          ⊕ₐ (diag pₐ − pₐpₐᵀ)/m
``cross_entropy_sum``     ``nn.CrossEntropyLoss("sum")``     ⊕ₐ (diag pₐ − pₐpₐᵀ)
``causal_lm``             next-token cross-entropy (HF)      ⊕ₐ (diag pₐ − pₐpₐᵀ)/m
========================  =================================  =======================

For softmax cross-entropy S = (diag √p − p √pᵀ)/√m per row (√m dropped for "sum").
The paper's NTK Θ = J Jᵀ/(km) coincides with G for the paper's MSE.

Rows are samples, or tokens for a sequence model's (b, t, v) outputs (one row per token, see
:func:`lrphase.curvature.jacobian.output_rows`). A row whose label is ``IGNORE_INDEX`` (−100,
as Hugging Face pads and masks labels) is left out of the loss, so its block of H is 0, and m
counts the rows that are not ignored: for a language model, m is the number of unmasked tokens
in the batch, as in ``nn.CrossEntropyLoss()``'s mean. ``causal_lm`` first shifts the labels one
token left (row t is scored against label t+1; the last row of each sequence has none), as
Hugging Face's causal language models do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..vocabulary import LossKind, Reduction


@dataclass(frozen=True)
class Loss:
    """A supported training loss: its value, its target encoding and its Hessian factor S."""

    name: str
    formula: str
    kind: LossKind
    reduction: Reduction
    shift: bool = False  # labels shifted one token left: next-token prediction

    @property
    def is_cross_entropy(self) -> bool:
        """Whether this is a softmax cross-entropy loss."""
        return self.kind == "cross_entropy"

    def mse_hessian_scale(self, m: int, k: int) -> float:
        """The c in H = c·I for the MSE losses."""
        return {"paper": 1.0 / (k * m), "mean": 2.0 / (k * m), "sum": 2.0}[self.reduction]

    def row_weights(self, target: torch.Tensor) -> torch.Tensor | None:
        """1 for the rows the loss counts and 0 for ignored ones (None: every row counts)."""
        if not self.is_cross_entropy or target.dtype.is_floating_point:
            return None
        counted = target != IGNORE_INDEX
        return None if bool(counted.all()) else counted.to(torch.get_default_dtype())

    def sqrt_hessian(
        self, out: torch.Tensor, *, samples: int | None = None, weights: torch.Tensor | None = None
    ) -> tuple[Any, Any]:
        """Return the maps u ↦ S u and z ↦ Sᵀ z for outputs ``out`` of shape (m, k).

        ``samples`` is the m of the normalization when ``out`` is one shard of a larger batch;
        ``weights`` (see :meth:`row_weights`) zero the ignored rows, and m then counts the others.
        """
        k = out.shape[1]
        m = samples or (int(weights.sum().item()) if weights is not None else out.shape[0])
        if self.kind == "mse":
            c = math.sqrt(self.mse_hessian_scale(m, k))
            return (lambda u: c * u), (lambda z: c * z)
        p = torch.softmax(out.detach(), dim=1)
        sqrt_p = p.sqrt() if weights is None else p.sqrt() * weights.to(p).unsqueeze(1)
        scale = 1.0 / math.sqrt(m) if self.reduction == "mean" else 1.0

        def apply(u: torch.Tensor) -> torch.Tensor:  # S u = (√p∘u − p (√p·u))·scale
            return scale * (sqrt_p * u - p * (sqrt_p * u).sum(dim=1, keepdim=True))

        def apply_t(z: torch.Tensor) -> torch.Tensor:  # Sᵀ z = (√p∘z − √p (p·z))·scale
            return scale * (sqrt_p * z - sqrt_p * (p * z).sum(dim=1, keepdim=True))

        return apply, apply_t

    def prepare_targets(self, y: Any, out: torch.Tensor) -> torch.Tensor:
        """Targets in the form the loss needs (one-hot for integer labels under MSE), checked to be finite."""
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(y)
        y = y.to(out.device)
        if y.dtype.is_floating_point and not bool(torch.isfinite(y).all()):
            bad = int((~torch.isfinite(y)).sum())
            raise InputError(
                f"the targets of a batch contain NaN or inf ({bad} of {y.numel()} values): fix or drop those samples' labels"
            )
        m, k = out.shape
        if self.shift:
            if y.dim() != 2 or y.numel() != m:
                raise InputError(
                    f"a causal language model needs labels of shape (batch, sequence) matching its {m} output tokens, "
                    f"got {tuple(y.shape)}"
                )
            y = torch.cat([y[:, 1:], torch.full_like(y[:, :1], IGNORE_INDEX)], dim=1)
        if self.kind == "cross_entropy":
            if y.dtype.is_floating_point and y.shape == out.shape:
                return y.to(out.dtype)
            if y.dtype.is_floating_point or y.reshape(-1).shape[0] != m:
                fix = (
                    "convert class labels with .long() (or use an MSE loss for regression targets)"
                    if y.dtype.is_floating_point and y.numel() == m
                    else "give one label, or one probability per class, per sample"
                )
                raise InputError(
                    f"cross_entropy needs integer class labels (torch.long) of shape ({m},) or class probabilities of shape "
                    f"{tuple(out.shape)}, got {str(y.dtype).removeprefix('torch.')} of shape {tuple(y.shape)}: {fix}"
                )
            return _class_labels(y, m, k)
        if not y.dtype.is_floating_point and y.reshape(-1).shape[0] == m and k > 1:
            return F.one_hot(_class_labels(y, m, k), k).to(out.dtype)
        if y.numel() != m * k:
            raise InputError(f"targets of shape {tuple(y.shape)} do not match model outputs of shape {tuple(out.shape)}")
        return y.reshape(m, k).to(out.dtype)

    def value(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss value, with this loss's normalization."""
        if self.kind == "cross_entropy":
            return F.cross_entropy(out, target, reduction=self.reduction)
        sq = (out - target).pow(2)
        if self.reduction == "sum":
            return sq.sum()
        return sq.mean() / 2 if self.reduction == "paper" else sq.mean()


def _class_labels(y: torch.Tensor, m: int, k: int) -> torch.Tensor:
    """Integer labels as a (m,) long tensor, checked to lie in [0, k) or be ``IGNORE_INDEX``."""
    y = y.reshape(m).long()
    counted = y[y != IGNORE_INDEX]
    if counted.numel() == 0:
        raise InputError(f"every label of a batch is {IGNORE_INDEX} (ignored): give batches with some labels to learn")
    if counted.min() < 0 or counted.max() >= k:
        raise InputError(
            f"class labels must lie in [0, {k}) for a model with {k} outputs (or be {IGNORE_INDEX}, ignored); "
            f"got {counted.min().item()}..{counted.max().item()}"
        )
    return y


IGNORE_INDEX = -100  # the label of a row the loss leaves out, as in nn.CrossEntropyLoss and Hugging Face
PAPER_MSE = Loss("mse", "L = 1/(2km) Σ (f − y)²  (paper)", "mse", "paper")
_BY_NAME = {
    "mse": PAPER_MSE,
    "mse_loss_mean": Loss("mse_loss_mean", "nn.MSELoss(): L = 1/(km) Σ (f − y)²", "mse", "mean"),
    "mse_loss_sum": Loss("mse_loss_sum", "nn.MSELoss(reduction='sum'): L = Σ (f − y)²", "mse", "sum"),
    "cross_entropy_mean": Loss(
        "cross_entropy_mean", "nn.CrossEntropyLoss(): L = −1/m Σₐ log softmax(fₐ)_{yₐ}", "cross_entropy", "mean"
    ),
    "cross_entropy_sum": Loss(
        "cross_entropy_sum", "nn.CrossEntropyLoss(reduction='sum'): L = −Σₐ log softmax(fₐ)_{yₐ}", "cross_entropy", "sum"
    ),
    "causal_lm": Loss(
        "causal_lm",
        "next-token cross-entropy: L = −1/m Σₜ log softmax(fₜ)_{yₜ₊₁} over unmasked tokens",
        "cross_entropy",
        "mean",
        shift=True,
    ),  # fmt: skip
}
_ALIASES = {"cross_entropy": "cross_entropy_mean", "ce": "cross_entropy_mean", "paper_mse": "mse"}
LOSS_NAMES = ("mse", "cross_entropy", *(n for n in _BY_NAME if n != "mse"))


def resolve_loss(loss: Any) -> Loss:
    """Map ``None``, a loss name or an ``nn.MSELoss``/``nn.CrossEntropyLoss`` instance to a :class:`Loss`."""
    if loss is None:
        return PAPER_MSE
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        key = _ALIASES.get(loss.lower(), loss.lower())
        if key not in _BY_NAME:
            raise InputError(f"unknown loss '{loss}': use one of {', '.join(LOSS_NAMES)}")
        return _BY_NAME[key]
    if isinstance(loss, nn.MSELoss):
        return _module_loss("mse_loss", loss.reduction)
    if isinstance(loss, nn.CrossEntropyLoss):
        if loss.weight is not None:
            raise InputError("CrossEntropyLoss with class weights is not supported: drop `weight` for the estimate")
        return _module_loss("cross_entropy", loss.reduction)
    raise InputError(f"unsupported loss {type(loss).__name__}: use 'mse', 'cross_entropy', nn.MSELoss() or nn.CrossEntropyLoss()")


def _module_loss(prefix: str, reduction: str) -> Loss:
    if reduction not in ("mean", "sum"):
        raise InputError(f"loss reduction '{reduction}' is not supported: use 'mean' or 'sum'")
    return _BY_NAME[f"{prefix}_{reduction}"]
