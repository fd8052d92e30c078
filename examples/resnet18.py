"""torchvision's ResNet-18 (10 classes) at initialization, BatchNorm in train mode.

    lrphase probe examples/resnet18.py

λ₀ is taken with BatchNorm using batch statistics, as in the first training step
(lrphase works on a copy and never updates the running statistics). The data is
SYNTHETIC: 3×32×32 Gaussian images with random labels from a local, seeded
``torch.Generator``, so nothing is downloaded and the global RNG is not touched.
"""

import torch
from torchvision.models import resnet18

# weights=None: random initialization (lrphase seeds the global RNG before import).
model = resnet18(weights=None, num_classes=10)
model.train()  # BatchNorm in train mode (the default for a fresh module)

_gen = torch.Generator().manual_seed(0)  # private generator: deterministic synthetic data
_n = 256
data = (
    torch.randn(_n, 3, 32, 32, generator=_gen),
    torch.randint(0, 10, (_n,), generator=_gen),
)

loss = "cross_entropy"  # nn.CrossEntropyLoss() with mean reduction
batch_size = 32
