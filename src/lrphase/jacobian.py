"""Matrix-free products with the Jacobian J = ∂f/∂θ of a model's outputs on one batch.

``f(θ)`` is the model's output on a fixed batch, flattened to shape (m, k). The primal is
paid once per batch: the function returned by one ``torch.func.vjp`` call gives Jᵀu for
every u, and J v is computed by one of three strategies (``mode``):

* ``"double"`` — the vjp of the (linear) vjp function, reusing the saved graph;
* ``"jvp"`` — forward mode, ``torch.func.jvp`` (recomputes the primal each product);
* ``"linearize"`` — ``torch.func.linearize``: a traced forward-mode graph, primal reused.

``"auto"`` times one product of each candidate on the first batch and keeps the fastest.
When an operation has no forward-mode rule, forward modes fall back to ``"double"``.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jvp, linearize, vjp

from .errors import InputError

JVP_MODES = ("auto", "double", "jvp", "linearize")
Params = dict[str, torch.Tensor]


class JacobianProducts:
    """J and Jᵀ products for ``model`` on input ``x``; outputs are reshaped to (m, k).

    ``model`` must already be a prepared private copy (see :mod:`lrphase.isolation`).
    """

    def __init__(self, model: nn.Module, x: Any, *, mode: str = "double", seed: int = 0) -> None:
        self._model = model
        self._x = x if isinstance(x, (tuple, list)) else (x,)
        self._seed = seed
        first = next(model.parameters(), None)
        self._rng_devices = [first.device] if first is not None and first.is_cuda else []
        self.params: Params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        if not self.params:
            raise InputError("the model has no trainable parameters: set requires_grad=True on the weights to train")
        self._rest: dict[str, torch.Tensor] = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self._rest.update(dict(model.named_buffers()))
        out, self._vjp_fn = vjp(self._f, self.params)
        self.output = out.detach()
        self.fallback: str | None = None
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

    def _f(self, params: Params) -> torch.Tensor:
        with torch.random.fork_rng(devices=self._rng_devices):
            torch.manual_seed(self._seed)
            out = functional_call(self._model, (params, self._rest), self._x)
        if not isinstance(out, torch.Tensor):
            raise InputError(f"the model returned a {type(out).__name__}; it must return one tensor of outputs")
        return out.reshape(out.shape[0], -1) if out.dim() != 1 else out.reshape(-1, 1)

    def _build(self, mode: str) -> Callable[[Params], torch.Tensor]:
        if mode not in JVP_MODES[1:]:
            raise ValueError(f"mode must be one of {JVP_MODES[1:]}, got {mode!r}")
        if mode == "double":
            _, vjp_of_vjp = vjp(lambda u: self._vjp_fn(u)[0], torch.zeros_like(self.output))
            return lambda v: vjp_of_vjp(v)[0]
        if mode == "jvp":
            return lambda v: jvp(self._f, (self.params,), (v,))[1]
        _, jvp_fn = linearize(self._f, self.params)
        return jvp_fn

    def vjp(self, u: torch.Tensor) -> Params:
        """Jᵀ u for u of shape (m, k): a parameter-space vector (dict of tensors)."""
        return self._vjp_fn(u)[0]

    def jvp(self, v: Params) -> torch.Tensor:
        """J v for a parameter-space vector v, as an (m, k) tensor."""
        try:
            with _quiet_torch_internals():
                return self._jvp_impl(v)
        except (RuntimeError, NotImplementedError) as exc:
            self._fall_back(exc)
            return self._jvp_impl(v)


def choose_fastest(products: JacobianProducts, candidates: tuple[str, ...] = ("double", "jvp")) -> str:
    """Time one J·v product per candidate mode, switch ``products`` to the fastest, return it."""
    v = products.vjp(torch.ones_like(products.output))
    timings: dict[str, float] = {}
    for mode in candidates:
        products.use(mode)
        products.jvp(v)  # warm-up: the first call pays one-off costs
        if products.mode != mode:  # fell back: this mode does not work for the model
            continue
        _synchronize(products.output)
        start = time.perf_counter()
        products.jvp(v)
        _synchronize(products.output)
        timings[mode] = time.perf_counter() - start
    best = min(timings, key=timings.get) if timings else "double"
    products.use(best)
    products.fallback = None
    return best


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
