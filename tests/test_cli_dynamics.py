"""`lrphase probe --confirm` and `lrphase sweep` from the command line."""

from __future__ import annotations

import json

import pytest

from cases import warmup_source


@pytest.fixture
def warmup_file(model_file) -> str:
    return model_file(warmup_source(400, samples=1), "warmup.py")


def test_confirm_sees_the_catapult_at_the_recommended_rate(warmup_file, cli):
    result = cli("probe", warmup_file, "--confirm", "--steps", "60", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    runs = {r["role"]: r for r in out["confirm"]["runs"]}
    assert runs["recommended"]["lr"] == pytest.approx(out["eta_recommended"])
    assert runs["recommended"]["phase"] == "catapult"
    assert runs["recommended"]["lambda_end"] < 2 / runs["recommended"]["lr"]
    assert runs["reference"]["lr"] == pytest.approx(0.5 * out["eta_crit"])
    assert runs["reference"]["phase"] == "lazy"
    assert runs["reference"]["lambda_end"] == pytest.approx(out["lambda0"], rel=0.01)
    assert out["confirm"]["advice"] is None
    assert len(runs["recommended"]["losses"]) == 61


def test_confirm_table(warmup_file, cli):
    result = cli("probe", warmup_file, "--confirm")
    assert result.exit_code == 0, result.output
    assert "confirmation" in result.stdout and "catapult" in result.stdout


def test_sweep_json_out_folder_and_resume(warmup_file, cli, tmp_path, monkeypatch):
    out_dir = tmp_path / "runs"
    args = ["sweep", warmup_file, "--steps", "100", "--points", "8", "--refine", "2", "--out", str(out_dir), "--json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    for key in ("lambda0", "eta_crit", "eta_max", "eta_crit_empirical", "eta_max_empirical", "c_act_fitted", "runs"):
        assert key in out
    for key in ("lr", "phase", "peak_loss_ratio", "final_loss_ratio", "lambda_end"):
        assert key in out["runs"][0]
    assert out["eta_crit_empirical"] == pytest.approx(out["eta_crit"], rel=0.1)
    assert len(list(out_dir.glob("run-*.json"))) == len(out["runs"]) == 12

    from lrphase.dynamics import runs

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs.Trainer, "run", no_training)
    second = cli(*args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["runs"] == out["runs"]


def test_sweep_table_and_plot(warmup_file, cli, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "phases.png"
    result = cli("sweep", warmup_file, "--steps", "80", "--lrs", "0.2,0.8,1.5,3", "--refine", "0", "--plot", str(plot))
    assert result.exit_code == 0, result.output
    assert "phase boundaries" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("option", "message"),
    [("--lrs=0.1,abc", "comma-separated numbers"), ("--lrs=-1", "positive"), ("--steps=0", "--steps must be")],
)
def test_sweep_bad_options(warmup_file, cli, option, message):
    result = cli("sweep", warmup_file, option)
    assert result.exit_code == 2
    assert message in result.stderr
