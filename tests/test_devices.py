"""λ₀ on an accelerator equals λ₀ on the CPU, and the user's model and CUDA RNG stay as they were.

The CUDA cases are skipped without a GPU (CI has none); the CPU cases run the same checks, so
the tests' own logic is exercised everywhere.
"""

from __future__ import annotations

import pytest
import torch

from cases import HostReads, clustered_operator, make_case
from lrphase import estimate_lambda0
from lrphase.curvature.lanczos import lanczos_top

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("model_name", "loss"), [("mlp", "mse"), ("cnn_bn", "cross_entropy")])
def test_lambda0_on_the_models_device_matches_the_cpu(device, model_name, loss):
    model, x, y = make_case(model_name, m=24)
    options = dict(loss=loss, batch_size=12, batches=2, dtype=torch.float64, tol=1e-10)
    reference = estimate_lambda0(model, (x, y), device="cpu", **options)
    model = model.to(device)  # the user's model lives on the device; the data stays on the CPU
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cuda_rng = torch.cuda.get_rng_state_all() if device == "cuda" else []
    est = estimate_lambda0(model, (x, y), **options)  # device=None: the model's own
    assert est.device.startswith(device)
    assert est.converged
    assert est.lambda0 == pytest.approx(reference.lambda0, rel=1e-8)
    assert est.ntk_lambda0 == pytest.approx(reference.ntk_lambda0, rel=1e-8)
    for key, value in model.state_dict().items():
        assert value.device.type == device and torch.equal(value, state[key]), key
    for before, after in zip(cuda_rng, torch.cuda.get_rng_state_all() if device == "cuda" else [], strict=False):
        assert torch.equal(before, after)


@pytest.mark.parametrize("device", DEVICES)
def test_lanczos_reads_one_pair_of_scalars_per_step_on_the_device(device):
    matrix, top = clustered_operator(300)
    matrix = matrix.to(device)
    with HostReads() as reads:
        result = lanczos_top(lambda v: matrix @ v, 300, device=device, tol=1e-8, seed=0)
    assert reads.count == result.iterations
    assert result.eigenvector.device.type == device
    assert result.eigenvalue == pytest.approx(top, rel=1e-6)
