"""Project configuration: ``[tool.lrphase]`` in pyproject.toml (or ``--config FILE``) and precedence.

Each setting comes from the first of these that sets it:

1. the command line (an option left out does not override);
2. the config file: ``--config FILE`` if given, else the nearest ``pyproject.toml`` from the
   working directory upwards. lrphase reads its ``[tool.lrphase]`` table; a nearest
   pyproject.toml without one means no configuration. A ``--config`` file that is not named
   pyproject.toml and has no ``[tool.lrphase]`` table is read whole (e.g. ``lrphase.toml``);
3. the model file's own defaults (``batch_size``, ``lr``, ``optimizer``, ``momentum``,
   ``nesterov``, ``weight_decay``, and ``loss``), see :func:`Settings.with_model_defaults`;
4. lrphase's built-in defaults: the defaults of :class:`Settings`, or the consumer's where
   a field stays None (batch size 128, mse loss, the model's dtype, c_act from the activation).

``model`` in a config file is relative to that file's folder. An unknown key, or a value of the
wrong type or range, is an :class:`~lrphase.errors.InputError` that names the key.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .optimizers import OPTIMIZERS, Optimizer
from .spec import ModelSpec, load_spec, split_target
from .stability import DEFAULT_STEPS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ACCEPTABLE_PHASES = ("lazy", "catapult")
MODEL_FILE_KEYS = ("batch_size", "lr", "optimizer", "momentum", "nesterov", "weight_decay")


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
    "loss": _string(),
    "batch_size": _integer(1),
    "batches": _integer(1),
    "optimizer": _string(OPTIMIZERS),
    "momentum": _number("a number in [0, 1)", lambda x: 0 <= x < 1),
    "nesterov": _boolean(),
    "weight_decay": _number("a number ≥ 0", lambda x: x >= 0),
    "lr": _number("a positive number", lambda x: x > 0),
    "accept": _phases(),
    "margin": _number("a number ≥ 0", lambda x: x >= 0),
    "c_act": _number("a number above 2 (η_max above η_crit = 2/λ₀)", lambda x: x > 2),
    "device": _string(),
    "dtype": _string(("float32", "float64")),
    "seed": _integer(0),
    "tol": _number("a positive number", lambda x: x > 0),
    "max_iter": _integer(1),
    "jvp": _string(("auto", "double", "jvp", "linearize")),
    "steps": _integer(1),
    "measure": _boolean(),
    "measure_steps": _integer(1),
    "chunk_size": _integer(1),
}


def validate(key: str, value: Any, where: str) -> Any:
    """``value`` checked and converted for ``key``; ``where`` names it in the error (e.g. ``--lr``)."""
    if key not in KEYS:
        raise InputError(f"unknown key '{key}' {where}: known keys are {', '.join(KEYS)}")
    try:
        return KEYS[key].convert(value)
    except (ValueError, TypeError):
        raise InputError(
            f"{_describe(key, where)} must be {KEYS[key].expected}, got {type(value).__name__} {value!r}"
        ) from None


def _describe(key: str, where: str) -> str:
    return where if where.startswith("--") else f"'{key}' {where}"


@dataclass(frozen=True)
class Settings:
    """Every setting after precedence. None means nothing set it: the consumer's default applies."""

    target: str
    config_file: str | None = None
    loss: str | None = None
    batch_size: int | None = None
    batches: int | None = None
    optimizer: str | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    lr: float | None = None
    accept: tuple[str, ...] = ACCEPTABLE_PHASES
    margin: float = 0.0
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
    measure_steps: int = DEFAULT_STEPS

    def with_model_defaults(self, defaults: Mapping[str, Any], *, source: str | None = None) -> Settings:
        """Fill what neither the command line nor the config set from the model file's ``defaults``.

        ``defaults`` is :attr:`lrphase.spec.ModelSpec.defaults`; an optimizer given there as a
        class (``torch.optim.SGD``) counts by its lowercased name.
        """
        where = f"in {source or self.target}"
        filled = {}
        for key in MODEL_FILE_KEYS:
            if getattr(self, key) is None and defaults.get(key) is not None:
                value = defaults[key]
                if key == "optimizer" and isinstance(value, type):
                    name = value.__name__.lower()
                    value = name if name in OPTIMIZERS else "other"
                filled[key] = validate(key, value, where)
        return replace(self, **filled)

    def optimizer_spec(self) -> Optimizer:
        """The :class:`~lrphase.optimizers.Optimizer` these settings describe (plain SGD where unset)."""
        return Optimizer(
            name=self.optimizer or "sgd", momentum=self.momentum or 0.0, nesterov=bool(self.nesterov),
            weight_decay=self.weight_decay or 0.0,
        )

    def advice_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.probe` that decide whether and how the edge is measured."""
        return dict(measure=self.measure, measure_steps=self.measure_steps)

    def estimate_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`lrphase.estimate_lambda0` (all but ``loss`` and ``jvp_mode``)."""
        return dict(
            batch_size=self.batch_size, batches=self.batches, device=self.device,
            dtype=getattr(torch, self.dtype) if self.dtype else None, tol=self.tol, max_iter=self.max_iter,
            seed=self.seed, chunk_size=self.chunk_size,
        )


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_config(path: Path, *, explicit: bool = False) -> tuple[dict[str, Any], str]:
    """The lrphase table of ``path`` and how to name it in errors.

    A pyproject.toml contributes its ``[tool.lrphase]`` table (none: empty, or an error when the
    file was given ``explicit``-ly with ``--config``). An explicit file of another name without
    that table is read whole.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read config file '{path}': {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    tool = document.get("tool")
    if isinstance(tool, dict) and "lrphase" in tool:
        table = tool["lrphase"]
        if not isinstance(table, dict):
            raise InputError(f"[tool.lrphase] in {path} must be a table of settings")
        return table, f"in [tool.lrphase] of {path}"
    if not explicit:
        return {}, f"in {path}"
    if path.name == "pyproject.toml":
        raise InputError(f"{path} has no [tool.lrphase] table")
    return document, f"in {path}"


def resolve_settings(
    target: str | None = None,
    *,
    config: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Settings from the command line (``target``, ``overrides``) over the config file, see the module doc.

    ``overrides`` maps keys of :data:`KEYS` to command-line values; None means the option was not
    given. The model file's defaults come later, with :meth:`Settings.with_model_defaults`.
    """
    values: dict[str, Any] = {}
    path = Path(config) if config is not None else find_pyproject((cwd or Path.cwd()).resolve())
    table: dict[str, Any] = {}
    if path is not None:
        table, where = read_config(path, explicit=config is not None)
        values = {key: validate(key, value, where) for key, value in table.items()}
        if "model" in values:
            values["model"] = _relative_to(values["model"], path.resolve().parent)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = validate(key, value, "--" + key.replace("_", "-"))
    model = values.pop("model", None)
    target = target or model
    if target is None:
        raise InputError(
            "no model file: pass one (e.g. `lrphase check model.py`) or set model = \"model.py\" under "
            "[tool.lrphase] in pyproject.toml"
        )
    return Settings(target=target, config_file=str(path) if table else None, **values)


def load_project(
    target: str | None = None, *, config: str | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[Settings, ModelSpec]:
    """Resolve the settings, import the model file they name, and fill gaps from its defaults."""
    settings = resolve_settings(target, config=config, overrides=overrides)
    spec = load_spec(settings.target, seed=settings.seed)
    return settings.with_model_defaults(spec.defaults, source=spec.source), spec


def _relative_to(target: str, folder: Path) -> str:
    path, name = split_target(target)
    resolved = path if path.is_absolute() else folder / path
    return f"{resolved}:{name}" if name else str(resolved)
