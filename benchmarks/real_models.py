"""Real models as their users write them: ``lrphase probe`` on each library's example file, against a dense float64 λ₀.

For every example of ``libraries.LIBRARY_EXAMPLES`` (transformers BERT and GPT-2, timm ViT,
torchvision MobileNetV3, an LSTM and an EmbeddingBag classifier in plain torch, the Lightning and
momentum digits files) it runs the installed CLI as a subprocess, exactly as a user would, twice:

1. ``lrphase probe FILE --json --no-measure`` — the file's own settings (float32, its batch size);
2. ``... --dtype float64 --batch-size N --batches 1 --tol 1e-10 --max-iter 300`` — the whole data
   as one batch (N = its size, or the example's cap that keeps J small).

Each row records the exit code, the wall seconds, λ₀, the J·v mode (``jvp_mode``) and notes (the
error line of a failed run). The float64 row is checked against :func:`libraries.dense_top`: the
same batch (``make_batches(data, batch_size=N, batches=1, seed=0)``, the one the CLI draws), J of
a float64 copy by plain autograd, H the Hessian of the loss as the library writes it
(``F.cross_entropy``; transformers' ``ForCausalLMLoss`` for GPT-2). Where J and its Gram matrices
would need more than ``--dense-budget-gb``, the row says "too big for dense".

    python benchmarks/real_models.py [--models bert,gpt2,...] [--dense-budget-gb 2] [--json out/real_models.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from common import LRPHASE_EXE, ROOT, SEED, cpu_counters, others_load, parameter_count
from libraries import LIBRARY_EXAMPLES, dataset_size, dense_bytes, dense_top, output_size
from lrphase.cli.model_file import load_spec
from lrphase.curvature.data import make_batches

FLOAT64 = ("--dtype", "float64", "--batches", "1", "--tol", "1e-10", "--max-iter", "300")
AGREE = 1e-6  # a float64 λ₀ at tol 1e-10 should agree with the dense one to far better than this
console = Console(width=None if sys.stdout.isatty() else 160)


def run_cli(path: str, extra: tuple[str, ...], timeout: float, threads: int | None) -> dict[str, Any]:
    """``lrphase probe path --json --no-measure *extra`` in a subprocess: exit code, seconds, λ₀, J·v mode, notes."""
    command = [str(LRPHASE_EXE), "probe", path, "--json", "--no-measure", *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    shown = "lrphase " + " ".join(command[1:])
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": shown, "exit_code": None, "seconds": timeout, "notes": [f"timed out after {timeout:g} s"]}
    row: dict[str, Any] = {"command": shown, "exit_code": proc.returncode, "seconds": time.perf_counter() - start}
    try:
        record = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        record = None
    if record is not None:
        row.update(
            lambda0=record["lambda0"], jvp_mode=record["jvp_mode"], converged=record["converged"],
            iterations=record["iterations"], batch_size=record["batch_size"], loss=record["loss"],
            dtype=record["dtype"], notes=list(record.get("notes") or []),
        )  # fmt: skip
        if not record["converged"]:
            row["notes"].append(f"not converged (relative residual {record['max_relative_residual']:.1e})")
    else:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        row["notes"] = [lines[-1].strip() if lines else f"no output (exit {proc.returncode})"]
    return row


def reference(name: str, path: str, batch: int, budget: float) -> dict[str, Any]:
    """The dense float64 λ₀ on the CLI's whole-data batch, or why there is none."""
    spec = load_spec(str(ROOT / path), seed=SEED)
    ((x, y),) = make_batches(spec.data, batch_size=batch, batches=1, seed=SEED)
    rows, params = output_size(spec.model, x), parameter_count(spec.model)
    need = dense_bytes(rows, params)
    out: dict[str, Any] = {"rows": rows, "parameters": params, "dense_bytes": need}
    if need > budget:
        out["note"] = (
            f"too big for dense: J ({rows:,} × {params:,}) and Gram matrices need {need / 2**30:.1f} GiB > {budget / 2**30:g} GiB"
        )
        return out
    start = time.perf_counter()
    try:
        out["lambda0"] = dense_top(spec.model, x, y, LIBRARY_EXAMPLES[name].library_loss)
    except Exception as exc:  # noqa: BLE001 - a failed reference is a row, not the end of the run
        out["note"] = f"reference failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    out["seconds"] = time.perf_counter() - start
    return out


def bench_model(name: str, budget: float, cap: int | None, timeout: float, threads: int | None) -> list[dict[str, Any]]:
    entry = LIBRARY_EXAMPLES[name]
    try:
        spec = load_spec(str(ROOT / entry.path), seed=SEED)
    except Exception as exc:  # noqa: BLE001 - e.g. the library is not installed
        note = f"cannot load: {str(exc).splitlines()[0][:200]}"
        console.print(f"[bold]{name}[/]: {note}")
        return [{"model": name, "library": entry.library, "file": entry.path, "setting": "—", "exit_code": None, "notes": [note]}]
    size = dataset_size(spec.data)
    batch = min(size, cap or entry.full_batch_cap)
    base = {"model": name, "library": entry.library, "file": entry.path, "parameters": parameter_count(spec.model)}
    console.print(f"[bold]{name}[/] ({entry.library}): {entry.path}, {base['parameters']:,} parameters, {size} samples")

    default = {**base, "setting": "file's own (float32)", **run_cli(entry.path, (), timeout, threads)}
    console.print(f"  default: exit {default['exit_code']}, {default['seconds']:.1f} s, λ₀ {default.get('lambda0')}")
    whole = {
        **base,
        "setting": f"float64, {'all ' if batch == size else ''}{batch} samples" + ("" if batch == size else f" of {size}"),
        **run_cli(entry.path, ("--batch-size", str(batch), *FLOAT64), timeout, threads),
    }
    console.print(f"  float64 N={batch}: exit {whole['exit_code']}, {whole['seconds']:.1f} s, λ₀ {whole.get('lambda0')}")
    ref = reference(name, entry.path, batch, budget)
    whole["reference"] = ref
    if "note" in ref:
        whole["notes"] = [*whole.get("notes", []), ref["note"]]
    if "lambda0" in ref:
        whole["reference_lambda0"] = ref["lambda0"]
        if whole.get("lambda0") is not None:
            whole["relative_difference"] = abs(whole["lambda0"] - ref["lambda0"]) / abs(ref["lambda0"])
        console.print(f"  reference λ₀ {ref['lambda0']:.12g} ({ref['seconds']:.1f} s)")
    return [default, whole]


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"`lrphase probe FILE --json --no-measure` on real models; reference: dense float64 (agrees ≤ {AGREE:g})")
    for col in ("model", "library", "setting", "exit", "seconds", "λ₀", "reference λ₀", "rel. diff", "J·v", "notes"):
        table.add_column(col, justify="right" if col in ("exit", "seconds", "λ₀", "reference λ₀", "rel. diff") else "left")
    for i, r in enumerate(rows):
        first = i == 0 or rows[i - 1]["model"] != r["model"]
        last = i == len(rows) - 1 or rows[i + 1]["model"] != r["model"]
        diff = r.get("relative_difference")
        code = r.get("exit_code")
        table.add_row(
            r["model"] if first else "",
            r["library"] if first else "",
            r["setting"],
            "—" if code is None else f"[{'green' if code == 0 else 'red'}]{code}[/]",
            f"{r['seconds']:.1f}" if "seconds" in r else "—",
            f"{r['lambda0']:.10g}" if r.get("lambda0") is not None else "—",
            f"{r['reference_lambda0']:.10g}" if "reference_lambda0" in r else "—",
            "—" if diff is None else f"[{'green' if diff <= AGREE else 'red'}]{diff:.1e}[/]",
            r.get("jvp_mode") or "—",
            "; ".join(r.get("notes", [])),
            end_section=last,
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ",".join(LIBRARY_EXAMPLES)
    parser.add_argument("--models", default=choices, help=f"comma-separated subset of {choices}")
    parser.add_argument("--dense-budget-gb", type=float, default=2.0, help="largest dense reference (J, Gram matrices) to build")
    parser.add_argument("--cap", type=int, default=None, help="samples in the float64 batch (default: each example's own cap)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each CLI run may take")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the CLI and torch threads here")
    parser.add_argument("--json", type=Path, default=Path("out/real_models.json"), metavar="PATH", help="where to write the rows")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in LIBRARY_EXAMPLES]
    if unknown:
        parser.error(f"unknown models {unknown}: choose from {', '.join(LIBRARY_EXAMPLES)}")
    if not LRPHASE_EXE.exists():
        parser.error(f"{LRPHASE_EXE} not found: install lrphase into this environment (pip install -e .)")
    if args.threads:
        torch.set_num_threads(args.threads)

    started, cpu_before = time.perf_counter(), cpu_counters()
    budget = args.dense_budget_gb * 2**30
    rows = [row for name in names for row in bench_model(name, budget, args.cap, args.timeout, args.threads)]
    print_table(rows)
    total = time.perf_counter() - started
    other = others_load(cpu_before, cpu_counters(), total)
    load = "" if other is None else f"; other processes used {other:.2f} cores on average"
    console.print(f"total {total:.0f} s; {os.cpu_count()} CPUs{load}")
    payload = {
        "torch": torch.__version__,
        "platform": platform.platform(),
        "threads": args.threads or torch.get_num_threads(),
        "dense_budget_gb": args.dense_budget_gb,
        "total_seconds": total,
        "foreign_load_cores": other,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
