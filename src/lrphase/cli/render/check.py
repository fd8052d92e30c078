"""Rendering a check for people (rich), machines (JSON ``lrphase.check/3``) and CI (GitHub annotations)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ...errors import ExitCode
from ...workflows.check import CheckResult
from .probe import probe_to_dict, render_measurement
from .schedule import schedule_note

CHECK_SCHEMA = "lrphase.check/3"
ANNOTATION_TITLE = "lrphase check"
ANNOTATION_LEVELS = {ExitCode.FAILED: "error", ExitCode.NOT_CONVERGED: "error", ExitCode.NOT_APPLICABLE: "warning"}


def check_to_dict(result: CheckResult, *, source: str | None = None) -> dict[str, Any]:
    """The check as a JSON-ready dict; keys are stable within a schema version (docs/cli.md)."""
    ph = result.phases
    return {
        "schema": CHECK_SCHEMA,
        "source": source,
        "lr": result.lr,
        "phase": result.phase,
        "accepted": result.accepted,
        "accept": list(result.accept),
        "margin": result.margin,
        "eta_crit": ph.eta_crit if ph else None,
        "eta_max": ph.eta_max if ph else None,
        "eta_max_source": ph.source if ph else None,
        "eta_max_predicted": ph.eta_max_predicted if ph else None,
        "eta_recommended": ph.eta_recommended if ph else None,
        "lambda0": result.lambda0,
        "eta_lambda0": result.eta_lambda0,
        "optimizer": result.optimizer.to_dict(),
        "applies": result.applies,
        "reason": result.optimizer.cannot_step,
        "adaptive": ph.adaptive.to_dict() if ph and ph.adaptive else None,
        "suggested_lr": result.suggested_lr,
        "suggested_warmup_steps": result.suggested_warmup,
        "schedule": result.schedule.to_dict() if result.schedule.declared else None,
        "converged": result.converged,
        "confidence": ph.confidence if ph else None,
        "caveats": list(ph.caveats) if ph else [],
        "message": result.message,
        "exit_code": int(result.exit_code),
        "probe": probe_to_dict(result.probe, source=source) if result.probe else None,
    }


def render_check(result: CheckResult, console: Console, *, source: str | None = None) -> None:
    """Print the verdict, the boundaries around the rate, and the caveats."""
    title = f"lrphase check — {source}" if source else "lrphase check"
    if result.probe is None:
        console.print(f"[bold]{title}[/]")
        console.print(f"[bold yellow]NOT CHECKED[/] (exit {int(result.exit_code)}): {result.message}")
        return
    ph, est = result.probe.advice, result.probe.estimate
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    schedule = result.schedule
    what = f"the peak checked, for {schedule.describe()}" if schedule.declared else "the rate checked"
    table.add_row("η", f"{result.lr:.4g}", f"{what}, for {result.optimizer.describe()}")
    table.add_row("λ₀", f"{est.lambda0:.5g}", f"top eigenvalue of the Gauss–Newton matrix of {est.loss.formula}")
    table.add_row("η·λ₀", f"{result.eta_lambda0:.4g}", "the rate in units of 1/λ₀")
    if ph.optimizer.adaptive:
        if ph.adaptive is not None:
            formula = f"{ph.adaptive.formula}, λᴾ₀ = {ph.adaptive.lambda_p0:.4g}"
            table.add_row("edge (predicted)", f"{ph.adaptive.eta_edge:.4g}", formula)
        largest = "peak" if schedule.declared else "rate"
        table.add_row("η_max (measured)", f"{ph.eta_max:.4g}", f"largest {largest} whose loss never rose above its start")
    else:
        crit = "η_crit = 2F/λ" if ph.lambda_sharp is not None else f"η_crit = {ph.optimizer.crit_formula()}"
        table.add_row(crit, f"{ph.eta_crit:.4g}", "lazy below, catapult above")
        if ph.measurement is not None:
            table.add_row(
                "η_max (measured)",
                f"{ph.eta_max:.4g}",
                f"largest {'peak' if schedule.declared else 'rate'} that trained; divergent above "
                f"(predicted {ph.eta_max_predicted:.4g})",
            )
        else:
            table.add_row(
                f"η_max = {ph.optimizer.max_formula()}",
                f"{ph.eta_max:.4g}",
                f"predicted, c_act = {ph.prediction.c_act:g}; divergent above",
            )
    table.add_row("recommended η", f"{ph.eta_recommended:.4g}", f"confidence: {ph.confidence}")
    phase = ph.phase_names[result.placement.phase] if result.placement else result.phase
    table.add_row("phase", f"[bold]{phase}[/]", f"accepted: {', '.join(result.accept)}; margin {result.margin:g}")
    console.print(table)
    if ph.measurement is not None:
        render_measurement(ph.measurement, console)
    if result.suggested_lr is not None:
        console.print(f"suggested lr: [bold green]{result.suggested_lr:.4g}[/]")
    if result.suggested_warmup is not None:
        console.print(f"or keep the peak with a warmup of [bold green]{result.suggested_warmup}[/] steps (measured)")
    verdict = {
        ExitCode.OK: "[bold green]PASS[/]",
        ExitCode.FAILED: "[bold red]FAIL[/]",
        ExitCode.NOT_CONVERGED: "[bold red]NOT CONVERGED[/]",
    }
    console.print(f"{verdict[result.exit_code]} (exit {int(result.exit_code)}): {result.message}")
    console.print(f"[dim]{schedule_note(ph)}[/]")
    for caveat in ph.caveats:
        console.print(f"[yellow]caution:[/] {caveat}")


def github_annotation(result: CheckResult) -> str:
    """A GitHub Actions workflow command (``::error``, ``::warning`` or ``::notice``) for the verdict."""
    return annotation(ANNOTATION_LEVELS.get(result.exit_code, "notice"), result.message)


def annotation(level: str, message: str) -> str:
    """``::level title=lrphase check::message`` with GitHub's escaping of data and properties."""
    data = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    title = ANNOTATION_TITLE.replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
    return f"::{level} title={title}::{data}"
