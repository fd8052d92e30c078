"""Every setting of a run, validated once: the keys, what each must be, and the resolved :class:`Settings`.

The command line, the config file (:mod:`lrphase.cli.config`) and the model file
(:mod:`lrphase.cli.model_file`) fill a :class:`Settings`; the library validates its own keyword
arguments with the same :func:`validate`, so a bad value reads the same wherever it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .errors import InputError
from .theory.optimizers import OPTIMIZERS, Optimizer, group_rate
from .theory.schedules import Schedule, resolve_schedule
from .vocabulary import DECAYS, DTYPES, JVP_MODES, PHASES, Phase

ACCEPTABLE_PHASES: tuple[Phase, ...] = PHASES[:2]  # divergent never passes
SCHEDULE_KEYS = ("warmup_steps", "total_steps", "decay", "warmup_start")
MODEL_FILE_KEYS = ("batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay", "betas", "eps", *SCHEDULE_KEYS)


@dataclass(frozen=True)
class Key:
    """One setting: a description of what it must be, and a check that returns the value or raises ValueError."""

    expected: str
    convert: Callable[[Any], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(minimum: int) -> Key:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError
        return value

    return Key(f"an integer ≥ {minimum}", convert)


def _number(expected: str, ok: Callable[[float], bool]) -> Key:
    def convert(value: Any) -> float:
        if not _is_number(value) or not ok(float(value)):
            raise ValueError
        return float(value)

    return Key(expected, convert)


def _string(choices: tuple[str, ...] | None = None) -> Key:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not value or (choices is not None and value not in choices):
            raise ValueError
        return value

    return Key(f"one of {', '.join(choices)}" if choices else "a non-empty string", convert)


def _boolean() -> Key:
    def convert(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError
        return value

    return Key("true or false", convert)


def _betas() -> Key:
    def convert(value: Any) -> tuple[float, float]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or len(items) != 2:
            raise ValueError
        betas = tuple(float(item) if isinstance(item, str) else item for item in items)
        if not all(_is_number(b) and 0 <= b < 1 for b in betas):
            raise ValueError
        return float(betas[0]), float(betas[1])

    return Key('two numbers in [0, 1), as a list or "0.9,0.999"', convert)


def _phases() -> Key:
    def convert(value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            raise ValueError
        phases = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
        if not phases or any(phase not in ACCEPTABLE_PHASES for phase in phases):
            raise ValueError
        return phases

    return Key('a list of phases from "lazy", "catapult" (or a comma-separated string)', convert)


KEYS: dict[str, Key] = {
    "model": _string(),
    "data": _string(),
    "loss": _string(),
    "batch_size": _integer(1),
    "batches": _integer(1),
    "optimizer": _string(OPTIMIZERS),
    "momentum": _number("a number in [0, 1)", lambda x: 0 <= x < 1),
    "nesterov": _boolean(),
    "weight_decay": _number("a number ≥ 0", lambda x: x >= 0),
    "betas": _betas(),
    "eps": _number("a positive number", lambda x: x > 0),
    "lr": _number("a positive number", lambda x: x > 0),
    "accept": _phases(),
    "margin": _number("a number ≥ 0", lambda x: x >= 0),
    "c_act": _number("a number above 2 (η_max above η_crit = 2/λ₀)", lambda x: x > 2),
    "device": _string(),
    "dtype": _string(DTYPES),
    "seed": _integer(0),
    "tol": _number("a positive number", lambda x: x > 0),
    "max_iter": _integer(1),
    "jvp": _string(JVP_MODES),
    "steps": _integer(1),
    "measure": _boolean(),
    "measure_steps": _integer(1),
    "chunk_size": _integer(1),
    "warmup_steps": _integer(0),
    "total_steps": _integer(1),
    "decay": _string(DECAYS),
    "warmup_start": _number("a fraction of the peak rate in [0, 1]", lambda x: 0 <= x <= 1),
    "warmup_advice": _boolean(),
}


def validate(key: str, value: Any, where: str) -> Any:
    """``value`` checked and converted for ``key``; ``where`` names it in the error (e.g. ``--lr``)."""
    if key not in KEYS:
        raise InputError(f"unknown key '{key}' {where}: known keys are {', '.join(KEYS)}")
    try:
        return KEYS[key].convert(value)
    except (ValueError, TypeError):
        raise InputError(f"{_describe(key, where)} must be {KEYS[key].expected}, got {type(value).__name__} {value!r}") from None


def _describe(key: str, where: str) -> str:
    return where if where.startswith("--") else f"'{key}' {where}"


@dataclass(frozen=True)
class Settings:
    """Every setting after precedence. None means nothing set it: the consumer's default applies."""

    target: str
    config_file: str | None = None
    data: str | None = None  # data by name, for a model by name (lrphase.cli.named)
    loss: Any = None  # a loss name, or the model file's own loss (a name or an nn.Module)
    batch_size: int | None = None
    batches: int | None = None
    optimizer: str | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    optimizer_object: Optimizer | None = None  # a class or object from the model file: its class, options and groups
    lr: float | None = None
    accept: tuple[str, ...] = ACCEPTABLE_PHASES
    margin: float | None = None
    c_act: float | None = None
    device: str = "auto"
    dtype: str | None = None
    seed: int = 0
    tol: float = 1e-3
    max_iter: int = 100
    jvp: str | None = None
    steps: int | None = None
    chunk_size: int | None = None
    measure: bool | None = None
    measure_steps: int | None = None
    warmup_steps: int | None = None
    total_steps: int | None = None
    decay: str | None = None
    warmup_start: float | None = None
    schedule_object: Schedule | None = None  # a torch scheduler from the model file or Lightning, read
    warmup_advice: bool | None = None

    def with_model_defaults(
        self,
        defaults: Mapping[str, Any],
        *,
        loss: Any = None,
        source: str | None = None,
        parameters: Sequence[torch.Tensor] | None = None,
    ) -> Settings:
        """Fill what neither the command line nor the config set from the model file's ``defaults`` and ``loss``.

        ``defaults`` is :attr:`lrphase.cli.model_file.ModelSpec.defaults`. An optimizer given there as a
        class (``torch.optim.AdamW``, or any ``torch.optim.Optimizer`` subclass) is run as that class;
        an optimizer object (``torch.optim.AdamW(model.parameters(), …)``, or what
        ``configure_optimizers()`` returns) as its class with its options, its parameter groups'
        relative rates (placed in ``parameters``, the model's) and its first group's ``lr``.
        """
        where = f"in {source or self.target}"
        filled: dict[str, Any] = {"loss": loss} if self.loss is None and loss is not None else {}
        defaults = dict(defaults)
        given = defaults.get("optimizer")
        if isinstance(given, (type, torch.optim.Optimizer, Optimizer)):
            spec = _optimizer_object(given, parameters)
            defaults["optimizer"] = spec.name if spec.name in OPTIMIZERS else None
            if isinstance(given, torch.optim.Optimizer):
                defaults["lr"] = group_rate(given.param_groups[0])
            if self.optimizer in (None, spec.name):  # else the command line or config named another optimizer
                filled["optimizer_object"] = spec
                if spec.applies:  # SGD's hyperparameters are settings of their own
                    defaults.update(momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay)
        for key in MODEL_FILE_KEYS:
            if getattr(self, key) is None and defaults.get(key) is not None:
                filled[key] = validate(key, defaults[key], where)
        scheduler = defaults.get("scheduler")
        if scheduler is not None and not any(getattr(self, key) is not None or key in filled for key in SCHEDULE_KEYS):
            total = self.total_steps if self.total_steps is not None else filled.get("total_steps")
            filled["schedule_object"] = resolve_schedule(scheduler, total_steps=total)
        return replace(self, **filled)

    def schedule(self) -> Schedule | None:
        """The declared schedule: the schedule keys' where any is set, else the model file's scheduler, else None.

        The keys replace a scheduler; an unset warmup is 0 and an unset decay constant.
        """
        if all(getattr(self, key) is None for key in SCHEDULE_KEYS):
            return self.schedule_object
        return Schedule(
            warmup_steps=self.warmup_steps or 0,
            total_steps=self.total_steps,
            decay=self.decay or "constant",  # type: ignore[arg-type]  # validated against DECAYS
            warmup_start=self.warmup_start,
        )

    def optimizer_spec(self) -> Optimizer:
        """The :class:`~lrphase.theory.optimizers.Optimizer` these settings describe (plain SGD where unset).

        The model file's class or object, with the hyperparameters that the command line or the config set
        on top; otherwise the optimizer of that name with them.
        """
        hyper = dict(
            momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay, betas=self.betas, eps=self.eps
        )
        base = self.optimizer_object
        if base is None or self.optimizer not in (None, base.name):
            return Optimizer.named(self.optimizer or "sgd", **hyper)
        return base.with_hyperparameters(**hyper)

    def probe_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.probe`, only those set: the library's defaults apply to the rest."""
        return _set(
            loss=self.loss,
            c_act=self.c_act,
            optimizer=self.optimizer_spec(),
            jvp_mode=self.jvp,
            measure=self.measure,
            measure_steps=self.measure_steps,
            schedule=self.schedule(),
            warmup_advice=self.warmup_advice,
            batch_size=self.batch_size,
            batches=self.batches,
            device=self.device,
            dtype=self.torch_dtype(),
            tol=self.tol,
            max_iter=self.max_iter,
            seed=self.seed,
            chunk_size=self.chunk_size,
        )

    def check_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.check`: the probe's and the rate, accepted phases and margin."""
        return {**self.probe_options(), **_set(lr=self.lr, accept=self.accept, margin=self.margin)}

    def sweep_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.run_sweep` (its steps, loss, optimizer and estimate settings)."""
        return _set(
            loss=self.loss,
            steps=self.steps,
            c_act=self.c_act,
            optimizer=self.optimizer_spec(),
            batch_size=self.batch_size,
            device=self.device,
            dtype=self.torch_dtype(),
            seed=self.seed,
            tol=self.tol,
            max_iter=self.max_iter,
        )

    def confirm_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.confirm` (its optimizer wherever lrphase can run it)."""
        optimizer = self.optimizer_spec()
        return _set(
            batch_size=self.batch_size,
            dtype=self.torch_dtype(),
            seed=self.seed,
            optimizer=optimizer if optimizer.cannot_step is None else None,
        )

    def torch_dtype(self) -> torch.dtype | None:
        """The compute dtype as a torch dtype (None: the model's own)."""
        return getattr(torch, self.dtype) if self.dtype else None


def _optimizer_object(given: type | torch.optim.Optimizer | Optimizer, parameters: Sequence[torch.Tensor] | None) -> Optimizer:
    """The spec of an optimizer class, object (its groups placed in ``parameters``) or spec."""
    if isinstance(given, Optimizer):
        return given
    if isinstance(given, torch.optim.Optimizer):
        return Optimizer.from_torch(given, parameters)
    return Optimizer.from_class(given)


def _set(**options: Any) -> dict[str, Any]:
    """The options that are set (not None)."""
    return {key: value for key, value in options.items() if value is not None}
