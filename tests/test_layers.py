"""Standard layers in every J·v mode: λ₀ against a dense float64 reference, or a fallback with a note, never a crash."""

from __future__ import annotations

import copy
import functools
import itertools

import pytest
import torch
import torchvision
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader

import lrphase
from cases import Encoder, NoForwardMode
from lrphase.curvature import jacobian
from lrphase.curvature.isolation import working_copy
from lrphase.curvature.jacobian import JacobianProducts, ModeTimer
from lrphase.curvature.layers import differentiable_layers

MODES = ("auto", "jvp", "double", "linearize")
OPTIONS = dict(batches=1, dtype=torch.float64, tol=1e-10, max_iter=80)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine their spinning slows every op down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dense_reference(model: nn.Module, inputs: tuple) -> float:
    """λ_max(J Jᵀ)/(km), the paper-MSE Gauss–Newton top eigenvalue, with J built row by row by plain backward passes.

    The float64 copy is in eval mode, except train-mode BatchNorm, which keeps batch statistics
    (without updating running ones); no lrphase code and no forward mode or double backward is involved.
    """
    reference = copy.deepcopy(model).double()
    for sub in reference.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.training:
            sub.track_running_stats, sub.running_mean, sub.running_var = False, None, None
        else:
            sub.training = False
    params = [p for p in reference.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        out = reference(*inputs).reshape(-1)
    rows = []
    for value in out:
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)])
        )
    j = torch.stack(rows)
    return torch.linalg.eigvalsh(j @ j.T)[-1].item() / j.shape[0]


def assert_every_mode(model: nn.Module, data, inputs: tuple, *, fallbacks: dict[str, str] | None = None, **options) -> None:
    """Every J·v mode gives the reference; a mode in ``fallbacks`` falls back (to the value given), saying so."""
    expected = dense_reference(model, inputs)
    for mode in MODES:
        est = lrphase.estimate_lambda0(model, data, jvp_mode=mode, **{**OPTIONS, **options})
        assert est.lambda0 == pytest.approx(expected, rel=1e-6), mode
        used = (fallbacks or {}).get(mode, mode)
        if mode != "auto":
            assert est.jvp_mode == used, mode
            assert any(f"{mode} unavailable" in note for note in est.notes) is (used != mode), (mode, est.notes)


def _seeded(factory):
    torch.manual_seed(0)
    return factory().double()


def _batch(*shape: int, m: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(m, *shape, generator=gen, dtype=torch.float64), torch.randn(m, 3, generator=gen, dtype=torch.float64)


class _Recurrent(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], **kwargs) -> None:
        super().__init__()
        self.rnn = kind(4, 8, batch_first=True, **kwargs)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize(
    "kind, kwargs", [(nn.LSTM, dict(num_layers=2)), (nn.GRU, {}), (nn.RNN, dict(nonlinearity="tanh"))], ids=["lstm", "gru", "rnn"]
)
def test_recurrent_layers_in_every_mode(kind, kwargs):
    """The native kernels give forward mode to oneDNN's LSTM (CPU) and a double backward to cuDNN's RNNs (CUDA)."""
    model = _seeded(lambda: _Recurrent(kind, **kwargs))
    x, y = _batch(3, 4)
    assert_every_mode(model, (x, y), (x,), batch_size=12)
    options = dict(batch_size=12, batches=1, tol=1e-6, jvp_mode="jvp")
    single = lrphase.estimate_lambda0(copy.deepcopy(model).float(), (x.float(), y.float()), **options)
    assert single.jvp_mode == "jvp" and not single.notes  # oneDNN's LSTM (float32 only) has no forward-mode rule
    assert single.lambda0 == pytest.approx(dense_reference(model, (x,)), rel=1e-4)
    assert type(model.rnn) is kind and torch.backends.mkldnn.enabled and torch.backends.cudnn.enabled


class _Bag(nn.Module):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(20, 8, **kwargs)
        self.head = nn.Linear(8, 3)

    def forward(self, text, offsets=None, weights=None):
        return self.head(torch.tanh(self.bag(text, offsets, per_sample_weights=weights)))


# Bags of token ids, with an empty bag and bags holding the padding id 0 (one of them nothing else).
BAGS = [[3, 5, 7], [], [0, 0], [1, 0, 4, 4], [19], [2, 8, 9, 10, 0], [6, 6], [11, 12]]


def _flat_loader(include_last_offset: bool, weighted: bool) -> DataLoader:
    """A DataLoader of ((text, offsets[, weights]), y) as torchtext users write it: the bags of a batch laid end to end."""
    gen = torch.Generator().manual_seed(2)
    targets = torch.randn(len(BAGS), 3, generator=gen, dtype=torch.float64)
    weights = [torch.rand(len(b), generator=gen, dtype=torch.float64) for b in BAGS]

    def collate(samples):
        tokens = [torch.tensor(BAGS[i], dtype=torch.long) for i in samples]
        lengths = torch.tensor([0] + [len(t) for t in tokens])
        offsets = lengths.cumsum(0) if include_last_offset else lengths[:-1].cumsum(0)
        inputs = (torch.cat(tokens), offsets)
        if weighted:
            inputs += (torch.cat([weights[i] for i in samples]),)
        return inputs, targets[samples]

    return DataLoader(list(range(len(BAGS))), batch_size=len(BAGS), collate_fn=collate)


@pytest.mark.parametrize(
    "kwargs, weighted",
    [
        (dict(mode="sum"), False),
        (dict(mode="sum", padding_idx=0), True),
        (dict(mode="mean", padding_idx=0), False),
        (dict(mode="max", padding_idx=0), False),
        (dict(mode="mean", include_last_offset=True), False),
        (dict(mode="max", include_last_offset=True, padding_idx=0), False),
    ],
    ids=["sum", "sum-weights-padding", "mean-padding", "max-padding", "mean-last-offset", "max-last-offset-padding"],
)
def test_embedding_bag_with_offsets_in_every_mode(kwargs, weighted):
    model = _seeded(lambda: _Bag(**kwargs))
    loader = _flat_loader(kwargs.get("include_last_offset", False), weighted)
    inputs, _ = next(iter(loader))
    assert_every_mode(model, loader, inputs, batch_size=None)
    assert type(model.bag) is nn.EmbeddingBag


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag_with_2d_input_in_every_mode(mode):
    model = _seeded(lambda: _Bag(mode=mode, padding_idx=0))
    gen = torch.Generator().manual_seed(3)
    text = torch.randint(0, 20, (12, 4), generator=gen)
    text[0], text[1, :2] = 0, 0  # a bag of padding only, and a half-padded one
    y = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    assert_every_mode(model, (text, y), (text,), batch_size=12)


FORMS = [
    dict(mode=mode, padding_idx=padding, include_last_offset=last, scale_grad_by_freq=scaled)
    for mode, padding, last, scaled in itertools.product(["sum", "mean", "max"], [None, 0], [False, True], [False, True])
    if not (mode == "max" and scaled)  # PyTorch refuses it
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("two_d", [False, True])
def test_composed_embedding_bag_equals_pytorch(form, two_d):
    """Outputs and weight gradients of the copy's embedding bag equal nn.EmbeddingBag's, for every input form."""
    torch.manual_seed(0)
    bag = nn.EmbeddingBag(20, 3, **form).double()
    mine = copy.deepcopy(bag)
    differentiable_layers(mine)
    assert type(mine) is not nn.EmbeddingBag and isinstance(mine, nn.EmbeddingBag)
    assert [n for n, _ in mine.named_parameters()] == ["weight"]
    if two_d:
        args: tuple = (torch.tensor([[1, 2, 0], [0, 0, 0], [4, 4, 5], [7, 8, 9]]),)
    else:
        lengths = torch.tensor([0] + [len(b) for b in BAGS])
        args = (
            torch.tensor([t for b in BAGS for t in b]),
            lengths.cumsum(0) if form["include_last_offset"] else lengths[:-1].cumsum(0),
        )
    gen = torch.Generator().manual_seed(4)
    weights = torch.rand(args[0].shape, generator=gen, dtype=torch.float64) if form["mode"] == "sum" else None
    expected, got = bag(*args, per_sample_weights=weights), mine(*args, per_sample_weights=weights)
    u = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    (expected_grad,), (grad,) = torch.autograd.grad(expected, [bag.weight], u), torch.autograd.grad(got, [mine.weight], u)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    assert torch.allclose(grad, expected_grad, rtol=0, atol=1e-12)


def test_embedding_bag_max_norm_is_refused_in_one_line():
    model = _Bag(max_norm=1.0)
    loader = _flat_loader(False, False)
    with pytest.raises(lrphase.InputError, match="max_norm") as info:
        lrphase.estimate_lambda0(model, loader, batch_size=None, batches=1)
    assert "\n" not in str(info.value)


@functools.cache
def _mobilenet_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return _batch(3, 32, 32, m=4)


@pytest.mark.parametrize("train_mode", [True, False], ids=["train", "eval"])
def test_mobilenet_hardswish_and_batchnorm_in_every_mode(train_mode):
    """Hardsigmoid's backward has no derivative: the double backward falls back to forward mode.

    Its Hardswish layers are in place, which a folded linearize graph once got wrong after the first product.
    """
    model = _seeded(lambda: torchvision.models.mobilenet_v3_small(num_classes=3)).train(train_mode)
    x, y = _mobilenet_batch()
    assert_every_mode(model, (x, y), (x,), batch_size=4, fallbacks={"double": "jvp"})


def _mlp(activation: nn.Module, norm: type[nn.Module] | None = None) -> nn.Module:
    layers = [nn.Linear(6, 16), *([norm(16)] if norm is not None else []), activation, nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def _conv(groups: int, norm: bool) -> nn.Module:
    layers = [
        nn.Conv2d(4, 4, 3, groups=groups),
        *([nn.GroupNorm(2, 4)] if norm else []),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(64, 3),
    ]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    "factory, shape",
    [
        (lambda: _mlp(nn.SiLU()), (6,)),
        (lambda: _mlp(nn.GELU()), (6,)),
        (lambda: _mlp(nn.GELU(approximate="tanh"), nn.LayerNorm), (6,)),
        (Encoder, (5, 8)),
        (lambda: _conv(groups=4, norm=True), (4, 6, 6)),
    ],
    ids=["silu", "gelu", "gelu-tanh-layernorm", "attention", "depthwise-groupnorm"],
)
def test_smooth_layers_in_every_mode(factory, shape):
    model = _seeded(factory)
    x, y = _batch(*shape)
    assert_every_mode(model, (x, y), (x,), batch_size=12)


class _Cube(torch.autograd.Function):
    """x³ with no forward-mode rule and a backward that cannot be differentiated."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


class _Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.b(_Cube.apply(self.a(x)))


@pytest.mark.parametrize("mode", MODES)
def test_no_mode_works_raises_one_line_naming_the_operation(mode):
    x, y = _batch(6)
    with pytest.raises(lrphase.InputError, match="_Cube") as info:
        lrphase.estimate_lambda0(_Opaque(), (x, y), batch_size=12, jvp_mode=mode, **OPTIONS)
    message = str(info.value)
    assert "\n" not in message and "replace the layer" in message
    assert all(name in message for name in ("jvp", "double", "linearize"))


def test_a_failed_mode_is_skipped_for_the_rest_of_the_model():
    """Decided once per model: the next batch's products start in the mode that works, with the same note."""
    model = _seeded(lambda: _mlp(nn.Hardsigmoid()))
    clone, _ = working_copy(model, device=torch.device("cpu"), dtype=torch.float64)
    x, _ = _batch(6)
    first = JacobianProducts(clone, x, mode="double")
    v = tuple(torch.randn_like(p) for p in clone.parameters())
    assert torch.allclose(first.jvp(v), jacobian.forward_mode_jvp(clone, jacobian.Inputs.of(x), v, seed=0), rtol=1e-12)
    second = JacobianProducts(clone, x[:6], mode="double")
    assert first.mode == second.mode == "jvp"
    assert first.fallback == second.fallback == "double unavailable (no rule for hardsigmoid_backward); used jvp"


def test_chunked_products_fall_back_too():
    model = _seeded(lambda: NoForwardMode(6, 3))
    x, y = _batch(6)
    chunked = lrphase.estimate_lambda0(model, (x, y), batch_size=12, chunk_size=4, **OPTIONS)
    assert chunked.chunk_size == 4 and chunked.jvp_mode == "double"
    assert chunked.notes == ("jvp unavailable (no rule for a custom autograd.Function); used double",)
    assert chunked.lambda0 == pytest.approx(dense_reference(model, (x,)), rel=1e-6)


def _scripted_clock(monkeypatch, durations: list[float]) -> None:
    """``jacobian._clock`` reading ``durations`` (wall and CPU alike), one per timed product, in order."""
    readings = iter(itertools.chain.from_iterable((0.0, d) for d in durations))
    monkeypatch.setattr(jacobian, "_clock", lambda cuda: (next(readings),) * 2)


@pytest.mark.parametrize(
    "durations, chosen",
    [
        ([9.0, 1.5, 1.0, 1.5, 1.0, 1.5], "jvp"),  # the first forward-mode product pays one-off set-up
        ([1.0, 1.5, 1.0, 1.5, 9.0, 1.5], "jvp"),  # another process took the core during one product
        ([1.0, 0.9, 1.0, 0.9, 1.0, 0.9], "jvp"),  # not faster by the margin: forward mode keeps no graph
        ([1.0, 0.5, 1.0, 0.5, 1.0, 0.5], "double"),
        ([1.0, 0.5, 1.0, 7.0, 1.0, 0.5], "double"),
    ],
)
def test_auto_keeps_forward_mode_unless_clearly_slower(monkeypatch, durations, chosen):
    """Turns of three products per mode, each a real product; the fastest of each mode decides."""
    _scripted_clock(monkeypatch, durations)
    model = _seeded(lambda: _mlp(nn.Tanh()))
    clone, _ = working_copy(model, device=torch.device("cpu"), dtype=torch.float64)
    x, _ = _batch(6)
    products, reference = JacobianProducts(clone, x, mode="auto"), JacobianProducts(clone, x, mode="double")
    gen = torch.Generator().manual_seed(5)
    for _ in durations:
        v = tuple(torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in clone.parameters())
        assert torch.allclose(products.jvp(v), reference.jvp(v), rtol=1e-12, atol=1e-13)
    assert products.mode == chosen and products.fallback is None


def test_mode_timer_drops_a_failed_mode():
    timer = ModeTimer(["jvp", "double"])
    timer.record("jvp", [1.0, 1.0])
    timer.drop("jvp")
    assert timer.pending is None and timer.choice() == "double"
