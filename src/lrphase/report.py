"""Rendering results for people (rich tables) and machines (JSON with stable keys).

JSON schema ``lrphase.probe/1`` — see the README for every key.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from .optimizers import Optimizer
from .probing import ProbeResult

PROBE_SCHEMA = "lrphase.probe/1"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def probe_to_dict(result: ProbeResult, *, source: str | None = None) -> dict[str, Any]:
    """The probe as a JSON-ready dict; keys are stable within a schema version."""
    est, ph, act = result.estimate, result.phases, result.activation
    return {
        "schema": PROBE_SCHEMA,
        "source": source,
        "lambda0": est.lambda0,
        "lambda0_std": est.lambda0_std,
        "ntk_lambda0": _num(est.ntk_lambda0),
        "ntk_lambda0_std": _num(est.ntk_lambda0_std),
        "eta_crit": ph.eta_crit,
        "eta_max": ph.eta_max,
        "eta_recommended": ph.eta_recommended,
        "c_act": ph.c_act,
        "c_act_source": ph.c_act_source,
        "activation": act.family,
        "activation_reason": act.reason,
        "nonlinearities": list(est.nonlinearities),
        "loss": est.loss.name,
        "loss_formula": est.loss.formula,
        "phases": {name: [lo, _num(hi)] for name, (lo, hi) in ph.ranges().items()},
        "recommendation_rule": ph.rule,
        "confidence": ph.confidence,
        "caveats": list(ph.caveats),
        "optimizer": ph.optimizer.to_dict(),
        "applies": ph.applies,
        "converged": est.converged,
        "iterations": est.iterations,
        "max_relative_error": est.max_relative_residual,  # schema lrphase.probe/1: the residual bound
        "max_relative_residual": est.max_relative_residual,
        "tol": est.tol,
        "batches": len(est.per_batch),
        "batch_size": est.batch_size,
        "output_dim": est.output_dim,
        "per_batch": [
            {
                "lambda0": b.lambda_gn,
                "ntk_lambda0": _num(b.lambda_ntk),
                "iterations": b.iterations,
                "relative_error": b.relative_residual,  # schema lrphase.probe/1: the residual bound
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
    """Print the probe as tables: λ₀ and thresholds, the phases, then diagnostics and caveats."""
    est, ph, act = result.estimate, result.phases, result.activation
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
    opt = ph.optimizer if ph.applies else Optimizer()
    table.add_row(f"η_crit = {opt.crit_formula()}", f"{ph.eta_crit:.4g}", f"{opt.describe()} is unstable above")
    table.add_row(
        f"η_max = {opt.max_formula()}", f"{ph.eta_max:.4g}",
        f"c_act = {ph.c_act:g}: " + (act.reason if ph.c_act_source == "activation" else "set by --c-act"),
    )
    table.add_row(
        "[bold green]recommended η[/]", f"[bold green]{ph.eta_recommended:.4g}[/]",
        f"{ph.eta_recommended * ph.lambda0:.3g}/λ₀; confidence: {ph.confidence}",
    )
    console.print(table)
    console.print(f"[dim]loss: {est.loss.formula}; recommendation: {ph.rule}[/]")

    phases = Table(show_header=True, header_style="bold", title=f"phases ({opt.describe()})", title_justify="left")
    phases.add_column("phase")
    phases.add_column("learning rate")
    phases.add_column("what happens")
    phases.add_row("lazy", f"η < {ph.eta_crit:.4g}", "loss decreases monotonically; curvature stays near λ₀")
    phases.add_row("catapult", f"{ph.eta_crit:.4g} < η < {ph.eta_max:.4g}", "loss spikes, curvature drops below 2/η, then converges")
    phases.add_row("divergent", f"η > {ph.eta_max:.4g}", "loss diverges")
    console.print(phases)

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
    for caveat in ph.caveats:
        console.print(f"[yellow]caution:[/] {caveat}")
