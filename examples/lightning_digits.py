"""A PyTorch Lightning model file, written as for ``Trainer.fit``: lrphase reads it as it is.

    lrphase probe examples/lightning_digits.py

The loader comes from the datamodule, SGD with momentum 0.9 from ``configure_optimizers`` and
cross-entropy from ``training_step``. Needs Lightning and scikit-learn:
``pip install 'lrphase[lightning,examples]'``.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

try:
    import lightning as L
    from sklearn.datasets import load_digits
except ImportError as exc:  # both are optional example dependencies
    raise ImportError(
        "examples/lightning_digits.py needs Lightning and scikit-learn: pip install 'lrphase[lightning,examples]'"
    ) from exc


class DigitsClassifier(L.LightningModule):
    def __init__(self, hidden: int = 128, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)}


class Digits(L.LightningDataModule):
    def __init__(self, batch_size: int = 64):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32)
        std = x.std(dim=0)
        x = (x - x.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))
        self.train_set = TensorDataset(x, torch.tensor(digits.target, dtype=torch.long))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)


model = DigitsClassifier()
datamodule = Digits()

if __name__ == "__main__":
    L.Trainer(max_epochs=20).fit(model, datamodule=datamodule)
