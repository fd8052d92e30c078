"""Rendering training dynamics — ``probe --confirm`` and ``sweep`` — as tables and JSON.

JSON schema ``lrphase.sweep/1`` for the sweep; the confirmation is the ``confirm`` key of
the probe's JSON. Keys are documented in docs/cli.md.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from ...dynamics.runs import Run
from ...dynamics.verdict import Verdict
from ...workflows.confirm import Confirmation
from ...workflows.sweep import SweepResult
from .probe import finite_or_none
from .sparkline import sparkline

SWEEP_SCHEMA = "lrphase.sweep/1"
SHARPENING_WARNING = 1.2  # λ_t max / λ₀ above which the confirmation warns
PHASE_STYLE = {"lazy": "cyan", "catapult": "green", "divergent": "red", "unresolved": "yellow"}


def _run_record(run: Run, verdict: Verdict) -> dict[str, Any]:
    return {
        "lr": run.lr,
        "phase": verdict.phase,
        "reason": verdict.reason,
        "peak_loss_ratio": finite_or_none(verdict.peak_loss_ratio),
        "peak_step": verdict.peak_step,
        "final_loss_ratio": finite_or_none(verdict.final_loss_ratio),
        "lambda_start": finite_or_none(run.lambda_start),
        "lambda_end": finite_or_none(run.lambda_end),
        "eta_lambda_end": finite_or_none(run.lr * run.lambda_end),
        "steps_run": len(run.losses) - 1,
        "stopped": run.stopped,
    }


def confirmation_to_dict(confirmation: Confirmation) -> dict[str, Any]:
    """The ``confirm`` section of the probe's JSON."""
    return {
        "optimizer": confirmation.optimizer.describe(),
        "advice": confirmation.advice,
        "runs": [
            {
                "role": c.role,
                "predicted": c.predicted,
                **_run_record(c.run, c.verdict),
                "losses": [finite_or_none(x) for x in c.run.losses],
                "curvature": [[step, finite_or_none(value)] for step, value in c.run.curvature],
            }
            for c in confirmation.runs
        ],
    }


def render_confirmation(confirmation: Confirmation, console: Console) -> None:
    """The two confirmation runs: verdict, peak, λ at the end against 2/η, and the loss curve."""
    table = Table(
        title=f"confirmation: {confirmation.optimizer.describe()} on one fixed batch", title_justify="left", header_style="bold"
    )
    for column in ("run", "η", "predicted → seen", "peak L/L₀ @step", "λ_t min–max", "λ_end vs 2/η"):
        table.add_column(column, justify="left" if column in ("run", "predicted → seen") else "right")
    for c in confirmation.runs:
        v, run = c.verdict, c.run
        values = [value for _, value in run.curvature if math.isfinite(value)]
        relation = "<" if run.lambda_end < 2 / run.lr else "≥"
        table.add_row(
            c.role,
            f"{run.lr:.4g}",
            f"{c.predicted} → [{PHASE_STYLE[v.phase]}]{v.phase}[/]",
            f"{v.peak_loss_ratio:.3g} @{v.peak_step}",
            f"{min(values):.3g}–{max(values):.3g}",
            f"{run.lambda_end:.3g} {relation} {2 / run.lr:.3g}",
        )
    console.print(table)
    for c in confirmation.runs:
        console.print(f"{c.role:>11}  {sparkline(c.run.losses, width=60)}")
    for c in confirmation.runs:
        console.print(f"[dim]{c.role}: {c.verdict.reason}[/]")
    sharpening = _sharpening(confirmation)
    if sharpening:
        console.print(f"[yellow]caution:[/] {sharpening}")
    if confirmation.advice:
        console.print(f"[yellow]advice:[/] {confirmation.advice}")


def _sharpening(confirmation: Confirmation) -> str | None:
    """A warning when the curvature grew well above λ₀ during a run (progressive sharpening)."""
    growth = max(
        max(value for _, value in c.run.curvature if math.isfinite(value)) / c.run.lambda_start for c in confirmation.runs
    )
    if growth < SHARPENING_WARNING:
        return None
    return (
        f"the curvature grew to {growth:.2g}× λ₀ during the window (progressive sharpening): the stable range "
        "is smaller than 2/λ₀ suggests; check the rate you pick with `lrphase sweep`"
    )


def sweep_to_dict(result: SweepResult, *, source: str | None = None) -> dict[str, Any]:
    """The sweep as a JSON-ready dict (schema ``lrphase.sweep/1``)."""
    ph = result.probe.phases
    return {
        "schema": SWEEP_SCHEMA,
        "source": source,
        "lambda0": result.lambda0,
        "eta_crit": ph.eta_crit,
        "eta_max": ph.eta_max,
        "c_act": ph.c_act,
        "eta_crit_empirical": result.eta_crit_empirical,
        "eta_crit_bracket": [result.crit.below, result.crit.above] if result.crit else None,
        "eta_max_empirical": result.eta_max_empirical,
        "eta_max_bracket": [result.max.below, result.max.above] if result.max else None,
        "c_act_fitted": result.c_act_fitted,
        "adaptive": result.probe.advice.adaptive.to_dict() if result.probe.advice.adaptive else None,
        "loss": result.probe.estimate.loss.name,
        "optimizer": result.optimizer.describe(),
        "steps": result.steps,
        "batch_size": result.probe.estimate.batch_size,
        "runs": [_run_record(r.run, r.verdict) for r in result.runs],
    }


def render_sweep(result: SweepResult, console: Console, *, source: str | None = None) -> None:
    """Per-rate table with loss curves, then predicted against empirical boundaries."""
    ph = result.probe.phases
    title = f"lrphase sweep — {source}" if source else "lrphase sweep"
    table = Table(
        title=f"{title} ({result.steps} steps, {result.optimizer.describe()})", title_justify="left", header_style="bold"
    )
    adaptive = result.probe.advice.adaptive
    curvature = "λᴾ_end/Fᴾ" if result.optimizer.adaptive else "λ_end"
    for column in ("η", "η·λ₀", "phase", "peak L/L₀", "final L/L₀", curvature, "loss (log)"):
        table.add_column(column, justify="left" if column in ("phase", "loss (log)") else "right")
    for r in result.runs:
        v, run = r.verdict, r.run
        table.add_row(
            f"{run.lr:.4g}",
            f"{run.lr * result.lambda0:.3g}",
            f"[{PHASE_STYLE[v.phase]}]{v.phase}[/]",
            f"{v.peak_loss_ratio:.3g}",
            f"{v.final_loss_ratio:.3g}",
            f"{run.lambda_end:.4g}" if math.isfinite(run.lambda_end) else "—",
            sparkline(run.losses, width=12),
        )
    console.print(table)
    summary = Table(title="phase boundaries", title_justify="left", header_style="bold")
    for column in ("", "predicted", "empirical", "bracket"):
        summary.add_column(column)
    if result.optimizer.adaptive:
        edge = f"{adaptive.eta_edge:.4g} ({adaptive.formula})" if adaptive else "— (no theory for this optimizer)"
        summary.add_row("edge (λᴾ starts falling)", edge, _fmt(result.eta_crit_empirical), _bracket(result.crit))
        summary.add_row("η_max", "— (measured only)", _fmt(result.eta_max_empirical), _bracket(result.max))
    else:
        summary.add_row("η_crit", f"{ph.eta_crit:.4g} (2/λ₀)", _fmt(result.eta_crit_empirical), _bracket(result.crit))
        summary.add_row("η_max", f"{ph.eta_max:.4g} ({ph.c_act:g}/λ₀)", _fmt(result.eta_max_empirical), _bracket(result.max))
        fitted = f"{result.c_act_fitted:.3g}" if result.c_act_fitted is not None else "—"
        summary.add_row("c_act", f"{ph.c_act:g}", fitted, "η_max,emp · λ₀")
    console.print(summary)
    if result.optimizer.adaptive:
        console.print(
            f"[dim]{result.optimizer.describe()}: the curvature column is λᴾ/Fᴾ with P the optimizer's state at the run's end, "
            "so η·λ = 2 marks its predicted edge as for gradient descent; catapult: λᴾ fell from above that edge to below[/]"
        )
    console.print(f"[dim]λ₀ = {result.lambda0:.5g} measured on the training batch ({result.probe.estimate.loss.formula})[/]")
    if result.crit is None or result.max is None:
        console.print("[yellow]note:[/] a boundary was not bracketed by the grid; widen it with --lrs or --points")


def _fmt(x: float | None) -> str:
    return f"{x:.4g}" if x is not None else "—"


def _bracket(bound: Any) -> str:
    return f"[{bound.below:.4g}, {bound.above:.4g}]" if bound is not None else "not bracketed"
