"""Loss values, target encodings and the Hessian factor S against autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrphase.curvature.losses import resolve_loss
from lrphase.errors import InputError


@pytest.mark.parametrize(
    ("spec", "reference"),
    [
        ("mse", lambda f, t: ((f - t) ** 2).sum() / (2 * f.numel())),
        (nn.MSELoss(), nn.MSELoss()),
        (nn.MSELoss(reduction="sum"), nn.MSELoss(reduction="sum")),
    ],
)
def test_mse_values_and_one_hot_targets(spec, reference):
    loss = resolve_loss(spec)
    out = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    target = loss.prepare_targets(labels, out)
    assert torch.equal(target, nn.functional.one_hot(labels, 4).double())
    assert loss.value(out, target).item() == pytest.approx(reference(out, target).item())


@pytest.mark.parametrize(
    "spec", ["mse", nn.MSELoss(), nn.MSELoss(reduction="sum"), "cross_entropy", nn.CrossEntropyLoss(reduction="sum")]
)
def test_s_s_transpose_is_the_output_hessian(spec):
    loss = resolve_loss(spec)
    out = torch.randn(5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0])
    target = loss.prepare_targets(labels, out)
    hessian = torch.autograd.functional.hessian(lambda f: loss.value(f.reshape(5, 3), target), out.reshape(-1))
    apply_s, _ = loss.sqrt_hessian(out)
    s = torch.stack([apply_s(e.reshape(5, 3)).reshape(-1) for e in torch.eye(15, dtype=torch.float64)], dim=1)
    assert torch.allclose(s @ s.T, hessian, atol=1e-12)


def test_bad_targets_are_explained():
    out = torch.randn(4, 3)
    with pytest.raises(InputError, match=r"class labels must lie in \[0, 3\)"):
        resolve_loss("cross_entropy").prepare_targets(torch.tensor([0, 1, 2, 3]), out)
    with pytest.raises(InputError, match="do not match model outputs"):
        resolve_loss("mse").prepare_targets(torch.randn(4, 5), out)
    with pytest.raises(InputError, match=r"contain NaN or inf \(1 of 4 values\)"):
        resolve_loss("mse").prepare_targets(torch.tensor([0.5, float("inf"), 1.0, 2.0]), torch.randn(4, 1))
    holed = torch.full((4, 3), 1 / 3)
    holed[1, :2] = float("nan")
    with pytest.raises(InputError, match=r"contain NaN or inf \(2 of 12 values\)"):
        resolve_loss("cross_entropy").prepare_targets(holed, out)
    with pytest.raises(InputError, match=r"integer class labels \(torch.long\) of shape \(4,\).*got float32 of shape \(4,\)"):
        resolve_loss("cross_entropy").prepare_targets(torch.tensor([0.0, 1.0, 2.0, 1.0]), out)
    probabilities = torch.softmax(torch.randn(4, 3), dim=1)  # class probabilities are still targets
    assert torch.equal(resolve_loss("cross_entropy").prepare_targets(probabilities, out), probabilities)
    with pytest.raises(InputError, match="unknown loss"):
        resolve_loss("hinge")
    with pytest.raises(InputError, match="class weights"):
        resolve_loss(nn.CrossEntropyLoss(weight=torch.ones(3)))
