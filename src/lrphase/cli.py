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
    confirm: bool = typer.Option(False, "--confirm", help="Also train briefly at the recommended rate and at 0.5·η_crit to watch the catapult."),
    steps: int = typer.Option(40, help="Gradient-descent steps of each --confirm run."),
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
        confirmation = None
        if confirm:
            from .confirm import confirm as run_confirm

            if steps < 1:
                raise InputError(f"--steps must be at least 1, got {steps}")
            with _progress(not as_json, "confirming") as update:
                confirmation = run_confirm(
                    spec.model, spec.data, result, steps=steps, dtype=_torch_dtype(dtype), seed=seed,
                    batch_size=batch_size or spec.defaults.get("batch_size"),
                )
        if as_json:
            from .dynamics_report import confirmation_to_dict

            record = probe_to_dict(result, source=target)
            if confirmation is not None:
                record["confirm"] = confirmation_to_dict(confirmation)
            typer.echo(json.dumps(record, indent=2))
        else:
            from rich.console import Console

            console = Console()
            render_probe(result, console, source=target)
            if confirmation is not None:
                from .dynamics_report import render_confirmation

                render_confirmation(confirmation, console)
        if not result.estimate.converged:
            if as_json:
                typer.echo("error: Lanczos did not converge; raise --max-iter or loosen --tol", err=True)
            return 3
        return 0

    code = _guarded(debug, body)
    raise typer.Exit(code)


@app.command()
def sweep(
    target: str = typer.Argument(..., help=TARGET_HELP, show_default=False),
    steps: int = typer.Option(200, help="Gradient-descent steps per learning rate."),
    points: int = typer.Option(16, help="Log-spaced rates from 0.25·η_crit to 1.5·η_max."),
    lrs: Optional[str] = typer.Option(None, help="Explicit comma-separated learning rates instead of the grid."),
    refine: int = typer.Option(3, help="Bisection runs per boundary after the grid."),
    loss: Optional[str] = typer.Option(None, help="Loss; overrides the file's `loss` (see `probe --help`)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples in the fixed training batch."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: the model's own)."),
    seed: int = typer.Option(0, help="Seed for the model file, the batch and Lanczos."),
    c_act: Optional[float] = typer.Option(None, "--c-act", help="c_act for the predicted η_max and the grid's top."),
    out: Optional[str] = typer.Option(None, help="Folder: each finished run is saved there at once and reused on rerun."),
    plot: Optional[str] = typer.Option(None, help="Write the phase diagram to this image file (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (documented keys) and nothing else on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Train at a grid of learning rates and measure the phase boundaries on your model."""

    def body() -> int:
        from .dynamics_report import render_sweep, sweep_to_dict
        from .errors import InputError
        from .spec import load_spec
        from .sweep import run_sweep

        rates = _parse_rates(lrs) if lrs is not None else None
        if c_act is not None and c_act <= 2:
            raise InputError(f"--c-act must exceed 2 (η_max above η_crit = 2/λ₀), got {c_act:g}")
        spec = load_spec(target, seed=seed)
        with _progress(not as_json, "sweeping") as update:
            result = run_sweep(
                spec.model, spec.data, loss=loss or spec.loss, lrs=rates, points=points, steps=steps, refine=refine,
                c_act=c_act, batch_size=batch_size or spec.defaults.get("batch_size"), device=device,
                dtype=_torch_dtype(dtype), seed=seed, out_dir=out,
                on_run=(lambda run, done, total: update(done, total)) if update else None,
            )
        if plot:
            from .plots import plot_sweep

            plot_sweep(result, plot)
        if as_json:
            typer.echo(json.dumps(sweep_to_dict(result, source=target), indent=2))
        else:
            from rich.console import Console

            render_sweep(result, Console(), source=target)
            if plot:
                typer.echo(f"phase diagram written to {plot}")
        return 0

    raise typer.Exit(_guarded(debug, body))


def _parse_rates(text: str) -> list[float]:
    from .errors import InputError

    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--lrs must be comma-separated numbers, got '{text}'") from exc
    if not rates or any(not r > 0 for r in rates):
        raise InputError(f"--lrs must list positive learning rates, got '{text}'")
    return rates


def main() -> None:
    """Console-script entry point."""
    app()
