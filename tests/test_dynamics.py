"""Gradient-descent runs and sweeps against the paper's exactly solvable models."""

from __future__ import annotations

import copy

import pytest
import torch

from cases import WarmupModel, warmup_case, warmup_lambda0
from lrphase.curvature.losses import PAPER_MSE
from lrphase.dynamics.runs import make_trainer
from lrphase.workflows.sweep import run_sweep


def test_training_matches_the_exact_warmup_recurrence():
    """Paper eqs. (6)-(7): f ← (1 − ηλ + η²f²/n) f and λ ← λ + (η f²/n)(ηλ − 4), no approximation."""
    n = 200
    model, data = warmup_case(n)
    trainer = make_trainer(model, data, loss=PAPER_MSE, batch_size=1, device=torch.device("cpu"), dtype=None, tol=1e-12)
    f = (model.v.detach() @ model.u.detach()[:, 0]).item() / n**0.5
    lam = warmup_lambda0(model)
    eta = 3.0 / lam
    run = trainer.run(eta, 30, track_every=1)
    expected_losses, expected_lams = [], []
    for _ in range(31):
        expected_losses.append(f * f / 2)
        expected_lams.append(lam)
        f, lam = (1 - eta * lam + eta**2 * f * f / n) * f, lam + eta * f * f / n * (eta * lam - 4)
    assert run.losses == pytest.approx(expected_losses, rel=1e-8)
    assert [v for _, v in run.curvature] == pytest.approx(expected_lams, rel=1e-8)
    assert max(run.losses) > 10 * run.losses[0]  # the catapult happened
    assert run.lambda_end < 2 / eta


def test_a_run_ends_early_only_once_its_verdict_is_settled():
    model, data = warmup_case(500)
    trainer = make_trainer(model, data, loss=PAPER_MSE, batch_size=1, device=torch.device("cpu"), dtype=None)
    lam = trainer.initial_curvature()
    lazy = trainer.run(1.5 / lam, 100, stop_when_catapulted=True)
    assert lazy.stopped is None and len(lazy.losses) == 101
    catapult = trainer.run(3.0 / lam, 100, stop_when_catapulted=True)
    assert catapult.stopped == "catapulted" and len(catapult.losses) < 101
    assert max(catapult.losses) > catapult.losses[0] > catapult.losses[-1]
    assert catapult.lambda_end * catapult.lr < 2
    full = trainer.run(3.0 / lam, 100)
    assert full.stopped is None and full.losses[: len(catapult.losses)] == catapult.losses


def test_warmup_sweep_reproduces_figure_2():
    model, data = warmup_case()
    result = run_sweep(model, data, points=12, steps=200, refine=3, c_act=4.0, batch_size=1)
    lam = result.lambda0
    for r in result.runs:
        x = r.run.lr * lam
        if x < 1.9:
            assert r.verdict.phase == "lazy"
            assert r.run.lambda_end == pytest.approx(lam, rel=0.01)
        elif 2.1 < x < 3.9:
            assert r.verdict.phase == "catapult"
            assert r.verdict.peak_loss_ratio > 1 and r.verdict.final_loss_ratio < 1
            assert r.run.lambda_end < 2 / r.run.lr
        elif x > 4.1:
            assert r.verdict.phase == "divergent"
    assert result.eta_crit_empirical == pytest.approx(2 / lam, rel=0.1)
    assert result.eta_max_empirical == pytest.approx(4 / lam, rel=0.1)
    assert result.c_act_fitted == pytest.approx(4, rel=0.1)


def test_full_linear_model_sweep_matches_theory():
    """Section 2.2: d-dimensional inputs, m samples, general labels; η_crit = 2/λ₀ and η_max = 4/λ₀."""
    gen = torch.Generator().manual_seed(1)
    model = WarmupModel(1000, gen, in_dim=4)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    result = run_sweep(model, (x, y), points=10, steps=300, refine=3, c_act=4.0, batch_size=8)
    lam = result.lambda0
    assert result.eta_crit_empirical == pytest.approx(2 / lam, rel=0.1)
    assert result.eta_max_empirical == pytest.approx(4 / lam, rel=0.1)


def test_wide_relu_mlp_on_digits_critical_rate():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data[:128], dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(digits.target[:128])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    result = run_sweep(model, (x, y), points=8, steps=60, refine=3, batch_size=128)
    assert result.eta_crit_empirical == pytest.approx(2 / result.lambda0, rel=0.15)


def test_sweep_leaves_the_model_untouched():
    model, data = warmup_case(50)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_sweep(model, data, lrs=[0.5, 5.0], steps=20, refine=0, batch_size=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.9),
        dict(momentum=0.8, nesterov=True, weight_decay=0.01),
        dict(momentum=0.5, dampening=0.3, weight_decay=0.1),
    ],
)
def test_training_step_is_torch_optim_sgd(options):
    from lrphase.theory.optimizers import Optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    x, y = torch.randn(12, 3, dtype=torch.float64), torch.randn(12, 2, dtype=torch.float64)
    trainer = make_trainer(
        model, (x, y), loss=PAPER_MSE, batch_size=12, device=torch.device("cpu"), dtype=None, optimizer=Optimizer(**options)
    )
    run = trainer.run(0.3, 15)
    reference = copy.deepcopy(model)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.3, **options)
    expected = []
    for _ in range(16):
        value = ((reference(x) - y) ** 2).mean() / 2
        expected.append(value.item())
        sgd.zero_grad()
        value.backward()
        sgd.step()
    assert run.losses == pytest.approx(expected, rel=1e-12)


def test_refinement_rounds_split_a_bracket_evenly_in_log_space():
    from lrphase.workflows.sweep import Boundary, _interior

    assert _interior(Boundary(1.0, 4.0), 1) == pytest.approx([2.0])
    assert _interior(Boundary(1.0, 27.0), 2) == pytest.approx([3.0, 9.0])  # three ranks on one open bracket


@pytest.mark.parametrize("edge, expected", [(0.01, "down"), (100.0, "up"), (1.0, None)])
def test_the_default_grid_extends_until_it_brackets_the_divergence_boundary(edge, expected):
    """Below its lowest rate when that already diverges (cross-entropy), above its top when nothing does."""
    from lrphase.dynamics.verdict import Verdict
    from lrphase.workflows.sweep import EXTEND_FACTOR, SweepRun, _extend

    def result(lr: float) -> SweepRun:
        phase = "divergent" if lr >= edge else "lazy"
        return SweepRun(run=None, verdict=Verdict(phase, "", 1.0, 0, 1.0, 1.0, False))

    grid = [0.5, 1.0, 2.0] if edge == 1.0 else [0.5, 1.0]
    done = {lr: result(lr) for lr in grid}
    trained = []

    def train(rates):
        trained.extend(rates)
        done.update({lr: result(lr) for lr in rates})

    _extend(done, lambda phase: phase == "divergent", train)
    if expected is None:
        assert not trained
    elif expected == "down":
        assert trained == [0.5 / EXTEND_FACTOR**i for i in range(1, len(trained) + 1)]
        assert min(done) < edge and done[min(done)].verdict.phase == "lazy"
    else:
        assert trained and all(b == a * EXTEND_FACTOR for a, b in zip([1.0, *trained], trained, strict=False))
        assert max(done) >= edge > max(done) / EXTEND_FACTOR
