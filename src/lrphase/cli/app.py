"""The ``lrphase`` command line. Every command reads parse → call → render → exit.

It resolves its settings (:func:`lrphase.cli.config.load_project`: options, config file, model
file), calls one library function with them (:mod:`lrphase.workflows`), and returns an
:class:`Outcome`: an exit code (:class:`lrphase.errors.ExitCode`) and how to render the result
(:mod:`lrphase.cli.render`). :func:`_execute` runs it, in the torchrun process group when
launched so, turns lrphase's errors into one line, and lets rank 0 alone print. Nothing here
imports torch at module level, so ``lrphase --help`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

from ..errors import ExitCode, LrphaseError
from . import options as opt

app = typer.Typer(
    name="lrphase",
    help="Learning-rate phases of a PyTorch model from λ₀, the top eigenvalue of its loss curvature at init.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

Progress = Callable[[int, int], None] | None
TYPICAL_RUNS = 5  # runs of a stability search, for the progress bar's time left


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


@dataclass(frozen=True)
class Outcome:
    """What a command ends with: its exit code, and how to show its result (on rank 0 only)."""

    code: ExitCode
    render: Callable[[], None]


def _launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _main_process() -> bool:
    """Whether this process prints: always, except on ranks other than 0 under torchrun."""
    if not _launched_by_torchrun():
        return True
    from ..curvature.distributed import world

    return world()[0] == 0


def _execute(debug: bool, command: Callable[[], Outcome]) -> NoReturn:
    """Run ``command``, render its outcome on rank 0 and exit with its code; lrphase errors become one line."""
    try:
        if _launched_by_torchrun():
            from ..curvature.distributed import init_from_environment, shutdown

            init_from_environment()
            printing = _main_process()  # asked before the process group ends
            outcome = command()
            shutdown(in_step=True)
        else:
            printing, outcome = True, command()
        if printing:
            outcome.render()
    except LrphaseError as exc:
        if debug:
            raise
        if _main_process():
            typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - last resort: never a raw traceback without --debug
        if debug:
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        raise typer.Exit(int(ExitCode.INTERNAL)) from None
    raise typer.Exit(int(outcome.code))


@contextmanager
def _progress(description: str, *, quiet: bool) -> Iterator[Progress]:
    """A rich progress bar on stderr; nothing when ``quiet``, off rank 0, or when stderr is not a terminal."""
    if quiet or not sys.stderr.isatty() or not _main_process():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def _measured_runs(update: Progress) -> Iterator[Callable[[Any], None]]:
    """An ``on_run`` callback for the stability search that keeps what it measured.

    It moves the progress bar on by one step per run, out of ``TYPICAL_RUNS`` (a search usually
    takes 4–6), so the bar shows the time left from the first run on; when the command is
    interrupted the runs finished so far are printed on stderr, so none is lost.
    """
    runs: list[Any] = []

    def on_run(run: Any) -> None:
        runs.append(run)
        if update is not None:
            update(len(runs), max(TYPICAL_RUNS, len(runs) + 1))

    try:
        yield on_run
    except KeyboardInterrupt:
        if runs and _main_process():
            typer.echo("runs measured before the interrupt:", err=True)
            for run in runs:
                typer.echo(f"  η = {run.lr:.6g}: {'trains' if run.trains else 'fails'} ({run.reason})", err=True)
        raise


def _print(console_render: Callable[[Any], None]) -> None:
    """Render to a rich console on stdout."""
    from rich.console import Console

    console_render(Console())


@app.command()
def probe(
    target: opt.Target = None,
    data: opt.Data = None,
    config: opt.Config = None,
    loss: opt.Loss = None,
    batch_size: opt.BatchSize = None,
    batches: opt.Batches = None,
    device: opt.Device = None,
    dtype: opt.DType = None,
    seed: opt.Seed = None,
    tol: opt.Tol = None,
    max_iter: opt.MaxIter = None,
    c_act: opt.CAct = None,
    jvp: opt.Jvp = None,
    chunk_size: opt.ChunkSize = None,
    optimizer: opt.OptimizerName = None,
    momentum: opt.Momentum = None,
    nesterov: opt.Nesterov = None,
    weight_decay: opt.WeightDecay = None,
    betas: opt.Betas = None,
    eps: opt.Eps = None,
    measure: opt.Measure = None,
    measure_steps: opt.MeasureSteps = None,
    warmup_steps: opt.WarmupSteps = None,
    total_steps: opt.TotalSteps = None,
    decay: opt.Decay = None,
    warmup_start: opt.WarmupStart = None,
    warmup_advice: bool | None = typer.Option(
        None,
        "--warmup-advice/--no-warmup-advice",
        help="With a warmup: also measure the edge at shorter warmups and the shortest warmup the recommended peak needs.",
    ),
    confirm: bool = typer.Option(
        False, "--confirm", help="Also train briefly at the recommended rate and at 0.5·η_crit to watch the catapult."
    ),
    steps: int = typer.Option(40, help="Gradient-descent steps of each --confirm run."),
    as_json: opt.Json = False,
    debug: opt.Debug = False,
) -> None:
    """Estimate λ₀ and print the lazy, catapult and divergent learning-rate ranges and a recommended rate."""

    def command() -> Outcome:
        from ..errors import InputError
        from ..workflows.confirm import confirm as run_confirm
        from ..workflows.probe import probe as run_probe
        from .config import load_project
        from .render.dynamics import confirmation_to_dict, render_confirmation
        from .render.probe import probe_to_dict, render_probe

        if steps < 1:
            raise InputError(f"--steps must be at least 1, got {steps}")
        settings, spec = load_project(
            target,
            config=config,
            overrides=dict(
                data=data,
                loss=loss,
                batch_size=batch_size,
                batches=batches,
                device=device,
                dtype=dtype and dtype.value,
                seed=seed,
                tol=tol,
                max_iter=max_iter,
                c_act=c_act,
                jvp=jvp and jvp.value,
                chunk_size=chunk_size,
                optimizer=optimizer,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                betas=betas,
                eps=eps,
                measure=measure,
                measure_steps=measure_steps,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                decay=decay and decay.value,
                warmup_start=warmup_start,
                warmup_advice=warmup_advice,
            ),
        )
        with _progress("probing", quiet=as_json) as update, _measured_runs(update) as on_run:
            result = run_probe(spec.model, spec.data, progress=update, on_run=on_run, **settings.probe_options())
        confirmation = None
        if confirm:
            if settings.schedule() is not None:
                typer.echo("note: --confirm trains at constant rates (the peak without its warmup or decay)", err=True)
            with _progress("confirming", quiet=as_json):
                confirmation = run_confirm(spec.model, spec.data, result, steps=steps, **settings.confirm_options())
        converged = result.estimate.converged

        def render() -> None:
            if as_json:
                record = probe_to_dict(result, source=settings.target)
                if confirmation is not None:
                    record["confirm"] = confirmation_to_dict(confirmation)
                typer.echo(json.dumps(record, indent=2))
                if not converged:
                    typer.echo("error: Lanczos did not converge; raise --max-iter or loosen --tol", err=True)
                return

            def show(console: Any) -> None:
                render_probe(result, console, source=settings.target)
                if confirmation is not None:
                    render_confirmation(confirmation, console)

            _print(show)

        return Outcome(ExitCode.OK if converged else ExitCode.NOT_CONVERGED, render)

    _execute(debug, command)


@app.command()
def sweep(
    target: opt.Target = None,
    data: opt.Data = None,
    config: opt.Config = None,
    steps: int | None = typer.Option(None, help="Gradient-descent steps per learning rate (default 200)."),
    points: int = typer.Option(16, help="Log-spaced rates from 0.25·η_crit to 1.5·η_max, extended until the edge is bracketed."),
    lrs: str | None = typer.Option(None, help="Explicit comma-separated learning rates instead of the grid."),
    refine: int = typer.Option(3, help="Bisection runs per boundary after the grid."),
    loss: opt.Loss = None,
    batch_size: opt.BatchSize = None,
    device: opt.Device = None,
    dtype: opt.DType = None,
    seed: opt.Seed = None,
    c_act: opt.CAct = None,
    optimizer: opt.OptimizerName = None,
    momentum: opt.Momentum = None,
    nesterov: opt.Nesterov = None,
    weight_decay: opt.WeightDecay = None,
    betas: opt.Betas = None,
    eps: opt.Eps = None,
    out: str | None = typer.Option(None, help="Folder: each finished run is saved there at once and reused on rerun."),
    plot: str | None = typer.Option(None, help="Write the phase diagram to this image file (needs matplotlib)."),
    as_json: opt.Json = False,
    debug: opt.Debug = False,
) -> None:
    """Train at a grid of learning rates and measure the phase boundaries on your model."""

    def command() -> Outcome:
        from ..workflows.sweep import run_sweep
        from .config import load_project
        from .render.dynamics import render_sweep, sweep_to_dict
        from .render.plot import plot_sweep

        rates = _parse_rates(lrs) if lrs is not None else None
        settings, spec = load_project(
            target,
            config=config,
            overrides=dict(
                data=data,
                steps=steps,
                loss=loss,
                batch_size=batch_size,
                device=device,
                dtype=dtype and dtype.value,
                seed=seed,
                c_act=c_act,
                optimizer=optimizer,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
                betas=betas,
                eps=eps,
            ),
        )
        with _progress("sweeping", quiet=as_json) as update:
            result = run_sweep(
                spec.model,
                spec.data,
                lrs=rates,
                points=points,
                refine=refine,
                out_dir=out,
                on_run=(lambda run, done, total: update(done, total)) if update else None,
                **settings.sweep_options(),
            )

        def render() -> None:
            if plot:
                plot_sweep(result, plot)
            if as_json:
                typer.echo(json.dumps(sweep_to_dict(result, source=settings.target), indent=2))
                return
            _print(lambda console: render_sweep(result, console, source=settings.target))
            if settings.schedule() is not None:
                typer.echo("note: sweep trains every rate as a constant rate; the declared schedule is not applied", err=True)
            if plot:
                typer.echo(f"phase diagram written to {plot}")

        return Outcome(ExitCode.OK, render)

    _execute(debug, command)


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
    target: opt.Target = None,
    data: opt.Data = None,
    lr: float | None = typer.Option(
        None, "--lr", help="The learning rate to check (default: `lr` in the config, else in the model file)."
    ),
    accept: str | None = typer.Option(None, help="Phases that pass, comma-separated: lazy,catapult (default) | lazy | catapult."),
    margin: float | None = typer.Option(
        None, help="Demand a factor 1+margin of distance from each boundary with a rejected phase (default 0)."
    ),
    optimizer: opt.OptimizerName = None,
    momentum: opt.Momentum = None,
    nesterov: opt.Nesterov = None,
    weight_decay: opt.WeightDecay = None,
    betas: opt.Betas = None,
    eps: opt.Eps = None,
    measure: opt.Measure = None,
    measure_steps: opt.MeasureSteps = None,
    warmup_steps: opt.WarmupSteps = None,
    total_steps: opt.TotalSteps = None,
    decay: opt.Decay = None,
    warmup_start: opt.WarmupStart = None,
    config: opt.Config = None,
    loss: opt.Loss = None,
    batch_size: opt.BatchSize = None,
    batches: opt.Batches = None,
    device: opt.Device = None,
    dtype: opt.DType = None,
    seed: opt.Seed = None,
    tol: opt.Tol = None,
    max_iter: opt.MaxIter = None,
    c_act: opt.CAct = None,
    jvp: opt.Jvp = None,
    as_json: opt.Json = False,
    github: bool | None = typer.Option(
        None, "--github/--no-github", help="Emit a GitHub Actions annotation (default: on when GITHUB_ACTIONS=true)."
    ),
    debug: opt.Debug = False,
) -> None:
    """Check a learning rate (a schedule's peak): exit 0 if its phase is accepted, 1 if not (3: unconverged, 5: not modelled)."""
    annotate = github if github is not None else os.environ.get("GITHUB_ACTIONS") == "true"

    def command() -> Outcome:
        from ..workflows.check import check as run_check
        from .config import load_project
        from .render.check import annotation, check_to_dict, github_annotation, render_check

        try:
            settings, spec = load_project(
                target,
                config=config,
                overrides=dict(
                    data=data,
                    lr=lr,
                    accept=accept,
                    margin=margin,
                    optimizer=optimizer,
                    momentum=momentum,
                    nesterov=nesterov,
                    weight_decay=weight_decay,
                    betas=betas,
                    eps=eps,
                    loss=loss,
                    batch_size=batch_size,
                    batches=batches,
                    device=device,
                    dtype=dtype and dtype.value,
                    seed=seed,
                    tol=tol,
                    max_iter=max_iter,
                    c_act=c_act,
                    jvp=jvp and jvp.value,
                    measure=measure,
                    measure_steps=measure_steps,
                    warmup_steps=warmup_steps,
                    total_steps=total_steps,
                    decay=decay and decay.value,
                    warmup_start=warmup_start,
                ),
            )
            with _progress("checking", quiet=as_json) as update, _measured_runs(update) as on_run:
                result = run_check(spec.model, spec.data, progress=update, on_run=on_run, **settings.check_options())
        except LrphaseError as exc:
            if annotate and _main_process():
                typer.echo(annotation("error", str(exc)), err=as_json)
            raise

        def render() -> None:
            if as_json:
                typer.echo(json.dumps(check_to_dict(result, source=settings.target), indent=2))
            else:
                _print(lambda console: render_check(result, console, source=settings.target))
            if annotate:
                typer.echo(github_annotation(result), err=as_json)

        return Outcome(result.exit_code, render)

    _execute(debug, command)
