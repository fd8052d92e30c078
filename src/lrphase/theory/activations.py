"""Which nonlinearities a forward pass actually calls, and the c_act they imply.

Detection records ``torch`` function calls with a ``TorchFunctionMode``, so ``F.relu``,
``torch.tanh`` and ``x.sigmoid()`` count as well as ``nn.ReLU`` modules. Fused layers hide their
nonlinearities from it, so their own calls name them (``FUSED``): recurrent layers (``gru``,
``lstm``: gates and tanh) and attention (its softmax). Activation modules of other libraries
that compose their function from others (GPT-2's ``gelu_new`` is built from ``tanh``) are named by
their class (``NAMED_MODULES``), and the calls inside them are not counted. The paper
(Section 3, Supplement C.4) measured η_max ≈ 12/λ₀ for ReLU networks and ≈ 4/λ₀ for
tanh and linear ones (4 is exact for the one-hidden-layer linear model of Section 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.overrides import TorchFunctionMode

from ..vocabulary import ActivationFamily

RELU_FAMILY = frozenset(
    {"relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "prelu", "rrelu", "rrelu_", "threshold", "threshold_"}
)
SATURATING = frozenset({"tanh", "tanh_", "sigmoid", "sigmoid_", "hardtanh", "hardtanh_", "hardsigmoid"})
OTHER_NONLINEAR = frozenset(
    {
        "gelu",
        "silu",
        "silu_",
        "elu",
        "elu_",
        "selu",
        "selu_",
        "celu",
        "celu_",
        "softplus",
        "mish",
        "hardswish",
        "softsign",
        "logsigmoid",
        "tanhshrink",
        "softshrink",
        "hardshrink",
        "glu",
        "erf",
        "softmax",
        "log_softmax",
    }
)
FUSED = {
    "gru": "gru",
    "lstm": "lstm",
    "rnn_tanh": "tanh",
    "rnn_relu": "relu",
    "multi_head_attention_forward": "softmax",
    "scaled_dot_product_attention": "softmax",
}
NAMED_MODULES = (("gelu", "gelu"), ("silu", "silu"), ("swish", "silu"), ("mish", "mish"))  # class-name part → function
KNOWN = RELU_FAMILY | SATURATING | OTHER_NONLINEAR | {"gru", "lstm"}
C_ACT = {"relu": 12.0, "tanh": 4.0, "sigmoid": 4.0, "linear": 4.0}
CONSERVATIVE_C_ACT = 4.0


class NonlinearityRecorder(TorchFunctionMode):
    """Records the names of the nonlinear torch functions called while the mode is active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()
        self._inside_named = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = FUSED.get(getattr(func, "__name__", ""), getattr(func, "__name__", ""))
        if name in KNOWN and not self._inside_named:
            self.seen.add(name)
        return func(*args, **(kwargs or {}))

    @contextmanager
    def naming_modules(self, model: nn.Module) -> Iterator[None]:
        """While active, activation modules outside ``torch.nn`` count as the function their class names."""
        handles = []
        for module in model.modules():
            named = _named_activation(module)
            if named is not None:
                handles.append(module.register_forward_pre_hook(lambda *_, name=named: self._enter(name)))
                handles.append(module.register_forward_hook(lambda *_: self._leave()))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _enter(self, name: str) -> None:
        self.seen.add(name)
        self._inside_named += 1

    def _leave(self) -> None:
        self._inside_named -= 1


def _named_activation(module: nn.Module) -> str | None:
    """The function an activation module of another library computes, by its class name (None: not one)."""
    if type(module).__module__.startswith("torch.nn"):
        return None
    name = type(module).__name__.lower()
    if not name.endswith(("activation", "gelu", "silu", "swish", "mish")) and "gelu" not in name:
        return None
    return next((function for part, function in NAMED_MODULES if part in name), None)


@dataclass(frozen=True)
class Activation:
    """The activation family of a network and the c_act used for η_max = c_act/λ₀."""

    family: ActivationFamily
    c_act: float
    reason: str
    calls: tuple[str, ...]
    known: bool


def classify(calls: Iterable[str]) -> Activation:
    """Map the nonlinear function names seen in a forward pass to an :class:`Activation`."""
    calls = tuple(sorted(set(calls)))
    base = {c.rstrip("_") for c in calls}
    relu = base & {c.rstrip("_") for c in RELU_FAMILY}
    saturating = base & {c.rstrip("_") for c in SATURATING}
    other = base - relu - saturating
    if other:
        return Activation(
            "unknown",
            CONSERVATIVE_C_ACT,
            f"unknown nonlinearity ({', '.join(sorted(other))}): using the conservative c_act = 4; "
            "calibrate it with `lrphase sweep`",
            calls,
            False,
        )
    if relu and saturating:
        return Activation(
            "mixed",
            CONSERVATIVE_C_ACT,
            f"ReLU and saturating nonlinearities ({', '.join(sorted(base))}): using the smaller c_act = 4",
            calls,
            True,
        )
    if relu:
        return Activation("relu", C_ACT["relu"], "ReLU network: c_act ≈ 12 (paper, Section 3)", calls, True)
    if saturating:
        family: ActivationFamily = "sigmoid" if base <= {"sigmoid", "hardsigmoid"} else "tanh"
        return Activation(family, C_ACT[family], f"{family} network: c_act ≈ 4 (paper, Supplement C.4)", calls, True)
    return Activation(
        "linear", C_ACT["linear"], "no nonlinearity called: c_act = 4 (exact for the paper's linear model)", calls, True
    )
