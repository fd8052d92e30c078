"""The real libraries, used as their users write model files: transformers, timm, torchvision.

Tiny configurations with random initialization (no hub downloads). Each λ₀ is checked against a
dense float64 reference (:func:`cases.dense_top`) with the loss written as the library computes it;
the bigger networks are checked to run as written, with the user's model untouched.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

import lrphase
from cases import dense_top
from lrphase.curvature.data import Inputs

transformers = pytest.importorskip("transformers")
OPTIONS = dict(batches=1, tol=1e-9, max_iter=200, measure=False)

BERT_FILE = """
import torch
from transformers import BertConfig, BertForSequenceClassification

config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16, num_labels=3)
model = BertForSequenceClassification(config)

g = torch.Generator().manual_seed(0)
ids = torch.randint(1, 64, (24, 10), generator=g)
mask = torch.ones_like(ids)
mask[::2, 7:] = 0
ids[mask == 0] = 0
data = [{"input_ids": ids[i], "attention_mask": mask[i], "labels": i % 3} for i in range(24)]
batch_size = 8
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
"""

GPT2_FILE = """
import torch
from transformers import GPT2Config, GPT2LMHeadModel

model = GPT2LMHeadModel(GPT2Config(vocab_size=24, n_embd=8, n_layer=1, n_head=2, n_positions=8,
                                   bos_token_id=0, eos_token_id=0))
g = torch.Generator().manual_seed(0)
ids = torch.randint(1, 24, (8, 6), generator=g)
labels = ids.clone()
labels[:, 5:] = -100  # padding, as DataCollatorForLanguageModeling marks it
data = {"input_ids": ids, "labels": labels}
batch_size = 4
"""


def _load(cli_source: str, model_file):
    from lrphase.cli.model_file import load_spec

    return load_spec(model_file(cli_source))


def test_bert_classifier_file_probes_as_written_with_the_optimizer_it_declares(model_file, cli):
    result = cli("probe", model_file(BERT_FILE), "--json", "--batches", "1", "--measure-steps", "8")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["loss"] == "cross_entropy_mean"  # what BertForSequenceClassification computes itself
    assert record["optimizer"]["momentum"] == 0.9
    check = cli("check", model_file(BERT_FILE), "--lr", "1e-4", "--json", "--measure-steps", "8")
    assert check.exit_code in (0, 1), check.output


def test_bert_lambda0_equals_the_dense_float64_reference(model_file):
    spec = _load(BERT_FILE, model_file)
    model = spec.model.double()
    samples = spec.data[:8]
    before, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    est = lrphase.estimate_lambda0(model, samples, loss=spec.loss, batch_size=8, batches=1, tol=1e-10, max_iter=200)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training
    assert torch.equal(rng, torch.get_rng_state())
    batch = torch.utils.data.default_collate(samples)
    labels = batch.pop("labels")
    truth = dense_top(model, Inputs((), batch), lambda f: F.cross_entropy(f, labels))
    assert est.lambda0 == pytest.approx(truth, rel=1e-6)


def test_gpt2_causal_lm_uses_next_token_cross_entropy_as_transformers_computes_it(model_file, cli):
    from transformers.loss.loss_utils import ForCausalLMLoss

    result = cli("probe", model_file(GPT2_FILE), "--json", "--batches", "1", "--no-measure")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["loss"] == "causal_lm"
    assert record["nonlinearities"] == ["gelu", "softmax"]  # gelu_new is built from tanh: named by its module
    spec = _load(GPT2_FILE, model_file)
    model = spec.model.double()
    ids, labels = spec.data["input_ids"][:4], spec.data["labels"][:4]
    est = lrphase.estimate_lambda0(model, (ids, labels), loss="causal_lm", batch_size=4, batches=1, tol=1e-10, max_iter=300)
    truth = dense_top(model, Inputs((ids,)), lambda f: ForCausalLMLoss(f, labels, vocab_size=24))
    assert est.lambda0 == pytest.approx(truth, rel=1e-6)


def test_timm_vit_and_cnn(model_file, cli):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    x, y = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    before = copy.deepcopy(vit.state_dict())
    result = lrphase.probe(vit.double(), (x.double(), y), loss="cross_entropy", batch_size=6, **OPTIONS)
    truth = dense_top(vit, Inputs((x,)), lambda f: F.cross_entropy(f, y))
    assert result.estimate.lambda0 == pytest.approx(truth, rel=1e-6)
    assert all(torch.equal(before[k].double(), v) for k, v in vit.state_dict().items()) and vit.training
    source = """
import timm, torch
model = timm.create_model("resnet18", num_classes=4, drop_rate=0.2, drop_path_rate=0.1)
data = (torch.randn(16, 3, 32, 32), torch.randint(0, 4, (16,)))
loss = "cross_entropy"
"""
    cnn = cli("probe", model_file(source), "--json", "--batch-size", "8", "--batches", "1", "--no-measure")
    assert cnn.exit_code == 0, cnn.output


def test_torchvision_mobilenet_v3_small_in_train_mode_matches_dense(model_file, cli):
    """Hardsigmoid has no double backward and BatchNorm uses batch statistics: still the dense λ₀."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=3)
    x, y = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    est = lrphase.estimate_lambda0(model, (x, y), loss="cross_entropy", batch_size=4, batches=1, tol=1e-8, max_iter=200)
    truth = dense_top(model, Inputs((x,)), lambda f: F.cross_entropy(f, y))
    assert est.lambda0 == pytest.approx(truth, rel=1e-4)
    source = """
import torch, torchvision
model = torchvision.models.resnet18(num_classes=10)
data = (torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
loss = torch.nn.CrossEntropyLoss()
"""
    resnet = cli("probe", model_file(source), "--json", "--batch-size", "8", "--batches", "1", "--no-measure")
    assert resnet.exit_code == 0, resnet.output
