"""The real-model examples (one per library, as its users write them) and a dense float64 λ₀ for any of them.

Not a script: ``real_models.py`` and ``speed.py`` import it as a sibling (see ``common.py``).

* ``LIBRARY_EXAMPLES`` / :func:`load` — the example files of ``examples/`` written with
  transformers, timm, torchvision, Lightning and plain ``torch.nn`` (LSTM, EmbeddingBag), each
  with the loss its library computes (:attr:`LibraryExample.library_loss`) and the cap on the
  whole-data float64 batch that keeps its dense Jacobian small; :func:`load` gives the spec
  (the file run with the global RNG seeded by ``SEED``) and the batch lrphase itself draws.
* :func:`dense_top` — λ_max(Jᵀ H J) in float64 for any model and batch, written independently of
  lrphase's curvature code: J of the model's output (a ``ModelOutput``'s ``logits``) row by row
  with plain autograd on a float64 copy, H the autograd Hessian of the loss written as the
  library writes it (``F.cross_entropy``, transformers' ``ForCausalLMLoss``); the eigenvalues
  are those of the smaller of Jᵀ H J (p × p) and H^½ J Jᵀ H^½ (m·k × m·k). The copy is prepared as
  lrphase defines the measured network: eval mode for every module but train-mode BatchNorm,
  which keeps using batch statistics without updating its running ones.
  :func:`dense_bytes` is its memory, to check against a budget first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from common import ROOT, SEED, Example
from lrphase.cli.model_file import load_spec
from lrphase.curvature.data import Inputs, make_batches
from lrphase.curvature.losses import resolve_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (the model's raw logits, the batch's labels) → loss


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``nn.CrossEntropyLoss()`` / ``F.cross_entropy`` on (batch, classes) logits, as torch users and timm write it."""
    return F.cross_entropy(logits, labels)


def sequence_classification(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What ``BertForSequenceClassification`` computes from ``labels`` (single-label classification)."""
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))


def causal_lm(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What a transformers causal LM computes from ``labels``: ``ForCausalLMLoss`` (shift by one, ignore -100).

    ``ForCausalLMLoss`` upcasts the logits with ``.float()``, which would round a float64 reference
    to float32 (relative errors ~1e-7): the logits go in as a view whose ``.float()`` keeps float64.
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits.as_subclass(_KeepFloat64), labels, vocab_size=logits.shape[-1])


class _KeepFloat64(torch.Tensor):
    """A tensor whose ``.float()`` leaves float64 as it is (autograd sees the same tensor); every other op gives plain tensors."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    def float(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self if self.dtype == torch.float64 else super().float(*args, **kwargs)


@dataclass(frozen=True)
class LibraryExample:
    path: str  # relative to ROOT
    library: str
    library_loss: LossFn
    full_batch_cap: int  # largest whole-data float64 batch: keeps J (m·k × p) within the default 2 GiB budget


LIBRARY_EXAMPLES = {
    "bert": LibraryExample("examples/hf_bert_classifier.py", "transformers", sequence_classification, 64),
    "gpt2": LibraryExample("examples/hf_gpt2_causal_lm.py", "transformers", causal_lm, 2),
    "vit": LibraryExample("examples/timm_vit.py", "timm", cross_entropy, 8),
    "mobilenet": LibraryExample("examples/torchvision_mobilenet.py", "torchvision", cross_entropy, 8),
    "lstm": LibraryExample("examples/lstm_classifier.py", "torch.nn", cross_entropy, 128),
    "embeddingbag": LibraryExample("examples/embeddingbag_text.py", "torch.nn", cross_entropy, 256),
    "lightning": LibraryExample("examples/lightning_digits.py", "lightning", cross_entropy, 256),
    "digits_momentum": LibraryExample("examples/digits_momentum.py", "torch.nn", cross_entropy, 128),
}


def dataset_size(data: Any) -> int:
    """The number of samples of a model file's ``data`` (a DataLoader's dataset, tensors, a mapping of columns)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, Mapping):
        return len(next(iter(data.values())))
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return len(data[0])
    return len(data)


def load(name: str, batch_size: int | None = None) -> Example:
    """The example's spec (its file run with the global RNG seeded by ``SEED``) and the one batch lrphase draws.

    ``batch_size`` None: the file's ``batch_size``, else its DataLoader's, else 32. The batch is
    the one ``estimate_lambda0(..., batch_size=B, batches=1, seed=SEED)`` draws; ``x`` may be a
    tensor, a tuple of inputs or :class:`~lrphase.curvature.data.Inputs` (keyword inputs).
    """
    entry = LIBRARY_EXAMPLES[name]
    spec = load_spec(str(ROOT / entry.path), seed=SEED)
    if batch_size is None:
        batch_size = spec.defaults.get("batch_size") or getattr(spec.data, "batch_size", None) or 32
    ((x, y),) = make_batches(spec.data, batch_size=int(batch_size), batches=1, seed=SEED)
    return Example(name, entry.path, spec, int(batch_size), resolve_loss(spec.loss), x, y)


# --------------------------------------------------------------------------- the dense reference


def measured_copy(model: nn.Module) -> nn.Module:
    """A float64 copy as the network lrphase measures: every module in eval mode but train-mode BatchNorm.

    Train-mode BatchNorm keeps normalizing with batch statistics and stops updating running ones
    (the same function, without the in-place buffer update); dropout, DropPath and the attention
    dropout that modules gate on ``self.training`` are off.
    """
    net = copy.deepcopy(model).double()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
        elif not isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.training = False
    return net


def logits_of(out: Any) -> torch.Tensor:
    """The output a library trains on: a tensor itself, a ``ModelOutput``'s ``logits``, a tuple's first member."""
    if isinstance(out, torch.Tensor):
        return out
    if getattr(out, "logits", None) is not None:
        return out.logits
    return out[0]


def forward_logits(model: nn.Module, x: Any) -> torch.Tensor:
    """The float64 copy's logits on the batch's inputs (math attention: every op differentiable twice)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    inputs = Inputs.of(x).to(torch.device("cpu"), torch.float64)
    with sdpa_kernel(SDPBackend.MATH):
        return logits_of(inputs.call(model))


def output_size(model: nn.Module, x: Any) -> int:
    """m·k: the number of entries of the model's logits on the batch."""
    with torch.no_grad():
        return forward_logits(measured_copy(model), x).numel()


def dense_bytes(rows: int, params: int) -> int:
    """Memory of :func:`dense_top` for J of ``rows`` × ``params``: J, and H with Gram matrices (or Jᵀ H J), float64."""
    small = min(rows, params)
    return 8 * (rows * params + 4 * small * small + 2 * rows * rows) + 256 * 2**20


def dense_top(model: nn.Module, x: Any, y: torch.Tensor, library_loss: LossFn, *, chunk_bytes: int = 256 * 2**20) -> float:
    """λ_max(Jᵀ H J) in float64: J (m·k × p) of the logits, H the Hessian of ``library_loss(logits, y)`` in logit space.

    H comes first, row by row (H e_i by a backward pass through the loss's gradient); the rows
    where H vanishes (ignored tokens) are dropped, and J is built only for the others, in chunks
    of rows by batched backward passes. H^½ is taken block by block (the connected components of
    H's non-zero pattern: one block per sample or token for cross-entropy).
    """
    net = measured_copy(model)
    params = [p for p in net.parameters() if p.requires_grad]
    p_total = sum(p.numel() for p in params)
    logits = forward_logits(net, x)
    f = logits.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(library_loss(f, y), f, create_graph=True)
    grad = grad.reshape(-1)
    rows = grad.numel()
    blocks = [_unit_rows(s, min(rows, s + 512), rows) for s in range(0, rows, 512)]
    hess = torch.cat([_batched_grads(grad, [f], b, batched=False) for b in blocks])  # a loop beats vmap on these cheap passes
    seen = torch.nonzero(hess.abs().sum(dim=1) > 0).flatten()
    hess = hess[seen][:, seen]
    hess = (hess + hess.T) / 2

    flat = logits.reshape(-1)
    jac = torch.empty(len(seen), p_total, dtype=torch.float64)
    chunk = max(1, min(len(seen), chunk_bytes // (8 * p_total)))
    for start in range(0, len(seen), chunk):
        picked = seen[start : start + chunk]
        basis = torch.zeros(len(picked), rows, dtype=torch.float64)
        basis[torch.arange(len(picked)), picked] = 1.0
        jac[start : start + chunk] = _batched_grads(flat, params, basis)
    del logits, flat

    if len(seen) <= p_total:  # H^½ K H^½ with K = J Jᵀ
        root = _psd_root(hess)
        del hess
        matrix = root @ (jac @ jac.T) @ root
    else:  # Jᵀ H J, p × p
        matrix = torch.empty(p_total, p_total, dtype=torch.float64)
        step = max(1, chunk_bytes // (8 * len(seen)))
        for s in range(0, p_total, step):
            matrix[:, s : s + step] = jac.T @ (hess @ jac[:, s : s + step])
    return _top_eigenvalue((matrix + matrix.T) / 2)


def _psd_root(hess: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a PSD matrix, eigendecomposed block by block (its non-zero pattern's components)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    count, labels = connected_components(csr_matrix((hess != 0).numpy()), directed=False)
    labels = torch.from_numpy(labels)
    root = torch.zeros_like(hess)
    for block in range(count):
        idx = torch.nonzero(labels == block).flatten()
        values, vectors = torch.linalg.eigh(hess[idx][:, idx])
        root[idx[:, None], idx[None, :]] = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    return root


def _batched_grads(
    output: torch.Tensor, inputs: list[torch.Tensor], cotangents: torch.Tensor, *, batched: bool = True
) -> torch.Tensor:
    """Rows vᵀ ∂output/∂inputs for each row v of ``cotangents``, flattened over ``inputs``: one batched backward, or a loop."""
    if batched:
        try:
            grads = torch.autograd.grad(output, inputs, cotangents, retain_graph=True, is_grads_batched=True, allow_unused=True)
            return torch.cat([_flat_grad(g, p, len(cotangents)) for g, p in zip(grads, inputs, strict=True)], dim=1)
        except (RuntimeError, NotImplementedError):  # an op without a batching rule: one row at a time
            pass
    rows = []
    for v in cotangents:
        grads = torch.autograd.grad(output, inputs, v, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([_flat_grad(g, p, None) for g, p in zip(grads, inputs, strict=True)]))
    return torch.stack(rows)


def _unit_rows(start: int, stop: int, size: int) -> torch.Tensor:
    """Rows ``start:stop`` of the ``size`` × ``size`` identity, float64."""
    basis = torch.zeros(stop - start, size, dtype=torch.float64)
    basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
    return basis


def _flat_grad(g: torch.Tensor | None, p: torch.Tensor, batch: int | None) -> torch.Tensor:
    if batch is None:
        return torch.zeros(p.numel(), dtype=torch.float64) if g is None else g.reshape(-1)
    return torch.zeros(batch, p.numel(), dtype=torch.float64) if g is None else g.reshape(batch, -1)


def _top_eigenvalue(matrix: torch.Tensor) -> float:
    """The largest eigenvalue of a dense symmetric matrix: every eigenvalue up to 3000, else ARPACK to machine precision."""
    if len(matrix) <= 3000:
        return torch.linalg.eigvalsh(matrix)[-1].item()
    from scipy.sparse.linalg import eigsh

    return float(eigsh(matrix.numpy(), k=1, which="LA", tol=0, v0=torch.ones(len(matrix), dtype=torch.float64).numpy())[0][0])

