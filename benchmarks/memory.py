"""Peak memory of a λ₀ estimate against one SGD training step on the same batch.

Each measurement runs in its own subprocess. CPU: the peak resident set size (ru_maxrss)
minus that of a baseline process that loaded the same model and data; CUDA: the peak of
``torch.cuda.max_memory_allocated`` for the operation alone. Compared: one training step at the
full batch, λ₀ on the whole batch (no micro-batching), and λ₀ micro-batched by batch/8.

    python benchmarks/memory.py [--model cnn|mlp] [--batch 1024] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import example_path

MODELS = ("cnn", "mlp")  # examples from common.EXAMPLES measured here

CHILD = r"""
import json, resource, sys, copy
import torch
from lrphase.cli.model_file import load_spec
from lrphase.curvature.losses import resolve_loss
from lrphase.curvature.data import make_batches
from lrphase.curvature.estimate import estimate_lambda0
what, example, batch, device = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
spec = load_spec(example)
loss = resolve_loss(spec.loss)
(x, y), = make_batches(spec.data, batch_size=batch, batches=1, seed=0)
model = spec.model.to(device)
x = x.to(device)
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
if what == "step":
    clone = copy.deepcopy(model)
    out = clone(x).reshape(len(x), -1)
    value = loss.value(out, loss.prepare_targets(y, out))
    value.backward()
    torch.optim.SGD(clone.parameters(), lr=0.01).step()
elif what == "whole":
    estimate_lambda0(model, (x, y), loss=spec.loss, batch_size=batch, batches=1, chunk_size=batch)
elif what == "chunked":
    estimate_lambda0(model, (x, y), loss=spec.loss, batch_size=batch, batches=1, chunk_size=max(1, batch // 8))
if device == "cuda":
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak": peak}))
"""


def measure(what: str, example: Path, batch: int, device: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, what, str(example), str(batch), device],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="cnn")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    example = example_path(args.model)
    results = {what: measure(what, example, args.batch, args.device) for what in ("baseline", "step", "whole", "chunked")}
    base = results["baseline"] if args.device != "cuda" else 0.0
    step = results["step"] - base
    print(f"{args.model}, batch {args.batch}, {args.device}: peak memory above the loaded model and data")
    for what in ("step", "whole", "chunked"):
        extra = results[what] - base
        print(f"  {what:8s} {extra / 2**20:9.1f} MiB   {extra / step:5.2f}× one training step")
    print("  (target: λ₀ micro-batched ≤ 1.5× one training step)")
    if args.json:
        ratios = {w: (results[w] - base) / step for w in ("whole", "chunked")}
        args.json.write_text(json.dumps({"model": args.model, "batch": args.batch, "device": args.device,
                                         "bytes": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
