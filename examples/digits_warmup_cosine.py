"""The digits MLP trained as the Hugging Face Trainer trains: AdamW, linear warmup, then cosine decay (no download).

    lrphase probe examples/digits_warmup_cosine.py --warmup-advice
    lrphase check examples/digits_warmup_cosine.py          # checks the optimizer's own lr as the peak

The scheduler is read as it is written (``SequentialLR`` of ``LinearLR`` and ``CosineAnnealingLR``,
over 30 epochs of 21 steps): every rate lrphase prints is its peak, the measuring runs follow its
60-step warmup, and ``--warmup-advice`` reports the shortest warmup the recommended peak needs.
Needs scikit-learn: ``pip install 'lrphase[examples]'``.
"""

import torch
from torch import nn
from torch.optim import lr_scheduler

try:
    from sklearn.datasets import load_digits
except ImportError as exc:  # scikit-learn is an optional example dependency
    raise ImportError("examples/digits_warmup_cosine.py needs scikit-learn: pip install 'lrphase[examples]'") from exc

# lrphase seeds the global RNG before importing this file, so the init is reproducible.
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

_digits = load_digits()
_x = torch.tensor(_digits.data, dtype=torch.float32)
_std = _x.std(dim=0)
_x = (_x - _x.mean(dim=0)) / torch.where(_std > 0, _std, torch.ones_like(_std))
data = (_x, torch.tensor(_digits.target, dtype=torch.long))

loss = "cross_entropy"
batch_size = 64
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)

_total, _warmup = 30 * (len(_x) // batch_size), 60
scheduler = lr_scheduler.SequentialLR(
    optimizer,
    [
        lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=_warmup),
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=_total - _warmup),
    ],
    milestones=[_warmup],
)
