"""``lrphase check`` and ``lrphase.check``: every exit code, on the paper's warmup model.

The model file defines f(x) = n^(-1/2) vᵀ u x on inputs x = 1, so λ₀ = (‖u‖² + ‖v‖²)/n exactly,
no nonlinearity is called (c_act = 4) and the phases are known: lazy below 2/λ₀, catapult up to
4/λ₀, divergent above (plain gradient descent).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import lrphase
from cases import warmup_case, warmup_lambda0, warmup_source
from lrphase.advice import predicted_advice
from lrphase.cli.render.check import annotation
from lrphase.theory.activations import classify
from lrphase.theory.phases import predict_phases
from lrphase.workflows.check import place

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def warmup(model_file) -> tuple[str, float]:
    """The model file (``warmup.py`` in tmp_path) and its exact λ₀."""
    return model_file(warmup_source(64, samples=8), "warmup.py"), warmup_lambda0(warmup_case(64)[0])


@pytest.fixture
def check(cli):
    """``check(path, lr, *args, env=None)``: ``lrphase check`` on one batch, outside GitHub Actions unless ``env`` says so."""

    def run(path: str, lr: float, *args: str, env: dict | None = None):
        return cli("check", path, "--lr", repr(lr), "--batches", "1", *args, env=env or {"GITHUB_ACTIONS": ""})

    return run


@pytest.fixture
def as_json(check):
    """``as_json(path, lr, *args)``: the ``--json`` record of ``check``, its exit code checked against the process's."""

    def run(path: str, lr: float, *args: str) -> dict:
        result = check(path, lr, "--json", *args)
        record = json.loads(result.stdout)
        assert record["exit_code"] == result.exit_code
        return record

    return run


@pytest.mark.parametrize(
    "eta_lambda0, args, code, phase",
    [
        (1.0, (), 0, "lazy"),
        (3.0, (), 0, "catapult"),
        (6.0, (), 1, "divergent"),
        (3.0, ("--accept", "lazy"), 1, "catapult"),
        (1.0, ("--accept", "catapult"), 1, "lazy"),
        (3.8, ("--margin", "0.1"), 1, "catapult"),  # within 10% of η_max = 4/λ₀
        (3.5, ("--margin", "0.1"), 0, "catapult"),
        (2.1, ("--margin", "0.1"), 0, "catapult"),  # η_crit separates two accepted phases: no margin needed
        (3.0, ("--momentum", "0.9", "--accept", "lazy", "--no-measure"), 0, "lazy"),  # heavy ball: η_crit = 3.8/λ₀
        (3.0, ("--momentum", "0.9", "--nesterov", "--no-measure"), 1, "divergent"),  # Nesterov: η_max = 4/(1.9 λ₀)
        (3.0, ("--momentum", "0.9"), 1, "lazy"),  # measured edge 3.2/λ₀ (heavy ball diverges near 4–4.5/λ₀): too close
        (2.0, ("--momentum", "0.9"), 0, "lazy"),  # a factor 1.5 below the measured edge passes
        (1.9, ("--accept", "lazy"), 0, "lazy"),
        (1.9, ("--weight-decay", "0.5", "--accept", "lazy"), 1, "catapult"),  # curvature λ₀ + wd ≈ 1.24 λ₀
    ],
)
def test_exit_codes_0_and_1_where_the_theory_puts_the_rate(warmup, as_json, eta_lambda0, args, code, phase):
    path, lambda0 = warmup
    out = as_json(path, eta_lambda0 / lambda0, *args)
    assert out["exit_code"] == code and out["phase"] == phase and out["accepted"] is (code == 0)
    assert out["lambda0"] == pytest.approx(lambda0, rel=1e-6)
    assert out["eta_lambda0"] == pytest.approx(eta_lambda0, rel=1e-6)
    assert (out["suggested_lr"] is None) is (code == 0)


def test_a_failing_rate_says_why_and_what_works(warmup, as_json):
    path, lambda0 = warmup
    out = as_json(path, 6.0 / lambda0)
    assert out["eta_crit"] == pytest.approx(2 / lambda0, rel=1e-6)
    assert out["eta_max"] == pytest.approx(4 / lambda0, rel=1e-6)
    assert out["suggested_lr"] == pytest.approx(out["eta_recommended"])
    assert "divergent is not accepted" in out["message"] and "try lr" in out["message"]
    assert as_json(path, out["suggested_lr"])["exit_code"] == 0  # the suggestion passes
    lazy_only = as_json(path, 3.0 / lambda0, "--accept", "lazy", "--margin", "0.5")
    assert lazy_only["suggested_lr"] == pytest.approx(2 / lambda0 / 3, rel=1e-6)  # η_crit/(2(1+m))
    margin = as_json(path, 3.8 / lambda0, "--margin", "0.1")
    assert "within the margin 0.1 of η_max" in margin["message"]


def test_table_output_and_json_keys(warmup, check, as_json):
    path, lambda0 = warmup
    result = check(path, 6.0 / lambda0)
    assert result.exit_code == 1
    for text in ("η·λ₀", "η_crit = 2/λ₀", "η_max = c_act/λ₀", "divergent", "suggested lr", "FAIL"):
        assert text in result.stdout
    out = as_json(path, 1.0 / lambda0)
    for key in (
        "lr",
        "phase",
        "accepted",
        "accept",
        "margin",
        "eta_crit",
        "eta_max",
        "eta_recommended",
        "lambda0",
        "eta_lambda0",
        "optimizer",
        "applies",
        "suggested_lr",
        "converged",
        "exit_code",
        "message",
        "probe",
    ):
        assert key in out
    assert out["schema"] == "lrphase.check/3" and out["probe"]["schema"] == "lrphase.probe/3"
    assert out["accept"] == ["lazy", "catapult"] and out["applies"] is True and out["converged"] is True


def test_an_optimizer_lrphase_cannot_run_exits_5_and_says_so(warmup, check, as_json):
    path, lambda0 = warmup
    out = as_json(path, 1.0 / lambda0, "--optimizer", "lbfgs")
    assert out["exit_code"] == 5 and out["applies"] is False
    assert out["phase"] is None and out["accepted"] is None and out["eta_crit"] is None and out["lambda0"] is None
    assert "closure" in out["reason"]
    table = check(path, 1.0 / lambda0, "--optimizer", "lbfgs")
    assert table.exit_code == 5 and "NOT CHECKED" in table.stdout


def test_adam_is_checked_against_its_measured_edge(warmup, check, as_json):
    path, _ = warmup
    out = as_json(path, 1e-4, "--optimizer", "adam")
    assert out["exit_code"] == 0 and out["applies"] is True and out["eta_max_source"] == "measured"
    assert out["phase"] == "lazy" and out["probe"]["phase_names"]["lazy"] == "stable"
    table = check(path, 100.0, "--optimizer", "adamw")
    assert table.exit_code == 1 and "unstable" in table.stdout and "suggested lr" in table.stdout


def test_unconverged_estimate_exits_3(warmup, check):
    path, lambda0 = warmup
    result = check(path, 1.0 / lambda0, "--tol", "1e-14", "--max-iter", "1")
    assert result.exit_code == 3 and "NOT CONVERGED" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "no learning rate to check"),
        (("--lr", "0"), "--lr must be a positive number"),
        (("--lr", "0.1", "--optimizer", "sdg"), "--optimizer must be one of sgd"),
        (("--lr", "0.1", "--nesterov"), "Nesterov momentum needs momentum > 0"),
    ],
)
def test_bad_input_exits_2(warmup, cli, args, message):
    result = cli("check", warmup[0], *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_missing_model_file_exits_2(tmp_path, cli):
    result = cli("check", str(tmp_path / "nope.py"), "--lr", "0.1")
    assert result.exit_code == 2 and "not found" in result.stderr


def test_internal_error_exits_4(warmup, check, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("lrphase.workflows.check.check", broken)
    result = check(warmup[0], 0.1)
    assert result.exit_code == 4 and "unexpected RuntimeError: boom" in result.stderr


def test_github_annotations(warmup, check, cli):
    path, lambda0 = warmup
    failing = check(path, 6.0 / lambda0, env={"GITHUB_ACTIONS": "true"})
    last = failing.stdout.strip().splitlines()[-1]
    assert last.startswith("::error title=lrphase check::lr ") and "divergent" in last
    passing = check(path, 1.0 / lambda0, "--github")
    assert passing.stdout.strip().splitlines()[-1].startswith("::notice title=lrphase check::")
    quiet = check(path, 1.0 / lambda0, "--no-github", env={"GITHUB_ACTIONS": "true"})
    assert "::" not in quiet.stdout
    machine = check(path, 6.0 / lambda0, "--json", "--github")  # JSON stays alone on stdout
    assert json.loads(machine.stdout)["exit_code"] == 1 and machine.stderr.startswith("::error ")
    bad = cli("check", path, "--github")
    assert bad.exit_code == 2 and "::error title=lrphase check::no learning rate" in bad.stdout


def test_annotation_escapes_newlines_and_percent():
    assert annotation("error", "50% off\nnext") == "::error title=lrphase check::50%25 off%0Anext"


def test_same_seed_same_verdict(warmup, check):
    path, lambda0 = warmup
    runs = [check(path, 2.5 / lambda0, "--json", "--batches", "2", "--seed", "7").stdout for _ in range(2)]
    assert runs[0] == runs[1]


def test_margin_and_suggestion_rules():
    ph = predicted_advice(predict_phases(1.0, classify(())), exact=True)  # η_crit = 2, η_max = 4, η_rec = 2.75
    assert place(ph, 3.0, accept=("lazy", "catapult"), margin=0.3).accepted  # [2.31, 3.9] inside
    assert not place(ph, 3.2, accept=("lazy", "catapult"), margin=0.3).accepted  # 4.16 crosses η_max
    assert not place(ph, 1.6, accept=("lazy",), margin=0.3).accepted  # 2.08 crosses η_crit
    assert place(ph, 1.5, accept=("lazy",), margin=0.3).accepted
    wide = place(ph, 3.9, accept=("catapult",), margin=0.4)  # [2.8, 5.6]: η_rec fails, √8 = 2.83 passes
    assert wide.suggested_lr == pytest.approx(8**0.5)
    assert place(ph, 3.9, accept=("catapult",), margin=0.5).suggested_lr is None
    assert "no rate passes" in place(ph, 3.9, accept=("catapult",), margin=0.5).message


def test_python_api_as_a_user_would():
    model, (x, y) = warmup_case(64, samples=16)
    lambda0 = warmup_lambda0(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    result = lrphase.check(model, (x, y), lr=2.0 / lambda0, optimizer="sgd", momentum=0.9, batches=1)
    assert result.exit_code == 0 and result.phase == "lazy" and result.accepted and result.margin == 0.5
    assert result.phases.prediction.eta_crit == pytest.approx(3.8 / lambda0, rel=1e-6)
    assert result.phases.source == "measured"  # momentum: measured; heavy ball diverges near 4–4.5/λ₀ here
    assert 3.0 / lambda0 < result.phases.eta_max <= 4.5 / lambda0
    too_close = lrphase.check(model, (x, y), lr=3.0 / lambda0, optimizer="sgd", momentum=0.9, batches=1)
    assert too_close.exit_code == 1 and "within the margin 0.5" in too_close.message
    assert lrphase.check(model, (x, y), lr=3.0 / lambda0, momentum=0.9, batches=1, margin=0).accepted
    assert result.optimizer.describe() == "SGD with heavy-ball momentum 0.9"

    optimizer = torch.optim.SGD(model.parameters(), lr=3.0 / lambda0)  # plain SGD: 3/λ₀ is a catapult
    caught = lrphase.check(model, (x, y), optimizer=optimizer, accept=["lazy"], batches=1)
    assert caught.lr == pytest.approx(3.0 / lambda0) and caught.phase == "catapult" and not caught.accepted
    assert caught.suggested_lr == pytest.approx(1.0 / lambda0, rel=1e-6)

    adam = lrphase.check(model, (x, y), lr=1e-3, optimizer=torch.optim.Adam(model.parameters()))
    assert adam.applies and adam.probe is not None and adam.exit_code in (0, 1)
    lbfgs = lrphase.check(model, (x, y), lr=1e-3, optimizer=torch.optim.LBFGS)
    assert not lbfgs.applies and lbfgs.probe is None and lbfgs.exit_code == 5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_python_api_rejects_bad_arguments():
    model, data = warmup_case(8, samples=4)
    with pytest.raises(lrphase.InputError, match="no learning rate"):
        lrphase.check(model, data)
    with pytest.raises(lrphase.InputError, match="'margin' passed to lrphase.check must be a number ≥ 0"):
        lrphase.check(model, data, lr=0.1, margin=-1)
    with pytest.raises(lrphase.InputError, match="go with an optimizer name"):
        lrphase.check(model, data, lr=0.1, optimizer=lrphase.Optimizer(momentum=0.9), momentum=0.5)


def test_documented_python_example_runs():
    guide = (ROOT / "docs" / "python.md").read_text()
    section = guide.split("### `lrphase.check`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=300)


def test_example_workflow_is_valid_and_its_command_works(tmp_path, model_file):
    workflow = yaml.safe_load((ROOT / "examples" / "github-actions-lrphase.yml").read_text())
    assert workflow["name"] and "jobs" in workflow and (True in workflow or "on" in workflow)  # YAML 1.1 reads `on` as true
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    command = next(step["run"] for step in steps if "lrphase check" in step.get("run", ""))
    model_file(warmup_source(64, samples=8), "warmup.py")
    env = {**os.environ, "GITHUB_ACTIONS": "true", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for lr, code, level in ((0.1, 0, "::notice"), (10.0, 1, "::error")):
        (tmp_path / "pyproject.toml").write_text(f'[tool.lrphase]\nmodel = "warmup.py"\nlr = {lr}\nbatches = 1\n')
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == code, done.stdout + done.stderr
        assert done.stdout.strip().splitlines()[-1].startswith(level + " title=lrphase check::")


def test_cross_entropy_check_skips_the_ntk_lanczos_it_does_not_use():
    from cases import make_case
    from lrphase.cli.render.check import check_to_dict

    model, x, y = make_case("mlp", m=24)
    options = dict(loss="cross_entropy", batch_size=12, batches=2, dtype=torch.float64, tol=1e-10)
    probed = lrphase.probe(model, (x, y), jvp_mode="double", measure=False, **options)
    checked = lrphase.check(model, (x, y), lr=0.25 * probed.phases.eta_crit, **options)
    assert checked.exit_code == 0 and checked.accepted
    assert checked.lambda0 == pytest.approx(probed.estimate.lambda0, rel=1e-8)
    assert all(b.ntk is None for b in checked.probe.estimate.per_batch)
    assert checked.probe.estimate.iterations == sum(b.gn.iterations for b in probed.estimate.per_batch)
    record = json.loads(json.dumps(check_to_dict(checked), allow_nan=False))
    assert record["probe"]["ntk_lambda0"] is None and record["probe"]["lambda0"] == checked.lambda0


def test_relu_full_batch_mse_is_measured_and_check_fails_a_rate_that_diverges(model_file, cli):
    """ReLU's c_act = 12 is fitted: a three-layer ReLU net at PyTorch's init diverges under full-batch GD well below 12/λ₀."""
    path = model_file(
        """
        import torch
        from torch import nn
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                              nn.Linear(64, 2))
        gen = torch.Generator().manual_seed(1)
        data = (torch.randn(64, 6, generator=gen), torch.randn(64, 2, generator=gen))
        batch_size = 64
        """
    )
    out = json.loads(cli("probe", path, "--json").stdout)
    assert out["eta_max_source"] == "measured" and out["eta_max_predicted"] == pytest.approx(12 / out["lambda0"])
    lr = 10 / out["lambda0"]
    # independent truth: full-batch gradient descent on the paper's loss at 10/λ₀
    from lrphase.cli.model_file import load_spec

    spec = load_spec(path)
    net = copy.deepcopy(spec.model)
    x, y = spec.data
    losses = []
    for _ in range(200):
        value = 0.5 * ((net(x) - y) ** 2).mean()
        losses.append(value.item())
        if not math.isfinite(losses[-1]) or losses[-1] > 1e6 * losses[0]:
            break
        net.zero_grad()
        value.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
    assert not (math.isfinite(losses[-1]) and losses[-1] < losses[0])  # full-batch training fails at 10/λ₀
    verdict = cli("check", path, "--lr", repr(lr), "--json")
    assert verdict.exit_code == 1, verdict.stdout  # and check no longer passes it (12/λ₀ would have)
