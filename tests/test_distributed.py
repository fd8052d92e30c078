"""λ₀ sharded over 2 CPU processes (gloo, launched by torchrun) equals the single-process value."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

import lrphase

WORKER = """
import json, sys
import torch
from torch import nn
import lrphase
from lrphase.curvature.distributed import init_from_environment, shutdown, world

assert init_from_environment()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 3))
gen = torch.Generator().manual_seed(1)
data = (torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen))
out = {}
for loss in ("mse", "cross_entropy"):
    est = lrphase.estimate_lambda0(model, data, loss=loss, batch_size=20, batches=2, dtype=torch.float64, tol=1e-10)
    out[loss] = [est.lambda0, est.ntk_lambda0, est.converged]
rank, size = world()
with open(sys.argv[1] + f".{rank}", "w") as f:
    json.dump({"size": size, **out}, f)
shutdown(in_step=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run`` with 2 processes on this machine, one thread each."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def single_process() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen))
    out = {}
    for loss in ("mse", "cross_entropy"):
        est = lrphase.estimate_lambda0(model, data, loss=loss, batch_size=20, batches=2, dtype=torch.float64, tol=1e-10)
        out[loss] = [est.lambda0, est.ntk_lambda0]
    return out


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_match_one(tmp_path, model_file):
    done = torchrun(model_file(WORKER, "worker.py"), str(tmp_path / "result"))
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"result.{r}").read_text()) for r in range(2)]
    expected = single_process()
    for out in ranks:
        assert out["size"] == 2
        for loss, (lam, ntk) in expected.items():
            assert out[loss][2]
            assert out[loss][0] == pytest.approx(lam, rel=1e-8)
            assert out[loss][1] == pytest.approx(ntk, rel=1e-8)
    assert ranks[0] == ranks[1]


MODEL_FILE = """
import torch
from torch import nn
gen = torch.Generator().manual_seed(0)
model = nn.Sequential(nn.Linear(5, 24), nn.ReLU(), nn.Linear(24, 3))
data = (torch.randn(64, 5, generator=gen), torch.randint(0, 3, (64,), generator=gen))
batch_size = 32
"""


def test_cli_under_torchrun_prints_once_and_matches_one_process(tmp_path, model_file, cli):
    path = model_file(MODEL_FILE)
    args = ["probe", path, "--json", "--dtype", "float64", "--tol", "1e-9"]
    done = torchrun("-m", "lrphase", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    sharded = json.loads(done.stdout)  # exactly one JSON object: only rank 0 prints
    single = json.loads(cli(*args).stdout)
    assert sharded["lambda0"] == pytest.approx(single["lambda0"], rel=1e-8)
    assert sharded["eta_crit"] == pytest.approx(single["eta_crit"], rel=1e-8)

    sweep_args = ["sweep", path, "--json", "--lrs", "0.05,0.5,2,20", "--steps", "30", "--refine", "2"]
    done = torchrun("-m", "lrphase", *sweep_args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    spread = json.loads(done.stdout)
    alone = json.loads(cli(*sweep_args).stdout)
    assert [r["phase"] for r in spread["runs"]] == [r["phase"] for r in alone["runs"]]
    assert [r["lr"] for r in spread["runs"]] == pytest.approx([r["lr"] for r in alone["runs"]], rel=1e-12)
    assert len(spread["runs"]) == 4 + 2 * 2  # the grid, then each round one rate per open bracket, one per rank
    for key in ("eta_crit_bracket", "eta_max_bracket"):
        assert spread[key] == pytest.approx(alone[key], rel=1e-12)
