"""Schedules: the declared shapes against torch's schedulers, runs that follow them, and advice that trains under them."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cases
import lrphase
from lrphase.curvature.losses import resolve_loss
from lrphase.dynamics.stability import CHECK_EVERY, make_edge_trainer
from lrphase.dynamics.warmup import measure_warmup, warmup_lengths
from lrphase.errors import InputError
from lrphase.theory.optimizers import Optimizer
from lrphase.theory.schedules import Schedule
from lrphase.theory.torch_schedules import read_scheduler


def recorded(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The first group's rate before each of ``steps`` optimizer steps, as torch's scheduler sets it."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def dummy(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def test_linear_warmup_then_cosine_or_linear_decay_equals_torchs_schedulers():
    warmup, total = 10, 100
    for decay, after in (
        ("cosine", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup)),
        ("linear", lambda opt: torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=total - warmup)),
    ):
        opt = dummy()
        ramp = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup)
        torch_rates = recorded(torch.optim.lr_scheduler.SequentialLR(opt, [ramp, after(opt)], milestones=[warmup]), total)
        schedule = Schedule(warmup_steps=warmup, total_steps=total, decay=decay, warmup_start=0.01)
        assert [schedule.factor(t) for t in range(total)] == pytest.approx(torch_rates, abs=1e-12)


def test_one_cycle_equals_torchs_one_cycle_to_its_final_floor():
    total, warmup = 100, 30
    scheduler = torch.optim.lr_scheduler.OneCycleLR(dummy(), max_lr=1.0, total_steps=total, pct_start=0.3)
    schedule = Schedule(warmup_steps=warmup, total_steps=total, decay="one-cycle")
    torch_rates = recorded(scheduler, total)
    # OneCycleLR's phases end one step early (at pct_start·T − 1 and T − 1) and its floor is max/(25·1e4)
    ours = [schedule.factor(t) for t in range(total)]
    assert max(abs(a - b) for a, b in zip(ours, torch_rates, strict=True)) < 0.06
    assert ours[0] == pytest.approx(torch_rates[0]) and max(ours) == 1.0


def test_schedule_errors_say_what_to_set():
    with pytest.raises(InputError, match="total-steps"):
        Schedule(warmup_steps=5, decay="cosine")
    with pytest.raises(InputError, match="warmup"):
        Schedule(warmup_steps=50, total_steps=50, decay="cosine")
    with pytest.raises(InputError, match="unknown decay"):
        Schedule(decay="exponential")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="warmup steps"):
        Schedule(warmup_steps=-1)


def test_with_warmup_keeps_the_decay_and_a_tabulated_schedule_keeps_its_table_after_the_peak():
    schedule = Schedule(warmup_steps=20, total_steps=100, decay="cosine")
    assert schedule.with_warmup(0).factor(0) == 1.0 and schedule.with_warmup(0).factor(100) == pytest.approx(0.0)
    table = Schedule.from_factors([0.0, 0.5, 1.0, 0.8, 0.4], "test")
    assert table.warmup_steps == 2 and table.decays
    longer = table.with_warmup(4)
    assert [longer.factor(t) for t in range(7)] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 0.8, 0.4])
    assert longer.total_steps == 7 and longer.warmup_steps == 4


def regression(seed: int = 0, m: int = 64):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(m, 6, generator=gen, dtype=torch.float64)
    return model, x, torch.sin(x[:, :1] * 2) + x[:, 1:2]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_measuring_run_trains_at_the_peak_times_the_schedule_as_torchs_lambda_lr_does(optimizer):
    model, x, y = regression()
    schedule = Schedule(warmup_steps=12, total_steps=60, decay="cosine")
    spec = Optimizer.named(optimizer)
    peak = 0.05 if optimizer == "sgd" else 0.01
    trainer = make_edge_trainer(
        model, (x, y), loss=resolve_loss("mse_loss_mean"), optimizer=spec, batch_size=len(x), device=torch.device("cpu"),
        dtype=torch.float64,
    )  # fmt: skip
    run = trainer.run(peak, 20, schedule)
    reference = copy.deepcopy(model)
    opt = spec.build(list(reference.parameters()), peak)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor)
    start = F.mse_loss(reference(x), y).item()
    ratios = {}
    for step in range(1, 33):
        opt.zero_grad()
        F.mse_loss(reference(x), y).backward()
        opt.step()
        scheduler.step()
        ratios[step] = F.mse_loss(reference(x), y).item() / start
    assert run.warmup_steps == 12 and run.steps_run == 32
    checked = [(step, ratio) for step, ratio in run.losses if step and step % CHECK_EVERY == 0]
    assert len(checked) >= 6
    for step, ratio in checked:
        assert ratio == pytest.approx(ratios[step], rel=1e-9)


def classification(seed: int = 0, m: int = 512):
    return cases.classification(seed, m, width=64, activation=nn.ReLU)


def train(model: nn.Module, x, y, spec: Optimizer, peak: float, schedule: Schedule, batch: int = 64) -> float:
    """Full training under ``schedule`` (its total steps, minibatches of ``batch``); the final training loss (inf: diverged)."""
    model = copy.deepcopy(model)
    opt = spec.build(list(model.parameters()), peak)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor)
    gen = torch.Generator().manual_seed(0)
    first = None
    step = 0
    while step < schedule.total_steps:
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - batch + 1, batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            first = first or loss.item()
            if not math.isfinite(loss.item()) or loss.item() > 1e3 * first:
                return math.inf
            opt.zero_grad()
            loss.backward()
            opt.step()
            scheduler.step()
            step += 1
            if step == schedule.total_steps:
                break
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_recommended_peak_trains_under_its_schedule_and_leaves_the_model_alone(optimizer):
    model, x, y = classification()
    before = copy.deepcopy(model.state_dict())
    schedule = Schedule(warmup_steps=16, total_steps=240, decay="cosine")
    spec = Optimizer.named(optimizer)
    result = lrphase.probe(model, (x, y), loss="cross_entropy", optimizer=spec, batch_size=64, schedule=schedule)
    measurement = result.measurement
    assert measurement.schedule == schedule and all(run.warmup_steps == 16 for run in measurement.runs)
    assert result.advice.schedule.decays and "peak" in result.advice.rule
    assert result.eta_recommended == pytest.approx(result.eta_max / lrphase.advice.divisor_for(spec, schedule))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    start = F.cross_entropy(model(x), y).item()
    assert train(model, x, y, spec, result.eta_recommended, schedule) < 0.5 * start


def test_warmup_advice_gives_the_shortest_measured_warmup_at_which_the_peak_trains():
    model, x, y = classification()
    schedule = Schedule(warmup_steps=32, total_steps=320, decay="cosine")
    spec = Optimizer.named("adamw")
    result = lrphase.probe(model, (x, y), loss="cross_entropy", optimizer=spec, batch_size=64, schedule=schedule)
    trainer = make_edge_trainer(
        model, (x, y), loss=resolve_loss("cross_entropy"), optimizer=spec, batch_size=64, device=torch.device("cpu"),
        dtype=None,
    )  # fmt: skip
    declared = result.measurement
    peak = declared.eta_max  # the largest peak that trained with the declared warmup: short warmups may fail it
    advice = measure_warmup(trainer, declared, peak / 1.5, margin=0.5)  # runs at 1.5 × (peak/1.5)
    assert [steps for steps, _ in advice.edges] == list(warmup_lengths(32)) == [0, 8, 16, 32]
    lengths = [run.warmup_steps for run in advice.peak_runs]
    assert lengths == list(warmup_lengths(32))[: len(lengths)]
    assert all(run.lr == pytest.approx(peak) for run in advice.peak_runs)
    assert all(not run.trains for run in advice.peak_runs[:-1]) and advice.peak_runs[-1].trains
    assert advice.recommended_steps == lengths[-1] > 0  # the edge of a 32-step warmup needs some of it
    assert advice.trajectory is not None and advice.trajectory.warmup_steps == 32
    assert [step for step, _ in advice.trajectory.curvature][:4] == [8, 16, 24, 32]


def test_no_warmup_advice_without_a_warmup():
    model, x, y = classification(m=128)
    with pytest.raises(InputError, match="warmup"):
        lrphase.probe(model, (x, y), loss="cross_entropy", optimizer="adamw", warmup_advice=True)


SCHEDULED = """
import torch
from torch import nn
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
gen = torch.Generator().manual_seed(1)
x = torch.randn(512, 8, generator=gen)
data = (x, (x[:, :4].argmax(dim=1) + (x[:, 4] > 1).long()) % 4)
loss = "cross_entropy"
batch_size = 64
optimizer = "adamw"
"""


def test_probe_cli_says_the_advice_is_for_a_constant_rate_until_a_schedule_is_declared(model_file, cli):
    path = model_file(SCHEDULED)
    constant = cli("probe", path)
    assert constant.exit_code == 0 and "for a constant rate" in constant.stdout
    args = ("probe", path, "--warmup-steps", "16", "--total-steps", "240", "--decay", "cosine")
    record = json.loads(cli(*args, "--json").stdout)
    assert record["schedule"]["warmup_steps"] == 16 and record["schedule"]["decay"] == "cosine"
    assert record["measurement"]["warmup_steps"] == 16 and record["warmup"] is None
    assert record["stable_start_predicted"] == pytest.approx(record["adaptive"]["eta_edge"])
    assert json.loads(constant_json(cli, path))["schedule"] is None
    shown = cli(*args, "--warmup-advice")
    assert shown.exit_code == 0 and "shortest warmup for the recommended peak" in shown.stdout
    assert "prediction (catapult theory" in shown.stdout


def constant_json(cli, path: str) -> str:
    return cli("probe", path, "--json").stdout


def test_schedule_input_errors_are_one_line_with_exit_2(model_file, cli):
    path = model_file(SCHEDULED)
    for args, fragment in (
        (("--decay", "cosine"), "--total-steps"),
        (("--warmup-steps", "-3"), "--warmup-steps"),
        (("--warmup-advice",), "warmup"),
        (("--warmup-steps", "8", "--no-measure"), "--no-measure"),
        (("--warmup-steps", "300", "--total-steps", "200", "--decay", "linear"), "warmup"),
    ):
        result = cli("probe", path, *args)
        assert result.exit_code == 2, args
        assert fragment in result.stderr and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_model_file_and_config_declare_the_schedule(model_file, cli, tmp_path):
    path = model_file(SCHEDULED + "warmup_steps = 16\ntotal_steps = 240\ndecay = 'linear'\n")
    record = json.loads(cli("probe", path, "--json").stdout)
    assert record["schedule"]["decay"] == "linear" and record["schedule"]["total_steps"] == 240
    config = tmp_path / "lrphase.toml"
    config.write_text("warmup_steps = 8\n")
    record = json.loads(cli("probe", path, "--config", str(config), "--json").stdout)
    assert record["schedule"]["warmup_steps"] == 8 and record["schedule"]["decay"] == "linear"  # key by key


def test_check_fails_a_peak_near_the_scheduled_edge_and_offers_a_lower_peak_or_a_longer_warmup_that_trains(model_file, cli):
    path = model_file(SCHEDULED)
    schedule = ("--total-steps", "240", "--decay", "cosine")  # no warmup declared: a longer one starts at 5% of 240
    probed = json.loads(cli("probe", path, *schedule, "--json").stdout)
    edge, recommended = probed["eta_max"], probed["eta_recommended"]
    passed = cli("check", path, "--lr", f"{recommended}", *schedule, "--json")
    assert passed.exit_code == 0, passed.stdout
    assert json.loads(passed.stdout)["suggested_warmup_steps"] is None
    peak = 0.75 * edge  # inside the margin: fails
    failed = cli("check", path, "--lr", f"{peak}", *schedule, "--json")
    assert failed.exit_code == 1
    record = json.loads(failed.stdout)
    assert record["schedule"]["decay"] == "cosine" and record["suggested_lr"] == pytest.approx(recommended)
    warmup = record["suggested_warmup_steps"]
    assert warmup in (12, 24, 48, 96) and f"warm up over {warmup} steps" in record["message"]
    model, x, y = classification()
    longer = Schedule(warmup_steps=warmup, total_steps=240, decay="cosine")
    assert train(model, x, y, Optimizer.named("adamw"), peak, longer) < 0.5 * F.cross_entropy(model(x), y).item()


def record_torch(kind: str, steps: int) -> tuple[torch.optim.lr_scheduler.LRScheduler, list[float]]:
    """A fresh scheduler of ``kind`` on an AdamW, and the rates a second fresh one sets over ``steps`` steps."""

    def build() -> torch.optim.lr_scheduler.LRScheduler:
        opt = torch.optim.AdamW([nn.Parameter(torch.zeros(3))], lr=0.1)
        if kind == "sequential":
            ramp = torch.optim.lr_scheduler.LinearLR(opt, 0.01, total_iters=10)
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=90)
            return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, cosine], milestones=[10])
        if kind == "one-cycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / 10))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(), recorded(build(), steps)


@pytest.mark.parametrize("kind", ["sequential", "one-cycle", "lambda"])
def test_a_torch_scheduler_is_read_as_torch_steps_it_and_is_left_untouched(kind):
    scheduler, rates = record_torch(kind, 100)
    group = scheduler.optimizer.param_groups[0]
    before = (scheduler.last_epoch, group["lr"], scheduler.state_dict().keys())
    schedule = read_scheduler(scheduler, total_steps=100)
    assert (scheduler.last_epoch, group["lr"], scheduler.state_dict().keys()) == before
    peak = max(rates)
    assert list(schedule.factors) == pytest.approx([rate / peak for rate in rates], abs=1e-12)
    assert schedule.warmup_steps == rates.index(peak) and schedule.total_steps == 100


def test_a_scheduler_factory_a_lightning_dict_and_bad_schedulers():
    factory = read_scheduler(lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=50))
    assert factory.total_steps == 50 and factory.source == "OneCycleLR"
    per_epoch = read_scheduler(
        {"scheduler": torch.optim.lr_scheduler.LinearLR(dummy(), 0.5, total_iters=4), "interval": "epoch"}, steps_per_epoch=3
    )
    expected = [0.5, 0.5, 0.5, 0.625, 0.625, 0.625]  # over the largest of its 4 epochs' rates, 0.875
    assert list(per_epoch.factors[:6]) == pytest.approx([f / 0.875 for f in expected]) and per_epoch.total_steps == 12
    with pytest.raises(InputError, match="total-steps"):
        read_scheduler(torch.optim.lr_scheduler.StepLR(dummy(), 10))
    with pytest.raises(InputError, match="per epoch"):
        read_scheduler({"scheduler": torch.optim.lr_scheduler.StepLR(dummy(), 10)})
    with pytest.raises(InputError, match="scheduler"):
        read_scheduler(3)
    stepped = torch.optim.lr_scheduler.LinearLR(dummy(), 0.5, total_iters=4)
    stepped.optimizer.step()
    stepped.step()
    with pytest.raises(InputError, match="already stepped"):
        read_scheduler(stepped)


def test_a_model_files_scheduler_declares_the_schedule(model_file, cli):
    source = SCHEDULED + (
        "opt = torch.optim.AdamW(model.parameters(), lr=1e-3)\n"
        "scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=200)\n"
    )
    record = json.loads(cli("probe", model_file(source), "--json").stdout)
    assert record["schedule"]["source"] == "OneCycleLR" and record["schedule"]["warmup_steps"] == 59
    assert record["measurement"]["warmup_steps"] == 59


def test_the_bundled_warmup_cosine_example_reads_its_scheduler_and_checks_its_own_peak(cli):
    pytest.importorskip("sklearn", reason="examples/digits_warmup_cosine.py needs scikit-learn")
    path = str(Path(__file__).parents[1] / "examples" / "digits_warmup_cosine.py")
    checked = cli("check", path, "--json")
    assert checked.exit_code == 0, checked.stdout
    record = json.loads(checked.stdout)
    assert record["lr"] == 3e-3 and record["schedule"]["source"] == "SequentialLR(LinearLR, CosineAnnealingLR)"
    assert record["schedule"]["warmup_steps"] == 60 and record["probe"]["measurement"]["warmup_steps"] == 60


def test_sweep_and_confirm_say_they_train_constant_rates_when_a_schedule_is_declared(model_file, cli):
    path = model_file(SCHEDULED + "warmup_steps = 16\n")
    result = cli("sweep", path, "--steps", "5", "--points", "3", "--refine", "0")
    assert result.exit_code == 0, result.output
    assert "the declared schedule is not applied" in result.stderr
    confirmed = cli("probe", path, "--confirm", "--steps", "5")
    assert confirmed.exit_code == 0, confirmed.output
    assert "--confirm trains at constant rates" in confirmed.stderr
