"""The user's model and RNG are exactly as before after a probe; the operator is deterministic."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

import lrphase
from cases import Encoder, make_case


class NetWithEverything(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        h = self.drop(torch.relu(self.bn(self.fc1(x))))
        return self.fc2(nn.functional.dropout(h, 0.1, training=self.training))


def snapshot(model: nn.Module):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    return state, flags


@pytest.mark.parametrize("train_mode", [True, False])
def test_probe_leaves_model_and_rng_untouched(train_mode):
    torch.manual_seed(0)
    model = NetWithEverything().train(train_mode)
    model.bn.eval() if not train_mode else None
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    state, flags = snapshot(model)
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    result = lrphase.probe(model, (x, y), batch_size=16, batches=2)
    assert result.estimate.converged
    after_state, after_flags = snapshot(model)
    assert after_flags == flags
    assert state.keys() == after_state.keys()
    for key in state:
        assert torch.equal(state[key], after_state[key]), key
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    expected_bn = "batch statistics" if train_mode else "running statistics"
    assert expected_bn in result.estimate.modes.batchnorm
    assert result.estimate.modes.dropout == ("off during the estimate" if train_mode else "none")


def test_estimate_is_deterministic_for_a_seed():
    """Bit for bit for a fixed J·v mode; ``auto`` picks the mode by timing, and the modes agree to rounding."""
    model, x, y = make_case("cnn_bn", m=24)
    a, b = (lrphase.estimate_lambda0(model, (x, y), batch_size=12, batches=2, seed=5, jvp_mode="jvp") for _ in range(2))
    assert a.lambda0 == b.lambda0
    timed = lrphase.estimate_lambda0(model, (x, y), batch_size=12, batches=2, seed=5)
    assert timed.lambda0 == pytest.approx(a.lambda0, rel=1e-6)


@pytest.mark.parametrize("mode", ["double", "jvp"])
def test_functional_dropout_does_not_make_the_operator_random(mode):
    """F.dropout(training=True) stays on inside a train-mode module; the fixed seed freezes its mask."""
    from lrphase.curvature.isolation import working_copy
    from lrphase.curvature.jacobian import JacobianProducts
    from lrphase.curvature.losses import PAPER_MSE
    from lrphase.curvature.operators import gauss_newton

    torch.manual_seed(1)
    model = NetWithEverything().train()
    clone, _ = working_copy(model, device=torch.device("cpu"), dtype=torch.float64)
    x = torch.randn(16, 6, dtype=torch.float64)
    reference = gauss_newton(JacobianProducts(clone, x, mode="double"), PAPER_MSE)
    matvec = gauss_newton(JacobianProducts(clone, x, mode=mode), PAPER_MSE)
    u, w = torch.randn(48, dtype=torch.float64), torch.randn(48, dtype=torch.float64)
    assert torch.equal(matvec(u), matvec(u))
    assert torch.dot(w, matvec(u)).item() == pytest.approx(torch.dot(u, matvec(w)).item(), rel=1e-12)
    assert torch.allclose(matvec(u), reference(u), rtol=1e-12, atol=1e-14)


class _FunctionalDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.b(nn.functional.dropout(torch.relu(self.a(x)), p=0.5, training=self.training))


class DropPath(nn.Module):
    """Stochastic depth as timm writes it: the residual branch is dropped per sample in training."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, dtype=x.dtype) >= self.drop_prob
        return x * keep / (1 - self.drop_prob)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp, self.branch, self.out = nn.Linear(6, 16), nn.Linear(16, 16), nn.Linear(16, 3)
        self.drop = DropPath(0.3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h + self.drop(torch.tanh(self.branch(h))))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, dropout=0.3, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn(x, x, x)[0].mean(dim=1))


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 8, num_layers=2, dropout=0.5, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _eval_mode_reference(model: nn.Module, x: torch.Tensor) -> float:
    """λ_max of the paper-MSE Gauss–Newton matrix J Jᵀ/(km) of a float64 copy in eval mode, built densely."""
    from torch.func import functional_call, jacrev
    from torch.nn.attention import SDPBackend, sdpa_kernel

    reference = copy.deepcopy(model).double().eval()
    params = {n: p.detach() for n, p in reference.named_parameters()}
    with sdpa_kernel(SDPBackend.MATH):  # jacrev batches its vjps with vmap, which the fused CPU kernel lacks
        jac = jacrev(lambda p: functional_call(reference, p, (x.double(),)).reshape(-1))(params)
    j = torch.cat([t.reshape(t.shape[0], -1) for t in jac.values()], dim=1)
    return torch.linalg.eigvalsh(j @ j.T)[-1].item() / j.shape[0]


@pytest.mark.parametrize(
    "factory, shape",
    [(_FunctionalDropout, (6,)), (_Residual, (6,)), (_Attention, (5, 8)), (_Recurrent, (4, 6)), (Encoder, (5, 8))],
)
def test_every_layer_gated_on_training_is_off_as_in_eval_mode(factory, shape):
    """Functional dropout, DropPath, attention dropout, recurrent dropout: λ₀ is the eval-mode network's."""
    torch.manual_seed(0)
    model = factory().double()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, *shape, generator=gen, dtype=torch.float64), torch.randn(12, 3, generator=gen, dtype=torch.float64)
    options = dict(batch_size=12, batches=1, tol=1e-10, max_iter=60, jvp_mode="double")
    est = lrphase.estimate_lambda0(model, (x, y), **options)
    assert est.lambda0 == pytest.approx(_eval_mode_reference(model, x), rel=1e-6)
    assert est.modes.dropout == "off during the estimate" and model.training
    for mode in ("jvp", "auto"):  # an op without a forward-mode rule falls back, whatever the mode
        assert lrphase.estimate_lambda0(model, (x, y), **{**options, "jvp_mode": mode}).lambda0 == pytest.approx(
            est.lambda0, rel=1e-6
        )
    chunked = lrphase.estimate_lambda0(model, (x, y), chunk_size=4, **options)
    assert chunked.lambda0 == pytest.approx(est.lambda0, rel=1e-8)  # no mask depends on the batch's shape


@pytest.mark.parametrize(
    "factory, shape, family, named",
    [(_Recurrent, (4, 6), "unknown", "gru"), (_Attention, (5, 8), "unknown", "softmax"), (_Residual, (6,), "tanh", "tanh")],
)
def test_fused_layers_name_the_nonlinearities_they_hide(factory, shape, family, named):
    """A GRU is not a linear net, and attention has a softmax: neither may pass as the paper's exact setting."""
    torch.manual_seed(0)
    x = torch.randn(12, *shape, generator=torch.Generator().manual_seed(1))
    result = lrphase.probe(factory(), (x, torch.randn(12, 3)), batch_size=12, measure=False)
    assert result.activation.family == family and named in result.estimate.nonlinearities
    assert result.advice.exact is (family == "linear")  # MSE, full batch: exact only where c_act is derived
