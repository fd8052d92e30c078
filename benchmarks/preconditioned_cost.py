"""The cost of λᴾ₀ against the plain λ₀: same batch, same Lanczos tolerance, same products, in one process.

For each Adam/AdamW calibration model of ``adam_quality.py`` (seed 0, batch 64, one thread): the best
of three timings of λ₀ = λ_max(G) and of λᴾ₀ = λ_max(P⁻¹G), P read from the optimizer's state after
one step at rate 0 (the step, its gradient and the model copy included), both cold-started, at the
tolerance given (default 1e-3, the probe's). Prints the ratio λᴾ₀ ÷ λ₀ per model and its median.

    python benchmarks/preconditioned_cost.py [--tol 1e-3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import adam_quality  # noqa: E402
from lrphase.curvature.losses import resolve_loss  # noqa: E402
from lrphase.dynamics.stability import make_edge_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tol", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ratios = []
    for name, task in adam_quality.TASKS.items():
        split = task.data()
        trainer = make_edge_trainer(
            task.model(0), (split.x_train, split.y_train), loss=resolve_loss(task.loss), optimizer=task.lrphase_optimizer(),
            batch_size=64, device=torch.device("cpu"), dtype=None,
        ).tracker  # fmt: skip
        trainer.tol = args.tol
        plain, preconditioned = [], []
        for _ in range(4):  # the first round warms up
            trainer._lambda_init = None
            trainer._vectors.clear()
            started = time.perf_counter()
            trainer.initial_curvature()
            plain.append(time.perf_counter() - started)
            trainer._vectors.clear()
            started = time.perf_counter()
            trainer.initial_preconditioned_curvature()
            preconditioned.append(time.perf_counter() - started)
        ratio = min(preconditioned[1:]) / min(plain[1:])
        ratios.append(ratio)
        print(f"{name}: λ₀ {min(plain[1:]) * 1e3:.1f} ms, λᴾ₀ {min(preconditioned[1:]) * 1e3:.1f} ms, ratio {ratio:.2f}")
    print(f"median ratio {statistics.median(ratios):.2f} (range {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
