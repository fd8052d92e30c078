"""Loading the user's model file: the model, the data and the training defaults it declares.

Contract (docs/cli.md): ``model.py`` is ordinary Python defining

* ``model``: an ``nn.Module`` or a zero-argument callable returning one;
* ``data``: a ``Dataset``, a ``DataLoader``, an ``(X, Y)`` pair of tensors (``(X₁, …, Xₙ, Y)``
  for several inputs, see :mod:`lrphase.curvature.data`), or a zero-argument callable returning
  one of these;
* optionally ``loss`` (``"mse"``, ``"cross_entropy"`` or an ``nn.Module`` loss),
  ``batch_size``, ``lr``, ``optimizer``, ``momentum``, ``nesterov``, ``weight_decay``.

``model.py:NAME`` selects ``NAME`` instead of ``model``: an ``nn.Module``, or a
zero-argument callable returning an ``nn.Module`` or a dict with the keys above.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..curvature.isolation import preserved_rng
from ..errors import InputError
from ..settings import MODEL_FILE_KEYS


@dataclass(frozen=True)
class ModelSpec:
    """What a model file declares: the model, its data, the loss, and training defaults."""

    model: nn.Module
    data: Any
    loss: Any = None
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = "<python>"


def split_target(target: str) -> tuple[Path, str | None]:
    """Split ``path.py[:name]`` into the file path and the optional attribute name."""
    path, sep, name = target.rpartition(":")
    if sep and path and name.isidentifier():
        return Path(path), name
    return Path(target), None


def load_spec(target: str, *, seed: int = 0) -> ModelSpec:
    """Import ``path.py[:name]`` and build its :class:`ModelSpec`.

    The file runs with the global RNG seeded by ``seed`` (and restored afterwards), so the
    model's initialization is reproducible and the caller's RNG state is untouched.
    """
    path, name = split_target(target)
    if not path.exists():
        raise InputError(f"model file '{path}' not found: pass the path of a Python file that defines `model` and `data`")
    if path.is_dir() or path.suffix != ".py":
        raise InputError(f"'{path}' is not a Python file: pass a .py file that defines `model` and `data`")
    with preserved_rng():
        torch.manual_seed(seed)
        namespace = _import_file(path)
        return _spec_from_namespace(namespace, name, str(path))


def _import_file(path: Path) -> dict[str, Any]:
    module_name = f"lrphase_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import '{path}': pass a regular Python source file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise InputError(f"syntax error in {path}, line {exc.lineno}: {exc.msg}; fix the file and run again") from exc
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        raise InputError(
            f"importing {path} failed with {type(exc).__name__}: {exc}; fix the file (run with --debug for the traceback)"
        ) from exc
    finally:
        sys.modules.pop(module_name, None)
        if folder in sys.path:
            sys.path.remove(folder)
    return vars(module)


def _call_factory(obj: Any, what: str, source: str) -> Any:
    try:
        return obj()
    except TypeError as exc:
        raise InputError(f"{what} in {source} must be a zero-argument factory, but calling it failed: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"calling {what} in {source} failed with {type(exc).__name__}: {exc}") from exc


def _spec_from_namespace(namespace: dict[str, Any], name: str | None, source: str) -> ModelSpec:
    entries = {key: namespace[key] for key in ("data", "loss", *MODEL_FILE_KEYS) if key in namespace}
    model_name = name or "model"
    if model_name not in namespace:
        hint = f"`{name}` is not defined there" if name else "define `model = MyNet()` (or `path.py:factory`)"
        raise InputError(f"no model found in {source}: {hint}")
    model = namespace[model_name]
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise InputError(
                f"`{model_name}` in {source} is a {type(model).__name__}, not an nn.Module or a factory returning one"
            )
        model = _call_factory(model, f"`{model_name}`", source)
        if isinstance(model, dict):
            unknown = set(model) - {"model", "data", "loss", *MODEL_FILE_KEYS}
            if unknown:
                raise InputError(f"`{model_name}` in {source} returned unknown keys {sorted(unknown)}")
            entries.update({k: v for k, v in model.items() if k != "model"})
            model = model.get("model")
        if not isinstance(model, nn.Module):
            raise InputError(f"`{model_name}` in {source} must return an nn.Module, got {type(model).__name__}")
    if "data" not in entries:
        raise InputError(f"no data found in {source}: define `data` as a Dataset, a DataLoader or an (X, Y) pair")
    data = entries.pop("data")
    if callable(data) and not isinstance(data, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        data = _call_factory(data, "`data`", source)
    loss = entries.pop("loss", None)
    return ModelSpec(model=model, data=data, loss=loss, defaults=entries, source=source)
