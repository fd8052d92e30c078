"""Adaptive optimizers: the user's own optimizer runs, λᴾ₀ against a dense float64 reference, the verdicts and advice."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrphase
from cases import classification, dense_jacobian, dense_outputs
from lrphase.curvature.losses import resolve_loss
from lrphase.dynamics.runs import Stepper, make_trainer
from lrphase.dynamics.stability import SPIKE_RATIO, make_edge_trainer
from lrphase.errors import InputError
from lrphase.theory.optimizers import Optimizer


def test_preconditioned_lambda0_equals_the_dense_float64_reference():
    model, x, y = classification(m=12)
    loss = resolve_loss("cross_entropy")
    trainer = make_trainer(
        model, (x, y), loss=loss, batch_size=None, device=torch.device("cpu"), dtype=torch.float64,
        optimizer=Optimizer.named("adam", eps=1e-3), tol=1e-10, max_iter=200,
    )  # fmt: skip
    measured = trainer.initial_preconditioned_curvature()
    # reference: after one Adam step v̂ = g², so P = |g| + ε (closed form), with g the float64 gradient
    reference = copy.deepcopy(model).double()
    value = F.cross_entropy(reference(x.double()), y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, list(reference.parameters()))])
    inverse = 1.0 / (grad.abs() + 1e-3)
    jac, out = dense_jacobian(model, x), dense_outputs(model, x)
    hess = torch.autograd.functional.hessian(lambda f: F.cross_entropy(f.reshape(out.shape), y), out.reshape(-1))
    operator = inverse.sqrt()[:, None] * (jac.T @ hess @ jac) * inverse.sqrt()[None, :]
    dense = torch.linalg.eigvalsh((operator + operator.T) / 2)[-1].item()
    assert measured == pytest.approx(dense, rel=1e-8)


def test_adam_factor_is_heavy_ball_with_dampening_beta1():
    # θ ← θ − η m/P with m ← β₁m + (1 − β₁)g is torch.optim.SGD's heavy ball with d = β₁ (bisected in test_optimizers)
    for beta1 in (0.5, 0.9, 0.99):
        adam = Optimizer.named("adam", betas=(beta1, 0.999))
        assert adam.preconditioned_factor == pytest.approx(Optimizer(momentum=beta1, dampening=beta1).stability_factor)
    assert 2 * Optimizer.named("adamw").preconditioned_factor == pytest.approx(38.0)
    assert Optimizer.named("rmsprop", momentum=0.5).preconditioned_factor == 1.5
    assert Optimizer.named("adadelta").preconditioned_factor is None


def test_runs_step_the_users_own_optimizer_class_with_its_options():
    model, x, y = classification()
    spec = Optimizer.named("adamw", betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    copied = copy.deepcopy(model)
    stepper = Stepper(copied, spec, 0.01)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    for _ in range(5):
        stepper.step(torch.autograd.grad(F.cross_entropy(copied(x), y), stepper.params))
        optimizer.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        optimizer.step()
    for a, b in zip(copied.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_an_optimizer_object_keeps_its_groups_and_their_relative_rates():
    model, _, _ = classification()
    head = list(model[2].parameters())
    optimizer = torch.optim.Adam([{"params": model[0].parameters()}, {"params": head, "lr": 1e-4, "eps": 1e-4}], lr=1e-3)
    spec = lrphase.Optimizer.from_torch(optimizer, list(model.parameters()))
    built = spec.build(list(copy.deepcopy(model).parameters()), 0.5)
    assert [g["lr"] for g in built.param_groups] == pytest.approx([0.5, 0.05])
    assert built.param_groups[1]["eps"] == 1e-4 and built.param_groups[0]["eps"] == 1e-8
    with pytest.raises(InputError, match="not the model's"):
        lrphase.Optimizer.from_torch(torch.optim.Adam(nn.Linear(2, 2).parameters()), list(model.parameters()))


def test_a_third_party_optimizer_subclass_runs_as_itself():
    class SignDescent(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, scale=1.0):
            super().__init__(params, dict(lr=lr, scale=scale))

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.add_(p.grad.sign(), alpha=-group["lr"] * group["scale"])

    model, x, y = classification()
    result = lrphase.probe(model, (x, y), loss="cross_entropy", optimizer=SignDescent, batch_size=32)
    assert result.measurement is not None and result.adaptive is None  # measured; no theory for its preconditioner
    assert result.eta_recommended == pytest.approx(result.eta_max / 2**2.5)


def test_short_adam_runs_fail_when_the_loss_jumps_and_train_when_it_falls():
    model, x, y = classification()
    trainer = make_edge_trainer(
        model, (x, y), loss=resolve_loss("cross_entropy"), optimizer=Optimizer.named("adam"), batch_size=32,
        device=torch.device("cpu"), dtype=None,
    )  # fmt: skip
    calm, wild = trainer.run(1e-3, 20), trainer.run(3.0, 20)
    assert calm.trains and all(ratio <= SPIKE_RATIO for _, ratio in calm.losses)
    assert not wild.trains and "jumped" in wild.reason and wild.steps_run <= 10  # stopped at the spike
    assert calm.lambda_end is not None and calm.lambda_end > 0  # λᴾ at the end, with the run's own P


def test_probe_measures_adam_and_recommends_edge_over_2_to_the_5_halves_and_leaves_the_model_alone():
    model, x, y = classification()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    result = lrphase.probe(model, (x, y), loss="cross_entropy", optimizer="adam", batch_size=32)
    advice = result.advice
    assert advice.source == "measured" and advice.applies and result.adaptive is not None
    assert result.eta_recommended == pytest.approx(result.eta_max / 2**2.5)
    assert advice.phase_of(result.eta_recommended) == "lazy" and advice.phase_names["lazy"] == "stable"
    assert advice.phase_of(result.eta_max * 1.01) == "divergent"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and torch.equal(rng, torch.get_rng_state())
    # the advice trains: full-batch Adam at the recommended rate halves the loss in 100 steps
    def trained(lr):
        net = copy.deepcopy(model)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(100):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        return F.cross_entropy(net(x), y).item()

    start = F.cross_entropy(model(x), y).item()
    assert trained(result.eta_recommended) < 0.5 * start


def test_no_measure_for_adam_is_the_labelled_prediction():
    model, x, y = classification()
    result = lrphase.probe(model, (x, y), loss="cross_entropy", optimizer="adam", batch_size=32, measure=False)
    assert result.measurement is None and result.advice.source == "predicted" and result.advice.confidence == "low"
    assert result.eta_max == pytest.approx(38 / result.adaptive.lambda_p0)
    assert "not measured" in result.advice.caveats[0]


def test_lbfgs_cannot_be_stepped_and_says_so(model_file, cli):
    path = model_file(
        """
        import torch
        from torch import nn
        model = nn.Linear(4, 2)
        data = (torch.randn(32, 4), torch.randn(32, 2))
        optimizer = torch.optim.LBFGS
        """
    )
    result = cli("check", path, "--lr", "0.1", "--json")
    assert result.exit_code == 5
    out = json.loads(result.stdout)
    assert out["applies"] is False and "closure" in out["message"]


ADAMW_FILE = """
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    data = (x, x[:, :4].argmax(dim=1))
    loss = "cross_entropy"
    batch_size = 32
    optimizer = torch.optim.AdamW(model.parameters(), lr={lr}, weight_decay=0.01)
"""


def test_check_exits_0_for_adamw_at_a_stable_rate_and_1_with_a_suggestion_that_passes(model_file, cli):
    good = cli("check", model_file(ADAMW_FILE.format(lr=1e-3)), "--json")
    assert good.exit_code == 0, good.output
    out = json.loads(good.stdout)
    assert out["accepted"] is True and out["optimizer"]["name"] == "adamw" and out["optimizer"]["weight_decay"] == 0.01
    bad = cli("check", model_file(ADAMW_FILE.format(lr=3.0), "bad.py"), "--json")
    assert bad.exit_code == 1
    verdict = json.loads(bad.stdout)
    suggested = verdict["suggested_lr"]
    assert suggested is not None and suggested < 3.0
    again = cli("check", model_file(ADAMW_FILE.format(lr=3.0), "again.py"), "--lr", repr(suggested), "--json")
    assert again.exit_code == 0


def test_cli_reads_betas_and_eps_and_rejects_momentum_for_adam(model_file, cli):
    path = model_file(ADAMW_FILE.format(lr=1e-3))
    out = json.loads(cli("probe", path, "--betas", "0.8,0.99", "--eps", "1e-6", "--json").stdout)
    assert out["optimizer"]["options"]["betas"] == [0.8, 0.99] and out["optimizer"]["options"]["eps"] == 1e-6
    assert out["adaptive"]["factor"] == pytest.approx(1.8 / 0.2) and out["phase_names"]["divergent"] == "unstable"
    result = cli("probe", path, "--optimizer", "adam", "--momentum", "0.9")
    assert result.exit_code == 2 and "betas[0]" in result.output and "Traceback" not in result.output
    bad = cli("probe", path, "--betas", "0.9")
    assert bad.exit_code == 2 and "--betas must be two numbers" in bad.output


def test_sweep_runs_adam_and_tracks_the_preconditioned_curvature():
    model, x, y = classification()
    result = lrphase.run_sweep(model, (x, y), loss="cross_entropy", optimizer=torch.optim.Adam, lrs=[1e-3, 3.0], steps=20)
    calm, wild = result.runs[0], result.runs[-1]
    assert calm.run.lr == 1e-3 and wild.run.lr == 3.0
    assert calm.verdict.phase == "lazy" and wild.verdict.phase != "lazy"
    assert math.isfinite(calm.run.lambda_end)
    from lrphase.cli.render.dynamics import sweep_to_dict

    out = sweep_to_dict(result)
    assert out["adaptive"]["eta_edge"] == pytest.approx(38 / out["adaptive"]["lambda_p0"])


def test_the_bundled_adamw_example_checks_its_own_rate_and_its_advice_trains(cli):
    pytest.importorskip("sklearn", reason="examples/digits_adamw.py needs scikit-learn")
    from pathlib import Path

    from lrphase.cli.model_file import load_spec

    path = str(Path(__file__).parents[1] / "examples" / "digits_adamw.py")
    out = json.loads(cli("check", path, "--json").stdout)
    assert out["exit_code"] == 0 and out["lr"] == 1e-3 and out["optimizer"]["class"] == "torch.optim.adamw.AdamW"
    spec = load_spec(path)
    x, y = spec.data
    rate = out["eta_recommended"]
    net = copy.deepcopy(spec.model)
    optimizer = torch.optim.AdamW(net.parameters(), lr=rate, weight_decay=0.01)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for start in range(0, 3 * len(x) - 64, 64):  # three epochs of minibatches of 64
        idx = order[torch.arange(start, start + 64) % len(x)]
        optimizer.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        optimizer.step()
    with torch.no_grad():
        assert (net(x).argmax(dim=1) == y).float().mean() > 0.95


def test_a_named_optimizer_takes_betas_and_eps_from_the_model_file_and_the_config(model_file, cli, tmp_path):
    head = ADAMW_FILE.split("    optimizer =")[0]
    path = model_file(head + '    optimizer = "adamw"\n    betas = (0.8, 0.99)\n    lr = 1e-3\n')
    out = json.loads(cli("check", path, "--json", "--no-measure").stdout)
    assert out["optimizer"]["class"] == "torch.optim.adamw.AdamW" and out["optimizer"]["options"]["betas"] == [0.8, 0.99]
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.lrphase]\neps = 1e-6\nbetas = [0.5, 0.9]\n", encoding="utf-8")
    out = json.loads(cli("check", path, "--config", str(config), "--json", "--no-measure").stdout)
    assert out["optimizer"]["options"] == {"betas": [0.5, 0.9], "eps": 1e-6}  # the config wins over the file
