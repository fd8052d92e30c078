"""Held-out spot check of the warmup + cosine advice: three models the schedule divisors were not calibrated on.

The divisors of a decaying schedule (``lrphase.advice``) were chosen on the zoo of ``training_quality.py``
under ``--schedule warmup-cosine``. This script runs the same protocol (grid over the peak, lrphase's
recommended peak with its warmup advice, the range test's min/10 and valley as peaks) on models outside
that zoo: a three-block post-LayerNorm transformer with Adam, the digits ReLU MLP with SGD momentum 0.9,
and a digits tanh MLP with AdamW.

    python benchmarks/schedule_heldout.py [--seeds 2]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import training_quality as tq


class PostLNBlock(tq.AttentionBlock):
    """The attention block with LayerNorm after each residual sum (the original transformer's, warmup-hungry)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.mlp(x))


class PostLNTransformer(tq.TokenTransformer):
    def __init__(self) -> None:
        super().__init__(depth=3)
        self.blocks = nn.Sequential(*(PostLNBlock(32, 2) for _ in range(3)))


TASKS = [
    tq.Task("heldout_postln_adam", "post-LN transformer (3 blocks, d 32), most frequent of 12 tokens", PostLNTransformer,
            tq.token_mode, "cross_entropy", "classification", epochs=20, lattice=tq.ADAM_LATTICE,
            optimizer=torch.optim.Adam),
    tq.Task("heldout_digits_momentum", "digits MLP 64-256-256-10 ReLU", lambda: tq.mlp(tq.DIGITS, nn.ReLU), tq.digits,
            "cross_entropy", "classification", epochs=30, momentum=0.9, lattice=tq.MOMENTUM_LATTICE),
    tq.Task("heldout_tanh_adamw", "digits MLP 64-128-128-10 tanh", lambda: tq.mlp((64, 128, 128, 10), nn.Tanh), tq.digits,
            "cross_entropy", "classification", epochs=30, lattice=tq.ADAM_LATTICE, optimizer=torch.optim.AdamW,
            optimizer_options=tq.ADAMW),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cache", type=tq.Path, default=tq.ROOT / "out" / "schedule_heldout_grid.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tq.SCHEDULE = "warmup-cosine"
    cache = tq.GridCache(args.cache)
    tallies = {"lrphase": tq.Tally(), "min/10": tq.Tally(), "valley": tq.Tally()}
    for task in TASKS:
        tq.TASKS[task.name] = task
        split = task.data()
        for seed in range(args.seeds):
            truth = tq.ground_truth(task, split, seed, tq.grid_runs(task, split, seed, cache, cached_only=False))
            probe = tq.run_lrphase(task, split, seed)
            finder = tq.run_range_test(task, split, seed, 1e-7, task.grid()[-1])
            best = truth.best_score
            for name, suggestion in (("lrphase", probe.recommended), ("min/10", finder.minimum), ("valley", finder.valley)):
                tallies[name] = tallies[name].add(task, suggestion, best)
            warmup = probe.warmup
            assert warmup is not None
            print(f"{task.name} seed {seed}: grid-best η {truth.best_rate:.3g}; lrphase η {probe.recommended.rate:.3g} → "
                  f"{tq._fraction_text(task, probe.recommended, best)}, warmup {warmup.recommended_steps} steps (without → "
                  f"{tq._fraction_text(task, warmup.without, best)}); min/10 → {tq._fraction_text(task, finder.minimum, best)}; "
                  f"valley → {tq._fraction_text(task, finder.valley, best)}", flush=True)
    for name, t in tallies.items():
        print(f"{name}: {t.at_99} · {t.at_95} · {t.failed} of {t.pairs} (≥ 99% · ≥ 95% · failed)")


if __name__ == "__main__":
    main()
