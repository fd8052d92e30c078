"""Sweep cost against the runs it needs: (sweep of N rates × S steps) ÷ (N × one lazy run of S steps).

Measured side by side in one process on the digits MLP (examples/digits_mlp.py): the sweep's
own wall time (λ₀ on the training batch, N grid runs with early stopping, no bisection) and
the time of one full-length run at a lazy-phase rate (0.5·η_crit), as the median of a few.

    python benchmarks/sweep_speed.py [--points 16] [--steps 200] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import load_example, median_time
from lrphase.dynamics.runs import make_trainer
from lrphase.workflows.sweep import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    example = load_example("mlp")
    spec, batch = example.spec, example.batch_size
    start = time.perf_counter()
    result = run_sweep(spec.model, spec.data, loss=spec.loss, points=args.points, steps=args.steps, refine=0, batch_size=batch)
    sweep_seconds = time.perf_counter() - start

    trainer = make_trainer(spec.model, spec.data, loss=example.loss, batch_size=batch,
                           device=torch.device("cpu"), dtype=None)
    trainer.initial_curvature()
    lazy_lr = 0.5 * result.probe.phases.eta_crit
    trainer.run(lazy_lr, 5)  # warm-up
    one_run, _, _ = median_time(lambda: trainer.run(lazy_lr, args.steps), args.repeats, warmup=0)
    ratio = sweep_seconds / (args.points * one_run)
    steps_run = sum(len(r.run.losses) - 1 for r in result.runs)
    print(f"digits MLP, batch {batch}: sweep of {args.points} rates × {args.steps} steps: {sweep_seconds:.2f} s")
    print(f"one lazy run of {args.steps} steps (median of {args.repeats}): {one_run:.3f} s")
    print(f"steps actually run: {steps_run} of {args.points * args.steps} "
          f"({', '.join(sorted({str(r.run.stopped) for r in result.runs}))})")
    print(f"ratio sweep ÷ ({args.points} × lazy run) = {ratio:.2f}   (target ≤ 0.5)")
    for r in result.runs:
        print(f"  η·λ₀ = {r.run.lr * result.lambda0:6.2f}  {r.verdict.phase:10s}  steps {len(r.run.losses) - 1:4d}  "
              f"stopped: {r.run.stopped}")
    if args.json:
        args.json.write_text(json.dumps({
            "sweep_seconds": sweep_seconds, "one_run_seconds": one_run, "ratio": ratio, "points": args.points,
            "steps": args.steps, "steps_run": steps_run,
        }, indent=2))


if __name__ == "__main__":
    main()
