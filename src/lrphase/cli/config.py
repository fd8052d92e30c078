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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import Settings, validate
from .model_file import ModelSpec, load_spec, split_target
from .named import is_named

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


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
            'no model file: pass one (e.g. `lrphase check model.py`) or set model = "model.py" under '
            "[tool.lrphase] in pyproject.toml"
        )
    return Settings(target=target, config_file=str(path) if table else None, **values)


def load_project(
    target: str | None = None, *, config: str | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[Settings, ModelSpec]:
    """Resolve the settings, import the model file they name, and fill gaps from its defaults."""
    settings = resolve_settings(target, config=config, overrides=overrides)
    spec = load_spec(settings.target, seed=settings.seed, data=settings.data, loss_given=settings.loss is not None)
    parameters = list(spec.model.parameters())
    return settings.with_model_defaults(spec.defaults, loss=spec.loss, source=spec.source, parameters=parameters), spec


def _relative_to(target: str, folder: Path) -> str:
    if is_named(target):
        return target
    path, name = split_target(target)
    resolved = path if path.is_absolute() else folder / path
    return f"{resolved}:{name}" if name else str(resolved)
