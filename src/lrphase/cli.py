"""The ``lrphase`` command line: parse options, call the library, render. Thin by design.

Nothing here imports torch at module level, so ``lrphase --help`` starts fast.
Exit codes: 0 success, 1 unexpected internal error, 2 bad input or usage,
3 the estimate did not converge.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, Optional, TypeVar

import typer

from .errors import LrphaseError

app = typer.Typer(
    name="lrphase",
    help="Learning-rate phases of a PyTorch model from λ₀, the top eigenvalue of its loss curvature at init.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

T = TypeVar("T")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"lrphase {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Learning-rate phases of a PyTorch model from λ₀, the top eigenvalue of its loss curvature at init."""


class DType(str, Enum):
    float32 = "float32"
    float64 = "float64"


class JvpMode(str, Enum):
    auto = "auto"
    double = "double"
    jvp = "jvp"
    linearize = "linearize"


def _guarded(debug: bool, body: Callable[[], T]) -> T:
    """Run ``body``; turn lrphase errors into one line on stderr and their exit code."""
    try:
        return body()
    except LrphaseError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - last resort: never a raw traceback without --debug
        if debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        raise typer.Exit(1) from None


@contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A rich progress bar on stderr, or nothing when disabled or stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _torch_dtype(dtype: Optional[DType]) -> Any:
    if dtype is None:
        return None
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[dtype.value]


TARGET_HELP = "Model file `path.py` (or `path.py:factory`) defining `model` and `data`."


@app.command()
def probe(
    target: str = typer.Argument(..., help=TARGET_HELP, show_default=False),
    loss: Optional[str] = typer.Option(None, help="mse (paper, default) | cross_entropy | mse_loss_mean | mse_loss_sum | cross_entropy_sum; overrides the file's `loss`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch (default: the file's `batch_size`, else 128)."),
    batches: int = typer.Option(3, help="Batches λ₀ is averaged over."),
    device: str = typer.Option("auto", help="auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:1 | mps."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: the model's own)."),
    seed: int = typer.Option(0, help="Seed for the model file, batch sampling and Lanczos start vectors."),
    tol: float = typer.Option(1e-3, help="Lanczos stops when the residual ≤ tol·λ (certifies tol relative accuracy)."),
    max_iter: int = typer.Option(100, "--max-iter", help="Lanczos iterations per batch before giving up."),
    c_act: Optional[float] = typer.Option(None, "--c-act", help="Override c_act in η_max = c_act/λ₀ (e.g. from `lrphase sweep`)."),
    jvp: JvpMode = typer.Option(JvpMode.auto, help="How J·v is computed: auto times the candidates once."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (documented keys) and nothing else on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Estimate λ₀ and print the lazy, catapult and divergent learning-rate ranges."""

    def body() -> int:
        from .errors import InputError
        from .probing import probe as run_probe
        from .report import probe_to_dict, render_probe
        from .spec import load_spec

        if tol <= 0 or max_iter < 1:
            raise InputError("--tol must be positive and --max-iter at least 1")
        if c_act is not None and c_act <= 2:
            raise InputError(f"--c-act must exceed 2 (η_max above η_crit = 2/λ₀), got {c_act:g}")
        spec = load_spec(target, seed=seed)
        with _progress(not as_json, "estimating λ₀") as update:
            result = run_probe(
                spec.model, spec.data, loss=loss or spec.loss, c_act=c_act,
                batch_size=batch_size or spec.defaults.get("batch_size"), batches=batches, device=device,
                dtype=_torch_dtype(dtype), tol=tol, max_iter=max_iter, seed=seed, jvp_mode=jvp.value, progress=update,
            )
        if as_json:
            typer.echo(json.dumps(probe_to_dict(result, source=target), indent=2))
        else:
            from rich.console import Console

            render_probe(result, Console(), source=target)
        if not result.estimate.converged:
            if as_json:
                typer.echo("error: Lanczos did not converge; raise --max-iter or loosen --tol", err=True)
            return 3
        return 0

    code = _guarded(debug, body)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()
