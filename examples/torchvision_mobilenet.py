"""torchvision's MobileNetV3-Small (10 classes) at initialization, on torchvision's FakeData images.

    lrphase probe examples/torchvision_mobilenet.py

The model and the data pipeline as a torchvision user writes them: ``mobilenet_v3_small`` with
BatchNorm in train mode (batch statistics, as in the first training step), Hardswish and
Hardsigmoid activations; ``torchvision.datasets.FakeData`` (random 3×32×32 PIL images, each seeded
by its index) through ``transforms.ToTensor()`` in a shuffling ``DataLoader``; ``nn.CrossEntropyLoss()``.
Swap FakeData for ``torchvision.datasets.CIFAR10(root, download=True, transform=...)`` to probe real data.
"""

from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.models import mobilenet_v3_small

model = mobilenet_v3_small(num_classes=10)  # weights=None: random initialization

train_set = datasets.FakeData(size=256, image_size=(3, 32, 32), num_classes=10, transform=transforms.ToTensor())
data = DataLoader(train_set, batch_size=16, shuffle=True)

loss = nn.CrossEntropyLoss()
