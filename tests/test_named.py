"""Models and data by name (`lrphase probe torchvision:resnet18 --data fake:…`): no model file needed.

Sizes are tiny so that the file runs in well under a minute on a CPU: a few 32×32 images or
8-token sequences, one batch, and a fixed J·v mode (auto picks one by timing).
"""

from __future__ import annotations

import json

import pytest
import torch

from lrphase.cli.named import TokenDataset, is_named, load_data
from lrphase.errors import InputError

FAST = ("--no-measure", "--batches", "1", "--json")
TINY_BERT = "hf:bert:hidden_size=32,num_hidden_layers=1,num_attention_heads=2,intermediate_size=64"


def probe(cli, *args):
    result = cli("probe", *args, *FAST)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def dict_batches_supported() -> bool:
    """Whether the data layer takes Hugging Face style dict samples yet (another change adds it)."""
    from lrphase.curvature.data import make_batches

    dataset = TokenDataset(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    try:
        make_batches(dataset, batch_size=2, batches=1, seed=0)
    except InputError:
        return False
    return True


needs_dict_batches = pytest.mark.skipif(
    not dict_batches_supported(), reason="the data layer does not take dict samples (Hugging Face style) yet"
)


@pytest.mark.parametrize(
    "target, named",
    [
        ("torchvision:resnet18", True),
        ("timm:vit_tiny_patch16_224:img_size=32", True),
        ("hf:bert", True),
        ("model.py:build", False),
        ("C:\\models\\model.py", False),
        ("C:/models/model.py:build", False),
        ("keras:resnet50", False),
        ("torchvision:", False),
        ("torchvision", False),
    ],
)
def test_only_known_libraries_are_names(target, named):
    assert is_named(target) is named


# mobilenet_v3_small's hardsigmoid has no double backward, so J·v must be forward mode (`--jvp jvp`).
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_models_probe_with_fake_images(cli, name):
    out = probe(cli, f"torchvision:{name}", "--data", "fake:3x32x32:6:4", "--batch-size", "4", "--jvp", "jvp")
    assert out["source"] == f"torchvision:{name}" and out["converged"]
    assert out["output_dim"] == 4 and out["loss"] == "cross_entropy_mean" and out["batch_size"] == 4
    assert out["batchnorm"].startswith("batch statistics")  # built in train mode, as a user trains it


def test_named_model_matches_the_same_model_file(cli, model_file):
    source = model_file("""
        import torch
        from torchvision.models import get_model

        model = get_model("squeezenet1_1", weights=None, num_classes=5)
        gen = torch.Generator().manual_seed(3)
        data = (torch.randn(12, 3, 32, 32, generator=gen), torch.randint(0, 5, (12,), generator=gen))
        loss = "cross_entropy"
        batch_size = 32
    """)
    common = ("--seed", "3", "--jvp", "double")
    by_name = probe(cli, "torchvision:squeezenet1_1", "--data", "fake:3x32x32:12:5", *common)
    by_file = probe(cli, source, *common)
    assert by_name["lambda0"] == pytest.approx(by_file["lambda0"], rel=1e-6)
    assert by_name["batch_size"] == by_file["batch_size"] == 12  # the default 32, capped at the data's 12
    other_seed = probe(cli, "torchvision:squeezenet1_1", "--data", "fake:3x32x32:12:5", "--jvp", "double")
    assert other_seed["lambda0"] != pytest.approx(by_name["lambda0"], rel=1e-3)


def test_imagefolder_data_has_one_class_per_folder(cli, tmp_path):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8, generator=gen).numpy()
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    loaded = load_data(f"imagefolder:{tmp_path}:32", seed=0)
    assert loaded.classes == 2 and loaded.data[0][0].shape == (3, 32, 32)
    out = probe(cli, "torchvision:squeezenet1_1", "--data", f"imagefolder:{tmp_path}:32", "--jvp", "double")
    assert out["output_dim"] == 2 and out["batch_size"] == 6


def test_a_model_by_name_can_be_configured(cli, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lrphase]\nmodel = "torchvision:squeezenet1_1"\ndata = "fake:3x32x32:8:3"\njvp = "double"\n'
    )
    monkeypatch.chdir(tmp_path)
    out = probe(cli)
    assert out["source"] == "torchvision:squeezenet1_1" and out["output_dim"] == 3


def test_timm_model(cli):
    pytest.importorskip("timm")
    out = probe(cli, "timm:resnet18", "--data", "fake:3x32x32:4:4", "--jvp", "jvp")
    assert out["source"] == "timm:resnet18" and out["output_dim"] == 4 and out["converged"]


@needs_dict_batches
def test_hugging_face_sequence_classifier_on_fake_tokens(cli):
    pytest.importorskip("transformers")
    out = probe(cli, TINY_BERT, "--data", "fake-tokens:8:8:100:3", "--jvp", "double")
    assert out["output_dim"] == 3 and out["loss"] == "cross_entropy_mean" and out["converged"]


@needs_dict_batches
def test_hugging_face_causal_language_model(cli):
    pytest.importorskip("transformers")
    from lrphase.curvature.losses import resolve_loss

    try:
        resolve_loss("causal_lm")
    except InputError:
        pytest.skip("the causal_lm loss is not there yet")
    out = probe(cli, "hf:gpt2:causal-lm:n_embd=16,n_layer=1,n_head=2", "--data", "fake-tokens:4:4:50", "--jvp", "double")
    assert out["loss"] == "causal_lm" and out["converged"]


def test_fake_data_is_seeded_and_shaped():
    images, labels = load_data("fake:1x2x3:5:4", seed=7).data
    again, _ = load_data("fake:1x2x3:5:4", seed=7).data
    assert images.shape == (5, 1, 2, 3) and labels.max() < 4 and torch.equal(images, again)
    tokens = load_data("fake-tokens:6:5:20:3", seed=0)
    item = tokens.data[0]
    assert tokens.classes == 3 and item["input_ids"].shape == (6,) and int(item["input_ids"].max()) < 20
    assert torch.equal(item["attention_mask"], torch.ones(6, dtype=torch.long)) and int(item["labels"]) < 3


@pytest.mark.parametrize(
    "args, message",
    [
        (("keras:resnet50", "--data", "fake:3x8x8:4"), "model file 'keras' not found"),
        (("torchvision:resnet19", "--data", "fake:3x8x8:4"), "torchvision has no model 'resnet19': did you mean resnet18"),
        (("torchvision:resnet18", "--data", "fake:3xAx8:4"), "is not fake:CxHxW:N[:K]: each dimension must be"),
        (("torchvision:resnet18", "--data", "fake:3x8x8"), "is not fake:CxHxW:N[:K]"),
        (("torchvision:resnet18", "--data", "fake:3x8x8:4:1"), "K must be at least 2"),
        (("torchvision:resnet18", "--data", "cifar:3x8x8"), "is not a known form"),
        (("torchvision:resnet18", "--data", "fake-tokens:8:4"), "does not fit torchvision models"),
        (("torchvision:resnet18",), "needs data: e.g. `--data fake:3x224x224:256`"),
        (("torchvision:resnet18:bogus=1", "--data", "fake:3x8x8:4"), "building torchvision:resnet18 failed with TypeError"),
        (("torchvision:resnet18:num_classes=3", "--data", "fake:3x8x8:4"), "the number of classes comes from --data"),
        (("torchvision:resnet18:causal-lm", "--data", "fake:3x8x8:4"), "only for hf models"),
        (("torchvision:resnet18", "--data", "imagefolder:/no/such/folder"), "'/no/such/folder' is not a folder"),
    ],
)
def test_bad_names_and_data_are_one_line_errors(cli, args, message):
    result = cli("probe", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.output and result.stdout == ""


def test_data_with_a_model_file_is_an_error(cli, model_file):
    path = model_file("import torch\nmodel = torch.nn.Linear(2, 2)\ndata = (torch.randn(4, 2), torch.randn(4, 2))\n")
    result = cli("probe", path, "--data", "fake:3x8x8:4")
    assert result.exit_code == 2
    assert "defines its own data: drop --data" in result.stderr and result.stderr.strip().count("\n") == 0


def test_hugging_face_errors(cli):
    pytest.importorskip("transformers")
    for args, message in [
        (("hf:bertt", "--data", "fake-tokens:8:4"), "hf has no model 'bertt': did you mean bert"),
        (("hf:bert:no_such_key=1", "--data", "fake-tokens:8:4"), "hf:bert has no config keys no_such_key"),
        (("hf:bert:masked-lm", "--data", "fake-tokens:8:4"), "not a task (one of sequence-classification, causal-lm)"),
        (("hf:bert", "--data", "fake:3x8x8:4"), "does not fit hf models: give fake-tokens"),
        ((TINY_BERT, "--data", "fake-tokens:8:4:99999"), "lower V"),
    ]:
        result = cli("probe", *args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
