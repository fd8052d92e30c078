"""Shared test cases: small models with an independent dense float64 reference for λ₀."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev
from torch.overrides import TorchFunctionMode


class WarmupModel(nn.Module):
    """The paper's model f(x) = n^(-1/2) vᵀ u x with u, v ~ N(0, 1): Section 2.1 for in_dim = 1, 2.2 otherwise."""

    def __init__(self, width: int, generator: torch.Generator | None = None, in_dim: int = 1) -> None:
        super().__init__()
        self.width = width
        self.u = nn.Parameter(torch.randn(width, in_dim, generator=generator, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(width, generator=generator, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.u.T) @ self.v.unsqueeze(1) / self.width**0.5


def warmup_case(width: int = 1000, seed: int = 0, samples: int = 1) -> tuple[WarmupModel, tuple[torch.Tensor, torch.Tensor]]:
    """WarmupModel drawn from its own generator seeded ``seed``, on ``samples`` copies of x = 1 with label y = 0."""
    model = WarmupModel(width, torch.Generator().manual_seed(seed))
    x = torch.ones(samples, 1, dtype=torch.float64)
    return model, (x, torch.zeros_like(x))


def warmup_lambda0(model: WarmupModel) -> float:
    """Its exact λ₀ on x = 1: (‖u‖² + ‖v‖²)/n."""
    return ((model.u.detach().square().sum() + model.v.detach().square().sum()) / model.width).item()


def warmup_source(width: int, samples: int) -> str:
    """A standalone model file for the CLI: ``warmup_case(width, 0, samples)`` as its model and data, one full batch.

    The file carries WarmupModel's and warmup_case's own source, so the CLI (or a subprocess) imports it without tests/.
    """
    header = "from __future__ import annotations\n\nimport torch\nfrom torch import nn\n"
    body = f"model, data = warmup_case({width}, seed=0, samples={samples})\nbatch_size = {samples}\n"
    return "\n\n".join([header, inspect.getsource(WarmupModel), inspect.getsource(warmup_case), body])


def classification(
    seed: int = 0, m: int = 96, *, width: int = 32, activation: type[nn.Module] = nn.Tanh
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """An 8→width→4 classifier (``torch.manual_seed(seed)``) on m Gaussian inputs with a learnable 4-class rule."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, width), activation(), nn.Linear(width, 4))
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(m, 8, generator=gen)
    y = (x[:, :4].argmax(dim=1) + (x[:, 4] > 1).long()) % 4
    return model, x, y


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))


def tanh_net() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 4))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.flatten(1))


MODELS = {"mlp": (mlp, (6,)), "tanh": (tanh_net, (6,)), "cnn_bn": (SmallCNN, (2, 6, 6))}


def make_case(name: str, m: int = 12, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    factory, shape = MODELS[name]
    torch.manual_seed(seed)
    model = factory()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(m, *shape, generator=gen)
    y = torch.randint(0, 4, (m,), generator=gen)
    return model, x, y


def dense_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """J = ∂f/∂θ in float64 as an (m·k) × p matrix, BatchNorm with batch statistics, built with jacrev."""
    model = _float64_copy(model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f(p: dict) -> torch.Tensor:
        return functional_call(model, (p, buffers), (x.double(),)).reshape(-1)

    jac = jacrev(f)(params)
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], dim=1)


def dense_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _float64_copy(model)(x.double())


def dense_gauss_newton_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    """λ_max(Jᵀ H J) with H the autograd Hessian of ``loss_fn(f, y)`` with respect to the outputs f."""
    jac = dense_jacobian(model, x)
    out = dense_outputs(model, x)
    hess = torch.autograd.functional.hessian(lambda f: loss_fn(f.reshape(out.shape), y), out.reshape(-1))
    ggn = jac.T @ hess @ jac
    return torch.linalg.eigvalsh((ggn + ggn.T) / 2)[-1].item()


def dense_top(model: nn.Module, inputs, loss_of_output) -> float:
    """λ_max(Jᵀ H J) for any model and :class:`~lrphase.curvature.data.Inputs`: J of the selected output of a float64 copy.

    The copy is prepared as lrphase prepares its own (eval mode but for train-mode BatchNorm);
    H is the autograd Hessian of ``loss_of_output`` in output space, written as the model's library writes the loss.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from lrphase.curvature.isolation import prepare_for_curvature
    from lrphase.curvature.jacobian import select_output

    reference = copy.deepcopy(model).double()
    prepare_for_curvature(reference)
    inputs = inputs.to(torch.device("cpu"), torch.float64)
    params = {n: p.detach() for n, p in reference.named_parameters() if p.requires_grad}

    def outputs(p: dict) -> torch.Tensor:
        return select_output(functional_call(reference, p, inputs.args, dict(inputs.kwargs)))

    with sdpa_kernel(SDPBackend.MATH):  # jacrev batches its vjps with vmap, which the fused CPU kernel lacks
        out = outputs(params).detach()
        jac = jacrev(lambda p: outputs(p).reshape(-1))(params)
    j = torch.cat([t.reshape(t.shape[0], -1) for t in jac.values()], dim=1)
    hess = torch.autograd.functional.hessian(lambda f: loss_of_output(f.reshape(out.shape)), out.reshape(-1))
    # Jᵀ H J and H^½ J Jᵀ H^½ share their non-zero eigenvalues; the second is small (outputs × outputs).
    values, vectors = torch.linalg.eigh((hess + hess.T) / 2)
    root = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    gram = root @ (j @ j.T) @ root
    return torch.linalg.eigvalsh((gram + gram.T) / 2)[-1].item()


def dense_ntk_top(model: nn.Module, x: torch.Tensor) -> float:
    """λ_max(J Jᵀ/(k m)), the paper's normalized NTK."""
    jac = dense_jacobian(model, x)
    m, k = dense_outputs(model, x).reshape(x.shape[0], -1).shape
    return torch.linalg.eigvalsh(jac @ jac.T / (k * m))[-1].item()


class Square(torch.autograd.Function):
    """x² with a backward (twice differentiable) but no forward-mode rule."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class NoForwardMode(nn.Module):
    """Linear → x² (a custom Function without a forward-mode rule) → linear."""

    def __init__(self, inputs: int = 4, outputs: int = 2) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(inputs, 8), nn.Linear(8, outputs)

    def forward(self, x):
        return self.b(Square.apply(self.a(x)))


class Encoder(nn.Module):
    """A transformer layer at dropout 0: in eval mode attention runs the fused CPU kernel unless told not to."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.layer(x).mean(dim=1))


def _float64_copy(model: nn.Module) -> nn.Module:
    import copy

    from lrphase.curvature.isolation import prepare_for_curvature

    clone = copy.deepcopy(model).double()
    prepare_for_curvature(clone)
    return clone


# The shape of an NTK's spectrum at initialization (measured on the digits MLP, k = 10 outputs):
# a near-degenerate cluster of k eigenvalues, one per output, then a bulk about 5× lower.
CLUSTER = [1.0, 0.9884, 0.936, 0.93, 0.9117, 0.8882, 0.8708, 0.855, 0.8309, 0.8164]


def clustered_operator(dim: int = 2560) -> tuple[torch.Tensor, float]:
    """A dense symmetric matrix with that spectrum in a random basis (float64), and its λ_max."""
    bulk = 0.2084 * np.linspace(1.0, 0.0, dim - len(CLUSTER)) ** 3
    diagonal = torch.tensor(np.concatenate([CLUSTER, bulk]), dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    return (rotation * diagonal) @ rotation.T, float(diagonal.max())


class HostReads(TorchFunctionMode):
    """Counts the tensor methods that copy device values to the host (each one a sync on a GPU)."""

    READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += getattr(func, "__name__", "") in self.READS
        return func(*args, **(kwargs or {}))
