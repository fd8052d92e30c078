"""The empirical phase diagram: the same short training at a grid of learning rates.

Every run starts from the same initialization and trains with full-batch gradient descent
on one fixed batch (see :mod:`lrphase.dynamics`); each is classified by
:func:`lrphase.dynamics.verdict.classify_run`. From the grid:

* η_crit (empirical): the boundary between the largest lazy rate and the smallest rate
  above it that is not lazy, reported as the geometric midpoint of that bracket;
* η_max (empirical): the boundary between the largest rate that still converges (lazy or
  catapult) and the smallest rate above it that does not (divergent or unresolved);
* c_act (fitted) = η_max,emp · λ₀, with λ₀ measured on the training batch itself.

The default grid adapts when it misses the divergence boundary: while its lowest rate already
fails to converge it extends downward, and while no rate fails it extends upward, by a factor
``EXTEND_FACTOR`` per run and at most ``MAX_EXTENSIONS`` runs each way (cross-entropy nets can
diverge far below 0.25·η_crit). Each bracket is then narrowed in ``refine`` rounds in log-space: one run at its geometric
midpoint per round (bisection); under ``torch.distributed`` a round trains as many rates as
there are ranks, shared between the open brackets, each bracket split evenly by its share.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..curvature.distributed import gather_objects, world
from ..dynamics.runs import Run, make_trainer
from ..dynamics.verdict import Verdict, classify_run
from ..errors import InputError
from ..theory.optimizers import Optimizer, resolve_optimizer
from .probe import ProbeResult, probe

CONVERGED_RATIO = 1e-2
CONVERGING = ("lazy", "catapult")
EXTEND_FACTOR = 2.0
MAX_EXTENSIONS = 8


@dataclass(frozen=True)
class SweepRun:
    """One learning rate of the sweep: its curve and its verdict."""

    run: Run
    verdict: Verdict


@dataclass(frozen=True)
class Boundary:
    """An empirical phase boundary: the bracket [below, above] and its geometric midpoint."""

    below: float
    above: float

    @property
    def estimate(self) -> float:
        """The geometric midpoint √(below·above)."""
        return math.sqrt(self.below * self.above)


@dataclass(frozen=True)
class SweepResult:
    """Runs sorted by learning rate, the predicted and the empirical phase boundaries."""

    probe: ProbeResult
    runs: tuple[SweepRun, ...]
    steps: int
    crit: Boundary | None
    max: Boundary | None
    optimizer: Optimizer

    @property
    def lambda0(self) -> float:
        """λ₀ on the training batch (the probe ran on that batch alone)."""
        return self.probe.estimate.lambda0

    @property
    def eta_crit_empirical(self) -> float | None:
        """The empirical η_crit, where the grid bracketed it."""
        return self.crit.estimate if self.crit else None

    @property
    def eta_max_empirical(self) -> float | None:
        """The empirical η_max, where the grid bracketed it."""
        return self.max.estimate if self.max else None

    @property
    def c_act_fitted(self) -> float | None:
        """c_act = η_max,emp · λ₀, where η_max was bracketed."""
        return self.max.estimate * self.lambda0 if self.max else None


def default_grid(eta_crit: float, eta_max: float, points: int) -> list[float]:
    """``points`` log-spaced rates from 0.25·η_crit (deep in the lazy phase) to 1.5·η_max."""
    if points < 2:
        raise InputError(f"--points must be at least 2, got {points}")
    lo, hi = math.log(0.25 * eta_crit), math.log(1.5 * eta_max)
    return [math.exp(lo + (hi - lo) * i / (points - 1)) for i in range(points)]


def run_sweep(
    model: nn.Module,
    data: Any,
    *,
    loss: Any = None,
    lrs: Sequence[float] | None = None,
    points: int = 16,
    steps: int = 200,
    refine: int = 3,
    c_act: float | None = None,
    batch_size: int | None = None,
    device: Any = None,
    dtype: Any = None,
    seed: int = 0,
    tol: float = 1e-3,
    max_iter: int = 100,
    optimizer: Optimizer | Any = None,
    out_dir: str | Path | None = None,
    on_run: Callable[[SweepRun, int, int], None] | None = None,
) -> SweepResult:
    """Train at each rate of ``lrs`` and locate the phase boundaries.

    ``lrs`` defaults to :func:`default_grid`, extended as the module doc says. λ₀ is measured on
    the training batch (the NTK λ₀, which the sweep does not use, is not). Under
    ``torch.distributed`` the grid's rates and each refinement round's rates are shared out across
    the ranks. With ``out_dir`` each finished run is written to
    ``out_dir/run-<lr>.json`` at once, and runs already there with the same settings are reused.
    """
    optimizer = resolve_optimizer(optimizer, model)
    if steps < 1 or refine < 0:
        raise InputError(f"--steps must be at least 1 and --refine at least 0, got {steps} and {refine}")
    if lrs is not None and (not lrs or any(not lr > 0 for lr in lrs)):
        raise InputError("--lrs must list positive learning rates")
    probed = probe(
        model,
        data,
        loss=loss,
        c_act=c_act,
        optimizer=optimizer,
        measure=False,
        batch_size=batch_size,
        batches=1,
        device=device,
        dtype=dtype,
        seed=seed,
        tol=tol,
        max_iter=max_iter,
        distributed=False,
        ntk=False,
    )
    est, ph = probed.estimate, probed.phases
    trainer = make_trainer(
        model,
        data,
        loss=est.loss,
        batch_size=batch_size,
        device=torch.device(est.device),
        dtype=dtype,
        seed=seed,
        optimizer=optimizer,
        jvp_mode=est.jvp_mode,
        tol=tol,
        max_iter=max_iter,
        initial=est.per_batch[0].gn,
    )
    store = _RunStore(
        out_dir,
        dict(steps=steps, seed=seed, batch_size=est.batch_size, loss=est.loss.name, optimizer=trainer.optimizer.to_dict()),
    )
    edge = probed.advice.adaptive.eta_edge if probed.advice.adaptive is not None else None
    crit, top = (edge, 4.0 * edge) if edge is not None else (ph.eta_crit, ph.eta_max)
    grid = sorted(lrs) if lrs is not None else default_grid(crit, top, points)
    rank, size = world()
    total = len(grid[rank::size]) + refine * (2 if size == 1 else 1)  # the runs this rank trains, before extensions
    done: dict[float, SweepRun] = {}
    trained: list[float] = []  # by this rank, for progress

    def train(lr: float) -> SweepRun:
        run = store.load(lr) or trainer.run(lr, steps, converged_ratio=CONVERGED_RATIO, stop_when_catapulted=True)
        store.save(run)
        result = SweepRun(run, classify_run(run.losses, lr, lambda_start=run.lambda_start, lambda_end=run.lambda_end))
        done[lr] = result
        trained.append(lr)
        if on_run is not None:
            on_run(result, len(trained), max(total, len(trained)))
        return result

    def train_shared(rates: list[float]) -> None:
        """Train the new ``rates``, each rank every size-th of them; afterwards all ranks hold all runs."""
        todo = [lr for lr in dict.fromkeys(rates) if lr not in done]
        mine = [train(lr) for lr in todo[rank::size]]
        if size > 1:
            for sweep_run in gather_objects(mine):
                done.setdefault(sweep_run.run.lr, sweep_run)

    train_shared(grid)
    tests = {"crit": lambda p: p != "lazy", "max": lambda p: p not in CONVERGING}
    if lrs is None:
        _extend(done, tests["max"], train_shared)
    bounds = {name: _bracket(done, fails) for name, fails in tests.items()}
    for _ in range(refine):
        open_brackets = {name: b for name, b in bounds.items() if b is not None}
        if not open_brackets:
            break
        share = max(1, size // len(open_brackets))
        train_shared([lr for b in open_brackets.values() for lr in _interior(b, share)])
        for name, b in open_brackets.items():
            bounds[name] = _bracket({lr: r for lr, r in done.items() if b.below <= lr <= b.above}, tests[name])
    runs = tuple(done[lr] for lr in sorted(done))
    return SweepResult(probed, runs, steps, bounds["crit"], bounds["max"], trainer.optimizer)


def _extend(done: dict[float, SweepRun], fails: Callable[[str], bool], train: Callable[[list[float]], None]) -> None:
    """Extend the grid down while its lowest rate ``fails``, and up while no rate does (module doc)."""
    for _ in range(MAX_EXTENSIONS):
        lowest = min(done)
        if not fails(done[lowest].verdict.phase):
            break
        train([lowest / EXTEND_FACTOR])
    for _ in range(MAX_EXTENSIONS):
        if any(fails(r.verdict.phase) for r in done.values()):
            break
        train([max(done) * EXTEND_FACTOR])


def _bracket(done: dict[float, SweepRun], fails: Callable[[str], bool]) -> Boundary | None:
    """The smallest rate whose phase ``fails``, with the passing rate just below it (None if there is none)."""
    rates = sorted(done)
    for i, lr in enumerate(rates):
        if fails(done[lr].verdict.phase):
            return Boundary(rates[i - 1], lr) if i > 0 and not fails(done[rates[i - 1]].verdict.phase) else None
    return None


def _interior(bound: Boundary, count: int) -> list[float]:
    """``count`` rates splitting [below, above] into count + 1 equal parts in log-space."""
    lo, hi = math.log(bound.below), math.log(bound.above)
    return [math.exp(lo + (hi - lo) * i / (count + 1)) for i in range(1, count + 1)]


class _RunStore:
    """Each finished run as ``run-<lr>.json`` in a folder, written atomically; reused when settings match."""

    def __init__(self, folder: str | Path | None, settings: dict[str, Any]) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.settings = settings
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create --out folder '{folder}': {exc}") from exc

    def _path(self, lr: float) -> Path:
        assert self.folder is not None
        return self.folder / f"run-{lr:.6e}.json"

    def load(self, lr: float) -> Run | None:
        if self.folder is None or not self._path(lr).exists():
            return None
        try:
            record = json.loads(self._path(lr).read_text())
        except (OSError, ValueError):
            return None
        if record.get("settings") != self.settings:
            return None
        return Run(
            lr=record["lr"],
            losses=tuple(float(x) for x in record["losses"]),
            curvature=tuple((int(s), float(v)) for s, v in record["curvature"]),
            steps=record["steps"],
            stopped=record["stopped"],
        )

    def save(self, run: Run) -> None:
        if self.folder is None:
            return
        record = {"settings": self.settings, **asdict(run)}
        record["losses"] = [x if math.isfinite(x) else str(x) for x in run.losses]
        tmp = self._path(run.lr).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self._path(run.lr))
