"""The optimizer a model is trained with, and how it moves the phase boundaries.

The paper's thresholds are for plain gradient descent. For ``torch.optim.SGD`` (its exact
conventions: buffer b ← β b + (1 − d) g, first step b ← g; heavy ball θ ← θ − η b; Nesterov
θ ← θ − η (g + β b); weight decay g ← ∇L + wd θ) the linear stability of one curvature
direction λ follows from the recursion's characteristic polynomial. With a = η λ:

* **weight decay** adds wd to every curvature: λ → λ + wd (the loss ½λθ² becomes ½(λ + wd)θ²);
* **plain GD**: θ' = (1 − a) θ, stable iff a < 2;
* **heavy ball**: η b_t = θ_{t−1} − θ_t gives θ' = θ − (1 − d) a θ + β (θ − θ_prev), so
  z² − (1 + β − (1 − d) a) z + β = 0. For 0 ≤ β < 1 the roots leave the unit disk first through
  z = −1: 1 + (1 + β − (1 − d) a) + β > 0, i.e. a < 2(1 + β)/(1 − d);
* **Nesterov** (PyTorch's form, d = 0): b' = β b + λθ and θ' = (1 − a(1 + β)) θ − η β² b give the
  matrix [[1 − a(1 + β), −η β²], [λ, β]] with trace T = (1 + β)(1 − a) and determinant
  D = β(1 − a). The Jury conditions for z² − T z + D are 1 − T + D = a > 0, |D| < 1
  (a < 1 + 1/β) and 1 + T + D = 2(1 + β) − a(1 + 2β) > 0, the binding one for β < 1:
  a < 2(1 + β)/(1 + 2β).

So η_crit = 2F/(λ₀ + wd) with the stability factor F = 1 (GD), (1 + β)/(1 − d) (heavy ball) or
(1 + β)/(1 + 2β) (Nesterov). The tests bisect the stability edge of ``torch.optim.SGD`` itself
on quadratics and match these to 1%.

**η_max does not scale with F.** Simulating the paper's warmup model f = n^(-1/2) vᵀ u x (whose
GD divergence boundary is exactly 4/λ₀) shows heavy-ball momentum diverging near 4–4.5/λ₀ for
every β in [0.3, 0.99] — not 4(1 + β)/λ₀ — and Nesterov near 4/((1 + β)λ₀). The catapult lasts a
few steps, fewer than the ~1/(1 − β) the momentum buffer needs to build up, so what decides
divergence is the step taken on the *current* gradient: its gain g = 1 − d for heavy ball (1 for
GD) and 1 + β for Nesterov (g + β b' contains g twice). lrphase therefore uses
η_max = c_act/(g (λ₀ + wd)), never below η_crit; ``tests/test_optimizers.py`` checks this on the
warmup model. It is calibrated on that model only, not on real networks.

**Adaptive optimizers** (Adam, AdamW, RMSprop, Adagrad, …) divide each coordinate by running
gradient statistics P = diag(√v̂) + ε: their linear stability is set by the preconditioned
curvature λᴾ = λ_max(P⁻¹G) (equivalently of P^(−1/2) G P^(−1/2)), not by λ₀. Adam's update
m ← β₁ m + (1 − β₁) g, θ ← θ − η m/P is heavy-ball momentum with dampening d = β₁ on the
preconditioned loss, so on a quadratic it is stable iff η λᴾ < 2(1 + β₁)/(1 − β₁) (38 for
β₁ = 0.9, the edge at which Cohen et al. 2022 find the preconditioned sharpness equilibrates);
RMSprop with momentum β (its buffer b ← β b + g/P, θ ← θ − η b) gives 2(1 + β), Adagrad 2. This
holds for a frozen P only; P adapts, so for them lrphase measures the edge and prints this
prediction beside it. The runs build the user's own optimizer class (:meth:`Optimizer.build`),
never a reimplementation of its update.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import InputError

ADAPTIVE = (
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "radam",
    "rmsprop",
    "adagrad",
    "adadelta",
    "sparseadam",
    "lbfgs",
    "adafactor",
    "lion",
    "lamb",
    "other",
)
OPTIMIZERS = ("sgd", *ADAPTIVE)
ADAM_FAMILY = ("adam", "adamw", "adamax", "nadam", "radam")
CANNOT_STEP = {
    "lbfgs": "LBFGS needs a closure that re-evaluates the loss at every step, which short training runs do not give it",
    "sparseadam": "SparseAdam needs sparse gradients (nn.Embedding(sparse=True)) only",
}

Options = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class ParamGroup:
    """One parameter group of an optimizer object: which of the model's parameters, at which share of the rate.

    ``positions`` index ``list(model.parameters())``; the group's rate is ``lr_scale`` times the rate
    of the run, so every group keeps its rate relative to the first; ``options`` are its own settings.
    """

    positions: tuple[int, ...]
    lr_scale: float
    options: Options = ()


@dataclass(frozen=True)
class Optimizer:
    """The optimizer a model trains with: ``torch.optim.SGD``'s hyperparameters, or any other optimizer class.

    For SGD the fields are its hyperparameters and lrphase predicts the edge (module doc). Any other
    optimizer is ``torch_class`` (by default ``torch.optim``'s class of that ``name``) with its
    constructor's keyword arguments ``options`` (betas, eps, weight_decay, amsgrad, …: all but
    ``params`` and ``lr``); ``groups`` (from an optimizer object) keep its parameter groups.
    """

    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dampening: float = 0.0
    options: Options = ()
    torch_class: type | None = None
    groups: tuple[ParamGroup, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS and self.torch_class is None:
            raise InputError(
                f"unknown optimizer '{self.name}': use sgd, or one of {', '.join(ADAPTIVE[:-1])}, "
                "or give the optimizer class itself in the model file (optimizer = MyOptimizer)"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise InputError(f"momentum must be in [0, 1), got {self.momentum:g}")
        if not 0.0 <= self.dampening < 1.0:
            raise InputError(f"dampening must be in [0, 1), got {self.dampening:g}")
        if self.weight_decay < 0.0:
            raise InputError(f"weight decay must be ≥ 0, got {self.weight_decay:g}")
        if self.nesterov and (self.momentum <= 0.0 or self.dampening != 0.0):
            raise InputError("Nesterov momentum needs momentum > 0 and no dampening (as in torch.optim.SGD)")
        betas = self.option("betas")
        if betas is not None and not (
            isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0.0 <= float(b) < 1.0 for b in betas)
        ):
            raise InputError(f"betas must be two numbers in [0, 1), got {betas!r}")

    @classmethod
    def named(cls, name: str, **hyper: Any) -> Optimizer:
        """The optimizer of a name (``"sgd"``, ``"adamw"``, …) with hyperparameters given by keyword (None: unset).

        SGD takes ``momentum``, ``nesterov``, ``weight_decay`` and ``dampening``; any other optimizer the
        keyword arguments of its ``torch.optim`` class (``betas``, ``eps``, …; another is an error).
        """
        name = name.lower()
        if name == "sgd":
            return cls().with_hyperparameters(**hyper)
        torch_class = _torch_class(name)
        base = cls(name=name) if torch_class is None else cls.from_class(torch_class)
        return base.with_hyperparameters(**hyper)

    @classmethod
    def from_class(cls, torch_class: type, **options: Any) -> Optimizer:
        """An optimizer class (``torch.optim.AdamW`` or any ``torch.optim.Optimizer`` subclass) with constructor options.

        ``torch.optim.SGD`` becomes the SGD spec itself (its update is written out).
        """
        if not (isinstance(torch_class, type) and issubclass(torch_class, torch.optim.Optimizer)):
            raise InputError(f"optimizer must be a torch.optim.Optimizer subclass, got {torch_class!r}")
        if torch_class is torch.optim.SGD:
            return cls().with_hyperparameters(**options)
        return cls(name=torch_class.__name__.lower(), torch_class=torch_class).with_hyperparameters(**options)

    def with_hyperparameters(self, **hyper: Any) -> Optimizer:
        """This optimizer with the hyperparameters that are not None replaced (module doc names them per optimizer).

        A hyperparameter the optimizer does not take is an error, e.g. momentum for Adam (its β₁ is ``betas[0]``).
        """
        hyper = {key: value for key, value in hyper.items() if value is not None}
        if not hyper:
            return self
        if self.applies:
            unknown = sorted(set(hyper) - {"momentum", "nesterov", "weight_decay", "dampening"})
            if unknown:
                raise InputError(f"{', '.join(unknown)} do not apply to SGD: drop them or name another optimizer")
            values: dict[str, Any] = {key: bool(value) if key == "nesterov" else float(value) for key, value in hyper.items()}
            return replace(self, **values)
        defaults = self._constructor_defaults
        unknown = sorted(set(hyper) - set(defaults)) if defaults is not None else []
        if unknown:
            hint = " (Adam's momentum is betas[0])" if "momentum" in unknown and self.name in ADAM_FAMILY else ""
            raise InputError(f"{self.describe()} takes no {', '.join(unknown)}{hint}: drop it or name another optimizer")
        return replace(self, options=_options({**dict(self.options), **hyper}))

    @classmethod
    def from_torch(cls, optimizer: torch.optim.Optimizer, parameters: Sequence[torch.Tensor] | None = None) -> Optimizer:
        """The spec of an optimizer object: its class, its first group's settings, and its groups' relative rates.

        ``parameters`` is ``list(model.parameters())`` of the model the optimizer was built for; it
        places each group's parameters (without it, only the first group's settings are read).
        """
        first = optimizer.param_groups[0]
        spec = cls.from_class(type(optimizer), **_set_options(type(optimizer), first))
        if parameters is None or (len(optimizer.param_groups) == 1 and spec.applies):
            return spec
        index = {id(p): i for i, p in enumerate(parameters)}
        groups = []
        base = group_rate(first) or 1.0
        for group in optimizer.param_groups:
            missing = [p for p in group["params"] if id(p) not in index]
            if missing:
                raise InputError(
                    "the optimizer's parameters are not the model's: build it from this model's parameters "
                    "(torch.optim.AdamW(model.parameters(), …))"
                )
            own = _set_options(type(optimizer), group)
            groups.append(ParamGroup(tuple(index[id(p)] for p in group["params"]), group_rate(group) / base, _options(own)))
        return replace(spec, torch_class=type(optimizer), groups=tuple(groups))

    def option(self, key: str, default: Any = None) -> Any:
        """A constructor option of a non-SGD optimizer: as given, else the class's default, else ``default``."""
        given = dict(self.options)
        if key in given:
            return given[key]
        found = (self._constructor_defaults or {}).get(key, inspect.Parameter.empty)
        return default if found is inspect.Parameter.empty else found

    @property
    def applies(self) -> bool:
        """Whether λ₀'s linear-stability prediction holds for this optimizer (SGD and its variants only)."""
        return self.name == "sgd"

    @property
    def adaptive(self) -> bool:
        """Every optimizer but SGD: its edge is measured, with λᴾ's prediction beside it where one exists."""
        return not self.applies

    @property
    def cannot_step(self) -> str | None:
        """Why short training runs cannot step this optimizer (None when they can)."""
        if self.applies:
            return None
        if self.name in CANNOT_STEP:
            return CANNOT_STEP[self.name]
        if self.resolved_class is None:
            return (
                f"torch.optim has no optimizer '{self.name}': give its class in the model file "
                "(optimizer = MyOptimizer, or an optimizer object) so lrphase can run it"
            )
        return None

    @property
    def resolved_class(self) -> type | None:
        """The optimizer class the runs build (``torch.optim.SGD`` for SGD)."""
        if self.applies:
            return torch.optim.SGD
        return self.torch_class or _torch_class(self.name)

    @property
    def _constructor_defaults(self) -> dict[str, Any] | None:
        """The keyword arguments the optimizer's class takes, with their defaults (None: unknown, or ``**kwargs``)."""
        return _constructor_defaults(self.resolved_class) if self.resolved_class is not None else None

    @property
    def plain(self) -> bool:
        """Plain gradient descent: the paper's setting."""
        return self.applies and self.momentum == 0.0 and self.weight_decay == 0.0

    @property
    def reason(self) -> str | None:
        """Why λ₀'s prediction does not apply (None when it does)."""
        if self.applies:
            return None
        if self.cannot_step:
            return f"lrphase cannot run {self.name} ({self.cannot_step}), and λ₀'s prediction holds for SGD only"
        return (
            f"{self.name} is adaptive: it rescales each coordinate by running gradient statistics, so its "
            "stability is set by the preconditioned curvature λᴾ, not by λ₀"
        )

    @property
    def stability_factor(self) -> float:
        """F in η_crit = 2F/(λ₀ + wd): 1, (1 + β)/(1 − d) (heavy ball) or (1 + β)/(1 + 2β) (Nesterov)."""
        beta = self.momentum
        if self.nesterov:
            return (1.0 + beta) / (1.0 + 2.0 * beta)
        return (1.0 + beta) / (1.0 - self._dampening)

    @property
    def preconditioned_factor(self) -> float | None:
        """Fᴾ in the predicted edge 2Fᴾ/λᴾ (module doc): (1 + β₁)/(1 − β₁), 1 + β or 1; None where no theory exists."""
        if self.name in ADAM_FAMILY:
            beta1 = float(self.option("betas", (0.9, 0.999))[0])
            return (1.0 + beta1) / (1.0 - beta1)
        if self.name == "rmsprop":
            return 1.0 + float(self.option("momentum", 0.0))
        if self.name == "adagrad":
            return 1.0
        return None

    def edge_formula(self) -> str | None:
        """The predicted edge of an adaptive optimizer as a formula in λᴾ."""
        if self.name in ADAM_FAMILY:
            return "2(1+β₁)/((1−β₁)λᴾ)"
        if self.name == "rmsprop":
            return "2(1+β)/λᴾ" if self.option("momentum") else "2/λᴾ"
        return "2/λᴾ" if self.name == "adagrad" else None

    @property
    def step_gain(self) -> float:
        """G in η_max = c_act/(g (λ₀ + wd)): the coefficient of the current gradient in one step."""
        return 1.0 + self.momentum if self.nesterov else 1.0 - self._dampening

    @property
    def _dampening(self) -> float:
        """Dampening acts on the momentum buffer only: without momentum there is none."""
        return self.dampening if self.momentum else 0.0

    def curvature(self, lambda0: float) -> float:
        """The curvature the optimizer sees: λ₀ + wd."""
        return lambda0 + self.weight_decay

    def build(self, parameters: Sequence[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        """This optimizer on ``parameters`` (``list(model.parameters())`` of a copy) at rate ``lr``.

        Groups keep their parameters, their options and their rate relative to the first group;
        parameters that do not require gradients are left out.
        """
        torch_class = self.resolved_class
        if torch_class is None or self.cannot_step:
            raise InputError(f"cannot run {self.name}: {self.cannot_step}")
        base: dict[str, Any] = (
            dict(momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay, dampening=self._dampening)
            if self.applies
            else dict(self.options)
        )
        if not self.groups:
            trainable = [p for p in parameters if p.requires_grad]
            return torch_class(trainable, lr=lr, **base)
        groups = [
            {**base, **dict(g.options), "params": [parameters[i] for i in g.positions if parameters[i].requires_grad],
             "lr": lr * g.lr_scale}
            for g in self.groups
        ]  # fmt: skip
        return torch_class([g for g in groups if g["params"]], lr=lr, **base)

    def crit_formula(self) -> str:
        """η_crit as a formula in λ₀."""
        denominator = "(λ₀+wd)" if self.weight_decay else "λ₀"
        if self.nesterov:
            return f"2(1+β)/((1+2β){denominator})"
        numerator = "2(1+β)" if self.momentum else "2"
        if self._dampening:
            return f"{numerator}/((1−d){denominator})"
        return f"{numerator}/{denominator}"

    def max_formula(self) -> str:
        """η_max as a formula in λ₀ and c_act."""
        denominator = "(λ₀+wd)" if self.weight_decay else "λ₀"
        if self.nesterov:
            return f"c_act/((1+β){denominator})"
        if self._dampening:
            return f"c_act/((1−d){denominator})"
        return f"c_act/{denominator}"

    def describe(self) -> str:
        """One line for people, e.g. ``SGD with Nesterov momentum 0.9, weight decay 0.0005`` or ``AdamW (betas …)``."""
        if not self.applies:
            torch_class = self.resolved_class
            label = torch_class.__name__ if torch_class is not None else self.name
            parts = [f"{key} {_text(value)}" for key, value in self.options]
            parts += [f"{len(self.groups)} parameter groups"] if len(self.groups) > 1 else []
            return f"{label} ({', '.join(parts)})" if parts else label
        if self.plain:
            return "plain gradient descent"
        parts = []
        if self.momentum:
            kind = "Nesterov" if self.nesterov else "heavy-ball"
            parts.append(f"{kind} momentum {self.momentum:g}" + (f" (dampening {self.dampening:g})" if self._dampening else ""))
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        return "SGD with " + ", ".join(parts) if parts else "SGD"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, with the factors of the prediction that applies."""
        return {
            "name": self.name,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay if self.applies else self.option("weight_decay", 0.0),
            "dampening": self.dampening,
            "options": {key: _json_value(value) for key, value in self.options},
            "class": None
            if self.resolved_class is None
            else f"{self.resolved_class.__module__}.{self.resolved_class.__qualname__}",
            "group_lr_scales": [g.lr_scale for g in self.groups] or None,
            "applies": self.applies,
            "adaptive": self.adaptive,
            "runnable": self.cannot_step is None,
            "stability_factor": self.stability_factor if self.applies else None,
            "step_gain": self.step_gain if self.applies else None,
            "eta_crit_formula": self.crit_formula() if self.applies else None,
            "eta_max_formula": self.max_formula() if self.applies else None,
            "preconditioned_factor": self.preconditioned_factor,
            "eta_edge_formula": self.edge_formula(),
            "description": self.describe(),
        }


_TORCH_NAMES = {
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "NAdam",
    "radam": "RAdam",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "sparseadam": "SparseAdam",
    "lbfgs": "LBFGS",
    "adafactor": "Adafactor",
}


def group_rate(group: dict[str, Any]) -> float:
    """A parameter group's own rate: ``initial_lr``, where a scheduler has set one (and may have scaled ``lr``)."""
    return float(group.get("initial_lr", group["lr"]))


def _torch_class(name: str) -> type | None:
    """``torch.optim``'s class of a lowercase optimizer name (None when torch has none)."""
    return getattr(torch.optim, _TORCH_NAMES.get(name, ""), None)


@functools.cache
def _constructor_defaults(torch_class: type) -> dict[str, Any] | None:
    """The keyword arguments ``torch_class`` takes, with their defaults; None when it takes ``**kwargs``."""
    parameters = inspect.signature(torch_class).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name: p.default for p in parameters}


def _set_options(torch_class: type, group: dict[str, Any]) -> dict[str, Any]:
    """A parameter group's constructor options that differ from the class's defaults (all of them for ``**kwargs``)."""
    defaults = _constructor_defaults(torch_class)
    options = {key: value for key, value in group.items() if key not in ("params", "lr", "initial_lr") and value is not None}
    if defaults is None:
        return options
    return {key: value for key, value in options.items() if key in defaults and not _same(value, defaults[key])}


def _same(value: Any, default: Any) -> bool:
    """Whether an option equals its default (so describing and storing it adds nothing)."""
    if default is inspect.Parameter.empty:
        return False
    try:
        return (
            bool(value == default)
            and type(value) is type(default)
            or (isinstance(value, (tuple, list)) and isinstance(default, (tuple, list)) and tuple(value) == tuple(default))
        )
    except (TypeError, RuntimeError):
        return False


def _options(options: dict[str, Any]) -> Options:
    """Options as a sorted, hashable tuple (lists become tuples)."""
    return tuple(sorted((key, tuple(value) if isinstance(value, list) else value) for key, value in options.items()))


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def resolve_optimizer(optimizer: Any, model: torch.nn.Module | None = None) -> Optimizer:
    """An :class:`Optimizer` from a spec, a name, a ``torch.optim.Optimizer`` subclass or an object built on ``model``."""
    if optimizer is None:
        return Optimizer()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        return Optimizer.named(optimizer)
    if isinstance(optimizer, type):
        return Optimizer.from_class(optimizer)
    if isinstance(optimizer, torch.optim.Optimizer):
        return Optimizer.from_torch(optimizer, list(model.parameters()) if model is not None else None)
    raise InputError(
        "optimizer must be a name such as 'adamw', an lrphase.Optimizer, a torch.optim.Optimizer subclass "
        f"or an optimizer object, got {type(optimizer).__name__}"
    )
