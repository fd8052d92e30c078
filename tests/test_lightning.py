"""PyTorch Lightning model files: data, optimizer and loss read off the user's modules, which stay untouched."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

import lrphase
from lrphase.cli.lightning import lightning_entries
from lrphase.cli.model_file import load_spec
from lrphase.errors import InputError
from lrphase.settings import Settings

L = pytest.importorskip("lightning")

COMMON = """
import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def tensors():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(48, 8, generator=gen), torch.randint(0, 3, (48,), generator=gen)
"""

NET = """
class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        loss = {loss}
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
"""

DATAMODULE = """
class Digits(L.LightningDataModule):
    def setup(self, stage=None):
        self.ds = TensorDataset(*tensors())

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size={batch_size}, shuffle=True)
"""


def lightning_file(
    *, loss: str = "F.cross_entropy(out, y)", batch_size: int = 16, tail: str = "model = Net()\ndata = Digits()\n"
) -> str:
    """A Lightning user's model file: the module, a datamodule, and ``tail``."""
    return COMMON + NET.format(loss=loss) + DATAMODULE.format(batch_size=batch_size) + tail


def test_a_lightning_file_probes_with_its_loss_optimizer_and_loader(model_file, cli):
    result = cli("probe", model_file(lightning_file()), "--json", "--no-measure")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["loss"] == "cross_entropy_mean"
    assert out["optimizer"]["name"] == "sgd" and out["optimizer"]["momentum"] == 0.9
    assert out["batch_size"] == 16  # the DataLoader's own
    assert result.stderr == ""  # self.log() without a Trainer stays quiet


def test_lambda0_equals_the_plain_files(model_file, cli):
    lightning = model_file(lightning_file(batch_size=48, tail="model = Net()\ndatamodule = Digits()\n"), "lit.py")
    plain = model_file(
        COMMON + "model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))\n"
        'data = tensors()\nloss = "cross_entropy"\nbatch_size = 48\n',
        "plain.py",
    )
    options = ("--json", "--no-measure", "--batches", "1", "--tol", "1e-6", "--momentum", "0.9")
    results = [cli("probe", path, *options) for path in (lightning, plain)]
    assert all(result.exit_code == 0 for result in results), [result.output for result in results]
    lit, ref = (json.loads(result.stdout) for result in results)
    assert lit["loss"] == ref["loss"] == "cross_entropy_mean"
    assert lit["lambda0"] == pytest.approx(ref["lambda0"], rel=1e-6)


@pytest.mark.parametrize(
    "configured",
    [
        "opt",
        "[opt]",
        "([opt], [torch.optim.lr_scheduler.StepLR(opt, 10)])",
        '{"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 10), "interval": "step"}}',
        '[{"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda step: step / 100)}]',
    ],
)
def test_every_form_of_configure_optimizers_and_the_modules_own_loader(model_file, configured):
    source = COMMON + textwrap.dedent(f"""
        class Net(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, **kwargs):  # batch_idx is optional in Lightning 2
                x, y = batch
                return {{"loss": F.cross_entropy(self.net(x), y)}}  # not self(x): the forward pass is rerun

            def train_dataloader(self):
                return DataLoader(TensorDataset(*tensors()), batch_size=16)

            def configure_optimizers(self):
                opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
                return {configured}

        model = Net()
    """)
    spec = load_spec(model_file(source))
    assert isinstance(spec.data, torch.utils.data.DataLoader) and spec.loss == "cross_entropy"
    settings = Settings(target="model.py").with_model_defaults(spec.defaults, loss=spec.loss)
    assert (settings.optimizer, settings.momentum, settings.weight_decay) == ("sgd", 0.9, 1e-4)
    assert settings.lr == 0.1  # a warmup scheduler's first factor (0 for the LambdaLR) does not count


@pytest.mark.parametrize(
    ("loss", "name"),
    [
        ("F.cross_entropy(out, y, reduction='sum')", "cross_entropy_sum"),
        ("F.mse_loss(out, F.one_hot(y, 3).float())", "mse_loss_mean"),
        ("nn.MSELoss(reduction='sum')(out, F.one_hot(y, 3).float())", "mse_loss_sum"),
        ("((out - F.one_hot(y, 3).float()) ** 2).mean() / 2", "mse"),
    ],
)
def test_the_loss_of_training_step_is_recognised(model_file, loss, name):
    assert load_spec(model_file(lightning_file(loss=loss))).loss == name


@pytest.mark.parametrize("tail", ["model = Net()\ndata = tensors\n", "model = Net\ndatamodule = Digits\n"])
def test_factories_of_the_module_and_its_data(model_file, tail):
    spec = load_spec(model_file(lightning_file(tail=tail)))
    assert spec.loss == "cross_entropy" and spec.defaults["optimizer"] == lrphase.Optimizer(momentum=0.9)


def test_the_files_own_keys_win(model_file):
    spec = load_spec(model_file(lightning_file(loss="out.abs().mean()", tail='model = Net()\ndata = Digits()\nloss = "mse"\n')))
    assert spec.loss == "mse" and spec.defaults["optimizer"] == lrphase.Optimizer(momentum=0.9)


@pytest.mark.parametrize(
    ("loss", "tail", "message"),
    [
        (
            "out.abs().mean()",
            "model = Net()\ndata = Digits()\n",
            "could not tell the loss of Net.training_step from the model's output",
        ),
        (
            "self.trainer.global_step * out.sum()",
            "model = Net()\ndata = Digits()\n",
            "RuntimeError: Net is not attached to a `Trainer`",
        ),
        (
            "F.cross_entropy(out, y)",
            "Digits.train_dataloader = lambda self: 1 / 0\nmodel = Net()\ndata = Digits()\n",
            "Digits.train_dataloader() failed outside a Trainer (ZeroDivisionError: division by zero)",
        ),
        (
            "F.cross_entropy(out, y)",
            "import sys\nDigits.setup = lambda self, stage=None: sys.exit(3)\nmodel = Net()\ndata = Digits()\n",
            'Digits.setup("fit") failed outside a Trainer (SystemExit: 3)',
        ),
        (
            "F.cross_entropy(out, y)",
            "model = Net()\ndata = Digits()\ndatamodule = Digits()\n",
            "defines both `data` and `datamodule`",
        ),
    ],
)
def test_what_cannot_be_read_is_one_line_with_exit_2(model_file, cli, loss, tail, message):
    result = cli("probe", model_file(lightning_file(loss=loss, tail=tail)), "--no-measure")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output


def test_check_a_rate(model_file, cli):
    result = cli("check", model_file(lightning_file()), "--lr", "0.01", "--json", "--measure-steps", "10")
    assert result.exit_code == 0, result.output  # far below the edge: lazy, accepted
    out = json.loads(result.stdout)
    assert out["phase"] == "lazy" and out["accepted"] and out["optimizer"]["momentum"] == 0.9


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


@pytest.mark.parametrize("attached", [False, True])
def test_the_users_module_is_untouched(model_file, attached):
    namespace: dict = {}
    exec(lightning_file(tail=""), namespace)
    module = namespace["Net"]()
    module.eval()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    if attached:
        module.trainer = trainer
    before = _state(module)
    rng = torch.get_rng_state()
    entries = lightning_entries(module, {"datamodule": namespace["Digits"]()}, source="model.py")
    assert entries["loss"] == "cross_entropy" and isinstance(entries["data"], torch.utils.data.DataLoader)
    assert all(torch.equal(value, before[key]) for key, value in module.state_dict().items())
    assert module.training is False
    assert torch.equal(torch.get_rng_state(), rng)
    if attached:
        assert module.trainer is trainer
    else:
        assert module._trainer is None
        with pytest.raises(RuntimeError, match="not attached"):
            module.trainer  # noqa: B018 - the property is the check


def test_a_plain_module_is_left_alone():
    model = torch.nn.Linear(2, 2)
    entries = {"data": (torch.randn(4, 2), torch.randn(4, 2))}
    assert lightning_entries(model, entries, source="model.py") == entries
    with pytest.raises(InputError, match="both"):
        lightning_entries(model, {**entries, "datamodule": entries["data"]}, source="model.py")


def test_the_bundled_example_reads_as_written():
    pytest.importorskip("sklearn", reason="examples/lightning_digits.py needs scikit-learn")
    spec = load_spec(str(Path(__file__).parents[1] / "examples" / "lightning_digits.py"))
    assert spec.loss == "cross_entropy" and spec.data.batch_size == 64
    settings = Settings(target="model.py").with_model_defaults(spec.defaults, loss=spec.loss)
    assert (settings.optimizer, settings.lr, settings.momentum) == ("sgd", 0.05, 0.9)


def test_loss_on_the_command_line_skips_reading_training_step(model_file, cli):
    path = model_file(lightning_file(loss="out.abs().mean()", tail="model = Net()\ndata = Digits()\n"))
    result = cli("probe", path, "--loss", "cross_entropy", "--no-measure", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loss"] == "cross_entropy_mean"


def test_a_scheduler_from_configure_optimizers_declares_the_schedule(model_file):
    source = COMMON + NET.format(loss="F.cross_entropy(out, y)").replace(
        "return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)",
        "opt = torch.optim.AdamW(self.parameters(), lr=1e-3)\n"
        "        warm = torch.optim.lr_scheduler.LinearLR(opt, 0.01, total_iters=5)\n"
        "        cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=45)\n"
        "        seq = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])\n"
        '        return {"optimizer": opt, "lr_scheduler": {"scheduler": seq, "interval": "step"}}',
    ) + DATAMODULE.format(batch_size=16) + "model = Net()\ndata = Digits()\n"
    spec = load_spec(model_file(source))
    settings = Settings(target="model.py").with_model_defaults(spec.defaults, loss=spec.loss)
    schedule = settings.schedule()
    assert settings.lr == 1e-3  # the peak, not LinearLR's first 1e-5
    assert schedule is not None and schedule.warmup_steps == 5 and schedule.total_steps == 50
    assert schedule.source == "SequentialLR(LinearLR, CosineAnnealingLR)" and schedule.factors[0] == pytest.approx(0.01)
