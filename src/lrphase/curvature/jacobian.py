"""Matrix-free products with the Jacobian J = ∂f/∂θ of a model's outputs on one batch.

``f(θ)`` is the model's output on a fixed batch as rows of shape (m, k) (see :func:`output_rows`);
θ are the trainable parameters. The primal is paid once per batch: one forward pass records the
autograd graph, and every Jᵀu is a backward pass through it (``torch.autograd.grad`` with
``retain_graph``). J v is computed by one of three strategies (``mode``):

* ``"jvp"`` — forward mode (``torch.autograd.forward_ad``), recomputing the primal each product;
* ``"double"`` — the vjp of the (linear) map u ↦ Jᵀu, built once with ``create_graph``;
* ``"linearize"`` — a traced forward-mode graph whose primal is computed once (as ``torch.func.linearize``).

A mode fails on an operation without its derivative rule (oneDNN's LSTM has no forward-mode
rule, ``hardsigmoid``'s backward no derivative); the next mode in ``MODES`` order that works is
used instead, decided once per model (the failures are remembered with the model) and explained
by ``fallback``. When none works, :class:`~lrphase.errors.InputError` names the operation.

``"auto"`` chooses between forward mode and the double backward with the first products of
the real computation, so choosing wastes no product: the two take turns for ``AUTO_ROUNDS``
products each, and the double backward is kept only when its fastest product beats forward
mode's fastest by ``AUTO_MARGIN`` on the wall clock and (on a CPU) on the process's CPU clock,
which another process's load does not inflate. A product slowed by set-up or by other work
cannot flip the choice; and forward mode keeps no graph, so a tie goes to it. ``linearize``
costs a one-off import of ``torch._dynamo``, so ``auto`` uses it only when the other two fail.
Plain autograd is used rather than ``torch.func.vjp``, whose first call imports
``torch._dynamo`` (about a second of start-up for a command-line tool).
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputError
from ..vocabulary import JVP_MODES
from .data import Inputs

MODES = ("jvp", "double", "linearize")  # the fallback order
AUTO_MODES = ("jvp", "double")  # timed by ``auto``; forward mode first, as it keeps no graph
AUTO_ROUNDS = 3  # timed products per mode
AUTO_MARGIN = 0.8  # the double backward must take at most this fraction of forward mode's time
FAILURES = (RuntimeError, NotImplementedError)  # what an operation without a derivative rule raises
Vector = tuple[torch.Tensor, ...]

# The operation each J·v mode failed on, per model (a private copy): every later batch skips that mode.
_UNSUPPORTED: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()


class JacobianProducts:
    """J and Jᵀ products for ``model`` on input ``x``; outputs are rows (m, k) as :func:`output_rows` makes them.

    ``model`` must already be a prepared private copy (see :mod:`lrphase.curvature.isolation`);
    parameter-space vectors are tuples of tensors shaped like the trainable parameters.
    ``mode`` is a J·v mode, ``"auto"``, or None when only Jᵀu will be asked for.
    """

    def __init__(self, model: nn.Module, x: Any, *, mode: str | None = "double", seed: int = 0) -> None:
        if mode is not None and mode not in JVP_MODES:
            raise ValueError(f"mode must be one of {JVP_MODES}, got {mode!r}")
        self._model = model
        self._x = Inputs.of(x)
        self._seed = seed
        named = trainable(model)
        if not named:
            raise InputError("the model has no trainable parameters: set requires_grad=True on the weights to train")
        self._params = [p for _, p in named]
        with torch.enable_grad(), math_attention():
            self._out = seeded_forward(model, self._x, seed=seed)
        self.output = self._out.detach()
        self._requested = mode
        self._order = MODES if mode in (None, "auto") else (mode, *(m for m in MODES if m != mode))
        self._failed = _UNSUPPORTED.setdefault(model, {})
        self._candidates = [m for m in self._order if m not in self._failed] if mode is not None else []
        if mode is not None and not self._candidates:
            raise self._unsupported()
        timed = [m for m in self._candidates if m in AUTO_MODES]
        self._timer = ModeTimer(timed) if mode == "auto" and len(timed) > 1 else None
        self._impls: dict[str, Callable[[Vector], torch.Tensor]] = {}

    @property
    def mode(self) -> str:
        """The J·v mode in use: ``"none"`` when only Jᵀu is computed; under ``auto``, the choice so far."""
        if self._requested is None:
            return "none"
        if self._timer is not None:
            return self._timer.choice()
        return self._candidates[0]

    @property
    def fallback(self) -> str | None:
        """Why J·v uses another mode than asked for (None when it does not)."""
        if self._requested is None:
            return None
        used = self._order.index(self.mode)
        failed = [f"{m} unavailable ({_reason(self._failed[m])})" for m in self._order[:used] if m in self._failed]
        return "; ".join([*failed, f"used {self.mode}"]) if failed else None

    def vjp(self, u: torch.Tensor) -> Vector:
        """Jᵀ u for u of shape (m, k): a parameter-space vector."""
        grads = torch.autograd.grad(self._out, self._params, u, retain_graph=True, allow_unused=True)
        return tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, self._params, strict=True))

    def jvp(self, v: Vector) -> torch.Tensor:
        """J v for a parameter-space vector v, as an (m, k) tensor, in the first mode that works."""
        while True:
            mode = self._timer.pending if self._timer is not None and self._timer.pending else self.mode
            try:
                with _quiet_torch_internals():
                    return self._product(mode, v)
            except torch.cuda.OutOfMemoryError:
                raise
            except FAILURES as exc:
                self._drop(mode, exc)

    def _product(self, mode: str, v: Vector) -> torch.Tensor:
        if mode not in self._impls:
            self._impls[mode] = self._build(mode)
        if self._timer is None or self._timer.pending != mode:
            return self._impls[mode](v)
        _synchronize(self.output)
        start = _clock(self.output.is_cuda)
        result = self._impls[mode](v)
        _synchronize(result)
        self._timer.record(mode, [b - a for a, b in zip(start, _clock(self.output.is_cuda), strict=True)])
        if self._timer.pending is None:
            chosen = self._timer.choice()
            self._timer = None
            self._candidates.remove(chosen)
            self._candidates.insert(0, chosen)
            self._impls = {chosen: self._impls[chosen]}  # frees the double backward's graph when not kept
        return result

    def _drop(self, mode: str, exc: Exception) -> None:
        """Remember that ``mode`` fails on this model, and go on with the next one (none left: InputError)."""
        record_failure(self._model, mode, exc, self._out)
        self._candidates.remove(mode)
        self._impls.pop(mode, None)
        if self._timer is not None:
            self._timer.drop(mode)
            if self._timer.pending is None:
                self._timer = None
        if not self._candidates:
            raise self._unsupported() from exc

    def _unsupported(self) -> InputError:
        modes_of: dict[str, list[str]] = {}
        for mode in MODES:
            if mode in self._failed:
                modes_of.setdefault(self._failed[mode], []).append(mode)
        rules = " or ".join(f"{operation} ({', '.join(modes)})" for operation, modes in modes_of.items())
        return InputError(
            f"no J·v mode can differentiate this model: no derivative rule for {rules}; "
            "replace the layer that uses it, or report it"
        )

    def _build(self, mode: str) -> Callable[[Vector], torch.Tensor]:
        if mode == "double":
            return self._double_backward()
        if mode == "jvp":
            return self._forward_mode
        if mode == "linearize":
            return self._linearized()
        raise ValueError("these products were made for Jᵀu only (mode=None)")

    def _double_backward(self) -> Callable[[Vector], torch.Tensor]:
        with torch.enable_grad():
            u = torch.zeros_like(self.output, requires_grad=True)
            grads = torch.autograd.grad(self._out, self._params, u, create_graph=True, allow_unused=True)
        pairs = [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not all(_reaches([g.grad_fn for g, _ in pairs if g.grad_fn is not None], u)):  # a backward that records no graph
            raise RuntimeError("trying to differentiate twice a function that was marked with @once_differentiable")

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
        """Forward mode traced once (``make_fx``), its primal-only part folded into constants, as ``torch.func.linearize``.

        Unlike ``torch.func.linearize``, a constant that an in-place op of the graph overwrites
        (``Hardswish(inplace=True)``, the native GRU's gates) is restored before every product but the
        first: otherwise each product would start from the values the previous one left.
        """
        from torch.fx.experimental.const_fold import split_const_subgraphs
        from torch.fx.experimental.proxy_tensor import make_fx

        def tangent_of_output(tangents: list[torch.Tensor]) -> torch.Tensor:
            return forward_mode_jvp(self._model, self._x, tuple(tangents), seed=self._seed)

        folded = split_const_subgraphs(make_fx(tangent_of_output)([p.new_empty(()).expand_as(p) for p in self._params]))
        with torch.no_grad():
            folded.run_folding()
        overwritten: list[tuple[torch.Tensor, torch.Tensor]] | None = None

        def jvp(v: Vector) -> torch.Tensor:
            nonlocal overwritten
            with torch.no_grad():
                if overwritten is None:
                    with _Overwrites(list(folded.parameters())) as watch:
                        result = folded(*v)[0]  # the graph returns its outputs flattened
                    overwritten = watch.originals
                    return result
                for constant, original in overwritten:
                    constant.copy_(original)
                return folded(*v)[0]

        return jvp


class _Overwrites(TorchDispatchMode):
    """Keeps the value of each of ``constants`` that an in-place op is about to overwrite (through any alias)."""

    def __init__(self, constants: list[torch.Tensor]) -> None:
        super().__init__()
        self._by_storage = {c.untyped_storage().data_ptr(): c for c in constants if c.numel() and not c.is_meta}
        self.originals: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func._schema.is_mutable:
            values = [*args, *(kwargs.get(a.name) for a in func._schema.arguments[len(args) :])]
            for argument, value in zip(func._schema.arguments, values, strict=True):
                if argument.alias_info is not None and argument.alias_info.is_write and isinstance(value, torch.Tensor):
                    constant = self._by_storage.pop(value.untyped_storage().data_ptr(), None)
                    if constant is not None:
                        self.originals.append((constant, constant.clone()))
        return func(*args, **kwargs)


class ModeTimer:
    """``auto``'s timing of J·v modes, on products the computation needs anyway.

    The modes take turns for ``rounds`` products each; a mode's time is its fastest product on
    each clock (set-up and other processes only ever slow a product down). The first mode is
    kept unless another is faster by ``margin`` on every clock.
    """

    def __init__(self, modes: Sequence[str], rounds: int = AUTO_ROUNDS, margin: float = AUTO_MARGIN) -> None:
        self._modes = list(modes)
        self._queue = [m for _ in range(rounds) for m in modes]
        self._margin = margin
        self._fastest: dict[str, list[float]] = {}

    @property
    def pending(self) -> str | None:
        """The mode to time next (None once every product is timed)."""
        return self._queue[0] if self._queue else None

    def record(self, mode: str, seconds: Sequence[float]) -> None:
        """One product of ``mode`` (the pending one) took ``seconds`` on each clock."""
        self._queue.remove(mode)
        best = self._fastest.get(mode)
        self._fastest[mode] = list(seconds) if best is None else [min(a, b) for a, b in zip(best, seconds, strict=True)]

    def drop(self, mode: str) -> None:
        """``mode`` does not work: time it no more."""
        self._modes.remove(mode)
        self._queue = [m for m in self._queue if m != mode] if len(self._modes) > 1 else []
        self._fastest.pop(mode, None)

    def choice(self) -> str:
        """The first mode, unless another beat it by the margin on every clock."""
        first = self._modes[0]
        reference = self._fastest.get(first)
        for other in self._modes[1:]:
            times = self._fastest.get(other)
            if (
                reference is not None
                and times is not None
                and all(t < self._margin * r for t, r in zip(times, reference, strict=True))
            ):
                return other
        return first


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


@contextmanager
def math_attention() -> Iterator[None]:
    """Attention by its math ops, which all have forward-mode and double-backward rules.

    The fused kernels have neither: scaled-dot-product attention's (flash attention on CPU, at
    dropout 0 or in eval mode) and the fast path that ``nn.TransformerEncoderLayer`` and
    ``nn.MultiheadAttention`` take in eval mode without autograd (as in forward mode). The math
    backend computes the same attention.
    """
    mha = getattr(torch.backends, "mha", None)  # older torch: no switch
    fastpath = mha.get_fastpath_enabled() if mha is not None else False
    with contextlib.ExitStack() as stack:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        except ImportError:  # torch < 2.3: no fused CPU kernel to avoid
            pass
        if mha is not None:
            mha.set_fastpath_enabled(False)
            stack.callback(mha.set_fastpath_enabled, fastpath)
        yield


def forward_mode_jvp(model: nn.Module, inputs: Inputs, v: Vector, *, seed: int) -> torch.Tensor:
    """J v by forward-mode AD, keeping no autograd graph (memory of a forward pass)."""
    with torch.no_grad(), fwAD.dual_level(), _quiet_torch_internals(), math_attention():
        duals = {n: fwAD.make_dual(p.detach(), t) for (n, p), t in zip(trainable(model), v, strict=True)}
        out = seeded_forward(model, inputs, seed=seed, params=duals)
        tangent = fwAD.unpack_dual(out).tangent
    return torch.zeros_like(out) if tangent is None else tangent


def unsupported_modes(model: nn.Module) -> Mapping[str, str]:
    """The J·v modes known to fail on ``model``, each with the operation it failed on."""
    return _UNSUPPORTED.get(model, {})


def record_failure(model: nn.Module, mode: str, exc: Exception, out: torch.Tensor | None = None) -> None:
    """Remember that J·v ``mode`` fails on ``model``, naming the operation from the error (and the graph of ``out``)."""
    _UNSUPPORTED.setdefault(model, {})[mode] = _operation(exc, out)


def _operation(exc: Exception, out: torch.Tensor | None) -> str:
    """The operation named in a failed mode's error; a custom autograd.Function by its class, found in ``out``'s graph."""
    text = str(exc).strip()
    for pattern in (r"forward AD with (\w+)", r"derivative for (?:aten::)?'?([\w.]+?)'? is not implemented"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    if "autograd.Function" in text or "once_differentiable" in text:
        names = _custom_functions(out) if out is not None else []
        return f"the custom autograd.Function {' and '.join(names)}" if names else "a custom autograd.Function"
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _reason(operation: str) -> str:
    """Why a mode failed, from what :func:`_operation` found: a missing rule, or torch's own words."""
    named = re.fullmatch(r"[\w.]+", operation) or operation.startswith(("the custom", "a custom"))
    return f"no rule for {operation}" if named else operation


def _synchronize(t: torch.Tensor) -> None:
    if t.is_cuda:
        torch.cuda.synchronize(t.device)


def _clock(cuda: bool) -> tuple[float, ...]:
    """Seconds on the wall clock and, for work on the CPU, on this process's CPU clock."""
    return (time.perf_counter(),) if cuda else (time.perf_counter(), time.process_time())


def _reaches(roots: list[Any], leaf: torch.Tensor) -> list[bool]:
    """Whether each autograd node in ``roots`` has a path back to the leaf tensor ``leaf``."""
    memo: dict[Any, bool] = {}
    for root in roots:
        stack = [root]
        while stack:
            node = stack[-1]
            children = [n for n, _ in node.next_functions if n is not None]
            pending = [n for n in children if n not in memo]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            memo[node] = getattr(node, "variable", None) is leaf or any(memo[n] for n in children)
    return [memo[root] for root in roots]


def _custom_functions(out: torch.Tensor) -> list[str]:
    """The custom ``autograd.Function`` classes in the graph that computed ``out``, by name."""
    names: dict[str, None] = {}
    seen: set[Any] = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            names[type(node).__name__.removesuffix("Backward")] = None
        stack.extend(n for n, _ in node.next_functions)
    return list(names)


@contextmanager
def _quiet_torch_internals() -> Iterator[None]:
    """Silence torch's internal warnings from forward AD's decompositions and linearize's tracer."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r"Attempted to insert a get_attr Node", category=UserWarning)
        yield
