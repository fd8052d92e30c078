"""Training quality: whether training at the rate a method suggests trains well.

For each model of a small zoo (eighteen models on scikit-learn's bundled data sets or seeded
synthetic tasks; ``--list`` names them) and each seed, it compares

* **grid** (ground truth): training at every rate 2^(k/2) of the model's lattice range
  (factor √2 between neighbours, from clearly too small to failing);
* **lrphase**: ``lrphase.probe(model, (X_train, Y_train), loss=..., optimizer=lrphase.Optimizer(...),
  batch_size=64, seed=seed)`` (SGD's hyperparameters, or ``lrphase.Optimizer.from_class`` with the
  task's optimizer class and options), trained at ``eta_recommended``; its ``eta_max`` is compared with
  the grid's first failing rate; the paper's extrapolated advice (``measure=False``, lrphase 0.1's
  only advice) is trained too, for comparison;
* **range test**: torch-lr-finder's ``LRFinder.range_test`` (100 steps, exponential from
  ``--range-start``, default 1e-7, to ``--range-end``, default the top of the model's grid, which
  lies past divergence; the library's default smoothing 0.05 and early stop at 5× the best loss)
  with the same optimizer, loss and batch-64 loader, on a copy of the same initialization. Its
  suggestions "steepest" (the rate at the most negative ``np.gradient`` of the smoothed loss, the
  first 10 and last 5 points skipped, as ``LRFinder.plot(suggest_lr=True)``), "min/10"
  (fastai: the rate at the smallest smoothed loss of the same points, divided by 10) and "valley"
  (fastai's ``lr_find`` default, on the same points: about halfway along the longest strictly
  decreasing run, :func:`valley_index`) are each trained. Non-finite losses are dropped before
  all three suggestions.

The zoo: eleven models trained with ``torch.optim.SGD`` (plain, momentum 0.9 or Nesterov with weight
decay): MLPs on digits (ReLU, tanh, GELU, BatchNorm1d, paper MSE on one-hot targets), a digits CNN,
breast-cancer and diabetes MLPs, a teacher-student regression, a one-block transformer and an Elman
RNN on "most frequent token" sequences; and seven trained with ``torch.optim.Adam`` or ``AdamW``
(weight decay 0.01), grid 7.6e-6 … 8: the digits ReLU MLP (``adam_mlp``), the transformer
(``adam_transformer``), a two-block causal language model on the next token of a fixed sparse
16-token Markov chain (``adam_causal_lm``, entropy rate 1.107 nats, unigram 2.49 nats), a digits
CNN with BatchNorm2d (``adam_bn_cnn``), an ``nn.LSTM`` on one-hot "most frequent token" sequences
(``adam_lstm``), a pre-LayerNorm residual MLP on digits (``adam_resmlp``) and a tanh MLP on the
teacher regression (``adam_regression``).

Training protocol (every run, grid or method): the seed sets the initialization
(``torch.manual_seed(seed)`` before the model is built) and the shuffling (a generator seeded with
it); the model's optimizer (``torch.optim.SGD`` with its momentum, Nesterov flag and weight decay,
or another ``torch.optim`` class with its constructor options; ``Task.make_optimizer``); batch 64,
reshuffled every epoch, incomplete last batch dropped; a fixed number of epochs per model
(≈600–700 steps each); model in train mode. Then, in eval mode on the test split (25%, split once
with a fixed seed; features standardized with the training statistics), the score: test accuracy
(classification), test MSE = mean (f − y)² (regression, targets standardized), or the test
cross-entropy per token, in nats (language model: outputs (b, t, vocab), labels (b, t); lrphase's
``loss="cross_entropy"`` takes each token as one row).

A run **fails** when its training loss becomes non-finite or exceeds 1e3× its first value (the run
stops there), or the mean training loss of its last epoch is not below that of its first epoch
(training did not lower the loss it trains on, whatever the test score says), or its test outputs are
non-finite, or a classifier ends at ≤ chance + 0.05 (chance:
the accuracy of always predicting the training set's most frequent class), or a regressor ends at a
test MSE ≥ that of predicting the training mean, or a language model at a test cross-entropy ≥ that of
the training tokens' unigram distribution. A failed run scores its measured accuracy (0 when the
loss or outputs were non-finite), or an MSE or cross-entropy of +inf.

Per (model, seed) the grid gives the best rate and score (the smallest rate reaching the best
score), the **first failing rate** (the smallest grid rate above the best rate whose run fails) and
the 99% window (the smallest and largest rate whose runs pass and reach 99% of the best). A method's
score is reported as a fraction of the grid-best: accuracy ÷ best accuracy, best MSE ÷ method
MSE, or best cross-entropy ÷ method cross-entropy. It reaches "99%" at a fraction ≥ 0.99
(regression: MSE ≤ 1.10× best) and "95%" at ≥ 0.95 (regression: MSE ≤ 1.5× best). η_max
"within 1.5×" means η_max ÷ first failing rate ∈ [1/1.5, 1.5].

Cost, in training steps: in the same process, side by side, the median time of one training step of
the model at batch 64 (50 steps after 10 warm-up steps), then the wall time of ``lrphase.probe``
and of the whole range test (model copy, loader, optimizer, LRFinder) divided by it.

Grid runs are cached in ``--cache`` (default ``out/training_quality_grid.json``), keyed by
protocol version, model, seed and rate, so a rerun that changes only lrphase retrains nothing.

**Schedule protocol** (``--schedule warmup-cosine``; the default ``constant`` is everything above).
Every training run — grid, range-test suggestions, lrphase — follows η_t = η·f(t) over the same
T = epochs × batches per epoch steps: linear warmup from 0 over W = round(0.1 T) steps, f(t) = t/W,
then cosine to 0 at step T, f(t) = (1 + cos(π (t − W)/(T − W)))/2 (``torch.optim.lr_scheduler.LambdaLR``
stepped after every optimizer step), so every rate is a **peak** and the grid is a grid of peaks on the
same lattices, cached under the key ``training-quality-3+warmup-cosine-0.1``. The range test itself is
unchanged; its three suggestions are trained as peaks (fastai designed valley and min/10 for one-cycle).
lrphase probes with ``schedule=lrphase.Schedule(warmup_steps=W, total_steps=T, decay="cosine")`` (timed:
the cost column) and trains its ``eta_recommended`` with the schedule. Its **warmup advice** is a second,
separately timed probe with ``warmup_advice=True``; the recommended peak is trained (a) with W = 0 (cosine
from the peak) and (b) with W = ``advice.recommended_steps`` (then cosine to T), and the summary counts the
pairs where (a) fails and, of those, where (b) trains. ``check`` is also tried at the largest grid peak that
trained, declared without a warmup (its longer-warmup suggestion). For calibrating the divisor
η_rec = η_max / D of a decaying schedule, the output gives per (model, seed) the grid's 99% window of peaks
against η_max, and the tallies η_max / D would get for D = 2^(k/4), k = 0 … 20, scored by the grid run at the
nearest grid peak (a grid lookup, not a trained run).

    python benchmarks/training_quality.py [--models digits_relu,...] [--seeds 3] [--skip-grid]
        [--only grid|rangetest|lrphase] [--schedule constant|warmup-cosine] [--cache PATH]
        [--json out/training_quality.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import lrphase
from lrphase.advice import MEASURED_MARGIN, SCHEDULE_MARGIN

PROTOCOL = "training-quality-3"  # bump whenever a model, a data set or the training protocol changes
SCHEDULES = ("constant", "warmup-cosine")
WARMUP_FRACTION = 0.1  # warmup-cosine: linear warmup from 0 over this fraction of the steps, then cosine to 0
SCHEDULE = "constant"  # the protocol's schedule, set by --schedule
BATCH = 64
TEST_FRACTION = 0.25
SPLIT_SEED = 0
DIVERGENCE_FACTOR = 1e3
CHANCE_MARGIN = 0.05
RANGE_TEST_STEPS = 100
STEP_TIMING = (10, 50)  # warm-up steps, timed steps
THRESHOLDS = {  # score fraction needed for "99%" and "95%"
    "classification": (0.99, 0.95),
    "regression": (1 / 1.10, 1 / 1.5),
    "language_model": (0.99, 0.95),  # of best CE ÷ CE
}
ETA_MAX_TOLERANCE = 1.5
ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    """Training and test data; targets in the form the loss takes, test labels for accuracy."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels_train: torch.Tensor | None  # class labels (classification only)
    labels_test: torch.Tensor | None


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = round(TEST_FRACTION * len(x))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardize with the training statistics (constant features are only centred)."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    as_tensor = functools.partial(torch.tensor, dtype=torch.float32)
    return as_tensor((train - mean) / std), as_tensor((test - mean) / std)


def classification_split(
    x: np.ndarray, labels: np.ndarray, *, one_hot: bool = False, standardize: bool = True
) -> Split:
    """Labels as long targets (cross-entropy), or one-hot float targets (MSE) with ``one_hot``."""
    x_train, l_train, x_test, l_test = _split(x, labels)
    if standardize:
        xt, xs = _standardize(x_train, x_test)
    else:
        xt, xs = torch.as_tensor(x_train), torch.as_tensor(x_test)
    lt, ls = torch.as_tensor(l_train, dtype=torch.long), torch.as_tensor(l_test, dtype=torch.long)
    if one_hot:
        classes = int(labels.max()) + 1
        return Split(xt, F.one_hot(lt, classes).float(), xs, F.one_hot(ls, classes).float(), lt, ls)
    return Split(xt, lt, xs, ls, lt, ls)


def regression_split(x: np.ndarray, y: np.ndarray) -> Split:
    """Features and the (scalar) target standardized with the training statistics; targets (m, 1)."""
    x_train, y_train, x_test, y_test = _split(x, y.reshape(-1, 1))
    xt, xs = _standardize(x_train, x_test)
    yt, ys = _standardize(y_train, y_test)
    return Split(xt, yt, xs, ys, None, None)


@functools.cache
def digits(one_hot: bool = False) -> Split:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return classification_split(bunch.data, bunch.target, one_hot=one_hot)


@functools.cache
def breast_cancer() -> Split:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return classification_split(bunch.data, bunch.target)


@functools.cache
def diabetes() -> Split:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    return regression_split(bunch.data, bunch.target)


@functools.cache
def teacher_regression(samples: int = 4000, dim: int = 16, hidden: int = 32, noise: float = 0.1) -> Split:
    """Targets from a random tanh teacher MLP of Gaussian inputs, standardized, plus Gaussian noise."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((samples, dim))
    w1 = rng.standard_normal((dim, hidden)) / math.sqrt(dim)
    w2 = rng.standard_normal(hidden) / math.sqrt(hidden)
    y = np.tanh(x @ w1) @ w2
    y = (y - y.mean()) / y.std() + noise * rng.standard_normal(samples)
    return regression_split(x, y)


def mode_sequences(samples: int, vocab: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random token sequences whose most frequent token is unique; label = that token."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, size=(8 * samples, length))
    counts = np.stack([(tokens == v).sum(axis=1) for v in range(vocab)], axis=1)
    top = counts.max(axis=1, keepdims=True)
    unique = (counts == top).sum(axis=1) == 1
    tokens, counts = tokens[unique][:samples], counts[unique][:samples]
    if len(tokens) < samples:
        raise ValueError("too few sequences with a unique most frequent token; raise the oversampling")
    return tokens, counts.argmax(axis=1)


@functools.cache
def token_mode() -> Split:
    """Transformer task: 16 tokens, length 12, label = the most frequent token (16 classes)."""
    tokens, labels = mode_sequences(3000, vocab=16, length=12, seed=2)
    return classification_split(tokens, labels, standardize=False)


@functools.cache
def one_hot_mode() -> Split:
    """Recurrent task: one-hot tokens from 4, length 12, label = the most frequent token (4 classes)."""
    tokens, labels = mode_sequences(3000, vocab=4, length=12, seed=3)
    return classification_split(np.eye(4, dtype=np.float32)[tokens], labels, standardize=False)


def markov_transitions(vocab: int = 16, successors: int = 3, seed: int = 4) -> np.ndarray:
    """A sparse random transition matrix: 95% of each row on 3 random successors (Dirichlet weights), 5% uniform."""
    rng = np.random.default_rng(seed)
    matrix = np.full((vocab, vocab), 0.05 / vocab)
    for row in matrix:
        row[rng.choice(vocab, successors, replace=False)] += 0.95 * rng.dirichlet(np.ones(successors))
    return matrix


def markov_entropy_rate(matrix: np.ndarray) -> float:
    """The chain's entropy rate in nats, Σᵢ πᵢ H(row i) with π stationary: the test CE no model beats (up to sampling)."""
    values, vectors = np.linalg.eig(matrix.T)
    stationary = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1))]))
    stationary /= stationary.sum()
    return float(-(stationary[:, None] * matrix * np.log(matrix)).sum())


@functools.cache
def markov_tokens(samples: int = 3000, length: int = 16) -> Split:
    """Language-model task: sequences of :func:`markov_transitions` (first token uniform); inputs tokens 0…t−1, labels 1…t."""
    matrix = markov_transitions()
    rng = np.random.default_rng(5)
    sequences = np.empty((samples, length + 1), dtype=np.int64)
    sequences[:, 0] = rng.integers(0, len(matrix), samples)
    for t in range(length):
        cumulative = matrix[sequences[:, t]].cumsum(axis=1)
        drawn = (rng.random((samples, 1)) > cumulative).sum(axis=1)
        sequences[:, t + 1] = np.minimum(drawn, len(matrix) - 1)
    x_train, y_train, x_test, y_test = _split(sequences[:, :-1], sequences[:, 1:])
    xt, yt, xs, ys = (torch.as_tensor(a, dtype=torch.long) for a in (x_train, y_train, x_test, y_test))
    return Split(xt, yt, xs, ys, yt, ys)


# --------------------------------------------------------------------------- models


def mlp(widths: tuple[int, ...], activation: Callable[[], nn.Module], *, batch_norm: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` (after BatchNorm1d with ``batch_norm``) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.extend([nn.BatchNorm1d(b), activation()] if batch_norm else [activation()])
    return nn.Sequential(*layers)


def digits_cnn(*, batch_norm: bool = False) -> nn.Sequential:
    """Conv 16, conv 32 stride 2, ReLU after each (after BatchNorm2d with ``batch_norm``), a linear head."""
    def norm(channels: int) -> list[nn.Module]:
        return [nn.BatchNorm2d(channels)] if batch_norm else []

    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1), *norm(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), *norm(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )


class ResidualMLP(nn.Module):
    """A linear stem, pre-LayerNorm residual blocks x + W₂ GELU(W₁ LN(x)), LayerNorm, a linear head."""

    def __init__(self, inputs: int = 64, width: int = 128, depth: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.norm(x))


class AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block; attention written out (no fused kernels, which lrphase cannot differentiate)."""

    def __init__(self, dim: int, heads: int, *, causal: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.causal = causal
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        if self.causal:  # a constant additive mask: position i attends to positions ≤ i
            scores = scores + torch.full((t, t), -math.inf, device=x.device).triu(1)
        weights = torch.softmax(scores, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenTransformer(nn.Module):
    """Token and position embeddings, attention blocks, LayerNorm, mean pooling, a linear head."""

    def __init__(self, vocab: int = 16, length: int = 12, dim: int = 32, heads: int = 2, depth: int = 1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(0.02 * torch.randn(length, dim))
        self.blocks = nn.Sequential(*(AttentionBlock(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(tokens) + self.position)
        return self.head(self.norm(x).mean(dim=1))


class CausalLM(nn.Module):
    """Token and position embeddings, causal attention blocks, LayerNorm, a linear head at every position: (b, t, vocab)."""

    def __init__(self, vocab: int = 16, length: int = 16, dim: int = 32, heads: int = 2, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Parameter(0.02 * torch.randn(length, dim))
        self.blocks = nn.Sequential(*(AttentionBlock(dim, heads, causal=True) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(tokens) + self.position[: tokens.shape[1]])
        return self.head(self.norm(x))


class LSTMClassifier(nn.Module):
    """``nn.LSTM`` (one layer, batch first), logits from the last time step's output."""

    def __init__(self, inputs: int = 4, hidden: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class ElmanClassifier(nn.Module):
    """h_t = tanh(W x_t + U h_{t−1} + b), a Python loop over time (no fused RNN kernel); logits from the last h."""

    def __init__(self, inputs: int = 4, hidden: int = 64, classes: int = 4) -> None:
        super().__init__()
        self.hidden = hidden
        self.input = nn.Linear(inputs, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drive = self.input(x)
        h = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            h = torch.tanh(drive[:, t] + self.recurrent(h))
        return self.head(h)


# --------------------------------------------------------------------------- the zoo


@dataclass(frozen=True)
class Task:
    """A model with its data, loss, optimizer and its hyperparameters, training budget and rate lattice."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    data: Callable[[], Split]
    loss: str  # "cross_entropy" or "mse" (the paper's L = 1/(2km) Σ (f − y)²)
    kind: str  # "classification", "regression" or "language_model" (outputs (b, t, vocab), labels (b, t))
    epochs: int
    momentum: float = 0.0  # momentum, nesterov, weight_decay: torch.optim.SGD's (with optimizer SGD only)
    nesterov: bool = False
    weight_decay: float = 0.0
    lattice: tuple[int, int] = (-27, 10)  # grid rates 2^(k/2), k in this closed range (default 8.6e-5 … 32)
    optimizer: type[torch.optim.Optimizer] = torch.optim.SGD
    optimizer_options: tuple[tuple[str, Any], ...] = ()  # constructor keyword arguments of any other optimizer

    @property
    def is_sgd(self) -> bool:
        return self.optimizer is torch.optim.SGD

    @property
    def optimizer_text(self) -> str:
        if not self.is_sgd:
            names = {"weight_decay": "wd"}
            return ", ".join([self.optimizer.__name__] + [f"{names.get(k, k)} {v:g}" if isinstance(v, float) else
                                                          f"{names.get(k, k)} {v}" for k, v in self.optimizer_options])
        parts = ["SGD"] + ([f"momentum {self.momentum:g}"] if self.momentum else [])
        parts += (["Nesterov"] if self.nesterov else []) + ([f"wd {self.weight_decay:g}"] if self.weight_decay else [])
        return ", ".join(parts)

    def grid(self) -> list[float]:
        return [2.0 ** (k / 2) for k in range(self.lattice[0], self.lattice[1] + 1)]

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return self.build()

    def make_optimizer(self, params: Iterator[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """The task's optimizer over ``params`` at rate ``lr``."""
        if self.is_sgd:
            return torch.optim.SGD(
                params, lr=lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        return self.optimizer(params, lr=lr, **dict(self.optimizer_options))

    def lrphase_optimizer(self) -> Any:
        if self.is_sgd:
            return lrphase.Optimizer(
                name="sgd", momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        return lrphase.Optimizer.from_class(self.optimizer, **dict(self.optimizer_options))

    def loss_value(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "cross_entropy":  # a language model's (b, t, vocab) outputs: one row per token
            return F.cross_entropy(out.flatten(0, -2), target.flatten())
        return 0.5 * F.mse_loss(out, target)

    def criterion(self) -> nn.Module:
        """The training loss as a module, for the range test."""
        if self.kind == "language_model":
            return TokenCrossEntropyLoss()
        return nn.CrossEntropyLoss() if self.loss == "cross_entropy" else PaperMSELoss()


class TokenCrossEntropyLoss(nn.Module):
    """Cross-entropy of (b, t, vocab) outputs against (b, t) labels, the mean over tokens."""

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, -2), target.flatten())


class PaperMSELoss(nn.Module):
    """The paper's L = 1/(2km) Σ (f − y)² (lrphase's ``loss="mse"``)."""

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.mse_loss(out, target)


DIGITS = (64, 256, 256, 10)
MOMENTUM_LATTICE = (-33, 10)  # 1.1e-5 … 32: with momentum 0.9 the too-small rates lie lower
ADAM_LATTICE = (-34, 6)  # 7.6e-6 … 8: Adam's steps are ≈ η per parameter; LayerNorm models fail only past 2
ADAMW = (("weight_decay", 0.01),)  # torch.optim.AdamW's default, stated
TASKS = {
    task.name: task
    for task in (
        Task("digits_relu", "digits MLP 64-256-256-10 ReLU", lambda: mlp(DIGITS, nn.ReLU), digits,
             "cross_entropy", "classification", epochs=30),
        Task("digits_tanh", "digits MLP 64-256-256-10 tanh", lambda: mlp(DIGITS, nn.Tanh), digits,
             "cross_entropy", "classification", epochs=30, lattice=(-27, 18)),
        Task("digits_gelu", "digits MLP 64-256-256-10 GELU", lambda: mlp(DIGITS, nn.GELU), digits,
             "cross_entropy", "classification", epochs=30, momentum=0.9, lattice=MOMENTUM_LATTICE),
        Task("digits_cnn", "digits CNN 1×8×8, conv16, conv32/2, ReLU, linear", digits_cnn, digits,
             "cross_entropy", "classification", epochs=30),
        Task("digits_bn", "digits MLP 64-256-256-10, BatchNorm1d (train mode) + ReLU",
             lambda: mlp(DIGITS, nn.ReLU, batch_norm=True), digits,
             "cross_entropy", "classification", epochs=30, momentum=0.9, lattice=MOMENTUM_LATTICE),
        Task("digits_mse", "digits MLP 64-256-256-10 ReLU, paper MSE on one-hot targets", lambda: mlp(DIGITS, nn.ReLU),
             functools.partial(digits, one_hot=True), "mse", "classification", epochs=30),
        Task("cancer_nesterov", "breast-cancer MLP 30-64-64-2 ReLU", lambda: mlp((30, 64, 64, 2), nn.ReLU),
             breast_cancer, "cross_entropy", "classification", epochs=100, momentum=0.9, nesterov=True,
             weight_decay=5e-4, lattice=MOMENTUM_LATTICE),
        Task("diabetes_tanh", "diabetes regression MLP 10-64-64-1 tanh", lambda: mlp((10, 64, 64, 1), nn.Tanh),
             diabetes, "mse", "regression", epochs=120),
        Task("teacher_relu", "teacher (tanh 16-32-1) regression, ReLU student 16-128-128-1",
             lambda: mlp((16, 128, 128, 1), nn.ReLU), teacher_regression, "mse", "regression", epochs=14, momentum=0.9,
             lattice=MOMENTUM_LATTICE),
        Task("transformer", "transformer (1 block, d 32, 2 heads, hand-written attention), most frequent of 12 tokens",
             TokenTransformer, token_mode, "cross_entropy", "classification", epochs=20, momentum=0.9),
        Task("elman_rnn", "Elman RNN (hidden 64, Python loop), most frequent of 12 one-hot tokens",
             ElmanClassifier, one_hot_mode, "cross_entropy", "classification", epochs=20),
        Task("adam_mlp", "digits MLP 64-256-256-10 ReLU", lambda: mlp(DIGITS, nn.ReLU), digits,
             "cross_entropy", "classification", epochs=30, lattice=ADAM_LATTICE, optimizer=torch.optim.Adam),
        Task("adam_transformer", "transformer (1 block, d 32, 2 heads, hand-written attention), most frequent of 12 tokens",
             TokenTransformer, token_mode, "cross_entropy", "classification", epochs=20, lattice=ADAM_LATTICE,
             optimizer=torch.optim.AdamW, optimizer_options=ADAMW),
        Task("adam_causal_lm", "causal LM (2 causal blocks, d 32, 2 heads), next token of a sparse 16-token Markov chain, "
             "16 positions", CausalLM, markov_tokens, "cross_entropy", "language_model", epochs=18, lattice=ADAM_LATTICE,
             optimizer=torch.optim.AdamW, optimizer_options=ADAMW),
        Task("adam_bn_cnn", "digits CNN 1×8×8, conv16, conv32/2, BatchNorm2d (train mode) + ReLU, linear",
             functools.partial(digits_cnn, batch_norm=True), digits, "cross_entropy", "classification", epochs=30,
             lattice=ADAM_LATTICE, optimizer=torch.optim.Adam),
        Task("adam_lstm", "nn.LSTM (hidden 64), most frequent of 12 one-hot tokens", LSTMClassifier, one_hot_mode,
             "cross_entropy", "classification", epochs=20, lattice=ADAM_LATTICE, optimizer=torch.optim.Adam),
        Task("adam_resmlp", "digits residual MLP (stem 64-128, 3 pre-LayerNorm blocks 128-256-128 GELU, LayerNorm, linear)",
             ResidualMLP, digits, "cross_entropy", "classification", epochs=30, lattice=ADAM_LATTICE,
             optimizer=torch.optim.AdamW, optimizer_options=ADAMW),
        Task("adam_regression", "teacher (tanh 16-32-1) regression, tanh student 16-128-128-1",
             lambda: mlp((16, 128, 128, 1), nn.Tanh), teacher_regression, "mse", "regression", epochs=14,
             lattice=ADAM_LATTICE, optimizer=torch.optim.Adam),
    )
}
ADAM_TASKS = [name for name, task in TASKS.items() if not task.is_sgd]


# --------------------------------------------------------------------------- training and scoring


@dataclass(frozen=True)
class Run:
    """One training run at one rate: its score and whether (and why) it failed."""

    rate: float
    score: float  # test accuracy, or test MSE or token cross-entropy (+inf when failed)
    failed: bool
    reason: str  # "", "diverged", "loss not lowered", "non-finite outputs", "did not learn"
    steps: int


def baseline(task: Task, split: Split) -> float:
    """The score that counts as not learning: chance accuracy, the training mean's MSE, or the unigram cross-entropy.

    Chance: always the training set's most frequent class. Unigram: the test cross-entropy of the
    training tokens' frequencies.
    """
    if task.kind == "classification":
        assert split.labels_train is not None and split.labels_test is not None
        majority = int(torch.bincount(split.labels_train).argmax())
        return float((split.labels_test == majority).float().mean())
    if task.kind == "language_model":
        assert split.labels_train is not None and split.labels_test is not None
        unigram = torch.bincount(split.labels_train.flatten()).double()
        unigram = F.pad(unigram, (0, max(0, int(split.labels_test.max()) + 1 - len(unigram)))) / unigram.sum()
        return float(-unigram.log()[split.labels_test.flatten()].mean())
    return float(F.mse_loss(split.y_train.mean(0).expand_as(split.y_test), split.y_test))


def total_steps(task: Task, split: Split) -> int:
    """Training steps of a full run: epochs × batches per epoch (the incomplete last batch dropped)."""
    return task.epochs * (len(split.x_train) // BATCH)


def protocol_schedule(task: Task, split: Split, warmup: int | None = None) -> lrphase.Schedule | None:
    """The protocol's schedule as lrphase declares it (None: constant); ``warmup`` replaces its warmup length."""
    if SCHEDULE == "constant":
        return None
    total = total_steps(task, split)
    steps = round(WARMUP_FRACTION * total) if warmup is None else warmup
    return lrphase.Schedule(warmup_steps=steps, total_steps=total, decay="cosine")


def train(task: Task, split: Split, seed: int, lr: float, warmup: int | None = None) -> Run:
    """Train a fresh model of ``task`` at ``lr`` with the protocol of the module docstring and score it.

    Under ``--schedule warmup-cosine`` ``lr`` is the peak of the protocol's schedule (``warmup`` steps of it, if given).
    """
    model = task.model(seed)
    optimizer = task.make_optimizer(model.parameters(), lr)
    schedule = protocol_schedule(task, split, warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor) if schedule is not None else None
    shuffle = torch.Generator().manual_seed(seed)
    n = len(split.x_train)
    first: float | None = None
    first_epoch: float | None = None
    steps = 0
    model.train()
    for _ in range(task.epochs):
        order = torch.randperm(n, generator=shuffle)
        epoch_losses: list[float] = []
        for start in range(0, n - BATCH + 1, BATCH):
            idx = order[start:start + BATCH]
            loss = task.loss_value(model(split.x_train[idx]), split.y_train[idx])
            value = loss.item()
            first = value if first is None else first
            epoch_losses.append(value)
            if not math.isfinite(value):
                return Run(lr, failed_score(task), True, "diverged", steps)
            if value > DIVERGENCE_FACTOR * first:
                return score(task, split, model, lr, steps, diverged=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            steps += 1
        first_epoch = statistics.fmean(epoch_losses) if first_epoch is None else first_epoch
    if first_epoch is not None and statistics.fmean(epoch_losses) >= first_epoch:
        return score(task, split, model, lr, steps, diverged=True, reason="loss not lowered")
    return score(task, split, model, lr, steps)


def score(
    task: Task, split: Split, model: nn.Module, lr: float, steps: int, *, diverged: bool = False, reason: str = "diverged"
) -> Run:
    model.eval()
    with torch.no_grad():
        out = model(split.x_test)
    classification = task.kind == "classification"
    if not bool(torch.isfinite(out).all()):
        return Run(lr, failed_score(task), True, "non-finite outputs", steps)
    if classification:
        value = float((out.argmax(dim=1) == split.labels_test).float().mean())
        learned = value > baseline(task, split) + CHANCE_MARGIN
    else:  # the test MSE, or a language model's test token cross-entropy
        value = float(task.loss_value(out, split.y_test) if task.kind == "language_model" else F.mse_loss(out, split.y_test))
        learned = value < baseline(task, split)
    if diverged or not learned:
        return Run(lr, value if classification else math.inf, True, reason if diverged else "did not learn", steps)
    return Run(lr, value, False, "", steps)


def failed_score(task: Task) -> float:
    """The score of a run whose loss or outputs were non-finite: accuracy 0, or an infinite MSE / cross-entropy."""
    return 0.0 if task.kind == "classification" else math.inf


def fraction(task: Task, value: float, best: float) -> float:
    """A score as a fraction of the grid-best: accuracy ÷ best, or best MSE (CE) ÷ MSE (CE), 0 for a failed run."""
    if task.kind == "classification":
        return value / best if best > 0 else math.nan
    return best / value if value > 0 else math.nan


def better(task: Task, a: float, b: float) -> bool:
    return a > b if task.kind == "classification" else a < b


# --------------------------------------------------------------------------- the grid and its cache


class GridCache:
    """Grid runs on disk, keyed by protocol version, model, seed and rate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        self.trained_seconds = 0.0  # wall time spent training the runs that were not cached

    @staticmethod
    def key(task: Task, seed: int, rate: float) -> str:
        protocol = PROTOCOL if SCHEDULE == "constant" else f"{PROTOCOL}+{SCHEDULE}-{WARMUP_FRACTION:g}"
        return f"{protocol}|{task.name}|{seed}|{rate!r}"

    def get(self, task: Task, seed: int, rate: float) -> Run | None:
        entry = self.runs.get(self.key(task, seed, rate))
        return Run(**entry) if entry is not None else None

    def put(self, task: Task, seed: int, run: Run) -> None:
        self.runs[self.key(task, seed, run.rate)] = asdict(run)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.runs, indent=0, sort_keys=True))
        tmp.replace(self.path)


def grid_runs(task: Task, split: Split, seed: int, cache: GridCache, *, cached_only: bool) -> list[Run]:
    runs = []
    for rate in task.grid():
        run = cache.get(task, seed, rate)
        if run is None:
            if cached_only:
                raise SystemExit(f"--skip-grid: no cached grid run for {task.name}, seed {seed}, rate {rate:.4g}")
            started = time.perf_counter()
            run = train(task, split, seed, rate)
            seconds = time.perf_counter() - started
            cache.trained_seconds += seconds
            cache.put(task, seed, run)
            log(f"  grid {task.name} seed {seed} η={rate:.4g}: {_score_text(task, run)} ({seconds:.1f} s)")
        runs.append(run)
    return runs


@dataclass(frozen=True)
class GroundTruth:
    """The grid's verdict for one (model, seed)."""

    seed: int
    lambda0: float  # lrphase.estimate_lambda0 at this initialization (batch 64)
    best_rate: float
    best_score: float
    first_failing_rate: float | None  # None: no failure above the best rate on the lattice
    window: tuple[float, float]  # smallest and largest grid rate reaching the 99% threshold
    runs: tuple[Run, ...]

    @property
    def best_run(self) -> Run:
        return next(r for r in self.runs if r.rate == self.best_rate)

    def run_at(self, rate: float) -> Run | None:
        return next((r for r in self.runs if math.isclose(r.rate, rate, rel_tol=1e-9)), None)


def ground_truth(task: Task, split: Split, seed: int, runs: list[Run]) -> GroundTruth:
    best = runs[0]
    for run in runs[1:]:
        if better(task, run.score, best.score):
            best = run
    above = [r for r in runs if r.rate > best.rate and r.failed]
    good = [r.rate for r in runs if not r.failed and fraction(task, r.score, best.score) >= THRESHOLDS[task.kind][0]]
    estimate = lrphase.estimate_lambda0(
        task.model(seed), (split.x_train, split.y_train), loss=task.loss, batch_size=BATCH, seed=seed, ntk=False
    )
    return GroundTruth(
        seed=seed,
        lambda0=estimate.lambda0,
        best_rate=best.rate,
        best_score=best.score,
        first_failing_rate=above[0].rate if above else None,
        window=(min(good), max(good)) if good else (math.nan, math.nan),
        runs=tuple(runs),
    )


# --------------------------------------------------------------------------- the methods


@dataclass(frozen=True)
class Suggestion:
    """A rate a method suggests, and the run trained at it (None where the method gave no rate)."""

    rate: float | None
    run: Run | None


@dataclass(frozen=True)
class WarmupOutcome:
    """``probe(..., warmup_advice=True)`` under the schedule, and its recommended peak trained without and with that warmup."""

    seconds: float
    recommended_steps: int | None
    edges: tuple[tuple[int, float | None], ...]  # (warmup steps, measured edge)
    without: Suggestion  # the recommended peak, cosine from step 0 (no warmup)
    advised: Suggestion  # the recommended peak with the recommended warmup (None: no warmup was recommended)
    error: str | None = None  # the probe with warmup advice raised this (nothing trained)


@dataclass(frozen=True)
class LongerWarmupOutcome:
    """``check`` at the largest grid peak that trained with the protocol's warmup, declared without one.

    ``without`` trains that peak with no warmup; where it fails, ``lrphase.check(..., margin=0)`` may suggest a
    longer warmup, and ``suggested`` trains the peak with it.
    """

    peak: float
    without: Run
    suggested_steps: int | None
    suggested: Run | None


@dataclass(frozen=True)
class LrphaseOutcome:
    seconds: float
    error: str | None
    lambda0: float | None
    eta_max: float | None
    recommended: Suggestion
    extrapolated: Suggestion  # the paper's extrapolated advice, ``measure=False`` (lrphase 0.1's only advice)
    warmup: WarmupOutcome | None = None  # under a schedule: the warmup advice and its training runs


@dataclass(frozen=True)
class RangeTestOutcome:
    seconds: float
    steps: int  # iterations actually run (the library stops early once the loss exceeds 5× its best)
    steepest: Suggestion
    minimum: Suggestion
    valley: Suggestion  # fastai's lr_find default


def step_seconds(task: Task, split: Split, seed: int) -> float:
    """Median wall time of one training step (forward, loss, backward, optimizer step) at batch 64."""
    model = task.model(seed)
    optimizer = task.make_optimizer(model.parameters(), task.grid()[0])
    model.train()
    order = torch.randperm(len(split.x_train), generator=torch.Generator().manual_seed(seed))
    warmup, timed = STEP_TIMING
    times = []
    for i in range(warmup + timed):
        idx = order[(i * BATCH) % (len(order) - BATCH + 1):][:BATCH]
        started = time.perf_counter()
        loss = task.loss_value(model(split.x_train[idx]), split.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times[warmup:])


def _trained(task: Task, split: Split, seed: int, rate: float | None, warmup: int | None = None) -> Suggestion:
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return Suggestion(rate, None)
    return Suggestion(rate, train(task, split, seed, rate, warmup))


def run_warmup_advice(task: Task, split: Split, seed: int, schedule: Any) -> WarmupOutcome:
    """The probe with warmup advice (timed), and its recommended peak trained with no warmup and with the advised one."""
    started = time.perf_counter()
    try:
        result = lrphase.probe(
            task.model(seed), (split.x_train, split.y_train), loss=task.loss, optimizer=task.lrphase_optimizer(),
            batch_size=BATCH, seed=seed, schedule=schedule, warmup_advice=True,
        )
        advice = result.advice.warmup
        if advice is None:
            raise RuntimeError("probe(..., warmup_advice=True) gave no warmup advice")
    except Exception as exc:  # noqa: BLE001 - as in run_lrphase: a failing probe is a result to report
        first_line = (str(exc).strip().splitlines() or [""])[0]
        none = Suggestion(None, None)
        return WarmupOutcome(time.perf_counter() - started, None, (), none, none, f"{type(exc).__name__}: {first_line}")
    seconds = time.perf_counter() - started
    peak, steps = result.eta_recommended, advice.recommended_steps
    without = _trained(task, split, seed, peak, 0)
    advised = _trained(task, split, seed, peak, steps) if steps is not None else Suggestion(peak, None)
    return WarmupOutcome(seconds, steps, advice.edge_by_warmup, without, advised)


def run_lrphase(task: Task, split: Split, seed: int) -> LrphaseOutcome:
    model = task.model(seed)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    started = time.perf_counter()
    try:
        result = lrphase.probe(
            model, (split.x_train, split.y_train), loss=task.loss, optimizer=task.lrphase_optimizer(),
            batch_size=BATCH, seed=seed, schedule=protocol_schedule(task, split),
        )
    except Exception as exc:  # noqa: BLE001 - a failing probe is a result to report, not a crash
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return LrphaseOutcome(time.perf_counter() - started, f"{type(exc).__name__}: {first_line}", None, None,
                              Suggestion(None, None), Suggestion(None, None))
    seconds = time.perf_counter() - started
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f"lrphase.probe changed the model's state: {', '.join(changed)}"
    extrapolated = lrphase.probe(
        model, (split.x_train, split.y_train), loss=task.loss, optimizer=task.lrphase_optimizer(), batch_size=BATCH,
        seed=seed, measure=False,
    )
    schedule = protocol_schedule(task, split)
    warmup = run_warmup_advice(task, split, seed, schedule) if schedule is not None else None
    return LrphaseOutcome(seconds, None, result.lambda0, result.eta_max,
                          _trained(task, split, seed, result.eta_recommended),
                          _trained(task, split, seed, extrapolated.eta_recommended), warmup)


def run_longer_warmup(task: Task, split: Split, seed: int, truth: GroundTruth) -> LongerWarmupOutcome | None:
    """:class:`LongerWarmupOutcome` for the largest grid peak that trained with the protocol's warmup (None: none did)."""
    trained = [r.rate for r in truth.runs if not r.failed]
    if not trained:
        return None
    peak = max(trained)
    without = train(task, split, seed, peak, 0)
    if not without.failed:
        return LongerWarmupOutcome(peak, without, None, None)
    checked = lrphase.check(
        task.model(seed), (split.x_train, split.y_train), lr=peak, loss=task.loss, optimizer=task.lrphase_optimizer(),
        batch_size=BATCH, seed=seed, schedule=protocol_schedule(task, split, 0), margin=0.0,
    )
    steps = checked.suggested_warmup
    return LongerWarmupOutcome(peak, without, steps, train(task, split, seed, peak, steps) if steps is not None else None)


def valley_index(losses: np.ndarray) -> int:
    """The index fastai's ``valley`` suggests on a (smoothed) loss curve.

    The longest valley: with ``lds[i]`` the length of the longest strictly decreasing subsequence
    ending at point i (an O(n²) dynamic programme), ``end`` the first point of the largest ``lds`` and
    ``start = end − lds[end]`` (clipped at 0; fastai lets it reach −1). The suggestion is the point
    ``start + ⌊s⌋ + ⌊s/2⌋`` with ``s = (end − start)/3``, as fastai computes it: about halfway along
    (fastai's documentation says "roughly 2/3 through").
    """
    lds = np.ones(len(losses), dtype=int)
    end = 0
    for i in range(1, len(losses)):
        higher = lds[:i][losses[:i] > losses[i]]
        if len(higher):
            lds[i] = higher.max() + 1
        if lds[i] > lds[end]:
            end = i
    start = max(end - int(lds[end]), 0)
    third = (end - start) / 3
    return start + int(third) + int(third / 2)


def range_test_suggestions(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None, float | None]:
    """(steepest, min/10, valley) from the range test's history: first 10 and last 5 points skipped, non-finite dropped.

    Like ``LRFinder.plot(suggest_lr=True)``, no suggestion from a history of fewer than 10 + 5 + 2 points.
    fastai's ``lr_find`` trims its history the same way (``num_it // 10`` and 5 points) before ``valley``.
    """
    skip_start, skip_end = 10, 5
    trimmed = zip(lrs[skip_start:-skip_end], losses[skip_start:-skip_end], strict=True)
    points = [(lr, loss) for lr, loss in trimmed if math.isfinite(loss)]
    if len(lrs) < skip_start + skip_end + 2 or len(points) < 2:
        return None, None, None
    rates, values = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    return (float(rates[np.gradient(values).argmin()]), float(rates[values.argmin()] / 10),
            float(rates[valley_index(values)]))


def run_range_test(task: Task, split: Split, seed: int, start_lr: float, end_lr: float) -> RangeTestOutcome:
    from torch_lr_finder import LRFinder

    model = task.model(seed)
    started = time.perf_counter()
    net = copy.deepcopy(model)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(split.x_train, split.y_train), batch_size=BATCH, shuffle=True,
        drop_last=True, generator=torch.Generator().manual_seed(seed),
    )
    finder = LRFinder(net, task.make_optimizer(net.parameters(), start_lr), task.criterion(), device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress prints
        finder.range_test(loader, start_lr=start_lr, end_lr=end_lr, num_iter=RANGE_TEST_STEPS, step_mode="exp")
    seconds = time.perf_counter() - started
    steepest, minimum, valley = range_test_suggestions(finder.history["lr"], finder.history["loss"])
    return RangeTestOutcome(seconds, len(finder.history["lr"]), _trained(task, split, seed, steepest),
                            _trained(task, split, seed, minimum), _trained(task, split, seed, valley))


# --------------------------------------------------------------------------- one model


@dataclass(frozen=True)
class SeedResult:
    truth: GroundTruth
    step_seconds: float | None
    lrphase: LrphaseOutcome | None
    range_test: RangeTestOutcome | None
    longer_warmup: LongerWarmupOutcome | None = None  # under a schedule: check's longer warmup at a failing peak


def evaluate_task(
    task: Task, seeds: int, cache: GridCache, *, only: str | None, cached_only: bool, range_lrs: tuple[float, float]
) -> list[SeedResult]:
    """Ground truth for every seed, then (unless ``only`` excludes them) the methods, timed side by side."""
    split = task.data()
    results = []
    for seed in range(seeds):
        truth = ground_truth(task, split, seed, grid_runs(task, split, seed, cache, cached_only=cached_only))
        log(f"{task.name} seed {seed}: grid-best η={truth.best_rate:.4g} ({_score_text(task, truth.best_run)}), "
            f"first failing η={_rate(truth.first_failing_rate)}, λ₀={truth.lambda0:.4g}")
        step = step_seconds(task, split, seed) if only != "grid" else None
        probe = run_lrphase(task, split, seed) if only in (None, "lrphase") else None
        finder = run_range_test(task, split, seed, *range_lrs) if only in (None, "rangetest") else None
        longer = run_longer_warmup(task, split, seed, truth) if SCHEDULE != "constant" and only in (None, "lrphase") else None
        results.append(SeedResult(truth, step, probe, finder, longer))
        if only != "grid":
            log(f"{task.name} seed {seed}: {_methods_text(task, results[-1])}")
    return results


# --------------------------------------------------------------------------- reporting


def _rate(rate: float | None) -> str:
    return "—" if rate is None or not math.isfinite(rate) else f"{rate:.3g}"


def _value_text(task: Task, value: float) -> str:
    return f"{value:.3g}" if task.kind == "regression" else f"{value:.3f}"


def _unit(task: Task) -> str:
    return {"classification": "acc", "regression": "MSE", "language_model": "CE"}[task.kind]


def _score_text(task: Task, run: Run) -> str:
    text = f"{_unit(task)} {_value_text(task, run.score)}"
    return text + (f" FAILED ({run.reason})" if run.failed else "")


def _fraction_text(task: Task, suggestion: Suggestion | None, best: float) -> str:
    """The score fraction (regression: also the MSE ratio method/best), ✗ for a failed run."""
    if suggestion is None:
        return ""
    if suggestion.run is None:
        return "no rate"
    run = suggestion.run
    text = f"{fraction(task, run.score, best):.3f}"
    if task.kind == "regression":
        text += f" ({run.score / best:.2f}×)" if math.isfinite(run.score) else " (inf)"
    return text + (" ✗" if run.failed else "")


def _methods_text(task: Task, result: SeedResult) -> str:
    best = result.truth.best_score
    parts = []
    if result.lrphase is not None:
        probe = result.lrphase
        parts.append(f"lrphase error {probe.error}" if probe.error else
                     f"lrphase η={_rate(probe.recommended.rate)} → {_fraction_text(task, probe.recommended, best)}, "
                     f"η_max={_rate(probe.eta_max)}")
        if probe.warmup is not None and probe.warmup.error:
            parts.append(f"warmup advice error {probe.warmup.error}")
        elif probe.warmup is not None:
            w = probe.warmup
            parts.append(f"warmup advice {w.recommended_steps} steps: without → "
                         f"{_fraction_text(task, w.without, best)}, advised → {_fraction_text(task, w.advised, best)}")
    if result.range_test is not None:
        rt = result.range_test
        parts.append(f"steepest η={_rate(rt.steepest.rate)} → {_fraction_text(task, rt.steepest, best)}; "
                     f"min/10 η={_rate(rt.minimum.rate)} → {_fraction_text(task, rt.minimum, best)}; "
                     f"valley η={_rate(rt.valley.rate)} → {_fraction_text(task, rt.valley, best)}")
    return "; ".join(parts)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or not denominator > 0:
        return None
    return numerator / denominator


PROBE_COLUMNS = ("lrphase η_rec", "lrphase score", "η_max", "η_max / first failing", "cost lrphase (steps)")
RANGE_COLUMNS = ("steepest η", "steepest score", "min/10 η", "min/10 score", "valley η", "valley score",
                 "cost range test (steps)")
WARMUP_COLUMNS = ("advised warmup (steps)", "η_rec, W = 0", "η_rec, advised warmup", "cost warmup advice (steps)")


def _probe_cells(task: Task, r: SeedResult) -> list[str]:
    probe = r.lrphase
    assert probe is not None
    cost = _fmt(_ratio(probe.seconds, r.step_seconds), ".0f")
    if probe.error:
        return [f"error: {probe.error}", "", "", "", cost]
    ratio = _ratio(probe.eta_max, r.truth.first_failing_rate)
    return [_rate(probe.recommended.rate), _fraction_text(task, probe.recommended, r.truth.best_score),
            _rate(probe.eta_max), _fmt(ratio, ".3g"), cost]


def _warmup_cells(task: Task, r: SeedResult) -> list[str]:
    """Under a schedule: the advised warmup, the scores of lrphase's peak without warmup and with it, the cost."""
    w = r.lrphase.warmup if r.lrphase is not None else None
    if w is None:
        return ["", "", "", ""]
    cost = _fmt(_ratio(w.seconds, r.step_seconds), ".0f")
    if w.error:
        return [f"error: {w.error}", "", "", cost]
    best = r.truth.best_score
    steps = "none trains" if w.recommended_steps is None else str(w.recommended_steps)
    advised = _fraction_text(task, w.advised, best) if w.advised.run is not None else "—"
    return [steps, _fraction_text(task, w.without, best), advised, cost]


def _range_cells(task: Task, r: SeedResult) -> list[str]:
    rt = r.range_test
    assert rt is not None
    best = r.truth.best_score
    return [_rate(rt.steepest.rate), _fraction_text(task, rt.steepest, best), _rate(rt.minimum.rate),
            _fraction_text(task, rt.minimum, best), _rate(rt.valley.rate), _fraction_text(task, rt.valley, best),
            _fmt(_ratio(rt.seconds, r.step_seconds), ".0f")]


def model_table(task: Task, results: list[SeedResult]) -> str:
    """One row per seed: the grid's best and first failing rates, then each method that was run."""
    with_probe = all(r.lrphase is not None for r in results)
    with_range = all(r.range_test is not None for r in results)
    with_warmup = with_probe and SCHEDULE != "constant"
    unit = _unit(task)
    columns = ["seed", f"grid-best η ({unit})", "first failing η",
               *(PROBE_COLUMNS if with_probe else ()), *(RANGE_COLUMNS if with_range else ()),
               *(WARMUP_COLUMNS if with_warmup else ())]
    lines = [f"### {task.name}: {task.description}; {task.loss}, {task.optimizer_text}, {task.epochs} epochs", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in results:
        cells = [str(r.truth.seed), f"{_rate(r.truth.best_rate)} ({_value_text(task, r.truth.best_score)})",
                 _rate(r.truth.first_failing_rate)]
        cells += _probe_cells(task, r) if with_probe else []
        cells += _range_cells(task, r) if with_range else []
        cells += _warmup_cells(task, r) if with_warmup else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def ground_truth_table(task: Task, results: list[SeedResult]) -> str:
    """Per seed: λ₀, the grid-best and first failing rates (also × λ₀), and the scores below the failure."""
    header = ("| seed | λ₀ | grid-best η | best η·λ₀ | best score | first failing η | failing η·λ₀ | "
              "99% window η | window η·λ₀ | score at ½ · ¼ · ⅛ first failing |")
    lines = [f"### {task.name}: {task.description}; {task.loss}, {task.optimizer_text}, {task.epochs} epochs, "
             f"grid {_rate(task.grid()[0])} … {_rate(task.grid()[-1])}", "",
             header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        t = r.truth
        lam = t.lambda0
        failing = t.first_failing_rate
        below = [t.run_at(failing / 2**i) if failing is not None else None for i in (1, 2, 3)]
        spread = " · ".join("—" if run is None else _value_text(task, run.score) + " ✗" * run.failed for run in below)
        cells = [str(t.seed), f"{lam:.4g}", _rate(t.best_rate), f"{t.best_rate * lam:.3g}",
                 _value_text(task, t.best_score), _rate(failing),
                 _fmt(failing * lam if failing is not None else None, ".3g"),
                 f"{_rate(t.window[0])} … {_rate(t.window[1])}",
                 f"{_fmt(t.window[0] * lam, '.3g')} … {_fmt(t.window[1] * lam, '.3g')}", spread]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(present) if present else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(present) if present else None


def calibration_table(results: dict[str, list[SeedResult]]) -> str:
    """Per model, means over seeds of λ₀ and of the grid's rates in units of 1/λ₀ (and lrphase's, where run)."""
    header = ("| model | optimizer | λ₀ | grid-best η·λ₀ | 99% window η·λ₀ | first failing η·λ₀ | "
              "lrphase η_rec·λ₀ | lrphase η_max·λ₀ |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, seeds in results.items():
        task = TASKS[name]
        truths = [r.truth for r in seeds]
        probes = [r.lrphase for r in seeds if r.lrphase is not None and r.lrphase.error is None]
        window = (f"{_fmt(_mean([t.window[0] * t.lambda0 for t in truths]), '.3g')} … "
                  f"{_fmt(_mean([t.window[1] * t.lambda0 for t in truths]), '.3g')}")
        cells = [
            name, task.optimizer_text, _fmt(_mean([t.lambda0 for t in truths]), ".4g"),
            _fmt(_mean([t.best_rate * t.lambda0 for t in truths]), ".3g"), window,
            _fmt(_mean([t.first_failing_rate * t.lambda0 if t.first_failing_rate else None for t in truths]), ".3g"),
            _fmt(_mean([p.recommended.rate * p.lambda0 for p in probes if p.recommended.rate and p.lambda0]), ".3g"),
            _fmt(_mean([p.eta_max * p.lambda0 for p in probes if p.eta_max and p.lambda0]), ".3g"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def peak_calibration(results: dict[str, list[SeedResult]]) -> dict[str, Any]:
    """Under a schedule, per (model, seed): the grid's peaks (best, 99% window, first failing) against lrphase's η_max.

    η_max/D lies in the 99% window exactly when η_max/(window top) ≤ D ≤ η_max/(window bottom), so per optimizer
    family the divisors that fit every pair's window are [max of the first, min of the second] (empty where the
    bounds cross). Grid resolution: the window's ends are lattice rates, a factor √2 apart.
    """
    pairs = []
    for name, seeds in results.items():
        task = TASKS[name]
        for r in seeds:
            t = r.truth
            probe = r.lrphase if r.lrphase is not None and r.lrphase.error is None else None
            eta_max = probe.eta_max if probe is not None else None
            bottom, top = _finite(t.window[0]), _finite(t.window[1])
            pairs.append({
                "model": name, "family": "sgd" if task.is_sgd else "adaptive", "seed": t.seed,
                "best_peak": t.best_rate, "window": [bottom, top], "first_failing_peak": t.first_failing_rate,
                "eta_max": eta_max, "eta_recommended": probe.recommended.rate if probe is not None else None,
                "eta_max_over_best": _ratio(eta_max, t.best_rate),
                "eta_max_over_window_top": _ratio(eta_max, top),
                "eta_max_over_window_bottom": _ratio(eta_max, bottom),
                "eta_max_over_first_failing": _ratio(eta_max, t.first_failing_rate),
                "eta_max_over_eta_recommended": _ratio(eta_max, probe.recommended.rate if probe is not None else None),
            })
    families = {}
    for family in ("sgd", "adaptive"):
        rows = [p for p in pairs if p["family"] == family and p["eta_max_over_window_top"] is not None
                and p["eta_max_over_window_bottom"] is not None]
        if rows:
            families[family] = {
                "pairs": len(rows),
                "divisors_fitting_every_window": [max(p["eta_max_over_window_top"] for p in rows),
                                                  min(p["eta_max_over_window_bottom"] for p in rows)],
                "median_eta_max_over_best": statistics.median(p["eta_max_over_best"] for p in rows),
            }
    return {"pairs": pairs, "families": families}


def peak_calibration_text(calibration: dict[str, Any]) -> str:
    """:func:`peak_calibration` as a table, one row per (model, seed), and the divisors that fit every window."""
    header = ("| model | seed | grid-best peak | 99% window (peaks) | first failing peak | lrphase η_max | "
              "η_max / best | η_max / window top | η_max / window bottom | η_max / first failing | η_max / η_rec |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for p in calibration["pairs"]:
        bottom, top = p["window"]
        cells = [p["model"], str(p["seed"]), _rate(p["best_peak"]), f"{_rate(bottom)} … {_rate(top)}",
                 _rate(p["first_failing_peak"]), _rate(p["eta_max"]),
                 *(_fmt(p[k], ".3g") for k in ("eta_max_over_best", "eta_max_over_window_top",
                                               "eta_max_over_window_bottom", "eta_max_over_first_failing",
                                               "eta_max_over_eta_recommended"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "η_max/D lies in a pair's 99% window iff η_max/(window top) ≤ D ≤ η_max/(window bottom) (window ends "
                  "are grid peaks, √2 apart)."]
    for family, f in calibration["families"].items():
        low, high = f["divisors_fitting_every_window"]
        fits = f"{low:.3g} … {high:.3g}" if low <= high else f"none (the bounds cross: {low:.3g} > {high:.3g})"
        lines.append(f"{family} ({f['pairs']} pairs with η_max and a window): D fitting every window: {fits}; "
                     f"median η_max / grid-best peak {f['median_eta_max_over_best']:.3g}.")
    return "\n".join(lines)


@dataclass(frozen=True)
class Tally:
    """Counts over (model, seed) pairs for one method."""

    pairs: int = 0
    at_99: int = 0
    at_95: int = 0
    failed: int = 0
    no_rate: int = 0  # the method gave no rate (lrphase error, or too short a range test)

    def add(self, task: Task, suggestion: Suggestion, best: float) -> Tally:
        run = suggestion.run
        if run is None:
            return Tally(self.pairs + 1, self.at_99, self.at_95, self.failed, self.no_rate + 1)
        value = fraction(task, run.score, best)
        high, low = THRESHOLDS[task.kind]
        return Tally(self.pairs + 1, self.at_99 + (not run.failed and value >= high),
                     self.at_95 + (not run.failed and value >= low), self.failed + run.failed, self.no_rate)


def summarize(results: dict[str, list[SeedResult]]) -> dict[str, Any]:
    tallies = {"lrphase": Tally(), "lrphase --no-measure": Tally(), "steepest": Tally(), "min/10": Tally(),
               "valley": Tally()}
    if SCHEDULE != "constant":  # lrphase's peak trained with no warmup, and with the warmup its advice recommends
        tallies |= {WITHOUT_WARMUP: Tally(), ADVISED_WARMUP: Tally()}
    ratios: dict[str, list[float]] = {}
    check_passes_failing = 0  # pairs where η_max/(1 + margin) ≥ the first failing rate: check passes a failing rate
    costs: dict[str, tuple[float | None, float | None]] = {}
    for name, seeds in results.items():
        task = TASKS[name]
        for r in seeds:
            best = r.truth.best_score
            if r.lrphase is not None:
                tallies["lrphase"] = tallies["lrphase"].add(task, r.lrphase.recommended, best)
                tallies["lrphase --no-measure"] = tallies["lrphase --no-measure"].add(task, r.lrphase.extrapolated, best)
                if r.lrphase.warmup is not None:
                    tallies[WITHOUT_WARMUP] = tallies[WITHOUT_WARMUP].add(task, r.lrphase.warmup.without, best)
                    tallies[ADVISED_WARMUP] = tallies[ADVISED_WARMUP].add(task, r.lrphase.warmup.advised, best)
                ratio = _ratio(r.lrphase.eta_max, r.truth.first_failing_rate)
                if ratio is not None:
                    ratios.setdefault(name, []).append(ratio)
                    check_passes_failing += ratio >= 1.0 + check_margin()
            if r.range_test is not None:
                tallies["steepest"] = tallies["steepest"].add(task, r.range_test.steepest, best)
                tallies["min/10"] = tallies["min/10"].add(task, r.range_test.minimum, best)
                tallies["valley"] = tallies["valley"].add(task, r.range_test.valley, best)
        costs[name] = (
            _median([_ratio(r.lrphase.seconds, r.step_seconds) for r in seeds if r.lrphase is not None]),
            _median([_ratio(r.range_test.seconds, r.step_seconds) for r in seeds if r.range_test is not None]),
        )
    divisors = divisor_tallies(results)
    warmups = [(TASKS[name], r.lrphase.warmup, r.step_seconds) for name, seeds in results.items() for r in seeds
               if r.lrphase is not None and r.lrphase.warmup is not None]
    without_fails = [w for _, w, _ in warmups if w.without.run is not None and w.without.run.failed]
    advised_runs = [w.advised.run for _, w, _ in warmups if w.advised.run is not None]
    within = {name: ETA_MAX_TOLERANCE ** -1 <= statistics.median(v) <= ETA_MAX_TOLERANCE for name, v in ratios.items()}
    pairs_within = sum(ETA_MAX_TOLERANCE ** -1 <= x <= ETA_MAX_TOLERANCE for v in ratios.values() for x in v)
    lrphase_total = sum(c[0] for c in costs.values() if c[0] is not None and c[1] is not None)
    range_total = sum(c[1] for c in costs.values() if c[0] is not None and c[1] is not None)
    summary = {
        "tallies": {name: asdict(t) for name, t in tallies.items()},
        "eta_max_over_first_failing_median": {name: statistics.median(v) for name, v in ratios.items()},
        "models_eta_max_within_1_5x": sum(within.values()),
        "models_with_eta_max": len(within),
        "pairs_eta_max_within_1_5x": pairs_within,
        "pairs_with_eta_max": sum(len(v) for v in ratios.values()),
        "median_cost_steps": {name: {"lrphase": c[0], "range_test": c[1]} for name, c in costs.items()},
        "total_cost_ratio_lrphase_over_range_test": _ratio(lrphase_total, range_total),
        "pairs_check_would_pass_a_failing_rate": check_passes_failing,
        "divisors_by_grid_lookup": divisors,
        "longer_warmup": longer_warmup_summary(results),
        "warmup_advice": {
            "pairs": len(warmups),
            "recommended_peak_fails_without_warmup": len(without_fails),
            "of_those_trains_with_recommended_warmup": sum(
                w.advised.run is not None and not w.advised.run.failed for w in without_fails),
            "no_warmup_recommended": sum(w.recommended_steps is None and w.error is None for _, w, _ in warmups),
            "errors": sum(w.error is not None for _, w, _ in warmups),
            "recommended_steps": [w.recommended_steps for _, w, _ in warmups],
            "advised_fails": sum(run.failed for run in advised_runs),
            "advised_trained": len(advised_runs),
            "median_cost_steps": _median([_ratio(w.seconds, step) for _, w, step in warmups]),
        } if warmups else None,
    }
    if SCHEDULE != "constant":
        summary["peak_calibration"] = peak_calibration(results)
    return summary


WITHOUT_WARMUP = "lrphase η_rec, W = 0"  # tally names under a schedule
ADVISED_WARMUP = "lrphase η_rec, advised warmup"


def longer_warmup_summary(results: dict[str, list[SeedResult]]) -> dict[str, Any] | None:
    """Counts of :class:`LongerWarmupOutcome`: peaks failing without warmup, check's suggestions, how they trained."""
    outcomes = [r.longer_warmup for seeds in results.values() for r in seeds if r.longer_warmup is not None]
    if not outcomes:
        return None
    failing = [o for o in outcomes if o.without.failed]
    suggested = [o for o in failing if o.suggested is not None]
    return {
        "pairs": len(outcomes),
        "peak_fails_without_warmup": len(failing),
        "check_suggests_a_warmup": len(suggested),
        "suggested_warmup_trains": sum(not o.suggested.failed for o in suggested if o.suggested is not None),
        "suggested_steps": [o.suggested_steps for o in failing],
    }


def check_margin() -> float:
    """``lrphase check``'s default margin from a measured edge under the protocol's schedule."""
    return MEASURED_MARGIN if SCHEDULE == "constant" else SCHEDULE_MARGIN


def divisor_tallies(results: dict[str, list[SeedResult]]) -> dict[str, dict[str, Any]]:
    """For D = 2^(k/4), k = 0 … 20: the tallies η_max/D would get, scored by the grid run at the nearest grid rate.

    A grid-lookup estimate for calibrating the divisor, not a trained run: SGD and adaptive tasks apart.
    """
    out: dict[str, dict[str, Any]] = {}
    for family in ("sgd", "adaptive"):
        rows = {}
        for k in range(21):
            divisor = 2.0 ** (k / 4)
            tally = Tally()
            for name, seeds in results.items():
                task = TASKS[name]
                if task.is_sgd != (family == "sgd"):
                    continue
                for r in seeds:
                    if r.lrphase is None or r.lrphase.eta_max is None:
                        continue
                    target = r.lrphase.eta_max / divisor
                    nearest = min(r.truth.runs, key=lambda run: abs(math.log(run.rate / target)))
                    tally = tally.add(task, Suggestion(target, nearest), r.truth.best_score)
            if tally.pairs:
                rows[f"{divisor:.3g}"] = asdict(tally)
        if rows:
            out[family] = rows
    return out


def summary_text(summary: dict[str, Any]) -> str:
    lines = ["| method | (model, seed) pairs | ≥ 99% of best | ≥ 95% of best | failed | no rate |",
             "|---|---|---|---|---|---|"]
    for name, t in summary["tallies"].items():
        if t["pairs"]:
            lines.append(f"| {name} | {t['pairs']} | {t['at_99']} | {t['at_95']} | {t['failed']} | {t['no_rate']} |")
    lines += ["", "99%: accuracy ≥ 0.99 × best, MSE ≤ 1.10 × best, or token cross-entropy ≤ best / 0.99; 95%: accuracy "
              "≥ 0.95 × best, MSE ≤ 1.5 × best, or cross-entropy ≤ best / 0.95 (a failed run counts in neither)."]
    if summary["models_with_eta_max"]:
        medians = ", ".join(f"{k} {v:.3g}" for k, v in summary["eta_max_over_first_failing_median"].items())
        lines.append(
            f"η_max within {ETA_MAX_TOLERANCE}× of the first failing grid rate: "
            f"{summary['models_eta_max_within_1_5x']} of {summary['models_with_eta_max']} models (median ratio over "
            f"seeds), {summary['pairs_eta_max_within_1_5x']} of {summary['pairs_with_eta_max']} (model, seed) pairs. "
            f"Median ratios: {medians}. η_max/(1 + {check_margin():g}), the largest rate `lrphase check` passes by "
            f"default, at or above the first failing grid rate: {summary['pairs_check_would_pass_a_failing_rate']} pairs."
        )
    for family, rows in summary["divisors_by_grid_lookup"].items():
        lines += ["", f"η_max/D for {family} tasks, scored by the grid run at the nearest grid rate (a lookup, not "
                      "trained): D → ≥ 99% · ≥ 95% · failed of pairs",
                  ", ".join(f"{d}: {t['at_99']}·{t['at_95']}·{t['failed']}/{t['pairs']}" for d, t in rows.items())]
    warmup = summary["warmup_advice"]
    if warmup is not None:
        failing = warmup["recommended_peak_fails_without_warmup"]
        errors = f"; the probe with warmup advice raised on {warmup['errors']}" if warmup["errors"] else ""
        lines += ["", f"Warmup advice ({warmup['pairs']} pairs) — no-warmup fails: {failing}; recommended warmup "
                      f"trains: {warmup['of_those_trains_with_recommended_warmup']} of {failing}. (The recommended "
                      "peak trained with W = 0, cosine from step 0, and with W = the advised warmup, then cosine "
                      "to the end: the rows "
                      f"\"{WITHOUT_WARMUP}\" and \"{ADVISED_WARMUP}\" above, where \"no rate\" is a pair with no "
                      f"advised warmup.) No measured warmup trained the peak on {warmup['no_warmup_recommended']}"
                      f"{errors}; the advised (peak, warmup) failed on {warmup['advised_fails']} of "
                      f"{warmup['advised_trained']}. Recommended warmups (steps): {warmup['recommended_steps']}. "
                      f"Cost with warmup advice (median, training steps): {_fmt(warmup['median_cost_steps'], '.0f')}."]
    longer = summary["longer_warmup"]
    if longer is not None:
        lines += ["", f"check's longer warmup ({longer['pairs']} pairs; the largest grid peak that trained with the "
                      f"protocol's warmup, declared without one, margin 0): the peak fails without warmup on "
                      f"{longer['peak_fails_without_warmup']}; check suggests a warmup on {longer['check_suggests_a_warmup']} "
                      f"of those, and the peak trains with it on {longer['suggested_warmup_trains']}. Suggested "
                      f"warmups (steps): {longer['suggested_steps']}."]
    ratio = summary["total_cost_ratio_lrphase_over_range_test"]
    if ratio is not None:
        lines.append("Total cost (sum over models of the median over seeds, in training steps): "
                     f"lrphase / range test = {ratio:.2f}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- JSON


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null, so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, results: dict[str, list[SeedResult]], summary: dict[str, Any], args: argparse.Namespace,
               grid_training_seconds: float) -> None:
    payload = {
        "protocol": PROTOCOL,
        "schedule": SCHEDULE,
        "warmup_fraction": WARMUP_FRACTION if SCHEDULE != "constant" else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seeds": args.seeds,
        "range_test": {"start_lr": args.range_start, "end_lr": args.range_end or "top of each model's grid",
                       "steps": RANGE_TEST_STEPS},
        "grid_training_seconds": grid_training_seconds,  # this invocation's, for grid runs not in the cache
        "models": {
            name: {
                "description": TASKS[name].description,
                "loss": TASKS[name].loss,
                "kind": TASKS[name].kind,
                "optimizer": TASKS[name].optimizer_text,
                "epochs": TASKS[name].epochs,
                "grid": [TASKS[name].grid()[0], TASKS[name].grid()[-1]],
                "seeds": [asdict(r) for r in seeds],
            }
            for name, seeds in results.items()
        },
        "summary": summary,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(payload), indent=1))


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(TASKS), help=f"comma-separated subset of {', '.join(TASKS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 (default 3)")
    parser.add_argument("--only", choices=("grid", "rangetest", "lrphase"),
                        help="grid: ground truth only; rangetest / lrphase: ground truth and that method only")
    parser.add_argument("--skip-grid", action="store_true", help="take every grid run from the cache, train none")
    parser.add_argument("--cache", type=Path, default=ROOT / "out" / "training_quality_grid.json",
                        help="grid-run cache (default out/training_quality_grid.json)")
    parser.add_argument("--range-start", type=float, default=1e-7, help="range test start rate (default 1e-7)")
    parser.add_argument("--range-end", type=float, default=None,
                        help="range test end rate (default: the top of each model's grid, past divergence)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, default=ROOT / "out" / "training_quality.json",
                        help="write every result here (default out/training_quality.json)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant",
                        help="constant (default) | warmup-cosine: every run trains with linear warmup over 10%% of its "
                             "steps, then cosine to 0, and every rate is its peak")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in TASKS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for task in TASKS.values():
            print(f"{task.name:16} {task.description}; {task.loss}, {task.optimizer_text}, {task.epochs} epochs, "
                  f"grid {_rate(task.grid()[0])} … {_rate(task.grid()[-1])}")
        return
    torch.set_num_threads(args.threads)
    global SCHEDULE
    SCHEDULE = args.schedule
    cache = GridCache(args.cache)
    results: dict[str, list[SeedResult]] = {}
    started = time.perf_counter()
    for name in args.models.split(","):
        task = TASKS[name]
        range_lrs = (args.range_start, args.range_end or task.grid()[-1])
        results[name] = evaluate_task(task, args.seeds, cache, only=args.only, cached_only=args.skip_grid,
                                      range_lrs=range_lrs)
    elapsed = time.perf_counter() - started
    summary = summarize(results)
    schedule = "" if SCHEDULE == "constant" else f", schedule {SCHEDULE} (warmup {WARMUP_FRACTION:.0%})"
    print(f"# Training quality ({PROTOCOL}{schedule}), seeds 0…{args.seeds - 1}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); {elapsed:.0f} s, of which {cache.trained_seconds:.0f} s "
          "training uncached grid runs\n")
    print("## Ground truth\n")
    for name, seeds in results.items():
        print(ground_truth_table(TASKS[name], seeds) + "\n")
    if args.only != "grid":
        print("## Methods\n")
        for name, seeds in results.items():
            print(model_table(TASKS[name], seeds) + "\n")
        print("## Summary\n")
        print(summary_text(summary) + "\n")
    print("## Rates in units of 1/λ₀ (means over seeds)\n")
    print(calibration_table(results))
    if SCHEDULE != "constant":
        print("\n## Peaks against lrphase's η_max, per (model, seed)\n")
        print(peak_calibration_text(summary.get("peak_calibration") or peak_calibration(results)))
    write_json(args.json, results, summary, args, cache.trained_seconds)
    log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
