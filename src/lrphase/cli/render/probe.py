"""Rendering results for people (rich tables) and machines (JSON with stable keys).

JSON schema ``lrphase.probe/3`` — docs/cli.md lists every key.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from ...advice import Advice
from ...dynamics.stability import EdgeMeasurement
from ...theory.optimizers import Optimizer
from ...workflows.probe import ProbeResult
from .schedule import render_warmup, schedule_note, stable_start_note, warmup_to_dict

PROBE_SCHEMA = "lrphase.probe/3"


def finite_or_none(x: float | None) -> float | None:
    """``x`` where it is a finite number, else None (JSON has no NaN or infinity)."""
    return x if x is not None and math.isfinite(x) else None


def measurement_to_dict(measurement: EdgeMeasurement) -> dict[str, Any]:
    """The stability search as a JSON-ready dict: its settings, the edge and every run."""
    lam = measurement.lambda0
    return {
        "steps": measurement.steps,
        "warmup_steps": measurement.schedule.warmup_steps,
        "batch_size": measurement.batch_size,
        "start_lr": measurement.start_lr,
        "eta_max": measurement.eta_max,
        "first_failure": measurement.first_failure,
        "bracketed": measurement.bracketed,
        "lambda_sharpened": measurement.lambda_sharp,
        "steps_trained": measurement.steps_trained,
        "runs": [
            {
                "lr": r.lr,
                "eta_lambda0": r.lr * lam,
                "trains": r.trains,
                "reason": r.reason,
                "steps_run": r.steps_run,
                "lambda_end": r.lambda_end,
                "losses": [[step, finite_or_none(ratio)] for step, ratio in r.losses],
            }
            for r in measurement.runs
        ],
    }


def probe_to_dict(result: ProbeResult, *, source: str | None = None) -> dict[str, Any]:
    """The probe as a JSON-ready dict; keys are stable within a schema version."""
    est, ph, act, advice = result.estimate, result.phases, result.activation, result.advice
    return {
        "schema": PROBE_SCHEMA,
        "source": source,
        "lambda0": est.lambda0,
        "lambda0_std": est.lambda0_std,
        "ntk_lambda0": finite_or_none(est.ntk_lambda0),
        "ntk_lambda0_std": finite_or_none(est.ntk_lambda0_std),
        "lambda_sharpened": advice.lambda_sharp,
        "eta_crit": advice.eta_crit,
        "eta_crit_lambda0": ph.eta_crit,
        "eta_max": advice.eta_max,
        "eta_max_source": advice.source,
        "eta_max_predicted": ph.eta_max,
        "eta_recommended": advice.eta_recommended,
        "prediction_exact": advice.exact,
        "c_act": ph.c_act,
        "c_act_source": ph.c_act_source,
        "activation": act.family,
        "activation_reason": act.reason,
        "nonlinearities": list(est.nonlinearities),
        "loss": est.loss.name,
        "loss_formula": est.loss.formula,
        "phases": {name: [lo, finite_or_none(hi)] for name, (lo, hi) in advice.ranges().items()},
        "recommendation_rule": advice.rule,
        "recommended_phase": advice.phase_names[advice.phase_of(advice.eta_recommended)],
        "confidence": advice.confidence,
        "caveats": list(advice.caveats),
        "measurement": measurement_to_dict(advice.measurement) if advice.measurement else None,
        "optimizer": ph.optimizer.to_dict(),
        "applies": advice.applies,
        "adaptive": advice.adaptive.to_dict() if advice.adaptive else None,
        "phase_names": dict(advice.phase_names),
        "schedule": advice.schedule.to_dict() if advice.schedule.declared else None,
        "warmup": warmup_to_dict(advice.warmup) if advice.warmup else None,
        "stable_start_predicted": advice.stable_start if advice.schedule.declared else None,
        "converged": est.converged,
        "iterations": est.iterations,
        "max_relative_error": est.max_relative_residual,  # kept from lrphase.probe/1: the residual bound
        "max_relative_residual": est.max_relative_residual,
        "tol": est.tol,
        "batches": len(est.per_batch),
        "batch_size": est.batch_size,
        "output_dim": est.output_dim,
        "per_batch": [
            {
                "lambda0": b.lambda_gn,
                "ntk_lambda0": finite_or_none(b.lambda_ntk),
                "iterations": b.iterations,
                "relative_error": b.relative_residual,  # kept from lrphase.probe/1: the residual bound
                "relative_residual": b.relative_residual,
                "converged": b.converged,
            }
            for b in est.per_batch
        ],
        "device": est.device,
        "dtype": est.dtype,
        "jvp_mode": est.jvp_mode,
        "chunk_size": est.chunk_size,
        "batchnorm": est.modes.batchnorm,
        "dropout": est.modes.dropout,
        "notes": list(est.notes),
    }


def render_probe(result: ProbeResult, console: Console, *, source: str | None = None) -> None:
    """Print the probe as tables: λ₀ and the advice, the measured runs, the phases, then diagnostics and caveats."""
    est, ph, act, advice = result.estimate, result.phases, result.activation, result.advice
    measurement = advice.measurement
    title = f"lrphase probe — {source}" if source else "lrphase probe"
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    spread = f" ± {est.lambda0_std:.3g}" if len(est.per_batch) > 1 else ""
    table.add_row(
        "λ₀",
        f"{est.lambda0:.5g}{spread}",
        f"top eigenvalue of Jᵀ H J, mean ± std over {len(est.per_batch)} batch(es) of {est.batch_size}",
    )
    if math.isfinite(est.ntk_lambda0):  # NaN where it was skipped (ntk=False)
        ntk_spread = f" ± {est.ntk_lambda0_std:.3g}" if len(est.per_batch) > 1 else ""
        table.add_row("NTK λ₀", f"{est.ntk_lambda0:.5g}{ntk_spread}", "paper's Θ = J Jᵀ/(km)")
    if ph.optimizer.adaptive and advice.applies:
        _adaptive_rows(table, result)
        console.print(table)
        _rule(advice, est.loss.formula, console)
        if measurement is not None:
            render_measurement(measurement, console)
        _adaptive_phases(result, console)
        _schedule(advice, console)
        _diagnostics(result, console)
        return
    opt = ph.optimizer if ph.applies else Optimizer()
    sharp = advice.lambda_sharp
    if measurement is not None and sharp is not None:
        table.add_row(
            f"λ after {measurement.steps} steps",
            f"{sharp:.5g}",
            f"sharpened {sharp / est.lambda0:.3g}× λ₀ in the runs that trained",
        )
        table.add_row(
            "η_crit = 2F/λ",
            f"{advice.eta_crit:.4g}",
            f"lazy below, at the sharpened curvature ({opt.crit_formula()} = {ph.eta_crit:.4g} at init)",
        )
    else:
        table.add_row(f"η_crit = {opt.crit_formula()}", f"{ph.eta_crit:.4g}", f"{opt.describe()} is unstable above")
    predicted = f"c_act = {ph.c_act:g}: " + (act.reason if ph.c_act_source == "activation" else "set by --c-act")
    if measurement is not None:
        fails = measurement.first_failure
        bracket = f", {fails:.4g} failed" if fails is not None else ", none failed"
        table.add_row(
            "η_max (measured)",
            f"{advice.eta_max:.4g}",
            f"largest rate that trained{bracket}; predicted {opt.max_formula()} = {ph.eta_max:.4g}",
        )
    else:
        table.add_row(f"η_max = {opt.max_formula()}", f"{ph.eta_max:.4g}", f"predicted, {predicted}")
    table.add_row(
        "[bold green]recommended η[/]",
        f"[bold green]{advice.eta_recommended:.4g}[/]",
        f"{advice.eta_recommended * ph.lambda0:.3g}/λ₀; confidence: {advice.confidence}",
    )
    console.print(table)
    _rule(advice, est.loss.formula, console)
    if measurement is not None:
        render_measurement(measurement, console)

    phases = Table(show_header=True, header_style="bold", title=f"phases ({opt.describe()})", title_justify="left")
    phases.add_column("phase")
    phases.add_column("learning rate")
    phases.add_column("what happens")
    phases.add_row("lazy", f"η < {advice.eta_crit:.4g}", "loss decreases monotonically; curvature stays near λ")
    if advice.eta_crit < advice.eta_max:
        phases.add_row(
            "catapult",
            f"{advice.eta_crit:.4g} < η < {advice.eta_max:.4g}",
            "loss spikes, curvature drops below 2/η, then converges",
        )
    else:
        phases.add_row("catapult", "none", "no window: the curvature sharpens up to the divergence edge")
    phases.add_row("divergent", f"η > {advice.eta_max:.4g}", "loss diverges" + (" (measured)" if measurement else ""))
    console.print(phases)
    console.print(f"[dim]{recommended_phase_note(advice)}[/]")
    _schedule(advice, console)
    _diagnostics(result, console)


def _rule(advice: Advice, loss_formula: str, console: Console) -> None:
    """The loss and the recommendation's rule, then the schedule the rates are for."""
    console.print(f"[dim]loss: {loss_formula}; recommendation: {advice.rule}[/]")
    console.print(f"[dim]{schedule_note(advice)}[/]")


def _schedule(advice: Advice, console: Console) -> None:
    """With a declared schedule: the catapult's prediction for the warmup's first step, and the warmup advice."""
    if not advice.schedule.declared:
        return
    note = stable_start_note(advice)
    if note is not None:
        console.print(f"[dim]{note}[/]")
    render_warmup(advice, console)


def recommended_phase_note(advice: Advice) -> str:
    """Which phase the recommended rate lies in, and why it lies there, in one sentence."""
    phase = advice.phase_of(advice.eta_recommended)
    if advice.source == "predicted":
        return (
            f"the recommended rate is in the {phase} phase: the midpoint of η_crit and a safe fraction of η_max (the rule above)"
        )
    if phase == "lazy":
        return (
            f"the recommended rate is in the lazy phase, below η_crit = {advice.eta_crit:.4g}: {_share(advice)} of the measured "
            "edge trained best on the training-quality benchmark (benchmarks/RESULTS.md), and here it falls below the catapult "
            "window"
        )
    return "the recommended rate is in the catapult phase: expect the loss to spike in the first steps and then converge"


def _share(advice: Advice) -> str:
    """The recommended rate's fraction of η_max in words: the constant rate's, or 1/D of a decaying schedule."""
    if advice.schedule.decays:
        return f"1/{advice.eta_max / advice.eta_recommended:.3g} (a decaying schedule's divisor)"
    return "half an octave below a quarter" if advice.optimizer.adaptive else "a quarter"


def _adaptive_rows(table: Table, result: ProbeResult) -> None:
    """λᴾ₀, the predicted and the measured edge, and the recommendation of an adaptive optimizer."""
    advice, opt = result.advice, result.phases.optimizer
    prediction = advice.adaptive
    if prediction is not None:
        table.add_row("λᴾ₀", f"{prediction.lambda_p0:.5g}", "top eigenvalue of P⁻¹ Jᵀ H J, P = √v̂ + ε after the first step")
        table.add_row(
            "edge (predicted)",
            f"{prediction.eta_edge:.4g}",
            f"{prediction.formula}: linear stability with P frozen (theory; P adapts)",
        )
    if advice.measurement is not None:
        fails = advice.measurement.first_failure
        bracket = f", {fails:.4g} failed" if fails is not None else ", none failed"
        table.add_row("η_max (measured)", f"{advice.eta_max:.4g}", f"largest rate whose loss never rose above its start{bracket}")
    table.add_row(
        "[bold green]recommended η[/]",
        f"[bold green]{advice.eta_recommended:.4g}[/]",
        f"for {opt.describe()}; confidence: {advice.confidence}",
    )


def _adaptive_phases(result: ProbeResult, console: Console) -> None:
    """An adaptive optimizer's phases, in its own terms."""
    advice = result.advice
    phases = Table(show_header=True, header_style="bold", title=f"phases ({advice.optimizer.describe()})", title_justify="left")
    phases.add_column("phase")
    phases.add_column("learning rate")
    phases.add_column("what happens")
    where = "measured" if advice.measurement is not None else "predicted"
    phases.add_row("stable", f"η < {advice.eta_max:.4g}", "the loss falls from the first step; λᴾ settles below its edge")
    phases.add_row(
        "unstable",
        f"η > {advice.eta_max:.4g}",
        f"the loss jumps above its start in the first steps ({where}); training degrades or fails",
    )
    console.print(phases)
    if advice.eta_recommended < advice.eta_max:
        console.print(
            f"[dim]the recommended rate is in the stable phase, {_share(advice)} of the edge: "
            "there Adam trained best on the calibration models (benchmarks/RESULTS.md)[/]"
        )


def _diagnostics(result: ProbeResult, console: Console) -> None:
    """Convergence of λ₀, the device and modes, notes and caveats."""
    est, advice = result.estimate, result.advice
    status = (
        f"[green]converged[/]: {est.iterations} Lanczos products, relative residual "
        f"{est.max_relative_residual:.1e} ≤ tol {est.tol:g}"
        if est.converged
        else f"[bold red]NOT CONVERGED[/]: relative residual {est.max_relative_residual:.1e} > tol "
        f"{est.tol:g} after {est.iterations} products — λ₀ is unreliable; raise --max-iter or loosen --tol"
    )
    console.print(status)
    console.print(
        f"[dim]device {est.device}, {est.dtype}, J·v by {est.jvp_mode}"
        + (f", micro-batches of {est.chunk_size}" if est.chunk_size else "")
        + f"; {est.modes.describe()}[/]"
    )
    for note in est.notes:
        console.print(f"[dim]note: {note}[/]")
    for caveat in advice.caveats:
        console.print(f"[yellow]caution:[/] {caveat}")


def render_measurement(measurement: EdgeMeasurement, console: Console) -> None:
    """The stability search's evidence: every rate tried, its verdict and why."""
    warmup = measurement.schedule.warmup_steps
    length = f"{warmup} + {measurement.steps} steps (warmup, then its schedule)" if warmup else f"{measurement.steps} steps"
    table = Table(
        title=f"measured edge: {len(measurement.runs)} runs of ≤ {length} on minibatches of "
        f"{measurement.batch_size} ({measurement.steps_trained} steps in all)",
        title_justify="left",
        header_style="bold",
    )
    curvature = "λᴾ_end" if measurement.adaptive else "λ_end"
    for column in ("η", "η·λ₀", "verdict", curvature, "why"):
        table.add_column(column, justify="left" if column in ("verdict", "why") else "right")
    for r in sorted(measurement.runs, key=lambda run: run.lr):
        table.add_row(
            f"{r.lr:.4g}",
            f"{r.lr * measurement.lambda0:.3g}",
            "[green]trains[/]" if r.trains else "[red]fails[/]",
            f"{r.lambda_end:.4g}" if r.lambda_end is not None else "—",
            r.reason,
        )
    console.print(table)
