"""The sweep's phase diagram as an image (needs the optional ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...workflows.sweep import SweepResult

COLORS = {"lazy": "tab:blue", "catapult": "tab:green", "divergent": "tab:red", "unresolved": "tab:orange"}


def plot_sweep(result: SweepResult, path: str | Path) -> Path:
    """Write loss curves coloured by phase, and λ_end against η with η_crit, η_max and 2/η drawn in."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError as exc:
        raise InputError("--plot needs matplotlib: pip install 'lrphase[plot]'") from exc
    ph = result.probe.phases
    fig, (curves, curvature) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in result.runs:
        losses = [x / r.run.losses[0] for x in r.run.losses]
        curves.plot(range(len(losses)), losses, color=COLORS[r.verdict.phase], lw=1, alpha=0.8)
    curves.set(yscale="log", xlabel="step", ylabel="L_t / L_0", title="loss curves by phase")
    for phase, color in COLORS.items():
        curves.plot([], [], color=color, label=phase)
    curves.legend(fontsize=8)
    lrs = [r.run.lr for r in result.runs]
    curvature.scatter(lrs, [r.run.lambda_end for r in result.runs], c=[COLORS[r.verdict.phase] for r in result.runs], zorder=3)
    curvature.plot(lrs, [2 / lr for lr in lrs], "k--", lw=1, label="2/η")
    adaptive = result.probe.advice.adaptive
    if result.optimizer.adaptive:  # the curvature is λᴾ/Fᴾ: its edge is 2/η too
        if adaptive is not None:
            curvature.axvline(adaptive.eta_edge, color="tab:green", ls=":", label=f"edge {adaptive.formula} (predicted)")
        ylabel = "λᴾ/Fᴾ at the end"
    else:
        curvature.axvline(ph.eta_crit, color="tab:green", ls=":", label="η_crit = 2/λ₀ (predicted)")
        curvature.axvline(ph.eta_max, color="tab:red", ls=":", label=f"η_max = {ph.c_act:g}/λ₀ (predicted)")
        ylabel = "λ at the end"
    curvature.set(
        xscale="log", yscale="log", xlabel="learning rate η", ylabel=ylabel, title=f"curvature after {result.steps} steps"
    )
    curvature.xaxis.set_minor_formatter(NullFormatter())
    curvature.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    try:
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise InputError(f"cannot write the plot to '{out}': {exc}") from exc
    finally:
        plt.close(fig)
    return out
