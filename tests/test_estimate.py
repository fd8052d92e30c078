"""λ₀ from matrix-free Lanczos against dense float64 eigenvalues and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrphase
from cases import NoForwardMode, dense_gauss_newton_top, dense_ntk_top, make_case, warmup_case, warmup_lambda0
from lrphase import estimate_lambda0


def paper_mse(f, y):
    target = F.one_hot(y, f.shape[1]).to(f.dtype)
    return ((f - target) ** 2).sum() / (2 * f.numel())


LOSSES = {
    "mse": paper_mse,
    "mse_loss_mean": lambda f, y: nn.MSELoss()(f, F.one_hot(y, f.shape[1]).to(f.dtype)),
    "cross_entropy": lambda f, y: nn.CrossEntropyLoss()(f, y),
}
LOSS_ARGS = {"mse": "mse", "mse_loss_mean": nn.MSELoss(), "cross_entropy": nn.CrossEntropyLoss()}


@pytest.mark.parametrize("model_name", ["mlp", "tanh", "cnn_bn"])
@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize(("dtype", "tol", "rtol"), [(torch.float64, 1e-9, 1e-6), (torch.float32, 1e-5, 1e-3)])
def test_lambda0_matches_dense_jacobian(model_name, loss_name, dtype, tol, rtol):
    model, x, y = make_case(model_name)
    expected_gn = dense_gauss_newton_top(model, x, y, LOSSES[loss_name])
    expected_ntk = dense_ntk_top(model, x)
    est = estimate_lambda0(
        model, (x, y), loss=LOSS_ARGS[loss_name], batch_size=len(x), batches=1, dtype=dtype, tol=tol, max_iter=200
    )
    assert est.converged
    assert est.lambda0 == pytest.approx(expected_gn, rel=rtol)
    assert est.ntk_lambda0 == pytest.approx(expected_ntk, rel=rtol)


@pytest.mark.parametrize("mode", ["double", "jvp", "linearize"])
def test_every_jvp_mode_gives_the_same_lambda0(mode):
    model, x, y = make_case("cnn_bn")
    expected = dense_ntk_top(model, x)
    est = estimate_lambda0(model, (x, y), batch_size=len(x), batches=1, dtype=torch.float64, tol=1e-9, jvp_mode=mode)
    assert est.jvp_mode == mode
    assert est.lambda0 == pytest.approx(expected, rel=1e-6)


def test_mse_loss_doubles_the_paper_lambda0():
    model, x, y = make_case("mlp")
    paper = estimate_lambda0(model, (x, y), batch_size=len(x), batches=1, dtype=torch.float64, tol=1e-9)
    torch_mse = estimate_lambda0(model, (x, y), loss=nn.MSELoss(), batch_size=len(x), batches=1, dtype=torch.float64, tol=1e-9)
    assert torch_mse.lambda0 == pytest.approx(2 * paper.lambda0, rel=1e-9)
    assert torch_mse.ntk_lambda0 == pytest.approx(paper.lambda0, rel=1e-9)


@pytest.mark.parametrize("width", [10, 1000])
def test_warmup_model_closed_form(width):
    model, data = warmup_case(width, seed=3)
    est = estimate_lambda0(model, data, batch_size=1, batches=1, tol=1e-12)
    expected = warmup_lambda0(model)
    assert est.lambda0 == pytest.approx(expected, rel=1e-12)
    assert est.converged and est.iterations == 1


def test_mean_and_spread_over_batches():
    model, x, y = make_case("mlp", m=36)
    est = estimate_lambda0(model, (x, y), batch_size=12, batches=3, dtype=torch.float64, tol=1e-9)
    per_batch = [b.lambda_gn for b in est.per_batch]
    assert len(per_batch) == 3
    assert est.lambda0 == pytest.approx(sum(per_batch) / 3)
    assert est.lambda0_std == pytest.approx(torch.tensor(per_batch).std().item())
    assert est.lambda0_std > 0


def test_unconverged_lanczos_is_reported_not_hidden():
    model, x, y = make_case("mlp", m=24)
    est = estimate_lambda0(model, (x, y), batch_size=24, batches=1, dtype=torch.float64, tol=1e-14, max_iter=3)
    assert not est.converged
    assert est.iterations == 3
    assert est.max_relative_residual > 1e-14


def test_missing_forward_mode_rule_falls_back_and_says_so():
    torch.manual_seed(0)
    model = NoForwardMode()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    options = dict(batch_size=10, batches=1, tol=1e-10, dtype=torch.float64)
    reference = estimate_lambda0(model, (x, y), jvp_mode="double", **options)
    est = estimate_lambda0(model, (x, y), jvp_mode="jvp", **options)
    assert est.jvp_mode == "double"
    assert any("jvp unavailable" in note for note in est.notes)
    assert est.lambda0 == pytest.approx(reference.lambda0, rel=1e-10)
    timed = estimate_lambda0(model, (x, y), jvp_mode="auto", **options)  # the timing trial falls back too
    assert timed.jvp_mode == "double" and any("unavailable" in note for note in timed.notes)
    assert timed.lambda0 == pytest.approx(reference.lambda0, rel=1e-10)


class _TwoInputs(nn.Module):
    """A token model with a mask, as text models are written: forward(ids, mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(20, 8), nn.Linear(8, 3)

    def forward(self, ids, mask):
        h = self.emb(ids) * mask.unsqueeze(-1)
        return self.head(h.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))


class _OneInput(nn.Module):
    """The same network fed one concatenated tensor: an independent path to the same λ₀."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x[:, :7].long(), x[:, 7:])


def test_every_input_of_a_multi_input_dataset_reaches_the_model():
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    model = _TwoInputs()
    gen = torch.Generator().manual_seed(1)
    ids, mask = torch.randint(0, 20, (48, 7), generator=gen), (torch.rand(48, 7, generator=gen) > 0.3).float()
    labels = torch.randint(0, 3, (48,), generator=gen)
    options = dict(loss="cross_entropy", batch_size=16, batches=2, tol=1e-8, jvp_mode="double", ntk=False)
    reference = estimate_lambda0(_OneInput(model), (torch.cat([ids.float(), mask], 1), labels), **options).lambda0
    for data in (
        TensorDataset(ids, mask, labels),
        (ids, mask, labels),
        [((i, k), label) for i, k, label in zip(ids, mask, labels, strict=True)],
    ):
        assert estimate_lambda0(model, data, **options).lambda0 == pytest.approx(reference, rel=1e-6)
    with pytest.raises(lrphase.InputError, match="48 and 48 and 47 samples"):
        estimate_lambda0(model, (ids, mask, labels[:-1]), **options)
