"""A 64→256→256→10 ReLU MLP on scikit-learn's bundled 8×8 digits, trained with AdamW (no download).

    lrphase probe examples/digits_adamw.py
    lrphase check examples/digits_adamw.py          # checks the optimizer's own lr, 1e-3
    lrphase sweep examples/digits_adamw.py --steps 30 --plot adam-phases.png

The optimizer object is read as it is written: its class, betas, eps, weight decay and rate.
lrphase runs AdamW itself on a private copy, prints λᴾ₀ and the edge it predicts, and measures
the largest rate whose loss never jumps above its start. Needs scikit-learn:
``pip install 'lrphase[examples]'``.
"""

import torch
from torch import nn

try:
    from sklearn.datasets import load_digits
except ImportError as exc:  # scikit-learn is an optional example dependency
    raise ImportError("examples/digits_adamw.py needs scikit-learn: pip install 'lrphase[examples]'") from exc

# lrphase seeds the global RNG before importing this file, so the init is reproducible.
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

_digits = load_digits()
_x = torch.tensor(_digits.data, dtype=torch.float32)
_std = _x.std(dim=0)
_x = (_x - _x.mean(dim=0)) / torch.where(_std > 0, _std, torch.ones_like(_std))
data = (_x, torch.tensor(_digits.target, dtype=torch.long))

loss = "cross_entropy"
batch_size = 64
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
