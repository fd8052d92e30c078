"""The measured divergence edge: exact edges of solvable models, the search's lattice logic, real training."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import lrphase
from cases import warmup_case, warmup_lambda0
from lrphase.curvature.losses import PAPER_MSE
from lrphase.dynamics.stability import MAX_DOUBLINGS, EdgeRun, make_edge_trainer, search_edge
from lrphase.theory.optimizers import Optimizer
from lrphase.theory.schedules import CONSTANT, Schedule

CPU = torch.device("cpu")


def trainer_for(model: nn.Module, data, optimizer: Optimizer | None = None, batch_size: int | None = None):
    return make_edge_trainer(
        model, data, loss=PAPER_MSE, optimizer=optimizer or Optimizer(), batch_size=batch_size, device=CPU, dtype=None
    )


def test_search_brackets_the_warmup_models_exact_edge():
    """Paper, Section 2: gradient descent on f = n^(-1/2) vᵀ u x converges up to η = 4/λ₀ and diverges above."""
    model, data = warmup_case(1000, samples=4)
    lambda0 = warmup_lambda0(model)
    measured = search_edge(trainer_for(model, data), start=1.1 / lambda0, lambda0=lambda0)
    assert measured.bracketed
    assert measured.eta_max < 4.0 / lambda0 < measured.first_failure <= 2**0.25 * measured.eta_max * (1 + 1e-9)
    caught = [r for r in measured.runs if r.lr == measured.eta_max][0]
    assert max(ratio for _, ratio in caught.losses) > 2  # the rate below the edge catapulted, and trained


@pytest.mark.parametrize(
    "optimizer, factor",
    [
        (Optimizer(), 2.0),
        (Optimizer(momentum=0.5), 3.0),  # heavy ball: 2(1 + β)/λ
        (Optimizer(momentum=0.5, nesterov=True), 1.5),  # Nesterov: 2(1 + β)/((1 + 2β) λ)
        (Optimizer(weight_decay=0.3), None),  # 2/(λ + wd)
    ],
)
def test_search_brackets_the_linear_stability_edge_of_a_quadratic(optimizer, factor):
    """On a linear model the loss is quadratic: the edge is η_crit of torch.optim.SGD exactly."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 1, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)  # the initial weights, not the global RNG state that earlier tests left behind
    model = nn.Linear(5, 1, bias=False).double()
    lambda0 = torch.linalg.eigvalsh(x.T @ x / 32)[-1].item()  # H of L = 1/(2m) Σ (w·x − y)²
    edge = factor / lambda0 if factor else 2.0 / (lambda0 + optimizer.weight_decay)
    measured = search_edge(trainer_for(model, (x, y), optimizer), start=0.37 * edge, lambda0=lambda0)
    assert measured.eta_max < edge < measured.first_failure


@dataclass
class StepTrainer:
    """A stand-in for EdgeTrainer whose runs train exactly below ``edge``."""

    edge: float
    samples: int = 8

    def run(self, lr: float, steps: int, schedule: Schedule = CONSTANT) -> EdgeRun:
        trains = lr < self.edge
        return EdgeRun(lr, trains, "", ((0, 1.0),), ((steps, 1.0),) if trains else (), steps if trains else 3)


@pytest.mark.parametrize("edge", [0.02, 0.3, 1.0, 1.7, 45.0])
def test_search_doubles_or_halves_then_bisects_twice(edge):
    ran = []
    measured = search_edge(StepTrainer(edge), start=1.0, lambda0=1.0, on_run=ran.append)
    assert measured.eta_max < edge <= measured.first_failure
    assert measured.first_failure / measured.eta_max == pytest.approx(2**0.25)
    assert len(ran) == len(measured.runs) == len({r.lr for r in ran})
    assert measured.steps_trained == sum(r.steps_run for r in ran) and measured.batch_size == 8


def test_search_stops_at_its_cap_and_says_what_it_found():
    top = search_edge(StepTrainer(math.inf), start=1.0, lambda0=1.0)
    assert not top.bracketed and top.first_failure is None and top.eta_max == 2.0**MAX_DOUBLINGS
    bottom = search_edge(StepTrainer(0.0), start=1.0, lambda0=1.0)
    assert bottom.eta_max is None and bottom.first_failure == 2.0**-MAX_DOUBLINGS
    assert len(top.runs) == len(bottom.runs) == MAX_DOUBLINGS + 1


def digits_case(width: int = 64):
    sklearn = pytest.importorskip("sklearn.datasets")
    digits = sklearn.load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    return model, (x, torch.tensor(digits.target))


def train_accuracy(model: nn.Module, data, lr: float, *, momentum: float = 0.0, steps: int = 300) -> float:
    """Minibatch SGD as a user trains (torch.optim.SGD, batch 64, reshuffled each epoch); accuracy on the data."""
    model = copy.deepcopy(model)
    x, y = data
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen, done = torch.Generator().manual_seed(1), 0
    while done < steps:
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return 0.0
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_recommended_rate_trains_where_the_papers_extrapolation_fails(momentum):
    """Cross-entropy ReLU MLP, minibatch SGD: the paper's constants put the rate past the edge; the measurement does not."""
    model, data = digits_case()
    before = copy.deepcopy(model.state_dict())
    result = lrphase.probe(model, data, loss="cross_entropy", batch_size=64, optimizer=Optimizer(momentum=momentum))
    assert result.advice.source == "measured" and result.measurement.bracketed
    assert train_accuracy(model, data, result.phases.eta_recommended, momentum=momentum) < 0.2  # the extrapolation
    assert train_accuracy(model, data, result.eta_recommended, momentum=momentum) > 0.95
    assert result.eta_max < result.phases.eta_max
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_check_fails_the_extrapolated_rate_and_suggests_one_that_trains():
    model, data = digits_case()
    predicted = lrphase.probe(model, data, loss="cross_entropy", batch_size=64, measure=False)
    checked = lrphase.check(model, data, lr=predicted.eta_recommended, loss="cross_entropy", batch_size=64)
    assert predicted.advice.source == "predicted" and any("not measured" in c for c in predicted.advice.caveats)
    assert checked.exit_code == 1 and checked.phase == "divergent" and "measured" in checked.message
    assert train_accuracy(model, data, checked.suggested_lr) > 0.95
    again = lrphase.check(model, data, lr=predicted.eta_recommended, loss="cross_entropy", batch_size=64)
    assert again.message == checked.message  # deterministic for a fixed seed


def test_measurement_leaves_model_modes_buffers_and_rng_alone():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    model[3].eval()
    gen = torch.Generator().manual_seed(4)
    data = (torch.randn(96, 6, generator=gen), torch.randint(0, 3, (96,), generator=gen))
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    result = lrphase.probe(model, data, loss="cross_entropy", batch_size=32, optimizer=Optimizer(momentum=0.9))
    assert result.measurement is not None
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
