"""Project configuration: discovery, precedence, and errors that name the key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from lrphase.cli.config import find_pyproject, resolve_settings
from lrphase.errors import InputError
from lrphase.settings import Settings
from lrphase.theory.optimizers import Optimizer

MODEL = """
import torch
from torch import nn
gen = torch.Generator().manual_seed(0)
model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
data = (torch.randn(16, 3, generator=gen), torch.randn(16, 1, generator=gen))
batch_size = 8
lr = 0.01
momentum = 0.5
"""


@pytest.fixture
def project(tmp_path, model_file):
    """``project(table, name="pyproject.toml")``: tmp_path as a project folder with that config file and ``model.py``."""

    def make(table: str, *, name: str = "pyproject.toml") -> Path:
        (tmp_path / name).write_text(textwrap.dedent(table))
        model_file(MODEL)
        return tmp_path

    return make


def test_nearest_pyproject_is_found_from_a_subfolder_and_model_is_relative_to_it(project):
    root = project('[tool.lrphase]\nmodel = "model.py"\nbatches = 2\n')
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    assert find_pyproject(sub) == root / "pyproject.toml"
    settings = resolve_settings(cwd=sub)
    assert Path(settings.target) == root / "model.py"
    assert settings.batches == 2 and settings.config_file == str(root / "pyproject.toml")


def test_a_nearer_pyproject_without_the_table_means_no_config(project):
    root = project("[tool.lrphase]\nbatches = 2\n")
    inner = root / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    settings = resolve_settings("model.py", cwd=inner)
    assert settings.batches is None and settings.config_file is None  # None: the probe's default (3, or 1 when measuring)


def test_precedence_cli_over_config_over_model_file_over_defaults(project):
    root = project('[tool.lrphase]\nmodel = "model.py"\nlr = 0.02\nbatch_size = 4\nnesterov = true\n')
    settings = resolve_settings(cwd=root, overrides={"lr": 0.03, "seed": None, "momentum": None})
    assert settings.lr == 0.03  # command line beats the config
    assert settings.seed == 0  # an option left out does not override the built-in default
    defaults = {"lr": 0.01, "batch_size": 8, "momentum": 0.5, "weight_decay": 1e-4}
    merged = settings.with_model_defaults(defaults, source="model.py")
    assert merged.lr == 0.03 and merged.batch_size == 4  # config beats the model file
    assert merged.momentum == 0.5 and merged.weight_decay == 1e-4  # the model file fills the rest
    assert merged.optimizer_spec() == Optimizer(momentum=0.5, nesterov=True, weight_decay=1e-4)
    assert Settings(target="m.py").optimizer_spec() == Optimizer()  # built-in: plain SGD


def test_the_command_line_target_beats_the_config_model(project):
    root = project('[tool.lrphase]\nmodel = "model.py"\n')
    assert resolve_settings("other.py", cwd=root).target == "other.py"


def test_explicit_config_file_read_whole_or_by_table(project):
    root = project('model = "model.py"\nmargin = 0.2\naccept = "lazy"\n', name="lrphase.toml")
    settings = resolve_settings(config=str(root / "lrphase.toml"))
    assert settings.margin == 0.2 and settings.accept == ("lazy",) and Path(settings.target) == root / "model.py"
    (root / "ci.toml").write_text('[tool.lrphase]\naccept = ["catapult", "lazy"]\n')
    assert resolve_settings("m.py", config=str(root / "ci.toml")).accept == ("catapult", "lazy")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(InputError, match="has no \\[tool.lrphase\\] table"):
        resolve_settings("m.py", config=str(root / "pyproject.toml"))


@pytest.mark.parametrize(
    "table, message",
    [
        ("bach_size = 4", "unknown key 'bach_size' in [tool.lrphase] of"),
        ('batch_size = "4"', "'batch_size' in [tool.lrphase] of"),
        ("batch_size = true", "must be an integer ≥ 1, got bool True"),
        ("lr = -0.1", "'lr' in [tool.lrphase] of"),
        ('momentum = "0.9"', "'momentum' in [tool.lrphase] of"),
        ("nesterov = 1", "'nesterov' in [tool.lrphase] of"),
        ('accept = ["lazy", "divergent"]', "'accept' in [tool.lrphase] of"),
        ('optimizer = "sdg"', "'optimizer' in [tool.lrphase] of"),
        ('dtype = "float16"', "must be one of float32, float64"),
        ("c_act = 2", "must be a number above 2"),
        ("lrphase = 3", "unknown key 'lrphase'"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(project, table, message):
    root = project("[tool.lrphase]\n" + table + "\n")
    with pytest.raises(InputError) as info:
        resolve_settings("model.py", cwd=root)
    assert message in str(info.value)
    if "unknown" not in message:
        assert "must be" in str(info.value)


def test_model_file_defaults_are_checked_too():
    with pytest.raises(InputError, match="'momentum' in net.py must be a number in"):
        Settings(target="net.py").with_model_defaults({"momentum": "high"}, source="net.py")


def test_bad_toml_missing_config_and_no_model(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.lrphase\n")
    with pytest.raises(InputError, match="is not valid TOML"):
        resolve_settings("model.py", cwd=tmp_path)
    with pytest.raises(InputError, match="config file .* not found"):
        resolve_settings("model.py", config=str(tmp_path / "nope.toml"))
    (tmp_path / "pyproject.toml").write_text("[tool.lrphase]\nseed = 1\n")
    with pytest.raises(InputError, match="no model file"):
        resolve_settings(cwd=tmp_path)


def test_cli_runs_with_no_positional_argument_in_a_configured_project(tmp_path, project, cli, monkeypatch):
    project('[tool.lrphase]\nmodel = "model.py"\nbatches = 2\nseed = 3\n')
    monkeypatch.chdir(tmp_path)
    probed = cli("probe", "--json")
    assert probed.exit_code == 0, probed.output
    out = json.loads(probed.stdout)
    assert out["batches"] == 2 and out["batch_size"] == 8
    assert out["optimizer"]["momentum"] == 0.5  # from the model file: the phases are for its optimizer
    checked = cli("check", "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["lr"] == 0.01  # the model file's lr


def test_cli_option_overrides_the_config(tmp_path, project, cli, monkeypatch):
    project('[tool.lrphase]\nmodel = "model.py"\nlr = 1000.0\nbatches = 1\n')
    monkeypatch.chdir(tmp_path)
    assert cli("check").exit_code == 1  # the config's rate diverges
    assert cli("check", "--lr", "0.001").exit_code == 0


@pytest.mark.parametrize(
    "table, message",
    [
        ('model = "missing.py"', "missing.py' not found"),
        ("batches = 0", "'batches' in [tool.lrphase] of"),
        ('seed = "x"', "'seed' in [tool.lrphase] of"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, project, cli, monkeypatch, table, message):
    project("[tool.lrphase]\n" + table + "\n")
    monkeypatch.chdir(tmp_path)
    for command in ("check", "probe"):
        result = cli(command)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_cli_options_are_checked_like_config_values(project, cli):
    root = project("")
    result = cli("check", str(root / "model.py"), "--margin", "-1")
    assert result.exit_code == 2 and "--margin must be a number ≥ 0" in result.stderr
    result = cli("check", str(root / "model.py"), "--accept", "lazy,divergent")
    assert result.exit_code == 2 and "--accept must be a list of phases" in result.stderr


def test_an_optimizer_object_in_the_model_file_is_read_like_its_settings(model_file, cli):
    """``optimizer = model.configure_optimizers()`` (Lightning style): its class, lr, momentum, Nesterov, wd."""
    path = model_file(
        """
        import torch
        from torch import nn
        gen = torch.Generator().manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        data = (torch.randn(32, 5, generator=gen), torch.randint(0, 3, (32,), generator=gen))
        loss = "cross_entropy"
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
        """
    )
    checked = cli("check", path, "--json", "--no-measure")
    out = json.loads(checked.stdout)
    assert out["lr"] == 0.05 and out["optimizer"]["momentum"] == 0.9 and out["optimizer"]["nesterov"] is True
    assert out["optimizer"]["weight_decay"] == 1e-4
    adam = json.loads(cli("check", path, "--optimizer", "adam", "--json").stdout)
    assert adam["optimizer"]["name"] == "adam"  # the command line still overrides the file
    settings = Settings(target="m.py").with_model_defaults({"optimizer": torch.optim.Adam([torch.zeros(1)], lr=3e-4)})
    assert settings.optimizer == "adam" and settings.lr == 3e-4 and settings.momentum is None
