"""How reliable is a Lanczos stopping rule on an NTK's spectrum? Seeded starts, one batch, float64.

For each example model it builds lrphase's output-space operator A = Sᵀ J Jᵀ S on one batch in
float64, runs Lanczos with full reorthogonalization (the iteration of compare.py's float64
reference, both from ``reference.py``) from ``--seeds`` Gaussian starts for ``--steps`` iterations
each, recording after every iteration the top two Ritz values and their
residuals, and then replays two stopping rules on those trajectories:

* ``residual`` — stop once r₁ ≤ tol·θ₁ (what lrphase uses; ARPACK's criterion);
* ``kato-temple`` — stop once min(r₁, r₁²/(θ₁ − θ₂ − r₂)) ≤ tol·θ₁ (lrphase's rule until 2026-11-29).

λ_max is the largest Ritz value any run reached. For each rule and tol it prints the mean and
largest number of products, how many runs stopped more than tol below λ_max, and the worst error.

    python benchmarks/stopping.py [--models mlp,cnn] [--seeds 40] [--steps 40] [--tols 1e-2,1e-3]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy.linalg import eigh_tridiagonal

from common import load_example
from reference import lanczos_steps, lrphase_gauss_newton


def trajectory(matvec, dim: int, steps: int, seed: int) -> list[tuple[float, float, float, float]]:
    """(θ₁, r₁, θ₂, r₂) after each Lanczos iteration from a seeded Gaussian start."""
    q = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = []
    for alphas, betas, beta in lanczos_steps(matvec, [q / q.norm()], steps):
        j = len(alphas) - 1
        if j == 0:
            out.append((alphas[0], beta, -np.inf, np.inf))
        else:
            values, vectors = eigh_tridiagonal(np.array(alphas), np.array(betas), select="i", select_range=(j - 1, j))
            out.append((values[1], beta * abs(vectors[-1, 1]), values[0], beta * abs(vectors[-1, 0])))
    return out


def stops(rule: str, tol: float, theta: float, r: float, second: float, r2: float) -> bool:
    if rule == "residual":
        return r <= tol * theta
    gap = theta - (second + r2)
    return (min(r, r * r / gap) if gap > 0 else r) <= tol * theta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated subset of mlp,cnn,resnet")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=40, help="Lanczos iterations recorded per start")
    parser.add_argument("--tols", default="1e-2,1e-3")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    table = Table(title=f"Lanczos stopping rules over {args.seeds} seeded starts (float64, one batch)")
    for column in ("model", "tol", "rule", "mean products", "max products", "runs > tol below λ_max", "worst error"):
        table.add_column(column)
    for name in args.models.split(","):
        example = load_example(name)
        matvec, dim = lrphase_gauss_newton(example.spec.model, example.x, example.loss)
        runs = [trajectory(matvec, dim, args.steps, seed) for seed in range(args.seeds)]
        top = max(theta for run in runs for theta, *_ in run)
        for tol in (float(t) for t in args.tols.split(",")):
            for rule in ("kato-temple", "residual"):
                counts, errors = [], []
                for run in runs:
                    index = next((j for j, step in enumerate(run) if stops(rule, tol, *step)), len(run) - 1)
                    counts.append(index + 1)
                    errors.append((top - run[index][0]) / top)
                table.add_row(
                    name, f"{tol:g}", rule, f"{statistics.fmean(counts):.1f}", str(max(counts)),
                    f"{sum(e > tol for e in errors)} of {len(runs)}", f"{max(errors):.1e}",
                )
    console.print(table)


if __name__ == "__main__":
    main()
