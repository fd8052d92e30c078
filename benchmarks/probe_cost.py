"""The default probe's cost on real architectures, in training steps of the user's own optimizer.

For each example file of ``libraries.LIBRARY_EXAMPLES`` named (default: BERT, GPT-2 causal LM, timm
ViT, torchvision MobileNetV3, LSTM) and each optimizer (SGD with momentum 0.9, and AdamW with
weight decay 0.01), in one process, one thread: the wall time of ``lrphase.probe`` with its
defaults (the edge measured, as the CLI does), and of 100 training steps on the same data stream
with the same optimizer on a copy in train mode — the steps a 100-step range test trains (its
per-step bookkeeping, which torch-lr-finder adds, left out; its dict batches would not go through
torch-lr-finder as they are). Prints the probe's cost in range tests, its runs and steps.

    python benchmarks/probe_cost.py [--models bert,gpt2,vit,mobilenet,lstm]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import lrphase  # noqa: E402
from libraries import LIBRARY_EXAMPLES, load  # noqa: E402
from lrphase.curvature.data import Inputs, batch_stream  # noqa: E402
from lrphase.curvature.jacobian import seeded_forward  # noqa: E402

RANGE_TEST_STEPS = 100
OPTIMIZERS = {
    "SGD momentum 0.9": (torch.optim.SGD, {"momentum": 0.9}, 0.01),
    "AdamW wd 0.01": (torch.optim.AdamW, {"weight_decay": 0.01}, 1e-3),
}


def range_test_seconds(example, optimizer_class, options, lr: float) -> float:
    """Wall time of ``RANGE_TEST_STEPS`` training steps of the optimizer on the file's data stream."""
    net = copy.deepcopy(example.spec.model).train()
    optimizer = optimizer_class(net.parameters(), lr=lr, **options)
    stream = batch_stream(example.spec.data, batch_size=example.batch_size, seed=0)
    started = time.perf_counter()
    for _ in range(RANGE_TEST_STEPS):
        x, y = next(stream)
        out = seeded_forward(net, Inputs.of(x), seed=0)  # the output rows lrphase's loss takes: one per token for (b, t, v)
        value = example.loss.value(out, example.loss.prepare_targets(y, out))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert,gpt2,vit,mobilenet,lstm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ratios: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
    for model_name in args.models.split(","):
        if model_name not in LIBRARY_EXAMPLES:
            raise SystemExit(f"unknown model {model_name}: one of {', '.join(LIBRARY_EXAMPLES)}")
        example = load(model_name)
        for label, (optimizer_class, options, lr) in OPTIMIZERS.items():
            spec = lrphase.Optimizer.from_class(optimizer_class, **options)
            range_test_seconds(example, optimizer_class, options, lr)  # warm-up
            steps = range_test_seconds(example, optimizer_class, options, lr)
            started = time.perf_counter()
            result = lrphase.probe(example.spec.model, example.spec.data, loss=example.spec.loss, optimizer=spec,
                                   batch_size=example.batch_size)  # fmt: skip
            probe = time.perf_counter() - started
            ratios[label].append(probe / steps)
            runs = result.measurement.runs if result.measurement else ()
            trained = result.measurement.steps_trained if result.measurement else 0
            print(f"{model_name:>10} · {label:<17}: probe {probe:6.1f} s = {probe / steps:4.2f} range tests "
                  f"({len(runs)} runs, {trained} steps); 100 steps {steps:5.1f} s; η_rec {result.eta_recommended:.3g}",
                  flush=True)  # fmt: skip
    for label, values in ratios.items():
        print(f"{label}: median {statistics.median(values):.2f} range tests ({min(values):.2f}–{max(values):.2f})")


if __name__ == "__main__":
    main()
