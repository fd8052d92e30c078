"""Side-by-side benchmark: lrphase's λ₀ against curvature libraries and the learning-rate range test.

For each example model (digits MLP batch 256 with the paper's MSE, small CNN batch 128 with
the paper's MSE, ResNet-18 batch 32 with BatchNorm in train mode and cross-entropy), on the
same initialization and the same batch, in one run, it measures for every method the top
eigenvalue it reports, its relative error against an independent float64 reference, the
number of operator products it used (G·v, H·v, or lrphase's Sᵀ J Jᵀ S·u), the wall time (median of
``--repeats`` interleaved rounds after a warm-up), the time relative to lrphase, and whether
the model object handed to it was changed (train/eval mode, BatchNorm buffers, parameters,
``.grad``):

* lrphase — ``lrphase.estimate_lambda0(model, data, loss=..., batches=1, batch_size=B, tol=1e-3)``;
* curvlinops — ``GGNLinearOperator`` (defaults, incl. its determinism check) with scipy ``eigsh``;
* PyHessian — ``hessian(...).eigenvalues()`` (power iteration on the *Hessian*, defaults);
* hessian-eigenthings — ``lanczos`` and ``power_iteration_one`` on its ``HessianOperator``
  (the README's default operator), and ``lanczos`` on its ``GGNOperator``, all at defaults;
* torch-lr-finder — a 100-iteration range test with SGD, against ``lrphase.probe`` (3 batches,
  in-process) and a cold ``lrphase probe examples/X.py --json`` subprocess.

Every method computes the curvature of the example's own loss with its own normalization:
for ``loss="mse"`` that is the paper's L = 1/(2km) Σ (f − y)² on one-hot targets, given to
the libraries as ``PaperMSELoss`` (0.5 · ``F.mse_loss`` with mean reduction over all m·k
entries); for cross-entropy ``nn.CrossEntropyLoss()``. PyHessian and the eigenthings Hessian
rows compute the Hessian, not the Gauss–Newton matrix: their relative error is still taken
against the GGN reference, since that gap is exactly what a user picking them would get.

Where a library cannot handle BatchNorm in train mode (functorch refuses the running-stat
update), its row says so, and an extra row ``(BN workaround)`` runs it on a copy whose
BatchNorm layers use batch statistics without tracking running statistics — what lrphase does
internally — so that the quantity is still the same.

The reference λ on the benchmark batch (the table says which was used):
``dense`` — per-sample Jacobians (``torch.func.jacrev``) in float64, K = J Jᵀ, top eigenvalue of
S K S with S the symmetric square root of the loss's output-space Hessian; only without
sample coupling and when J fits in ``--dense-budget-gb``. ``exact`` — the same K assembled
column by column (K e_i = J (Jᵀ e_i), batched autograd), any model. ``lanczos`` — Lanczos
with full reorthogonalization in float64, run to a residual ≤ 1e-9·λ (checked with one more
explicit product), on the output-space operator S J Jᵀ S built here with plain autograd —
code independent of lrphase's. ``auto`` (default): dense where allowed, else lanczos. A
float64 lrphase run at tol=1e-10 is reported alongside as a cross-check. float64 convolutions
are slow on CPU, so references are cached in ``out/compare_reference_cache.json``, keyed by a
hash of the weights, the batch, the loss, the mode and the torch version
(``--no-reference-cache`` recomputes).

The methods run interleaved, round by round, in a rotating order, on a fresh copy of the model
each time. Warm-up: a full untimed round (MLP, CNN), or for ResNet-18 one product with each
method's own machinery (``--warmup``).

Run: ``python benchmarks/compare.py [--models mlp,cnn,resnet] [--repeats 3] [--json PATH]
[--skip curvlinops,pyhessian,eigenthings,workaround,range-test,probe,cli,crosscheck] [--threads N]``.
On a shared machine use ``--threads 1``: with torch's default of one OpenMP thread per core, a
single foreign process can slow every method ten-fold or more.
The anchors are benchmark-only extras: ``pip install -e '.[bench]'``.

This file is the harness: options, interleaved timing rounds, tables and JSON. The methods (one
adapter per library, one call signature) are in ``anchors.py``, the example case and the
model-change check in ``cases.py``, the float64 references and their cache in ``reference.py``,
and what every benchmark script shares (the examples, the load on the machine) in ``common.py``.
"""


from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import lrphase
from anchors import Method, Outcome, build_methods
from cases import Case, load_case, model_changes, snapshot
from common import EXAMPLES, LRPHASE_EXE, ROOT, TOL, batch_statistics_copy, cpu_counters, others_load
from reference import cached_reference

SKIPPABLE = ("curvlinops", "pyhessian", "eigenthings", "workaround", "range-test", "probe", "cli", "crosscheck")
console = Console(width=None if sys.stdout.isatty() else 180, highlight=False)


# --------------------------------------------------------------------------- one run of one method


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the libraries' prints, progress bars and warnings during a timed call."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def light_warmup(case: Case) -> None:
    """One of each kind of product on a copy: fills oneDNN/autograd/functorch caches for this shape."""
    from torch.func import functional_call, jvp, vjp

    with quiet():
        net = batch_statistics_copy(case.model)
        params = [p for p in net.parameters() if p.requires_grad]
        loss = case.criterion(net(case.x), case.target)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        torch.autograd.grad(grads, params, [torch.ones_like(p) for p in params])
        names = [n for n, p in net.named_parameters() if p.requires_grad]
        with fwAD.dual_level():
            duals = {n: fwAD.make_dual(p.detach(), torch.ones_like(p)) for n, p in zip(names, params, strict=True)}
            functional_call(net, duals, (case.x,))
        primals = {n: p.detach() for n, p in zip(names, params, strict=True)}
        f = lambda p: functional_call(net, p, (case.x,))  # noqa: E731
        _, fn = vjp(f, primals)
        _, tangent = jvp(f, (primals,), ({n: torch.ones_like(p) for n, p in primals.items()},))
        fn(tangent)


@dataclass
class Row:
    method: Method
    runs: list[Outcome] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    warmup_seconds: float | None = None
    changed: list[str] | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def outcome(self) -> Outcome | None:
        return self.runs[-1] if self.runs else None


def call(row: Row, case: Case, timed: bool) -> None:
    """One run of one method on a fresh copy of the user's model; records time, result and changes."""
    model = case.fresh_model()
    before = snapshot(model)
    gc.collect()
    try:
        with quiet(), torch.random.fork_rng():
            start = time.perf_counter()
            outcome = row.method.run(model, case)
            elapsed = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a failing anchor is a result, not a crash
        first = (str(exc).strip().splitlines() or [""])[0]
        row.error = f"{type(exc).__name__}: {first}"
        row.changed = model_changes(before, model)
        return
    row.changed = model_changes(before, model)
    row.runs.append(outcome)
    if timed:
        row.seconds.append(elapsed)
    else:
        row.warmup_seconds = elapsed
    del model
    gc.collect()


def warm_once(row: Row, case: Case) -> None:
    """Light warm-up of one method: one product with its own machinery (a full run for lrphase)."""
    model = case.fresh_model()
    warm = row.method.warm or row.method.run
    with contextlib.suppress(Exception), quiet(), torch.random.fork_rng():
        warm(model, case)
    del model
    gc.collect()


def cold_cli(case: Case) -> dict[str, Any]:
    if not LRPHASE_EXE.exists():
        return {"error": f"{LRPHASE_EXE} not found"}
    cmd = [str(LRPHASE_EXE), "probe", case.path, "--json"]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"command": " ".join(["lrphase", *cmd[1:]]), "seconds": seconds, "returncode": proc.returncode}
    try:
        payload = json.loads(proc.stdout)
        result.update(lambda0=payload.get("lambda0"), iterations=payload.get("iterations"), converged=payload.get("converged"))
    except json.JSONDecodeError:
        result["error"] = (proc.stderr.strip().splitlines() or ["no JSON on stdout"])[-1][:200]
    return result


def bench_case(name: str, methods: list[Method], args: argparse.Namespace) -> dict[str, Any]:
    wall0, cpu0 = time.perf_counter(), cpu_counters()
    case = load_case(name)
    console.print(
        f"[bold]{name}[/]: {case.path}, batch {case.batch_size}, {case.parameters:,} parameters, loss {case.loss.name}"
        + (", BatchNorm in train mode (samples coupled)" if case.coupled else "")
    )
    ref = cached_reference(
        case, mode=args.reference, dense_budget_bytes=args.dense_budget_gb * 2**30, crosscheck="crosscheck" not in args.skip,
        cache_path=args.reference_cache,
    )
    console.print(
        f"  reference λ = {ref['value']:.10g}  ({escape(ref['method'])}; "
        + ("cached" if ref["cached"] else f"{ref['seconds']:.1f} s") + ")"
    )
    if "lrphase_float64" in ref:
        x = ref["lrphase_float64"]
        console.print(
            f"  cross-check: lrphase float64 tol=1e-10 λ = {x['value']:.10g} (rel. diff {x['relative_difference']:.1e}, "
            f"{x['products']} products)"
        )

    repeats = args.repeats if name != "resnet" else args.resnet_repeats
    warmup = args.warmup or ("light" if name == "resnet" else "full")
    rows = [
        Row(m) for m in methods
        if (case.coupled or not m.only_coupled) and (case.loss.is_cross_entropy or not m.only_cross_entropy)
    ]
    if warmup == "light":
        light_warmup(case)
        for row in rows:
            warm_once(row, case)
    for round_index in range(repeats + (warmup == "full")):
        timed = warmup != "full" or round_index > 0
        shift = round_index % len(rows)  # rotate the order: bursts of foreign load hit every method alike
        for row in rows[shift:] + rows[:shift]:
            if row.error is None:
                call(row, case, timed)
        console.print(f"  round {round_index + 1}/{repeats + (warmup == 'full')} done ({time.perf_counter() - wall0:.0f} s)")
    cli = cold_cli(case) if "cli" not in args.skip else {"skipped": True}
    other = others_load(cpu0, cpu_counters(), time.perf_counter() - wall0)
    return summarize(case, ref, rows, cli, other, repeats, warmup, time.perf_counter() - wall0)


def summarize(
    case: Case, ref: dict[str, Any], rows: list[Row], cli: dict[str, Any], other: float | None, repeats: int, warmup: str,
    wall: float,
) -> dict[str, Any]:
    base = next((r for r in rows if r.method.role == "lrphase"), None)
    base_s = base.median if base is not None else None
    out_rows = []
    for row in rows:
        o = row.outcome
        rel = abs(o.value - ref["value"]) / abs(ref["value"]) if o is not None and o.value is not None else None
        out_rows.append(
            {
                "method": row.method.label,
                "key": row.method.key,
                "role": row.method.role,
                "matrix": row.method.matrix,
                "lambda": o.value if o else None,
                "relative_error": rel if row.method.role != "probe" else None,
                "relative_error_vs_batch_reference": rel,
                "products": o.products if o else None,
                "converged": o.converged if o else None,
                "seconds_median": row.median,
                "seconds_min": min(row.seconds) if row.seconds else None,
                "seconds": row.seconds,
                "warmup_seconds": row.warmup_seconds,
                "ratio_to_lrphase": row.median / base_s if row.median is not None and base_s else None,
                "model_changed": bool(row.changed),
                "changes": row.changed or [],
                "error": row.error,
                "info": o.info if o else {},
            }
        )
    probe = next((r for r in out_rows if r["role"] == "probe" and r["seconds_median"]), None)
    rng = next((r for r in out_rows if r["role"] == "range" and r["seconds_median"]), None)
    accurate = [
        r for r in out_rows
        if r["role"] == "eigen" and r["error"] is None and r["relative_error"] is not None and r["relative_error"] <= TOL
    ]
    fastest = min(accurate, key=lambda r: r["seconds_median"]) if accurate else None
    lr_row = next((r for r in out_rows if r["role"] == "lrphase"), None)
    targets = {
        "lrphase_accurate": lr_row is not None and lr_row["relative_error"] is not None and lr_row["relative_error"] <= TOL,
        "fastest_accurate_library": fastest["method"] + f" [{fastest['matrix']}]" if fastest else None,
        "speedup_vs_fastest_accurate": fastest["ratio_to_lrphase"] if fastest else None,
        "speedup_target_10x_met": (fastest["ratio_to_lrphase"] >= 10) if fastest else None,
        "range_test_over_probe": rng["seconds_median"] / probe["seconds_median"] if rng and probe else None,
        "range_test_over_cold_cli": rng["seconds_median"] / cli["seconds"] if rng and cli.get("seconds") else None,
    }
    variant = next((r for r in out_rows if r["role"] == "variant" and r["seconds_median"]), None)
    targets["speedup_vs_fastest_accurate_with_ntk_false"] = (
        fastest["seconds_median"] / variant["seconds_median"] if fastest and variant else None
    )
    targets["range_test_target_5x_met"] = (
        targets["range_test_over_probe"] >= 5 if targets["range_test_over_probe"] is not None else None
    )
    return {
        "model": case.name,
        "file": case.path,
        "batch_size": case.batch_size,
        "parameters": case.parameters,
        "output_dim": case.output_dim,
        "loss": case.loss.name,
        "criterion_given_to_libraries": type(case.criterion).__name__,
        "batchnorm_train_mode": case.coupled,
        "reference": ref,
        "repeats": repeats,
        "warmup": warmup,
        "rows": out_rows,
        "cold_cli": cli,
        "targets": targets,
        "others_load_cores": other,
        "wall_seconds": wall,
    }


# --------------------------------------------------------------------------- output


def _fmt(x: float | None, spec: str, missing: str = "—") -> str:
    return missing if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def print_result(res: dict[str, Any]) -> None:
    ref = res["reference"]
    title = escape(
        f"{res['model']}: {res['file']}, B={res['batch_size']}, {res['parameters']:,} params, loss {res['loss']} — "
        f"reference λ = {ref['value']:.8g} ({ref['mode']}); median of {res['repeats']} "
        f"({'after a full warm-up round' if res['warmup'] == 'full' else res['warmup'] + ' warm-up'})"
    )
    table = Table(title=title, title_justify="left")
    for col, just in (
        ("method", "left"), ("matrix", "left"), ("λ", "right"), ("rel. error", "right"), ("products", "right"),
        ("seconds", "right"), ("× lrphase", "right"), ("model changed", "left"), ("notes", "left"),
    ):
        table.add_column(col, justify=just, overflow="fold")
    for r in res["rows"]:
        if r["error"] is not None:
            table.add_row(
                r["method"], r["matrix"], "—", "—", "—", "—", "—",
                ("yes: " + escape("; ".join(r["changes"]))) if r["changes"] else "no",
                f"[red]FAILED[/] {escape(short_error(r['error']))}",
            )
            continue
        err = r["relative_error"]
        err_s = "n/a" if err is None else f"[{'green' if err <= TOL else 'red'}]{err:.1e}[/]"
        notes = _row_notes(r)
        table.add_row(
            r["method"], r["matrix"], _fmt(r["lambda"], ".6g"), err_s,
            _fmt(r["products"], "d"), _fmt(r["seconds_median"], ".2f"), _fmt(r["ratio_to_lrphase"], ".1f"),
            ("[yellow]yes[/]: " + escape("; ".join(r["changes"]))) if r["model_changed"] else "no", notes,
        )
    console.print(table)
    t = res["targets"]
    cli = res["cold_cli"]
    if t["fastest_accurate_library"]:
        ok = t["speedup_target_10x_met"]
        console.print(
            f"  fastest library within {TOL:g}: {escape(t['fastest_accurate_library'])}, {t['speedup_vs_fastest_accurate']:.1f}× "
            f"lrphase's time — target ≥ 10×: {'[green]met[/]' if ok else '[red]missed[/]'}"
        )
        if t.get("speedup_vs_fastest_accurate_with_ntk_false") is not None:
            console.print(
                f"  (with ntk=False — λ₀ only, no second Lanczos run for λ_ntk: "
                f"{t['speedup_vs_fastest_accurate_with_ntk_false']:.1f}×)"
            )
    else:
        console.print(f"  no library reached rel. error ≤ {TOL:g} on this model")
    if t["range_test_over_probe"] is not None:
        ok = t["range_test_target_5x_met"]
        console.print(
            f"  range test / lrphase probe (in-process) = {t['range_test_over_probe']:.1f}× — target ≥ 5×: "
            f"{'[green]met[/]' if ok else '[red]missed[/]'}"
            + (f"; range test / cold `{cli.get('command')}` ({cli['seconds']:.1f} s) = {t['range_test_over_cold_cli']:.1f}×"
               if t["range_test_over_cold_cli"] is not None else "")
        )
    if cli.get("error") or cli.get("returncode"):
        console.print(f"  [red]cold CLI: exit {cli.get('returncode')}: {cli.get('error')}[/]")
    if res["others_load_cores"] is not None and res["others_load_cores"] > 0.2:
        console.print(
            f"  [yellow]other processes kept {res['others_load_cores']:.1f} cores busy on average: timings are skewed[/]"
        )


KNOWN_ERRORS = {
    "mutate a captured Tensor": "torch.func refuses BatchNorm's in-place running-stat update (train mode)",
}


def short_error(error: str) -> str:
    for needle, meaning in KNOWN_ERRORS.items():
        if needle in error:
            return f"{error.split(':', 1)[0]}: {meaning}"
    return error if len(error) <= 140 else error[:139] + "…"


def _row_notes(r: dict[str, Any]) -> str:
    info, notes = r["info"], []
    if r["role"] in ("lrphase", "variant"):
        notes.append(
            f"GN {info.get('gn_products')} + NTK {info.get('ntk_products')} products; "
            f"residual {info.get('relative_residual', 0):.0e}"
        )
    if r["role"] == "probe":
        notes.append(f"mean over {info.get('batches')} batches (not the reference batch)")
    if "products_in_determinism_check" in info:
        notes.append(f"{info['products_in_determinism_check']} in its determinism check; eigsh tol {info['eigsh_tol']:g}")
    if "steps" in info and r["key"] == "eigenthings":
        notes.append(f"top of k={info['k']}, {info['steps']} steps")
    if r["role"] == "range":
        stop = info.get("default_early_stop_step")
        notes.append(
            f"{info['steps']} SGD steps, lr {info['start_lr']:g}→{info['end_lr']:g}; default early stop "
            + (f"at step {stop}" if stop else "not triggered")
            + (f"; suggested lr {info['suggested_lr']:.3g}" if info.get("suggested_lr") else "")
        )
    if r["converged"] is False:
        notes.append("[red]not converged[/]")
    if r["key"] == "pyhessian":
        notes.append("Hessian, model put in eval mode")
    elif r["matrix"] == "Hessian":
        notes.append("Hessian, not GGN")
    return "; ".join(notes)


def print_summary(results: list[dict[str, Any]]) -> None:
    table = Table(
        title="targets: lrphase ≥ 10× faster than the fastest library within 1e-3; range test ≥ 5× a full probe",
        title_justify="left",
    )
    for col in (
        "model", "lrphase s", "rel. err", "fastest library within 1e-3", "its s", "speed-up", "≥10×",
        "range test s", "probe s", "range/probe", "≥5×", "cold CLI s", "range/CLI",
    ):
        table.add_column(col, justify="left" if col in ("model", "fastest library within 1e-3") else "right")
    yes_no = lambda ok: "—" if ok is None else "[green]yes[/]" if ok else "[red]no[/]"  # noqa: E731
    for res in results:
        rows = {r["role"]: r for r in res["rows"] if r["role"] != "eigen"}
        t, cli = res["targets"], res["cold_cli"]
        lr, probe, rng = rows.get("lrphase"), rows.get("probe"), rows.get("range")
        fastest = next((r for r in res["rows"] if r["method"] + f" [{r['matrix']}]" == t["fastest_accurate_library"]), None)
        table.add_row(
            res["model"],
            _fmt(lr and lr["seconds_median"], ".2f"),
            _fmt(lr and lr["relative_error"], ".1e"),
            escape(t["fastest_accurate_library"] or "none"),
            _fmt(fastest and fastest["seconds_median"], ".2f"),
            _fmt(t["speedup_vs_fastest_accurate"], ".1f"),
            yes_no(t["speedup_target_10x_met"]),
            _fmt(rng and rng["seconds_median"], ".2f"),
            _fmt(probe and probe["seconds_median"], ".2f"),
            _fmt(t["range_test_over_probe"], ".1f"),
            yes_no(t["range_test_target_5x_met"]),
            _fmt(cli.get("seconds"), ".1f"),
            _fmt(t["range_test_over_cold_cli"], ".2f"),
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn,resnet", help="comma-separated subset of mlp,cnn,resnet")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per method (MLP, CNN)")
    parser.add_argument("--resnet-repeats", type=int, default=1, help="timed rounds per method for ResNet-18")
    parser.add_argument(
        "--warmup", choices=("full", "light", "none"), default=None,
        help="full: one untimed round of every method; light: one product with each method's own machinery "
        "(a full run for lrphase) (default: full; light for ResNet-18)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated subset of {','.join(SKIPPABLE)}")
    parser.add_argument("--reference", choices=("auto", "dense", "exact", "lanczos"), default="auto")
    parser.add_argument(
        "--reference-cache", type=Path, default=ROOT / "out" / "compare_reference_cache.json", metavar="PATH",
        help="where references are cached (keyed by weights, batch, loss, mode, torch version)",
    )
    parser.add_argument("--no-reference-cache", dest="reference_cache", action="store_const", const=None)
    parser.add_argument("--dense-budget-gb", type=float, default=4.0, help="largest float64 Jacobian the dense reference builds")
    parser.add_argument("--eigsh-tol", type=float, default=TOL, help="scipy eigsh tol for the curvlinops rows")
    parser.add_argument("--range-iters", type=int, default=100)
    parser.add_argument("--range-start-lr", type=float, default=1e-7)
    parser.add_argument("--range-end-lr", type=float, default=10.0)
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads, also for the cold CLI (default: torch's choice); on a shared machine "
        "--threads 1 is far more stable (OpenMP threads stall when another process takes a core)",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "compare.json", metavar="PATH")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    bad = [n for n in names if n not in EXAMPLES] + [s for s in args.skip if s not in SKIPPABLE]
    if bad or args.repeats < 1 or args.resnet_repeats < 1:
        parser.error(f"unknown models or --skip entries {bad}, or a repeat count < 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    versions = {"torch": torch.__version__, "lrphase": lrphase.__version__}
    for dist in ("curvlinops-for-pytorch", "pyhessian", "hessian-eigenthings", "torch-lr-finder"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001
            versions[dist] = None
    missing = [d for d, v in versions.items() if v is None]
    if missing:
        console.print(f"[yellow]not installed: {', '.join(missing)} — their rows will say so (pip install -e '.[bench]')[/]")

    started, cpu0 = time.perf_counter(), cpu_counters()
    methods = build_methods(
        skip=args.skip, eigsh_tol=args.eigsh_tol, range_iters=args.range_iters, range_start_lr=args.range_start_lr,
        range_end_lr=args.range_end_lr,
    )
    results = []
    for name in names:
        results.append(bench_case(name, methods, args))
        print_result(results[-1])
    print_summary(results)
    total = time.perf_counter() - started
    other = others_load(cpu0, cpu_counters(), total)
    console.print(
        f"total {total:.0f} s on {torch.get_num_threads()} torch threads / {os.cpu_count()} CPUs"
        + ("" if other is None else f"; other processes used {other:.2f} cores on average")
    )
    payload = {
        "schema": "lrphase.compare/1",
        "tol": TOL,
        "versions": versions,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "models": results,
        "total_seconds": total,
        "others_load_cores": other,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, default=str))
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
