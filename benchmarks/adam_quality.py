"""Adam/AdamW training quality: lrphase's measured advice against torch-lr-finder's range test, side by side.

Six Adam/AdamW variants of ``training_quality.py``'s models (an MLP, a BatchNorm MLP, a CNN, the
one-block transformer, the Elman RNN and the teacher regression), two seeds each. For every
(model, seed): the ground truth is full training (the protocol of ``training_quality.py``, with the
task's own optimizer) at every rate 2^(k/2), k = −28 … 0; then ``lrphase.probe`` with the task's
optimizer and torch-lr-finder's 100-step range test (1e-7 … 1, the same optimizer, loss and
loader) run in one process, each timed in training steps of the model, and full training at
lrphase's recommended rate and at the range test's steepest, min/10 and fastai valley suggestions.
It prints one line per pair: cost in steps and each method's rate and score ÷ grid best, and the
counts. This is the set on which the adaptive verdict and the divisor 4 were calibrated: it is not
held out.

    python benchmarks/adam_quality.py [--models cal_adamw_mlp,...] [--seeds 2] [--json out/adam_quality.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

import lrphase  # noqa: E402
import training_quality as tq  # noqa: E402

LATTICE = (-28, 0)  # 6.1e-5 … 1
WEIGHT_DECAY = (("weight_decay", 0.01),)


@dataclasses.dataclass(frozen=True)
class AdamTask(tq.Task):
    """A ``training_quality`` task trained with an adaptive optimizer class and its options."""

    adaptive: type = torch.optim.Adam
    adaptive_options: tuple[tuple[str, Any], ...] = ()

    def make_optimizer(self, params: Any, lr: float) -> torch.optim.Optimizer:
        return self.adaptive(params, lr=lr, **dict(self.adaptive_options))

    sgd = make_optimizer  # the name older revisions of training_quality.py call

    def lrphase_optimizer(self) -> Any:
        return lrphase.Optimizer.from_class(self.adaptive, **dict(self.adaptive_options))


TASKS = {
    task.name: task
    for task in (
        AdamTask("cal_adamw_mlp", "digits MLP ReLU, AdamW wd 0.01", lambda: tq.mlp(tq.DIGITS, nn.ReLU), tq.digits,
                 "cross_entropy", "classification", epochs=30, lattice=LATTICE, adaptive=torch.optim.AdamW,
                 adaptive_options=WEIGHT_DECAY),
        AdamTask("cal_adam_bn", "digits MLP BatchNorm + ReLU, Adam", lambda: tq.mlp(tq.DIGITS, nn.ReLU, batch_norm=True),
                 tq.digits, "cross_entropy", "classification", epochs=30, lattice=LATTICE),
        AdamTask("cal_adam_cnn", "digits CNN, Adam", tq.digits_cnn, tq.digits, "cross_entropy", "classification", epochs=30,
                 lattice=LATTICE),
        AdamTask("cal_adamw_transformer", "one-block transformer, AdamW wd 0.01", tq.TokenTransformer, tq.token_mode,
                 "cross_entropy", "classification", epochs=20, lattice=LATTICE, adaptive=torch.optim.AdamW,
                 adaptive_options=WEIGHT_DECAY),
        AdamTask("cal_adam_rnn", "Elman RNN, Adam", tq.ElmanClassifier, tq.one_hot_mode, "cross_entropy", "classification",
                 epochs=20, lattice=LATTICE),
        AdamTask("cal_adam_regression", "teacher regression, ReLU student, Adam", lambda: tq.mlp((16, 128, 128, 1), nn.ReLU),
                 tq.teacher_regression, "mse", "regression", epochs=14, lattice=LATTICE),
    )
}  # fmt: skip


def evaluate(task: AdamTask, seed: int) -> dict[str, Any]:
    split = task.data()
    grid = [tq.train(task, split, seed, lr) for lr in task.grid()]
    passed = [run.score for run in grid if not run.failed]
    best = max(passed) if task.kind == "classification" else min(passed)

    def fraction(rate: float | None) -> tuple[float | None, float | None]:
        if rate is None:
            return None, None
        run = tq.train(task, split, seed, rate)
        return rate, 0.0 if run.failed else tq.fraction(task, run.score, best)

    step = tq.step_seconds(task, split, seed)
    started = time.perf_counter()
    probed = lrphase.probe(task.model(seed), (split.x_train, split.y_train), loss=task.loss,
                           optimizer=task.lrphase_optimizer(), batch_size=tq.BATCH, seed=seed)
    cost_lrphase = (time.perf_counter() - started) / step
    from torch_lr_finder import LRFinder

    started = time.perf_counter()
    net = task.model(seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(split.x_train, split.y_train), batch_size=tq.BATCH, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    finder = LRFinder(net, task.make_optimizer(net.parameters(), 1e-7), task.criterion(), device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(loader, start_lr=1e-7, end_lr=1.0, num_iter=tq.RANGE_TEST_STEPS, step_mode="exp")
    cost_range = (time.perf_counter() - started) / step
    steepest, minimum, valley = tq.range_test_suggestions(finder.history["lr"], finder.history["loss"])
    return {
        "model": task.name, "seed": seed, "cost_lrphase": cost_lrphase, "cost_range_test": cost_range,
        "eta_max": probed.eta_max, "lambda_p0": probed.adaptive.lambda_p0 if probed.adaptive else None,
        "lrphase": fraction(probed.eta_recommended), "valley": fraction(valley), "min/10": fraction(minimum),
        "steepest": fraction(steepest),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=tq.ROOT / "out" / "adam_quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.models.split(","):
        task = TASKS[name]
        for seed in range(args.seeds):
            row = evaluate(task, seed)
            rows.append(row)
            methods = " ".join(f"{m} {r:.3g}→{f:.3f}" for m in ("lrphase", "valley", "min/10", "steepest")
                               for r, f in [row[m]] if r is not None)  # fmt: skip
            print(f"{name} seed {seed}: cost lrphase {row['cost_lrphase']:.0f} steps, range test "
                  f"{row['cost_range_test']:.0f}; {methods}", flush=True)  # fmt: skip
    for method in ("lrphase", "valley", "min/10", "steepest"):
        counts = []
        for threshold in (0, 1):
            counts.append(sum(1 for row in rows if row[method][1] is not None
                              and row[method][1] >= tq.THRESHOLDS[TASKS[row["model"]].kind][threshold]))  # fmt: skip
        failed = sum(1 for row in rows if row[method][1] == 0.0)
        print(f"{method}: ≥99% {counts[0]}, ≥95% {counts[1]}, failed {failed} of {len(rows)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
