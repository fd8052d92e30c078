"""A small CNN (three 3×3 convolutions + two linear layers, 10 classes) on 3×32×32 inputs.

    lrphase probe examples/small_cnn.py

The data is SYNTHETIC: Gaussian images and uniform random labels drawn from a local,
seeded ``torch.Generator``, so nothing is downloaded and the global RNG is not touched.
Swap in e.g. CIFAR-10 (``torchvision.datasets.CIFAR10``) to probe real data.
"""

import torch
from torch import nn

# lrphase seeds the global RNG before importing this file, so the init is reproducible.
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1),
    nn.ReLU(),  # 16×32×32
    nn.Conv2d(16, 32, 3, padding=1, stride=2),
    nn.ReLU(),  # 32×16×16
    nn.Conv2d(32, 32, 3, padding=1, stride=2),
    nn.ReLU(),  # 32×8×8
    nn.Flatten(),
    nn.Linear(32 * 8 * 8, 64),
    nn.ReLU(),
    nn.Linear(64, 10),
)

_gen = torch.Generator().manual_seed(0)  # private generator: deterministic synthetic data
_n = 1024
data = (
    torch.randn(_n, 3, 32, 32, generator=_gen),
    torch.randint(0, 10, (_n,), generator=_gen),
)

loss = "mse"  # the paper's L = 1/(2km) Σ (f − y)² on one-hot targets
batch_size = 128
