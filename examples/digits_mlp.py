"""A 64→512→512→512→10 ReLU MLP on scikit-learn's bundled 8×8 digits (no download).

    lrphase probe examples/digits_mlp.py

Uses the paper's MSE loss on one-hot targets (integer labels are one-hot encoded by
lrphase). Needs scikit-learn: ``pip install 'lrphase[examples]'``.
"""

import torch
from torch import nn

try:
    from sklearn.datasets import load_digits
except ImportError as exc:  # scikit-learn is an optional example dependency
    raise ImportError("examples/digits_mlp.py needs scikit-learn: pip install 'lrphase[examples]'") from exc

# lrphase seeds the global RNG before importing this file, so the init is reproducible.
model = nn.Sequential(
    nn.Linear(64, 512),
    nn.ReLU(),
    nn.Linear(512, 512),
    nn.ReLU(),
    nn.Linear(512, 512),
    nn.ReLU(),
    nn.Linear(512, 10),
)

# 1797 images of 64 pixels; standardize each feature (constant pixels are left at 0).
_digits = load_digits()
_x = torch.tensor(_digits.data, dtype=torch.float32)
_std = _x.std(dim=0)
_x = (_x - _x.mean(dim=0)) / torch.where(_std > 0, _std, torch.ones_like(_std))
data = (_x, torch.tensor(_digits.target, dtype=torch.long))  # integer labels 0..9

loss = "mse"
batch_size = 256
