"""Matrix-free products with the Jacobian J = ∂f/∂θ of a model's outputs on one batch.

``f(θ)`` is the model's output on a fixed batch as rows of shape (m, k) (see :func:`output_rows`);
θ are the trainable parameters. The primal is paid once per batch: one forward pass records the
autograd graph, and every Jᵀu is a backward pass through it (``torch.autograd.grad`` with
``retain_graph``). J v is computed by one of three strategies (``mode``):

* ``"double"`` — the vjp of the (linear) map u ↦ Jᵀu, built once with ``create_graph``;
* ``"jvp"`` — forward mode (``torch.autograd.forward_ad``), recomputing the primal each product;
* ``"linearize"`` — ``torch.func.linearize``: a traced forward-mode graph, primal reused.

``"auto"`` times the first products of the real computation — forward mode, then the double
backward, then forward mode again (its first call in a process pays one-off set-up) — and
keeps the faster, so choosing wastes no product (``linearize`` costs a one-off import of
``torch._dynamo``, so it is explicit only).
When an operation has no forward-mode rule, forward modes fall back to ``"double"``.
Plain autograd is used rather than ``torch.func.vjp``, whose first call imports
``torch._dynamo`` (about a second of start-up for a command-line tool).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from ..errors import InputError
from ..vocabulary import JVP_MODES
from .data import Inputs

AUTO_TRIALS = ("jvp", "double", "jvp")
Vector = tuple[torch.Tensor, ...]


class JacobianProducts:
    """J and Jᵀ products for ``model`` on input ``x``; outputs are rows (m, k) as :func:`output_rows` makes them.

    ``model`` must already be a prepared private copy (see :mod:`lrphase.curvature.isolation`);
    parameter-space vectors are tuples of tensors shaped like the trainable parameters.
    """

    def __init__(self, model: nn.Module, x: Any, *, mode: str | None = "double", seed: int = 0) -> None:
        self._model = model
        self._x = Inputs.of(x)
        self._seed = seed
        named = trainable(model)
        if not named:
            raise InputError("the model has no trainable parameters: set requires_grad=True on the weights to train")
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        with torch.enable_grad(), math_attention():
            self._out = seeded_forward(model, self._x, seed=seed)
        self.output = self._out.detach()
        self.fallback: str | None = None
        self.mode = mode or "none"  # "none": only Jᵀu will be asked for
        self._trials = list(AUTO_TRIALS) if mode == "auto" else []
        self._timings: dict[str, float] = {}
        if mode is not None and mode != "auto":  # None: only Jᵀu will be needed
            self.use(mode)

    def use(self, mode: str) -> None:
        """Switch the J·v strategy (one of ``"double"``, ``"jvp"``, ``"linearize"``)."""
        self.mode = mode
        try:
            with _quiet_torch_internals():
                self._jvp_impl = self._build(mode)
        except (RuntimeError, NotImplementedError) as exc:
            self._fall_back(exc)

    def _fall_back(self, exc: Exception) -> None:
        if self.mode == "double":
            raise exc
        self.fallback = f"{self.mode} unavailable ({str(exc).splitlines()[0][:120]}); used double"
        self.mode = "double"
        self._jvp_impl = self._build("double")

    def _build(self, mode: str) -> Callable[[Vector], torch.Tensor]:
        if mode == "double":
            return self._double_backward()
        if mode == "jvp":
            return self._forward_mode
        if mode == "linearize":
            return self._linearized()
        raise ValueError(f"mode must be one of {JVP_MODES[1:]}, got {mode!r}")

    def _double_backward(self) -> Callable[[Vector], torch.Tensor]:
        with torch.enable_grad():
            u = torch.zeros_like(self.output, requires_grad=True)
            grads = torch.autograd.grad(self._out, self._params, u, create_graph=True, allow_unused=True)
        pairs = [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]

        def jvp(v: Vector) -> torch.Tensor:
            if not pairs:
                return torch.zeros_like(self.output)
            (result,) = torch.autograd.grad(
                [g for g, _ in pairs], u, [v[i] for _, i in pairs], retain_graph=True, allow_unused=True
            )
            return torch.zeros_like(self.output) if result is None else result

        return jvp

    def _forward_mode(self, v: Vector) -> torch.Tensor:
        return forward_mode_jvp(self._model, self._x, v, seed=self._seed)

    def _linearized(self) -> Callable[[Vector], torch.Tensor]:
        from torch.func import linearize

        primals = {n: p.detach() for n, p in zip(self._names, self._params, strict=True)}
        with math_attention():
            _, jvp_fn = linearize(lambda p: seeded_forward(self._model, self._x, seed=self._seed, params=p), primals)
        return lambda v: jvp_fn(dict(zip(self._names, v, strict=True)))

    def _timed_trial(self, v: Vector) -> torch.Tensor:
        """One product of ``"auto"``'s next trial mode, timed; after the last, keep the fastest."""
        mode = self._trials.pop(0)
        if mode != self.mode:
            self.use(mode)
        if self.mode != mode:  # no forward-mode rule: double it is
            self._trials.clear()
            self.fallback = None
            return self._jvp_impl(v)
        _synchronize(self.output)
        start = time.perf_counter()
        try:
            with _quiet_torch_internals():
                result = self._jvp_impl(v)
        except (RuntimeError, NotImplementedError) as exc:  # an op without this mode's rule: double it is
            self._trials.clear()
            self._fall_back(exc)
            return self._jvp_impl(v)
        _synchronize(self.output)
        self._timings[mode] = time.perf_counter() - start
        if not self._trials:
            best = min(self._timings, key=lambda name: self._timings[name])
            if best != self.mode:
                self.use(best)
        return result

    def vjp(self, u: torch.Tensor) -> Vector:
        """Jᵀ u for u of shape (m, k): a parameter-space vector."""
        grads = torch.autograd.grad(self._out, self._params, u, retain_graph=True, allow_unused=True)
        return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, self._params, strict=True))

    def jvp(self, v: Vector) -> torch.Tensor:
        """J v for a parameter-space vector v, as an (m, k) tensor."""
        if self._trials:
            return self._timed_trial(v)
        try:
            with _quiet_torch_internals():
                return self._jvp_impl(v)
        except (RuntimeError, NotImplementedError) as exc:
            self._fall_back(exc)
            return self._jvp_impl(v)


def trainable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The model's trainable parameters, by name, in a fixed order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def seeded_forward(model: nn.Module, inputs: Inputs, *, seed: int, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """F on a batch under a fixed seed, as rows (m, k) (:func:`output_rows`); ``params`` replace the model's own."""
    first = next(model.parameters(), None)
    devices = [first.device] if first is not None and first.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed: it also queues a lazy CUDA seeding, with a traceback
        for device in devices:
            torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()].manual_seed(
                seed
            )
        if params is None:
            out = inputs.call(model)
        else:
            out = functional_call(model, params, inputs.args, dict(inputs.kwargs))
    return output_rows(select_output(out))


def select_output(out: Any) -> torch.Tensor:
    """The output tensor of a forward pass: itself, else ``logits`` (``ModelOutput``, mapping), else its first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    members = list(out.values()) if isinstance(out, Mapping) else list(out) if isinstance(out, (tuple, list)) else []
    first = next((m for m in members if isinstance(m, torch.Tensor)), None)
    if first is None:
        raise InputError(
            f"the model returned a {type(out).__name__} with no tensor in it; return the outputs as a tensor "
            '(or set `output = "name"` in the model file to pick a member)'
        )
    return first


def output_rows(out: torch.Tensor) -> torch.Tensor:
    """Outputs as rows (m, k): (m,) → (m, 1); (b, t, v) → (b·t, v), one row per token; otherwise (b, …) → (b, k).

    A sequence model's rows are its tokens, so a cross-entropy reads each as a softmax over the
    last dimension; under MSE the layout does not change the Gauss–Newton matrix (H = c·I).
    """
    if out.dim() == 1:
        return out.reshape(-1, 1)
    if out.dim() == 3:
        return out.reshape(-1, out.shape[-1])
    return out.reshape(out.shape[0], -1)


def math_attention() -> contextlib.AbstractContextManager[None]:
    """Scaled-dot-product attention by its math backend, whose ops all have forward-mode and double-backward rules.

    The fused kernels (flash attention on CPU, at dropout 0 or in eval mode) have neither, so no
    J·v mode could differentiate them twice; the math backend computes the same attention.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: no fused CPU kernel to avoid
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def forward_mode_jvp(model: nn.Module, inputs: Inputs, v: Vector, *, seed: int) -> torch.Tensor:
    """J v by forward-mode AD, keeping no autograd graph (memory of a forward pass)."""
    with torch.no_grad(), fwAD.dual_level(), _quiet_torch_internals(), math_attention():
        duals = {n: fwAD.make_dual(p.detach(), t) for (n, p), t in zip(trainable(model), v, strict=True)}
        out = seeded_forward(model, inputs, seed=seed, params=duals)
        tangent = fwAD.unpack_dual(out).tangent
    return torch.zeros_like(out) if tangent is None else tangent


def _synchronize(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)


@contextmanager
def _quiet_torch_internals() -> Iterator[None]:
    """Silence torch's internal warnings from forward AD's decompositions and linearize's tracer."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Attempted to insert a get_attr Node", category=UserWarning)
        yield
