"""What the benchmark scripts share: the example models, median timing, and the machine's load.

Not a script: ``compare.py``, ``speed.py``, ``memory.py``, ``stopping.py`` and ``sweep_speed.py``
(and the sibling modules ``cases.py``, ``anchors.py``, ``reference.py``) import it as a sibling:
the scripts run as ``python benchmarks/X.py``, so Python puts this folder on ``sys.path``. It
needs only torch and lrphase, no anchor library: ``gpu.sh`` runs ``speed.py`` and ``memory.py``
on a machine with the runtime dependencies alone.

* ``EXAMPLES`` / :func:`load_example` — the three example files (digits MLP batch 256, small
  CNN batch 128, ResNet-18 batch 32), each loaded with the global RNG seeded by ``SEED``, with
  the one batch lrphase itself draws for ``batches=1``;
* :func:`median_time` — median wall time of a callable after untimed warm-up calls
  (synchronized on CUDA);
* :func:`cpu_counters` / :func:`others_load` — how many cores other processes kept busy while
  something was timed (Linux ``/proc/stat``): on a shared machine that load skews every timing;
* :func:`has_sample_coupling` / :func:`batch_statistics_copy` — BatchNorm on batch statistics
  couples the samples of a batch; the copy that drops only the running-stat update.
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrphase.cli.model_file import ModelSpec, load_spec
from lrphase.curvature.data import make_batches
from lrphase.curvature.losses import Loss, resolve_loss

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
TOL = 1e-3  # the accuracy λ₀ is asked for and judged by: relative error ≤ 1e-3
EXAMPLES = {  # name: (example file relative to ROOT, its batch size)
    "mlp": ("examples/digits_mlp.py", 256),
    "cnn": ("examples/small_cnn.py", 128),
    "resnet": ("examples/resnet18.py", 32),
}
LRPHASE_EXE = Path(sys.executable).parent / "lrphase"  # the installed CLI entry point


# --------------------------------------------------------------------------- the examples


@dataclass
class Example:
    """One example file, loaded: its spec (model at initialization, data, loss, defaults) and its batch."""

    name: str
    path: str  # relative to ROOT, as printed
    spec: ModelSpec
    batch_size: int
    loss: Loss
    x: torch.Tensor
    y: torch.Tensor


def example_path(name: str) -> Path:
    return ROOT / EXAMPLES[name][0]


def load_example(name: str) -> Example:
    """The example's spec (its file run with the global RNG seeded by ``SEED``) and the batch lrphase uses.

    The batch is the one ``estimate_lambda0(..., batches=1, seed=SEED)`` draws itself: seeded,
    without replacement, of the file's ``batch_size``.
    """
    path, default_batch = EXAMPLES[name]
    spec = load_spec(str(ROOT / path), seed=SEED)
    batch_size = int(spec.defaults.get("batch_size", default_batch))
    ((x, y),) = make_batches(spec.data, batch_size=batch_size, batches=1, seed=SEED)
    return Example(name, path, spec, batch_size, resolve_loss(spec.loss), x, y)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def has_sample_coupling(model: nn.Module, *, count_dropout: bool = False) -> bool:
    """True when BatchNorm uses batch statistics (train mode, or no running stats): the samples of a batch interact.

    With ``count_dropout``, an active dropout layer (which makes the forward random) counts too.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats):
            return True
        if count_dropout and isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return True
    return False


def batch_statistics_copy(model: nn.Module) -> nn.Module:
    """A copy whose train-mode BatchNorm layers use batch statistics without tracking running stats.

    The forward function (and so the curvature) is unchanged; only the in-place running-stat
    update, which functorch transforms refuse, is gone. Dropout is switched off.
    """
    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
        elif isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return net


# --------------------------------------------------------------------------- timing and load


def synchronize(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    fn: Callable[[], Any], repeats: int, device: torch.device | None = None, warmup: int = 1
) -> tuple[float, list[float], Any]:
    """(median seconds, every timed run's seconds, the last result) of ``repeats`` calls after ``warmup`` untimed ones."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def cpu_counters() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children); Linux only."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    except (OSError, ValueError, IndexError):
        return None
    busy = (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")
    mine = sum(
        r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return busy, mine


def others_load(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float) -> float | None:
    """Cores other processes kept busy on average between two :func:`cpu_counters` readings ``wall`` seconds apart."""
    if before is None or after is None or wall <= 0:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall)
