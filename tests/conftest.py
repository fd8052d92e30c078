"""What the test modules share; model and data builders and dense references are in ``cases.py``.

* ``tests/`` goes on ``sys.path``, so a test module can ``from cases import …``;
* ``model_file``: writes a model file (or any source file) under ``tmp_path`` and returns its path;
* ``cli``: runs the ``lrphase`` command in-process and returns typer's ``Result``.
"""

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from lrphase.cli.app import app

sys.path.insert(0, str(Path(__file__).parent))

# One thread: the tests' networks are tiny, and on a shared 2-core machine a second torch thread
# that waits for a busy core makes every op hundreds of times slower.
torch.set_num_threads(1)


@pytest.fixture
def model_file(tmp_path: Path) -> Callable[..., str]:
    """``model_file(source, name="model.py")``: ``source``, dedented, written to ``tmp_path / name``; the path."""

    def write(source: str, name: str = "model.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def cli() -> Callable[..., Result]:
    """``cli(*args, env=None)``: ``lrphase ARGS`` run by typer's CliRunner, with ``env`` added to the environment."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke
