"""Batches and outputs as the ecosystem writes them: mappings, keyword inputs, ModelOutputs, tokens.

Every λ₀ here is checked against a dense float64 Gauss–Newton matrix Jᵀ H J built from an
explicit Jacobian and the autograd Hessian of the loss written the way its library computes it
(Hugging Face's shifted, -100-masked token cross-entropy for causal language models).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lrphase
from cases import dense_top
from lrphase.curvature.data import Inputs

OPTIONS = dict(batches=1, tol=1e-10, max_iter=200, jvp_mode="double", ntk=False)


class TinyOutput(OrderedDict):
    """A ModelOutput look-alike: a mapping whose members are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class TinyClassifier(nn.Module):
    """HF-style: called with input_ids and attention_mask, returns an output whose `logits` are the scores."""

    def __init__(self, vocab: int = 20, width: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.hidden = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)

    def forward(self, input_ids, attention_mask=None):
        h = torch.tanh(self.hidden(self.embed(input_ids)))
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return TinyOutput(loss=None, logits=self.head(pooled), hidden_states=h)


class TinyLM(nn.Module):
    """A causal-LM-shaped network: logits (batch, sequence, vocab) from token ids."""

    def __init__(self, vocab: int = 12, width: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, vocab)

    def forward(self, input_ids):
        h = self.embed(input_ids)
        h = h + torch.cumsum(h, dim=1) / torch.arange(1, h.shape[1] + 1).unsqueeze(-1)  # each token sees its past
        return (self.head(torch.tanh(self.mix(h))),)


def token_batch(samples: int = 6, length: int = 5, vocab: int = 20, seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (samples, length), generator=gen)
    mask = torch.ones(samples, length, dtype=torch.long)
    mask[: samples // 2, length - 2 :] = 0  # padded sequences
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (samples,), generator=gen)}


class Records(Dataset):
    """A dataset of dict samples, as `datasets` / a tokenizer produce them."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return len(next(iter(self.batch.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch.items()}


def test_mapping_samples_call_the_model_with_keywords_and_read_logits():
    torch.manual_seed(0)
    model, batch = TinyClassifier(), token_batch()
    est = lrphase.estimate_lambda0(model, Records(batch), loss="cross_entropy", batch_size=6, **OPTIONS)
    inputs = Inputs((), {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
    labels = batch["labels"]
    assert est.lambda0 == pytest.approx(dense_top(model, inputs, lambda f: F.cross_entropy(f, labels)), rel=1e-6)
    assert est.output_dim == 3 and est.batch_size == 6
    as_loader = DataLoader(Records(batch), batch_size=6)
    assert lrphase.estimate_lambda0(model, as_loader, loss="cross_entropy", **OPTIONS).lambda0 == pytest.approx(est.lambda0)


def test_a_mapping_input_in_a_pair_is_one_positional_argument():
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image, self.meta = nn.Linear(6, 4), nn.Linear(2, 4)

        def forward(self, batch):
            return torch.tanh(self.image(batch["image"]) + self.meta(batch["meta"]))

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    image, meta, y = torch.randn(8, 6, generator=gen), torch.randn(8, 2, generator=gen), torch.randn(8, 4, generator=gen)
    samples = [({"image": image[i], "meta": meta[i]}, y[i]) for i in range(8)]
    model = TwoInputs()
    est = lrphase.estimate_lambda0(model, samples, batch_size=8, **OPTIONS)
    inputs = Inputs(({"image": image, "meta": meta},))
    truth = dense_top(model, inputs, lambda f: 0.5 * ((f - y.double()) ** 2).mean())
    assert est.lambda0 == pytest.approx(truth, rel=1e-6)


@pytest.mark.parametrize("loss, shift", [("causal_lm", True), ("cross_entropy", False)])
def test_token_cross_entropy_masks_ignored_labels_and_shifts_for_causal_lms(loss, shift):
    """m is the number of counted tokens; -100 labels and (causal) the last position are left out."""
    torch.manual_seed(0)
    model = TinyLM()
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 12, (4, 6), generator=gen)
    labels = ids.clone() if shift else torch.randint(0, 12, (4, 6), generator=gen)
    labels[0, 3:] = -100  # padding
    labels[2, :2] = -100  # a prompt that is not scored
    samples = [({"input_ids": ids[i], "labels": labels[i]}) for i in range(4)]
    est = lrphase.estimate_lambda0(model, samples, loss=loss, batch_size=4, **OPTIONS)

    def hugging_face_loss(logits: torch.Tensor) -> torch.Tensor:  # transformers' ForCausalLMLoss / token classification
        if shift:
            logits, target = logits[:, :-1], labels[:, 1:]
        else:
            target = labels
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

    truth = dense_top(model, Inputs((), {"input_ids": ids}), hugging_face_loss)
    assert est.lambda0 == pytest.approx(truth, rel=1e-6)
    assert est.output_dim == 12
    chunked = lrphase.estimate_lambda0(model, samples, loss=loss, batch_size=4, chunk_size=1, **{**OPTIONS, "jvp_mode": "jvp"})
    assert chunked.lambda0 == pytest.approx(truth, rel=1e-6)  # micro-batches of sequences: one row per token


def test_training_on_tokens_uses_the_same_loss():
    """The measuring runs train on the loss whose curvature λ₀ is: the shifted, masked token mean."""
    from lrphase.curvature.losses import resolve_loss

    loss = resolve_loss("causal_lm")
    logits = torch.randn(2 * 4, 5, dtype=torch.float64)
    labels = torch.tensor([[1, 2, 3, -100], [4, 0, 1, 2]])
    target = loss.prepare_targets(labels, logits)
    assert target.tolist() == [2, 3, -100, -100, 0, 1, 2, -100]
    expected = F.cross_entropy(logits.reshape(2, 4, 5)[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1))
    assert loss.value(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)


def test_bad_token_labels_say_what_is_wrong():
    from lrphase.curvature.losses import resolve_loss
    from lrphase.errors import InputError

    loss = resolve_loss("causal_lm")
    with pytest.raises(InputError, match="every label"):
        loss.prepare_targets(torch.full((2, 3), -100), torch.zeros(6, 4))
    with pytest.raises(InputError, match=r"\(batch, sequence\)"):
        loss.prepare_targets(torch.zeros(6, dtype=torch.long), torch.zeros(6, 4))


HF_STYLE_FILE = """
import torch
from torch.utils.data import Dataset
from test_formats import TinyClassifier, Records, token_batch

model = TinyClassifier()
data = Records(token_batch(samples=12))
loss = "cross_entropy"
batch_size = 12
"""


def test_the_cli_probes_a_hugging_face_style_file_as_written(model_file, cli, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    result = cli("probe", model_file(HF_STYLE_FILE), "--json", "--no-measure", "--batches", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lambda0"] > 0


def test_label_key_and_output_name_the_members_to_use(model_file, cli, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    renaming = "{**{k: v for k, v in token_batch(12).items() if k != 'labels'}, 'sentiment': token_batch(12)['labels']})"
    source = HF_STYLE_FILE.replace("token_batch(samples=12))", renaming)
    renamed = cli("probe", model_file(source + "label_key = 'sentiment'\n"), "--json", "--no-measure", "--batches", "1")
    plain = cli("probe", model_file(HF_STYLE_FILE), "--json", "--no-measure", "--batches", "1")
    assert renamed.exit_code == 0 and plain.exit_code == 0, renamed.output
    assert json.loads(renamed.stdout)["lambda0"] == pytest.approx(json.loads(plain.stdout)["lambda0"], rel=1e-9)
    missing = cli("probe", model_file(source), "--no-measure")
    assert missing.exit_code == 2 and "label_key" in missing.output and "Traceback" not in missing.output
    named = cli("probe", model_file(HF_STYLE_FILE + "output = 'logits'\n"), "--json", "--no-measure", "--batches", "1")
    assert json.loads(named.stdout)["lambda0"] == pytest.approx(json.loads(plain.stdout)["lambda0"], rel=1e-9)
    hidden = cli("probe", model_file(HF_STYLE_FILE + "output = 'hidden_states'\n"), "--no-measure")
    assert hidden.exit_code == 2 and "shape (60,)" in hidden.output  # one row per token of the (12, 5, 8) member
    wrong = cli("probe", model_file(HF_STYLE_FILE + "output = 'pooler'\n"), "--no-measure")
    assert wrong.exit_code == 2 and "'pooler'" in wrong.output


def test_label_index_reads_the_tutorials_label_first_batches(model_file, cli):
    """PyTorch's text-classification tutorial collates ``(label, text, offsets)``: ``label_index = 0`` says so."""
    example = (Path(__file__).parents[1] / "examples" / "embeddingbag_text.py").read_text(encoding="utf-8")
    label_first = example.replace("return (text_list, offsets), label_list", "return label_list, text_list, offsets")
    assert label_first != example
    args = ("--json", "--no-measure", "--batches", "1")
    unread = cli("probe", model_file(label_first), *args)
    assert unread.exit_code == 2 and unread.stderr.strip().count("\n") == 0, unread.output
    assert "the first input looks like the labels (64 integers, one per sample)" in unread.stderr
    assert "set `label_index = 0`" in unread.stderr
    read = cli("probe", model_file(label_first + "label_index = 0\n"), *args)
    plain = cli("probe", model_file(example), *args)
    assert read.exit_code == 0 and plain.exit_code == 0, read.output
    assert json.loads(read.stdout)["lambda0"] == pytest.approx(json.loads(plain.stdout)["lambda0"], rel=1e-9)


LABEL_LAST = """
import torch
from torch import nn
gen = torch.Generator().manual_seed(0)
x, y = torch.randn(16, 3, generator=gen), torch.randn(16, 2, generator=gen)
model = nn.Linear(3, 2)
"""


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        ("data = (y, x)\nlabel_index = 0", None),
        ("data = torch.utils.data.TensorDataset(y, x)\nlabel_index = -2", None),
        ("data = (x, y)\nlabel_index = 2", "label_index 2 is out of range for samples of 2 members"),
        ("data = (x, y)\nlabel_index = '0'", "`label_index` in"),
        ("data = {'x': x, 'labels': y}\nlabel_index = 0", "label_index 0 needs tuple samples, got a dict"),
        ("data = (x, y)\nlabel_index = 1\nlabel_key = 'y'", "sets both `label_key` and `label_index`"),
    ],
)
def test_label_index_picks_any_member_of_a_tuple(model_file, cli, tail, message):
    args = ("--json", "--no-measure", "--batches", "1")
    result = cli("probe", model_file(LABEL_LAST + tail), *args)
    if message is not None:
        assert result.exit_code == 2 and message in result.stderr and result.stderr.strip().count("\n") == 0, result.output
        return
    plain = cli("probe", model_file(LABEL_LAST + "data = (x, y)"), *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lambda0"] == pytest.approx(json.loads(plain.stdout)["lambda0"], rel=1e-9)


def test_activation_modules_of_other_libraries_are_named_by_their_class():
    """GPT-2's gelu_new computes 0.5·x·(1 + tanh(…)): a GELU, not a tanh network."""
    import math

    class NewGELUActivation(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    model = nn.Sequential(nn.Linear(4, 8), NewGELUActivation(), nn.Linear(8, 2))
    result = lrphase.probe(model, (torch.randn(8, 4), torch.randn(8, 2)), batch_size=8, measure=False)
    assert result.estimate.nonlinearities == ("gelu",) and result.activation.family == "unknown"
