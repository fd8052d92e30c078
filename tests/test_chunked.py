"""Micro-batched products give the same λ₀, and the automatic choice respects the memory budget."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lrphase
from cases import dense_gauss_newton_top, make_case
from lrphase.curvature import chunked
from test_estimate import LOSS_ARGS, LOSSES


@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
@pytest.mark.parametrize("chunk", [1, 5, 12])
def test_chunked_lambda0_matches_dense(loss_name, chunk):
    model, x, y = make_case("mlp", m=24)
    expected = dense_gauss_newton_top(model, x, y, LOSSES[loss_name])
    est = lrphase.estimate_lambda0(
        model,
        (x, y),
        loss=LOSS_ARGS[loss_name],
        batch_size=24,
        batches=1,
        dtype=torch.float64,
        tol=1e-10,
        chunk_size=chunk,
    )
    assert est.chunk_size == chunk and est.jvp_mode == "jvp"
    assert est.lambda0 == pytest.approx(expected, rel=1e-8)


def test_batchnorm_in_train_mode_is_not_split():
    model, x, y = make_case("cnn_bn", m=16)
    whole = lrphase.estimate_lambda0(model, (x, y), batch_size=16, batches=1, dtype=torch.float64, tol=1e-10)
    asked = lrphase.estimate_lambda0(model, (x, y), batch_size=16, batches=1, dtype=torch.float64, tol=1e-10, chunk_size=4)
    assert asked.chunk_size is None
    assert any("BatchNorm couples the samples" in note for note in asked.notes)
    assert asked.lambda0 == pytest.approx(whole.lambda0, rel=1e-10)


def test_batchnorm_in_eval_mode_is_split_and_exact():
    model, x, y = make_case("cnn_bn", m=16)
    model.eval()
    whole = lrphase.estimate_lambda0(model, (x, y), batch_size=16, batches=1, dtype=torch.float64, tol=1e-10)
    split = lrphase.estimate_lambda0(model, (x, y), batch_size=16, batches=1, dtype=torch.float64, tol=1e-10, chunk_size=3)
    assert split.chunk_size == 3
    assert split.lambda0 == pytest.approx(whole.lambda0, rel=1e-8)


def test_saved_bytes_per_sample_counts_the_activations():
    model = nn.Sequential(nn.Linear(10, 100), nn.ReLU(), nn.Linear(100, 3))
    per_sample = chunked.graph_bytes_per_sample(model, torch.randn(8, 10))
    # at least the input of each linear layer and the ReLU output are saved, 4 bytes per float
    assert per_sample >= 4 * (10 + 100)


def test_auto_chunking_follows_free_memory(monkeypatch):
    model, x, y = make_case("mlp", m=24)
    per_sample = chunked.graph_bytes_per_sample(model, x) * chunked.DOUBLE_BACKWARD_FACTOR
    monkeypatch.setattr(chunked, "free_memory", lambda device: 7 * per_sample / chunked.MEMORY_FRACTION)
    assert chunked.auto_chunk_size(model, x) == 7
    est = lrphase.estimate_lambda0(model, (x, y), batch_size=24, batches=1, dtype=torch.float64, tol=1e-10)
    assert est.chunk_size is not None and any("micro-batched" in n for n in est.notes)
    monkeypatch.setattr(chunked, "free_memory", lambda device: 1e15)
    assert chunked.auto_chunk_size(model, x) is None
