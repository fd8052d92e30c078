"""Speed benchmark: (time to λ₀ within 1e-3 relative error) ÷ (time of one SGD training step).

Everything is measured in one run, on the same batch, for the three example models
(digits MLP batch 256, small CNN batch 128, ResNet-18 batch 32 with BatchNorm in train mode) and,
with ``--models real`` (or by name), for real architectures as their libraries' users write them:
the example files of ``libraries.LIBRARY_EXAMPLES`` at their own batch size (tiny BERT classifier
and GPT-2 causal LM from transformers, timm ViT-Tiny at 32 px, torchvision MobileNetV3-Small, an
LSTM classifier; dict batches and ``ModelOutput`` outputs, read as lrphase reads them):

1. one SGD step (forward, loss, backward, ``optimizer.step``) on a deep copy: median after a warm-up;
2. a reference λ₀ on that batch: for the three examples dense float64 (per-sample
   ``torch.func.jacrev``, then the eigenvalues of Sᵀ J Jᵀ S) when J fits in ``--dense-budget-gb``,
   else lrphase's own Lanczos in float64 with tol=1e-10 (both built from ``reference.py``); for the
   real architectures ``libraries.dense_top`` (the library's own loss) when it fits, else
   ``estimate_lambda0`` in float64 with tol=1e-10 (the table says which);
3. ``estimate_lambda0(model, data, batches=1, batch_size=B, tol=1e-3, loss=..., ntk=False)`` for each
   J·v mode: median of ``--repeats`` runs after one warm-up, with its relative error and the mode used.

It also measures the CLI's cold start (``lrphase --help``) and whether ``import lrphase.cli.app``
imports torch. ``--device cuda`` times the step and λ₀ on the GPU (synchronized; the reference
is still computed on the CPU in float64). Run: ``python benchmarks/speed.py [--models
mlp,cnn,resnet|real|all|bert,gpt2,...] [--repeats N] [--device cpu|cuda] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import libraries
from common import (
    EXAMPLES,
    LRPHASE_EXE,
    SEED,
    TOL,
    Example,
    cpu_counters,
    has_sample_coupling,
    load_example,
    median_time,
    others_load,
    parameter_count,
)
from lrphase.curvature.data import to_device
from lrphase.curvature.estimate import estimate_lambda0
from lrphase.curvature.jacobian import output_rows, select_output
from lrphase.curvature.lanczos import lanczos_top
from lrphase.errors import InputError
from reference import dense_spectrum, lrphase_gauss_newton

DENSE_ALLOWED = ("mlp", "cnn")  # ResNet-18's BatchNorm in train mode couples the samples: no per-sample J
REAL = ("bert", "gpt2", "vit", "mobilenet", "lstm")  # --models real; any name of libraries.LIBRARY_EXAMPLES is accepted
GROUPS = {"real": REAL, "all": (*EXAMPLES, *REAL)}
MODES = ("auto", "double", "jvp", "linearize")
console = Console(width=None if sys.stdout.isatty() else 120)


def _flat(out: torch.Tensor) -> torch.Tensor:
    return out.reshape(out.shape[0], -1) if out.dim() != 1 else out.reshape(-1, 1)


def time_sgd_step(model: nn.Module, x: Any, y: torch.Tensor, loss_spec, lr: float, repeats: int, device: torch.device) -> float:
    """Median wall time of zero_grad + forward + loss + backward + SGD step, on a deep copy on ``device``.

    ``x`` is a tensor, a tuple of inputs or keyword ``Inputs``; the loss is taken on the output rows
    lrphase uses (a ``ModelOutput``'s logits; one row per token of a sequence model).
    """
    net = copy.deepcopy(model).to(device)  # keeps the user's train/eval modes (BatchNorm stays in train mode)
    inputs, y = to_device(x, device, None), y.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=lr)

    def rows() -> torch.Tensor:
        return output_rows(select_output(inputs.call(net)))

    with torch.no_grad():
        target = loss_spec.prepare_targets(y, rows())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_spec.value(rows(), target).backward()
        opt.step()

    median, _, _ = median_time(step, repeats, device, warmup=2)
    return median


def dense_reference(model: nn.Module, x: torch.Tensor, loss_spec, budget_bytes: float) -> tuple[float | None, str]:
    """λ_max(H^{1/2} J Jᵀ H^{1/2}) in float64 with J from per-sample jacrev; None if J is too big."""
    if has_sample_coupling(model, count_dropout=True):
        return None, "samples are coupled (BatchNorm/dropout): per-sample Jacobian not valid"
    with torch.no_grad():
        out = _flat(copy.deepcopy(model).double()(x.double()))
    m, k = out.shape
    need = m * k * parameter_count(model) * 8
    if need > budget_bytes:
        return None, f"dense J would take {need / 2**30:.1f} GiB > budget {budget_bytes / 2**30:.1f} GiB"
    value = dense_spectrum(model, x, loss_spec)[-1].item()
    return value, f"dense float64 (per-sample jacrev, {need / 2**30:.2f} GiB J)"


def lanczos_reference(model: nn.Module, x: torch.Tensor, loss_spec) -> tuple[float, str]:
    """The reference from lrphase's own pipeline in float64 at tol=1e-10, Gauss–Newton operator only (the quantity λ₀)."""
    operator, dim = lrphase_gauss_newton(model, x, loss_spec)
    res = lanczos_top(operator, dim, dtype=torch.float64, tol=1e-10, max_iter=500, seed=SEED)
    note = f"lrphase Lanczos float64 tol=1e-10 ({res.iterations} it, rel. residual {res.relative_residual:.1e})"
    if not res.converged:
        note += " NOT CONVERGED"
    return res.eigenvalue, note


def real_reference(example: Example, budget_bytes: float) -> tuple[float, str]:
    """A real architecture's reference: ``libraries.dense_top`` (its library's loss) within the budget, else lrphase float64."""
    entry = libraries.LIBRARY_EXAMPLES[example.name]
    rows, params = libraries.output_size(example.spec.model, example.x), parameter_count(example.spec.model)
    need = libraries.dense_bytes(rows, params)
    if need <= budget_bytes:
        value = libraries.dense_top(example.spec.model, example.x, example.y, entry.library_loss)
        return value, f"dense float64 ({rows:,} × {params:,} J, {need / 2**30:.2f} GiB), {entry.library} loss"
    est = estimate_lambda0(
        example.spec.model, example.spec.data, batches=1, batch_size=example.batch_size, loss=example.spec.loss,
        dtype=torch.float64, tol=1e-10, max_iter=500, seed=SEED, jvp_mode="double", ntk=False,
    )  # fmt: skip
    note = f"lrphase float64 tol=1e-10 ({est.iterations} it; dense would take {need / 2**30:.1f} GiB)"
    return est.lambda0, note + ("" if est.converged else " NOT CONVERGED")


def load(name: str) -> Example:
    """An example with the batch lrphase uses: the three of ``common.EXAMPLES``, or a real architecture's file."""
    return load_example(name) if name in EXAMPLES else libraries.load(name)


def bench_model(
    name: str, repeats: int, modes: tuple[str, ...], budget_bytes: float, device: torch.device
) -> dict[str, Any]:
    cpu_before, wall_start = cpu_counters(), time.perf_counter()
    example = load(name)  # with the batch lrphase uses
    path, spec, batch, loss_spec, x, y = example.path, example.spec, example.batch_size, example.loss, example.x, example.y
    n_params = parameter_count(spec.model)
    console.print(f"[bold]{name}[/]: {path}, batch {batch}, {n_params:,} parameters, loss {loss_spec.name}")

    sgd = time_sgd_step(spec.model, x, y, loss_spec, float(spec.defaults.get("lr", 0.01)), max(5, 3 * repeats), device)
    console.print(f"  SGD step: {sgd * 1e3:.1f} ms")

    start = time.perf_counter()
    ref, how = (None, "dense not attempted")
    if name in DENSE_ALLOWED:
        ref, how = dense_reference(spec.model, x, loss_spec, budget_bytes)
        if ref is None:
            console.print(f"  dense reference skipped: {how}")
    if ref is None and name not in EXAMPLES:
        ref, how = real_reference(example, budget_bytes)
    if ref is None:
        ref, how = lanczos_reference(spec.model, x, loss_spec)
    ref_time = time.perf_counter() - start
    console.print(f"  reference λ₀ = {ref:.10g} [{how}, {ref_time:.1f} s]")

    runs = []
    for mode in modes:
        def call(mode=mode):
            return estimate_lambda0(
                spec.model, spec.data, batches=1, batch_size=batch, tol=TOL, loss=spec.loss, seed=SEED, jvp_mode=mode,
                device=device, ntk=False,  # λ₀ only: for cross-entropy the paper's NTK eigenvalue is a second Lanczos run
            )

        median, times, est = median_time(call, repeats, device, warmup=1)
        batch_result = est.per_batch[0]
        run = {
            "mode": mode,
            "used_mode": est.jvp_mode,
            "seconds_median": median,
            "seconds": times,
            "ratio_to_sgd_step": median / sgd,
            "lambda0": est.lambda0,
            "relative_error": abs(est.lambda0 - ref) / abs(ref),
            "gn_iterations": batch_result.gn.iterations,
            "total_iterations": est.iterations,
            "converged": est.converged,
            "notes": list(est.notes),
        }
        runs.append(run)
        console.print(
            f"  {mode:>9} ({est.jvp_mode}): {median:.3f} s = {run['ratio_to_sgd_step']:.1f}× SGD step, "
            f"rel. err {run['relative_error']:.1e}, {run['gn_iterations']}/{run['total_iterations']} it"
        )
    other = others_load(cpu_before, cpu_counters(), time.perf_counter() - wall_start)
    if other is not None and other > 0.2:
        console.print(f"  [yellow]warning: other processes kept {other:.1f} cores busy during this model; timings are skewed[/]")
    return {
        "model": name,
        "foreign_load_cores": other,
        "file": path,
        "batch_size": batch,
        "parameters": n_params,
        "loss": loss_spec.name,
        "batchnorm": "train mode" if has_sample_coupling(spec.model, count_dropout=True) else "none",
        "sgd_step_seconds": sgd,
        "reference_lambda0": ref,
        "reference_method": how,
        "reference_seconds": ref_time,
        "runs": runs,
    }


def cold_start(repeats: int) -> dict[str, Any]:
    """Wall time of ``lrphase --help`` and whether ``import lrphase.cli.app`` pulls in torch."""
    if importlib.util.find_spec("lrphase.cli.app") is None:
        return {"skipped": "lrphase.cli.app does not exist yet"}
    if not LRPHASE_EXE.exists():
        return {"skipped": f"{LRPHASE_EXE} not found (reinstall the package to create the entry point)"}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    times, rc = [], 0
    for _ in range(max(3, repeats)):
        start = time.perf_counter()
        proc = subprocess.run([str(LRPHASE_EXE), "--help"], capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        rc = rc or proc.returncode
    probe = "import sys, lrphase.cli; print(int('torch' in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    imports_torch = proc.stdout.strip() == "1" if proc.returncode == 0 else None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, env=env)
    torch_import = time.perf_counter() - start
    return {
        "help_seconds_median": statistics.median(times),
        "help_seconds": times,
        "help_returncode": rc,
        "cli_imports_torch": imports_torch,
        "cli_import_error": proc.stderr.strip().splitlines()[-1] if proc.returncode else None,
        "python_import_torch_seconds": torch_import,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    models = Table(title="models, SGD step and reference λ₀ (same batch)")
    for col in ("model", "B", "params", "loss", "SGD step", "reference λ₀", "reference method", "ref. time"):
        models.add_column(col, justify="right" if col in ("B", "params", "SGD step", "reference λ₀", "ref. time") else "left")
    for r in results:
        models.add_row(
            r["model"], str(r["batch_size"]), f"{r['parameters']:,}", r["loss"], f"{r['sgd_step_seconds'] * 1e3:.1f} ms",
            f"{r['reference_lambda0']:.10g}", r["reference_method"], f"{r['reference_seconds']:.1f} s",
        )
    console.print(models)
    table = Table(title=f"time to λ₀ (tol={TOL:g}) ÷ one SGD step, {torch.get_num_threads()} threads")
    for col in ("model", "mode (used)", "λ₀ time", "ratio", "rel. err", "iters GN/total"):
        table.add_column(col, justify="left" if col in ("model", "mode (used)") else "right")
    for r in results:
        for i, run in enumerate(r["runs"]):
            err = run["relative_error"]
            table.add_row(
                r["model"] if i == 0 else "",
                f"{run['mode']} ({run['used_mode']})",
                f"{run['seconds_median']:.3f} s",
                f"{run['ratio_to_sgd_step']:.1f}×",
                f"[{'green' if err <= TOL else 'red'}]{err:.1e}[/]",
                f"{run['gn_iterations']}/{run['total_iterations']}" + ("" if run["converged"] else " (not converged)"),
                end_section=i == len(r["runs"]) - 1,
            )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="mlp,cnn,resnet",
        help=f"comma-separated names of {','.join(EXAMPLES)} and {','.join(libraries.LIBRARY_EXAMPLES)}, or real, all",
    )  # fmt: skip
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated J·v modes to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per λ₀ mode (after one warm-up)")
    parser.add_argument("--dense-budget-gb", type=float, default=4.0, help="largest dense float64 J to build")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where the SGD step and λ₀ run: cpu or cuda[:N]")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    names = [m for n in args.models.split(",") if n.strip() for m in GROUPS.get(n.strip(), (n.strip(),))]
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [n for n in names if n not in EXAMPLES and n not in libraries.LIBRARY_EXAMPLES] + [m for m in modes if m not in MODES]
    if bad or args.repeats < 1:
        parser.error(f"unknown models/modes {bad} or --repeats < 1")

    if args.threads:
        torch.set_num_threads(args.threads)
    started, cpu_before = time.perf_counter(), cpu_counters()
    results, skipped = [], {}
    for n in names:
        try:
            results.append(bench_model(n, args.repeats, modes, args.dense_budget_gb * 2**30, device))
        except InputError as exc:  # a real architecture's library is not installed here (e.g. on a bare GPU machine)
            skipped[n] = str(exc).splitlines()[0]
            console.print(f"[yellow]{n}: skipped ({skipped[n]})[/]")
    cold = cold_start(args.repeats)
    print_table(results)
    for n, why in skipped.items():
        console.print(f"skipped {n}: {why}")
    if "skipped" in cold:
        console.print(f"cold start: skipped ({cold['skipped']})")
    else:
        console.print(
            f"cold start: `lrphase --help` {cold['help_seconds_median']:.2f} s (median; exit {cold['help_returncode']}), "
            f"`import lrphase.cli.app` imports torch: {cold['cli_imports_torch']}; "
            f"`python -c 'import torch'` alone: {cold['python_import_torch_seconds']:.2f} s"
        )
    total = time.perf_counter() - started
    other = others_load(cpu_before, cpu_counters(), total)
    console.print(
        f"total benchmark time {total:.0f} s; {os.cpu_count()} CPUs"
        + ("" if other is None else f"; other processes used {other:.2f} cores on average")
    )
    if args.json is not None:
        payload = {
            "tol": TOL,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "repeats": args.repeats,
            "models": results,
            "skipped": skipped,
            "cold_start": cold,
            "total_seconds": total,
            "foreign_load_cores": other,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
