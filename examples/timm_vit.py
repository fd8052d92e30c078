"""A timm Vision Transformer (ViT-Tiny cut to 4 blocks) at 32×32 pixels, random initialization.

    lrphase probe examples/timm_vit.py

``timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, ...)``: 16 patches
of 8×8 plus the class token, 4 of ViT-Tiny's 12 blocks (so the probe takes seconds on a CPU), with
dropout and stochastic depth, which lrphase switches off on its copy of the model. The data is
SYNTHETIC: Gaussian 3×32×32 images with random labels from a local, seeded ``torch.Generator``.
Needs ``pip install 'lrphase[timm]'``.
"""

import timm
import torch

model = timm.create_model(  # pretrained=False (the default): random initialization, nothing downloaded
    "vit_tiny_patch16_224",
    img_size=32,
    patch_size=8,
    depth=4,
    num_classes=10,
    drop_rate=0.1,
    drop_path_rate=0.1,
)

_gen = torch.Generator().manual_seed(0)
_n = 256
data = (torch.randn(_n, 3, 32, 32, generator=_gen), torch.randint(0, 10, (_n,), generator=_gen))

loss = "cross_entropy"
batch_size = 16
