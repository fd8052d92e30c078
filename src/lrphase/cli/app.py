"""The ``lrphase`` command line: parse options, call the library, render. Thin by design.

Nothing here imports torch at module level, so ``lrphase --help`` starts fast.
Exit codes: 0 success, 1 the checked rate fails (``check``), 2 bad input or usage,
3 the estimate did not converge, 4 unexpected internal error, 5 the prediction does not
apply to the optimizer (``check``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Optional, TypeVar

import typer

from ..errors import LrphaseError

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
        from .. import __version__

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


def _launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _main_process() -> bool:
    """Whether this process prints: always, except on ranks other than 0 under torchrun."""
    if not _launched_by_torchrun():
        return True
    from ..curvature.distributed import world

    return world()[0] == 0


def _guarded(debug: bool, body: Callable[[], T]) -> T:
    """Run ``body`` (in the torchrun process group when launched so); lrphase errors become one line."""
    try:
        if not _launched_by_torchrun():
            return body()
        from ..curvature.distributed import init_from_environment, shutdown

        init_from_environment()
        result = body()
        shutdown(in_step=True)
        return result
    except LrphaseError as exc:
        if debug:
            raise
        if _main_process():
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - last resort: never a raw traceback without --debug
        if debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        raise typer.Exit(4) from None


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


@contextmanager
def _measured_runs(update: Optional[Callable[[int, int], None]]) -> Iterator[Callable[[Any], None]]:
    """An ``on_run`` callback for the stability search: it moves the progress bar on by one step per run,
    and when the command is interrupted the runs finished so far are printed on stderr, so none is lost."""
    runs: list[Any] = []

    def on_run(run: Any) -> None:
        runs.append(run)
        if update is not None:
            update(len(runs), len(runs) + 1)

    try:
        yield on_run
    except KeyboardInterrupt:
        if runs and _main_process():
            typer.echo("runs measured before the interrupt:", err=True)
            for run in runs:
                typer.echo(f"  η = {run.lr:.6g}: {'trains' if run.trains else 'fails'} ({run.reason})", err=True)
        raise


OptimizerName = Annotated[
    Optional[str],
    typer.Option("--optimizer", help="sgd (default) | adam | adamw | rmsprop | … (adaptive: the prediction does not apply)."),
]
Momentum = Annotated[Optional[float], typer.Option("--momentum", help="SGD momentum β (default 0).")]
Nesterov = Annotated[Optional[bool], typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (as torch.optim.SGD).")]
WeightDecay = Annotated[Optional[float], typer.Option("--weight-decay", help="L2 weight decay wd (default 0): the curvature becomes λ₀ + wd.")]
Measure = Annotated[
    Optional[bool],
    typer.Option(
        "--measure/--no-measure",
        help="Measure the divergence edge with short training runs (default: where the paper's prediction is not exact).",
    ),
]
MeasureSteps = Annotated[Optional[int], typer.Option("--measure-steps", help="Steps of each measuring run (default 50).")]

TARGET_HELP = "Model file `path.py` (or `path.py:factory`) defining `model` and `data`."
OPTIONAL_TARGET_HELP = TARGET_HELP + " Default: `model` under \\[tool.lrphase] in pyproject.toml."
CHUNK_HELP = "Micro-batch size of every curvature product (default: chosen from free memory; train-mode BatchNorm is never split)."
CONFIG_HELP = "TOML config file (default: \\[tool.lrphase] of the nearest pyproject.toml); options given here override it."


@app.command()
def probe(
    target: Optional[str] = typer.Argument(None, help=OPTIONAL_TARGET_HELP, show_default=False),
    config: Optional[str] = typer.Option(None, "--config", help=CONFIG_HELP),
    loss: Optional[str] = typer.Option(None, help="mse (paper, default) | cross_entropy | mse_loss_mean | mse_loss_sum | cross_entropy_sum; overrides the file's `loss`."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch (default: the file's `batch_size`, else 128)."),
    batches: Optional[int] = typer.Option(None, help="Batches λ₀ is averaged over (default 3; 1 when the edge is measured)."),
    device: Optional[str] = typer.Option(None, help="auto (CUDA, else MPS, else CPU; default) | cpu | cuda | cuda:1 | mps."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: the model's own)."),
    seed: Optional[int] = typer.Option(None, help="Seed for the model file, batch sampling and Lanczos start vectors (default 0)."),
    tol: Optional[float] = typer.Option(None, help="Lanczos stops when its residual is ≤ tol·λ (default 1e-3)."),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", help="Lanczos iterations per batch before giving up (default 100)."),
    c_act: Optional[float] = typer.Option(None, "--c-act", help="Override c_act in η_max = c_act/λ₀ (e.g. from `lrphase sweep`)."),
    jvp: Optional[JvpMode] = typer.Option(None, help="How J·v is computed: auto (default) times the candidates once."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help=CHUNK_HELP),
    optimizer: OptimizerName = None,
    momentum: Momentum = None,
    nesterov: Nesterov = None,
    weight_decay: WeightDecay = None,
    measure: Measure = None,
    measure_steps: MeasureSteps = None,
    confirm: bool = typer.Option(False, "--confirm", help="Also train briefly at the recommended rate and at 0.5·η_crit to watch the catapult."),
    steps: int = typer.Option(40, help="Gradient-descent steps of each --confirm run."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (documented keys) and nothing else on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Estimate λ₀ and print the lazy, catapult and divergent learning-rate ranges."""

    def body() -> int:
        from .config import load_project
        from ..errors import InputError
        from ..workflows.probe import probe as run_probe
        from .render.probe import probe_to_dict, render_probe

        settings, spec = load_project(target, config=config, overrides=dict(
            loss=loss, batch_size=batch_size, batches=batches, device=device, dtype=dtype and dtype.value, seed=seed,
            tol=tol, max_iter=max_iter, c_act=c_act, jvp=jvp and jvp.value, chunk_size=chunk_size,
            optimizer=optimizer, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, measure=measure,
            measure_steps=measure_steps,
        ))
        options = settings.estimate_options()
        spec_optimizer = settings.optimizer_spec()
        with _progress(not as_json and _main_process(), "probing") as update, _measured_runs(update) as on_run:
            result = run_probe(
                spec.model, spec.data, loss=settings.loss or spec.loss, c_act=settings.c_act, optimizer=spec_optimizer,
                jvp_mode=settings.jvp or "auto", progress=update, on_run=on_run, **settings.advice_options(), **options,
            )
        confirmation = None
        if confirm:
            from ..workflows.confirm import confirm as run_confirm

            if steps < 1:
                raise InputError(f"--steps must be at least 1, got {steps}")
            with _progress(not as_json, "confirming") as update:
                confirmation = run_confirm(
                    spec.model, spec.data, result, steps=steps, dtype=options["dtype"], seed=settings.seed,
                    batch_size=settings.batch_size, optimizer=spec_optimizer if spec_optimizer.applies else None,
                )
        if not _main_process():
            return 0 if result.estimate.converged else 3
        if as_json:
            from .render.dynamics import confirmation_to_dict

            record = probe_to_dict(result, source=settings.target)
            if confirmation is not None:
                record["confirm"] = confirmation_to_dict(confirmation)
            typer.echo(json.dumps(record, indent=2))
        else:
            from rich.console import Console

            console = Console()
            render_probe(result, console, source=settings.target)
            if confirmation is not None:
                from .render.dynamics import render_confirmation

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
    target: Optional[str] = typer.Argument(None, help=OPTIONAL_TARGET_HELP, show_default=False),
    config: Optional[str] = typer.Option(None, "--config", help=CONFIG_HELP),
    steps: Optional[int] = typer.Option(None, help="Gradient-descent steps per learning rate (default 200)."),
    points: int = typer.Option(16, help="Log-spaced rates from 0.25·η_crit to 1.5·η_max."),
    lrs: Optional[str] = typer.Option(None, help="Explicit comma-separated learning rates instead of the grid."),
    refine: int = typer.Option(3, help="Bisection runs per boundary after the grid."),
    loss: Optional[str] = typer.Option(None, help="Loss; overrides the file's `loss` (see `probe --help`)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples in the fixed training batch."),
    device: Optional[str] = typer.Option(None, help="auto (default) | cpu | cuda | mps."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: the model's own)."),
    seed: Optional[int] = typer.Option(None, help="Seed for the model file, the batch and Lanczos (default 0)."),
    c_act: Optional[float] = typer.Option(None, "--c-act", help="c_act for the predicted η_max and the grid's top."),
    out: Optional[str] = typer.Option(None, help="Folder: each finished run is saved there at once and reused on rerun."),
    plot: Optional[str] = typer.Option(None, help="Write the phase diagram to this image file (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (documented keys) and nothing else on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Train at a grid of learning rates and measure the phase boundaries on your model."""

    def body() -> int:
        from .config import load_project
        from .render.dynamics import render_sweep, sweep_to_dict
        from ..workflows.sweep import run_sweep

        rates = _parse_rates(lrs) if lrs is not None else None
        settings, spec = load_project(target, config=config, overrides=dict(
            steps=steps, loss=loss, batch_size=batch_size, device=device, dtype=dtype and dtype.value, seed=seed,
            c_act=c_act,
        ))
        optimizer = settings.optimizer_spec()
        with _progress(not as_json and _main_process(), "sweeping") as update:
            result = run_sweep(
                spec.model, spec.data, loss=settings.loss or spec.loss, lrs=rates, points=points,
                steps=settings.steps or 200, refine=refine, c_act=settings.c_act, batch_size=settings.batch_size,
                device=settings.device, dtype=settings.estimate_options()["dtype"], seed=settings.seed,
                tol=settings.tol, max_iter=settings.max_iter, optimizer=optimizer, out_dir=out,
                on_run=(lambda run, done, total: update(done, total)) if update else None,
            )
        if not _main_process():
            return 0
        if plot:
            from .render.plot import plot_sweep

            plot_sweep(result, plot)
        if as_json:
            typer.echo(json.dumps(sweep_to_dict(result, source=settings.target), indent=2))
        else:
            from rich.console import Console

            render_sweep(result, Console(), source=settings.target)
            if plot:
                typer.echo(f"phase diagram written to {plot}")
        return 0

    raise typer.Exit(_guarded(debug, body))


def check_project(spec: Any, settings: Any, **callbacks: Any) -> Any:
    """:func:`lrphase.check` on a loaded model file (:class:`~lrphase.cli.model_file.ModelSpec`) with its
    resolved :class:`~lrphase.settings.Settings`; ``callbacks``: ``progress`` and ``on_run``."""
    from ..workflows.check import check

    return check(
        spec.model, spec.data, lr=settings.lr, optimizer=settings.optimizer_spec(), accept=settings.accept,
        margin=settings.margin, loss=settings.loss or spec.loss, c_act=settings.c_act, jvp_mode=settings.jvp or "double",
        **callbacks, **settings.advice_options(), **settings.estimate_options(),
    )


def _parse_rates(text: str) -> list[float]:
    from ..errors import InputError

    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InputError(f"--lrs must be comma-separated numbers, got '{text}'") from exc
    if not rates or any(not r > 0 for r in rates):
        raise InputError(f"--lrs must list positive learning rates, got '{text}'")
    return rates


@app.command()
def check(
    target: Optional[str] = typer.Argument(None, help=OPTIONAL_TARGET_HELP, show_default=False),
    lr: Optional[float] = typer.Option(None, "--lr", help="The learning rate to check (default: `lr` in the config, else in the model file)."),
    accept: Optional[str] = typer.Option(None, help="Phases that pass, comma-separated: lazy,catapult (default) | lazy | catapult."),
    margin: Optional[float] = typer.Option(None, help="Demand a factor 1+margin of distance from each boundary with a rejected phase (default 0)."),
    optimizer: OptimizerName = None,
    momentum: Momentum = None,
    nesterov: Nesterov = None,
    weight_decay: WeightDecay = None,
    measure: Measure = None,
    measure_steps: MeasureSteps = None,
    config: Optional[str] = typer.Option(None, "--config", help=CONFIG_HELP),
    loss: Optional[str] = typer.Option(None, help="Loss; overrides the file's `loss` (see `probe --help`)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per batch (default: the file's `batch_size`, else 128)."),
    batches: Optional[int] = typer.Option(None, help="Batches λ₀ is averaged over (default 3; 1 when the edge is measured)."),
    device: Optional[str] = typer.Option(None, help="auto (default) | cpu | cuda | cuda:1 | mps."),
    dtype: Optional[DType] = typer.Option(None, help="Compute dtype (default: the model's own)."),
    seed: Optional[int] = typer.Option(None, help="Seed for the model file, batch sampling and Lanczos (default 0): fixed seed, same verdict."),
    tol: Optional[float] = typer.Option(None, help="Lanczos relative tolerance (default 1e-3)."),
    max_iter: Optional[int] = typer.Option(None, "--max-iter", help="Lanczos iterations per batch before giving up (default 100)."),
    c_act: Optional[float] = typer.Option(None, "--c-act", help="Override c_act in η_max (e.g. from `lrphase sweep`)."),
    jvp: Optional[JvpMode] = typer.Option(None, help="How J·v is computed (default double: no timing-dependent choice)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (documented keys) and nothing else on stdout."),
    github: Optional[bool] = typer.Option(None, "--github/--no-github", help="Emit a GitHub Actions annotation (default: on when GITHUB_ACTIONS=true)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """Check a learning rate: exit 0 if its predicted phase is accepted, 1 if not (3: not converged, 5: optimizer not modelled)."""
    annotate = github if github is not None else os.environ.get("GITHUB_ACTIONS") == "true"

    def body() -> int:
        from .config import load_project
        from .render.check import annotation, check_to_dict, github_annotation, render_check

        try:
            settings, spec = load_project(target, config=config, overrides=dict(
                lr=lr, accept=accept, margin=margin, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
                weight_decay=weight_decay, loss=loss, batch_size=batch_size, batches=batches, device=device,
                dtype=dtype and dtype.value, seed=seed, tol=tol, max_iter=max_iter, c_act=c_act, jvp=jvp and jvp.value,
                measure=measure, measure_steps=measure_steps,
            ))
            with _progress(not as_json and _main_process(), "checking") as update, _measured_runs(update) as on_run:
                result = check_project(spec, settings, progress=update, on_run=on_run)
        except LrphaseError as exc:
            if annotate:
                typer.echo(annotation("error", str(exc)), err=as_json)
            raise
        if as_json:
            typer.echo(json.dumps(check_to_dict(result, source=settings.target), indent=2))
        else:
            from rich.console import Console

            render_check(result, Console(), source=settings.target)
        if annotate:
            typer.echo(github_annotation(result), err=as_json)
        return result.exit_code

    raise typer.Exit(_guarded(debug, body))
