"""The digits MLP as most people train it: cross-entropy, SGD with momentum 0.9, minibatches of 64.

    lrphase probe examples/digits_momentum.py

Outside the paper's exact setting (MSE under full-batch gradient descent), so lrphase measures the
divergence edge with short training runs instead of extrapolating it. Needs scikit-learn:
``pip install 'lrphase[examples]'``.
"""

import torch
from torch import nn

try:
    from sklearn.datasets import load_digits
except ImportError as exc:  # scikit-learn is an optional example dependency
    raise ImportError("examples/digits_momentum.py needs scikit-learn: pip install 'lrphase[examples]'") from exc

model = nn.Sequential(
    nn.Linear(64, 256),
    nn.ReLU(),
    nn.Linear(256, 256),
    nn.ReLU(),
    nn.Linear(256, 10),
)

_digits = load_digits()
_x = torch.tensor(_digits.data, dtype=torch.float32)
_std = _x.std(dim=0)
_x = (_x - _x.mean(dim=0)) / torch.where(_std > 0, _std, torch.ones_like(_std))
data = (_x, torch.tensor(_digits.target, dtype=torch.long))

loss = "cross_entropy"
batch_size = 64
optimizer = torch.optim.SGD
momentum = 0.9
