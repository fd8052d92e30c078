"""Optimizer-aware thresholds, checked by running ``torch.optim.SGD`` itself.

η_crit: bisect the learning rate at which SGD stops converging on a quadratic of known top
curvature λ and compare with the formula to 1%. η_max: on the paper's warmup model (c_act = 4,
λ₀ = (‖u‖² + ‖v‖²)/n exactly) rates inside the predicted catapult window converge after a loss
spike, rates 1.25× above η_max diverge, and so does η_max scaled like η_crit — which is why
lrphase does not scale it that way.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from cases import warmup_case, warmup_lambda0
from lrphase.errors import InputError
from lrphase.theory.activations import classify
from lrphase.theory.optimizers import Optimizer
from lrphase.theory.phases import predict_phases

CURVATURES = torch.tensor([3.0, 0.75, 0.1], dtype=torch.float64)  # top curvature λ = 3


def _sgd(params, lr: float, opt: Optimizer) -> torch.optim.SGD:
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=opt.momentum,
        nesterov=opt.nesterov,
        weight_decay=opt.weight_decay,
        dampening=opt.dampening,
    )


def _converges_on_quadratic(lr: float, opt: Optimizer, steps: int = 1500) -> bool:
    """SGD on L = ½ Σ λ_i θ_i², gradient set by hand: does ‖θ‖ shrink from its start?"""
    theta = torch.ones_like(CURVATURES, requires_grad=True)
    sgd = _sgd([theta], lr, opt)
    with torch.no_grad():
        for _ in range(steps):
            theta.grad = CURVATURES * theta.detach()
            sgd.step()
    return bool(theta.detach().norm() < 1.0)


def _stability_edge(opt: Optimizer) -> float:
    """Bisect (in log-space, to 0.2%) the largest learning rate at which SGD still converges."""
    guess = 2.0 / CURVATURES.max().item()
    lo, hi = guess / 4, guess * 8
    assert _converges_on_quadratic(lo, opt) and not _converges_on_quadratic(hi, opt)
    while hi / lo > 1.002:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _converges_on_quadratic(mid, opt) else (lo, mid)
    return math.sqrt(lo * hi)


OPTIMIZERS = {
    "gd": (Optimizer(), lambda lam: 2 / lam),
    "heavy_ball_0.5": (Optimizer(momentum=0.5), lambda lam: 2 * 1.5 / lam),
    "heavy_ball_0.9": (Optimizer(momentum=0.9), lambda lam: 2 * 1.9 / lam),
    "nesterov_0.5": (Optimizer(momentum=0.5, nesterov=True), lambda lam: 2 * 1.5 / (2.0 * lam)),
    "nesterov_0.9": (Optimizer(momentum=0.9, nesterov=True), lambda lam: 2 * 1.9 / (2.8 * lam)),
    "nesterov_0.99": (Optimizer(momentum=0.99, nesterov=True), lambda lam: 2 * 1.99 / (2.98 * lam)),
    "weight_decay": (Optimizer(weight_decay=0.5), lambda lam: 2 / (lam + 0.5)),
    "heavy_ball_wd": (Optimizer(momentum=0.9, weight_decay=0.2), lambda lam: 2 * 1.9 / (lam + 0.2)),
    "nesterov_wd": (Optimizer(momentum=0.9, nesterov=True, weight_decay=0.3), lambda lam: 2 * 1.9 / (2.8 * (lam + 0.3))),
    "dampening": (Optimizer(momentum=0.8, dampening=0.4), lambda lam: 2 * 1.8 / (0.6 * lam)),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_eta_crit_matches_simulated_sgd_to_one_percent(name):
    opt, formula = OPTIMIZERS[name]
    lam = CURVATURES.max().item()
    expected = formula(lam)
    # the optimizer's own formula is the one stated in the docstring ...
    assert 2 * opt.stability_factor / opt.curvature(lam) == pytest.approx(expected, rel=1e-12)
    # ... and torch.optim.SGD agrees with it
    assert _stability_edge(opt) == pytest.approx(expected, rel=0.01)


def _warmup_run(opt: Optimizer, lr: float, *, width: int = 256, seed: int = 0, steps: int = 3000) -> tuple[str, float]:
    """Train the warmup model on x = 1, y = 0 with L = f²/2; ('converged' | 'diverged', peak loss ratio)."""
    model, (x, _) = warmup_case(width, seed)
    sgd = _sgd(model.parameters(), lr, opt)
    start = peak = None
    for _ in range(steps):
        loss = 0.5 * model(x).pow(2).sum()
        value = loss.item()
        start = value if start is None else start
        peak = max(peak or value, value)
        if not math.isfinite(value) or value > 1e6 * start:
            return "diverged", peak / start
        if value < 1e-8 * start:
            return "converged", peak / start
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    return "unresolved", peak / start


@pytest.mark.parametrize(
    "opt",
    [
        Optimizer(momentum=0.5),
        Optimizer(momentum=0.9),
        Optimizer(momentum=0.5, nesterov=True),
        Optimizer(momentum=0.9, nesterov=True),
        Optimizer(momentum=0.8, dampening=0.5),
    ],
    ids=lambda o: o.describe(),
)
def test_eta_max_on_the_warmup_model(opt):
    model, _ = warmup_case(256)
    lambda0 = warmup_lambda0(model)
    phases = predict_phases(lambda0, classify(()), optimizer=opt)
    assert phases.c_act == 4 and phases.eta_crit < phases.eta_max
    inside = math.sqrt(phases.eta_crit * phases.eta_max)
    outcome, peak = _warmup_run(opt, inside)
    assert outcome == "converged" and peak > 2, "inside the predicted window: a catapult"
    assert _warmup_run(opt, 1.25 * phases.eta_max)[0] == "diverged"
    scaled = 4 * opt.stability_factor / lambda0  # η_max scaled like η_crit would call this catapult: it diverges
    assert scaled > phases.eta_max and _warmup_run(opt, scaled)[0] == "diverged"


def test_plain_gradient_descent_keeps_the_paper_formulas():
    act = classify(("relu",))
    old = predict_phases(2.0, act)
    new = predict_phases(2.0, act, optimizer=Optimizer(momentum=0.0, dampening=0.3))
    assert (old.eta_crit, old.eta_max, old.eta_recommended) == (1.0, 6.0, (2 + 3.5) / 4)
    assert (new.eta_crit, new.eta_max, new.rule) == (old.eta_crit, old.eta_max, old.rule)
    assert new.eta_recommended == pytest.approx(old.eta_recommended)
    assert old.applies and old.optimizer.plain


def test_momentum_moves_the_boundaries_and_lowers_confidence():
    lam, act = 2.0, classify(())
    ph = predict_phases(lam, act, optimizer=Optimizer(momentum=0.5, nesterov=True, weight_decay=0.5))
    assert ph.eta_crit == pytest.approx(2 * 1.5 / (2.0 * 2.5))
    assert ph.eta_max == pytest.approx(4 / (1.5 * 2.5))
    assert ph.eta_recommended == pytest.approx((ph.eta_crit + 3.5 / (1.5 * 2.5)) / 2)
    assert ph.confidence == "medium" and any("momentum" in c for c in ph.caveats)
    # heavy ball 0.9: 3.5/λ₀ (the trusted divergence bound) is below η_crit = 3.8/λ₀: recommend η_crit/2
    heavy = predict_phases(lam, act, optimizer=Optimizer(momentum=0.9))
    assert heavy.eta_recommended == pytest.approx(heavy.eta_crit / 2) and "lazy" in heavy.rule
    # a user c_act below the stability factor's η_crit: the catapult window is empty, never inverted
    empty = predict_phases(lam, act, c_act=2.5, optimizer=Optimizer(momentum=0.9))
    assert empty.eta_max == empty.eta_crit and empty.phase_of(empty.eta_crit * 1.01) == "divergent"


def test_adaptive_optimizers_get_no_lambda0_prediction():
    adam = Optimizer.named("adam")
    assert not adam.applies and adam.adaptive and "preconditioned" in adam.reason
    ph = predict_phases(2.0, classify(()), optimizer=adam)
    assert not ph.applies and ph.confidence == "low" and "adam" in ph.caveats[0]
    assert ph.eta_crit == 1.0  # plain gradient descent's numbers, flagged as not applying
    assert adam.to_dict()["stability_factor"] is None and adam.to_dict()["preconditioned_factor"] == pytest.approx(19.0)


def test_from_torch_reads_the_param_group():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = Optimizer.from_torch(torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4))
    assert sgd == Optimizer(momentum=0.9, nesterov=True, weight_decay=1e-4)
    adamw = Optimizer.from_torch(torch.optim.AdamW(params, betas=(0.8, 0.9), amsgrad=True))
    assert adamw.name == "adamw" and adamw.torch_class is torch.optim.AdamW
    assert adamw.option("betas") == (0.8, 0.9) and adamw.option("amsgrad") is True and adamw.option("eps") == 1e-8
    asgd = Optimizer.from_torch(torch.optim.ASGD(params))
    assert asgd.name == "asgd" and asgd.cannot_step is None and asgd.preconditioned_factor is None
    assert "closure" in Optimizer.named("lbfgs").cannot_step and "lion" in Optimizer.named("lion").cannot_step


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="sdg"), "unknown optimizer 'sdg'"),
        (dict(momentum=1.0), "momentum must be in [0, 1)"),
        (dict(nesterov=True), "Nesterov momentum needs momentum > 0"),
        (dict(momentum=0.9, nesterov=True, dampening=0.1), "no dampening"),
        (dict(weight_decay=-1), "weight decay must be ≥ 0"),
    ],
)
def test_invalid_optimizers_are_input_errors(kwargs, message):
    with pytest.raises(InputError, match=re.escape(message)):
        Optimizer(**kwargs)
