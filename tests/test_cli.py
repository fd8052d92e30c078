"""The CLI end to end: output, JSON keys, exit codes and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GOOD = """
import torch
from torch import nn
gen = torch.Generator().manual_seed(0)
model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
data = (torch.randn(40, 5, generator=gen), torch.randint(0, 3, (40,), generator=gen))
batch_size = 20
"""


def test_probe_prints_the_phase_table(model_file, cli):
    result = cli("probe", model_file(GOOD), "--seed", "1", "--no-measure")
    assert result.exit_code == 0, result.output
    for text in ("λ₀", "η_crit = 2/λ₀", "η_max = c_act/λ₀", "recommended η", "lazy", "catapult", "divergent", "converged"):
        assert text in result.output
    assert "not measured" in result.output  # minibatches of 20 from 40 samples: the prediction is not exact


def test_probe_measures_the_edge_outside_the_papers_setting_and_shows_the_runs(model_file, cli):
    result = cli("probe", model_file(GOOD), "--seed", "1")
    assert result.exit_code == 0, result.output
    for text in ("η_max (measured)", "measured edge", "trains", "fails", "recommended η", "η_max/4"):
        assert text in result.output
    full_batch = json.loads(cli("probe", model_file(GOOD.replace("batch_size = 20", "batch_size = 40")), "--json").stdout)
    # MSE and full-batch GD, but ReLU's c_act = 12 is fitted, not derived: measured, the prediction beside it
    assert full_batch["eta_max_source"] == "measured" and not full_batch["prediction_exact"]
    assert full_batch["eta_max_predicted"] == pytest.approx(12 / full_batch["lambda0"])


def test_probe_json_has_the_documented_keys(model_file, cli):
    result = cli("probe", model_file(GOOD), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in (
        "lambda0",
        "ntk_lambda0",
        "lambda0_std",
        "eta_crit",
        "eta_max",
        "eta_recommended",
        "c_act",
        "activation",
        "loss",
        "converged",
        "iterations",
    ):
        assert key in out
    assert out["eta_crit"] == pytest.approx(2 / out["lambda0"])
    assert out["eta_max_predicted"] == pytest.approx(out["c_act"] / out["lambda0"])
    assert out["eta_max_source"] == "measured" and out["eta_max"] == out["measurement"]["eta_max"]
    assert out["eta_recommended"] == pytest.approx(out["eta_max"] / 4)
    assert out["activation"] == "relu" and out["c_act"] == 12
    assert out["loss"] == "mse" and out["batches"] == 1 and out["batch_size"] == 20  # one batch places the search


def test_factory_target_and_cross_entropy(model_file, cli):
    source = GOOD + textwrap.dedent("""
        def build():
            return {"model": nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)), "loss": "cross_entropy"}
    """)
    result = cli("probe", model_file(source) + ":build", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["activation"] == "tanh" and out["c_act"] == 4
    assert out["loss"] == "cross_entropy_mean" and out["eta_max_source"] == "measured"
    assert out["measurement"]["runs"] and out["eta_max"] == out["measurement"]["eta_max"]


def test_functional_relu_is_detected(model_file, cli):
    source = GOOD + textwrap.dedent("""
        import torch.nn.functional as F
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)
            def forward(self, x):
                return self.b(F.relu(self.a(x)))
        model = Net
    """)
    out = json.loads(cli("probe", model_file(source), "--json").stdout)
    assert out["activation"] == "relu"


BAD_INPUTS = {
    "syntax": ("model = (", "syntax error in"),
    "import": ("import not_a_module_xyz", "ModuleNotFoundError"),
    "exit": ("import sys\nsys.exit(3)", "model.py called sys.exit(3) while it was imported"),
    "bare_exit": ("exit()", "model.py called sys.exit() while it was imported"),
    "factory_exit": ("import sys\ndef model():\n    sys.exit(3)", "failed with SystemExit: 3"),
    "no_model": ("import torch\ndata = (torch.randn(4, 2), torch.randn(4, 1))", "no model found"),
    "no_data": ("from torch import nn\nmodel = nn.Linear(2, 1)", "no data found"),
    "misfit": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1)\ndata = (torch.randn(8, 5), torch.randn(8, 1))",
        "the model failed on a batch of inputs of shape (8, 5)",
    ),
    "empty": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1)\ndata = (torch.randn(0, 3), torch.randn(0, 1))",
        "the dataset is empty",
    ),
    "frozen": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1).requires_grad_(False)\n"
        "data = (torch.randn(8, 3), torch.randn(8, 1))",
        "no trainable parameters",
    ),
    "nan": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1)\n"
        "data = (torch.full((8, 3), float('nan')), torch.randn(8, 1))",
        "NaN or inf",
    ),
    "inf_target": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1)\n"
        "data = (torch.randn(8, 3), torch.randn(8, 1).index_fill(0, torch.tensor([2]), float('inf')))",
        "the targets of a batch contain NaN or inf (1 of 8 values)",
    ),
    "float_labels": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 4)\nloss = 'cross_entropy'\n"
        "data = (torch.randn(8, 3), torch.randint(0, 4, (8,)).float())",
        "cross_entropy needs integer class labels (torch.long) of shape (8,) or class probabilities of shape (8, 4), "
        "got float32 of shape (8,)",
    ),
    "zero": (
        "import torch\nfrom torch import nn\nmodel = nn.Linear(3, 1)\n"
        "data = (torch.zeros(8, 3), torch.randn(8, 1))\nmodel.bias.requires_grad_(False)",
        "λ₀ is not positive",
    ),
    "wrong_model": ("import torch\nmodel = 3\ndata = (torch.randn(4, 2), torch.randn(4, 1))", "not an nn.Module"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_with_exit_code_2(model_file, cli, case):
    source, message = BAD_INPUTS[case]
    result = cli("probe", model_file(source))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0
    assert result.stdout == ""


def test_missing_file(tmp_path, cli):
    result = cli("probe", str(tmp_path / "nope.py"))
    assert result.exit_code == 2
    assert "not found" in result.stderr and "Traceback" not in result.output


def test_debug_shows_the_traceback(model_file, cli):
    result = cli("probe", model_file("model = ("), "--debug")
    assert result.exit_code != 0
    assert isinstance(result.exception, Exception)


def test_unconverged_estimate_exits_3_and_says_so(model_file, cli):
    result = cli("probe", model_file(GOOD), "--tol", "1e-12", "--max-iter", "2")
    assert result.exit_code == 3
    assert "NOT CONVERGED" in result.stdout


def test_help_does_not_import_torch():
    code = "import sys; from lrphase.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_interrupted_measurement_prints_the_runs_it_finished(model_file, cli, monkeypatch):
    from lrphase.dynamics.stability import EdgeTrainer

    real_run = EdgeTrainer.run
    calls = []

    def interrupted_second(self, lr, steps, *schedule):
        calls.append(lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(self, lr, steps, *schedule)

    monkeypatch.setattr(EdgeTrainer, "run", interrupted_second)
    result = cli("probe", model_file(GOOD), "--json")
    assert result.exit_code == 130 and result.stdout == ""
    assert "runs measured before the interrupt" in result.stderr and f"η = {calls[0]:.6g}: " in result.stderr
