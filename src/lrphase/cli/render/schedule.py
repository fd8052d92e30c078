"""The schedule's part of the probe's output: what the advice is for, and the warmup advice."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ...advice import Advice
from ...dynamics.warmup import WarmupMeasurement


def schedule_note(advice: Advice) -> str:
    """One line: the schedule whose peak the rates are, or that the advice is for a constant rate."""
    schedule = advice.schedule
    if not schedule.declared:
        return (
            "the advice is for a constant rate: declare your schedule (--warmup-steps, --total-steps, --decay, or a "
            "scheduler in the model file) for its peak rate and its warmup"
        )
    return f"schedule: {schedule.describe()}; every rate above is its peak η, the rate at step t is η·f(t)"


def stable_start_note(advice: Advice) -> str | None:
    """The catapult's prediction for the warmup's first step, labelled as one (None where there is none)."""
    start = advice.stable_start
    if start is None:
        return None
    peak = advice.eta_recommended
    name = "λᴾ₀'s edge 2Fᴾ/λᴾ₀" if advice.optimizer.adaptive else "η_crit = 2F/(λ₀ + wd)"
    verdict = (
        "so the recommended peak needs no warmup to be stable at its first step"
        if peak <= start
        else f"the recommended peak is {peak / start:.3g}× that, so its first step is unstable without a warmup that starts lower"
    )
    return (
        "prediction (catapult theory, linear stability at initialization): a warmup that starts below "
        f"{name} = {start:.4g} is stable at its first step; {verdict}"
    )


def warmup_to_dict(warmup: WarmupMeasurement) -> dict[str, Any]:
    """The warmup advice as a JSON-ready dict (docs/cli.md)."""
    trajectory = warmup.trajectory
    return {
        "peak": warmup.peak,
        "tested_lr": warmup.peak * (1.0 + warmup.margin),
        "recommended_warmup_steps": warmup.recommended_steps,
        "edges": [{"warmup_steps": steps, "eta_max": edge} for steps, edge in warmup.edge_by_warmup],
        "peak_runs": [{"warmup_steps": run.warmup_steps, "trains": run.trains, "reason": run.reason} for run in warmup.peak_runs],
        "curvature": [[step, value] for step, value in trajectory.curvature] if trajectory else [],
        "steps_trained": warmup.steps_trained,
    }


def render_warmup(advice: Advice, console: Console) -> None:
    """The edge against the warmup length, the shortest warmup for the recommended peak, and the curvature through it."""
    warmup = advice.warmup
    if warmup is None:
        return
    adaptive = advice.optimizer.adaptive
    table = Table(
        title=f"warmup (measured, {warmup.steps_trained} more steps): the edge against the warmup length",
        title_justify="left",
        header_style="bold",
    )
    tested = warmup.peak * (1.0 + warmup.margin)
    for column in ("warmup steps", "η_max (largest peak that trained)", f"{1 + warmup.margin:g} × peak = {tested:.4g}"):
        table.add_column(column, justify="right")
    verdicts = {run.warmup_steps: run for run in warmup.peak_runs}
    for steps, edge in warmup.edge_by_warmup:
        run = verdicts.get(steps)
        verdict = "—" if run is None else ("[green]trains[/]" if run.trains else f"[red]fails[/]: {run.reason}")
        table.add_row(str(steps), f"{edge:.4g}" if edge is not None else "none trained", verdict)
    console.print(table)
    shortest = warmup.recommended_steps
    if shortest is None:
        console.print(f"[yellow]{tested:.4g}, {1 + warmup.margin:g}× the recommended peak, failed with every measured warmup[/]")
    else:
        console.print(
            f"[bold]shortest warmup for the recommended peak {warmup.peak:.4g}: {shortest} steps[/] (measured: "
            f"{1 + warmup.margin:g}× the peak trained with it, the room check keeps from a measured edge)"
        )
    trajectory = warmup.trajectory
    if trajectory is not None and trajectory.curvature:
        schedule = advice.schedule.with_warmup(trajectory.warmup_steps)
        symbol = "λᴾ" if adaptive else "λ"
        points = ", ".join(
            f"step {step}: η_t·{symbol} = {tested * schedule.factor(step) * value:.3g}" for step, value in trajectory.curvature
        )
        initial = advice.adaptive.lambda_p0 if adaptive and advice.adaptive else advice.lambda0
        first, last = initial, trajectory.curvature[-1][1]
        trend = (
            "falling: the warmup's early steps flatten the network (sharpness reduction, the catapult at work)"
            if last < first
            else "rising: the network sharpens as it trains (progressive sharpening), so the peak meets a sharper network"
        )
        console.print(f"[dim]curvature through the {trajectory.warmup_steps}-step warmup at peak {tested:.4g}: {points}[/]")
        end = f"{last:.4g} at step {trajectory.steps_run}"
        console.print(f"[dim]{symbol} from {first:.4g} at initialization to {end}, {trend}[/]")
