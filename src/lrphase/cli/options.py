"""The command-line options the commands share, declared once so that their help texts cannot drift.

Every option defaults to None, meaning "not given": it then overrides nothing, and the value
comes from the config file, the model file or the defaults (:mod:`lrphase.cli.config`).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..vocabulary import DECAYS, DTYPES, JVP_MODES

DTypeChoice = Enum("DTypeChoice", {name: name for name in DTYPES}, type=str)  # type: ignore[misc]
DecayChoice = Enum("DecayChoice", {name: name for name in DECAYS}, type=str)  # type: ignore[misc]
JvpChoice = Enum("JvpChoice", {name: name for name in JVP_MODES}, type=str)  # type: ignore[misc]

Target = Annotated[
    str | None,
    typer.Argument(
        help="Model file `path.py` (or `path.py:factory`) defining `model` and `data`, or a model by name with --data: "
        "torchvision:NAME | timm:NAME | hf:TYPE. Default: `model` under \\[tool.lrphase] in pyproject.toml.",
        show_default=False,
    ),
]
Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="TOML config file (default: \\[tool.lrphase] of the nearest pyproject.toml); options given here override it.",
    ),
]
Data = Annotated[
    str | None,
    typer.Option(
        help="Data for a model by name: fake:CxHxW:N\\[:K] (Gaussian images, K classes, default 10) | "
        "imagefolder:PATH\\[:SIZE] | fake-tokens:T:N\\[:V\\[:K]] (for hf:TYPE). Not with a model file, which defines its own."
    ),
]
Loss = Annotated[
    str | None,
    typer.Option(
        help="mse (paper, default) | cross_entropy | mse_loss_mean | mse_loss_sum | cross_entropy_sum | causal_lm; "
        "overrides the file's `loss`."
    ),
]
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Samples per batch (default: the file's `batch_size`, else 128).")
]
Batches = Annotated[int | None, typer.Option(help="Batches λ₀ is averaged over (default 3; 1 when the edge is measured).")]
Device = Annotated[str | None, typer.Option(help="auto (CUDA, else MPS, else CPU; default) | cpu | cuda | cuda:1 | mps.")]
DType = Annotated[DTypeChoice | None, typer.Option(help="Compute dtype (default: the model's own).")]
Seed = Annotated[
    int | None,
    typer.Option(help="Seed of the model file's initialization, batch sampling, Lanczos and training runs (default 0)."),
]
Tol = Annotated[float | None, typer.Option(help="Lanczos stops when its residual is ≤ tol·λ (default 1e-3).")]
MaxIter = Annotated[int | None, typer.Option("--max-iter", help="Lanczos iterations per batch before giving up (default 100).")]
CAct = Annotated[
    float | None, typer.Option("--c-act", help="Override c_act in the predicted η_max = c_act/λ₀ (e.g. from `lrphase sweep`).")
]
Jvp = Annotated[
    JvpChoice | None,
    typer.Option(help="How J·v is computed (default: auto for probe, which times the candidates once; double for check)."),
]
ChunkSize = Annotated[
    int | None,
    typer.Option(
        "--chunk-size",
        help="Micro-batch size of every curvature product "
        "(default: chosen from free memory; train-mode BatchNorm is never split).",
    ),
]
OptimizerName = Annotated[
    str | None,
    typer.Option(
        "--optimizer",
        help="sgd (default) | adam | adamw | rmsprop | adagrad | … (any other than sgd is run as itself to measure its edge).",
    ),
]
Betas = Annotated[str | None, typer.Option("--betas", help='Adam-style (β₁, β₂), e.g. "0.9,0.999" (default: the optimizer\'s).')]
Eps = Annotated[float | None, typer.Option("--eps", help="ε of an adaptive optimizer (default: the optimizer's).")]
Momentum = Annotated[float | None, typer.Option("--momentum", help="SGD momentum β (default 0).")]
Nesterov = Annotated[bool | None, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum (as torch.optim.SGD).")]
WeightDecay = Annotated[
    float | None, typer.Option("--weight-decay", help="L2 weight decay wd (default 0): the curvature becomes λ₀ + wd.")
]
Measure = Annotated[
    bool | None,
    typer.Option(
        "--measure/--no-measure",
        help="Measure the divergence edge with short training runs (default: where the paper's prediction is not exact).",
    ),
]
MeasureSteps = Annotated[int | None, typer.Option("--measure-steps", help="Steps of each measuring run (default 40).")]
WarmupSteps = Annotated[
    int | None,
    typer.Option("--warmup-steps", help="Steps of the schedule's linear warmup (default 0): every rate becomes its peak."),
]
TotalSteps = Annotated[int | None, typer.Option("--total-steps", help="Training steps of the schedule (needed by a decay).")]
Decay = Annotated[
    DecayChoice | None,
    typer.Option(help="The schedule after the warmup, to 0 at --total-steps (default constant; one-cycle as OneCycleLR)."),
]
WarmupStart = Annotated[
    float | None, typer.Option("--warmup-start", help="The warmup's first rate as a fraction of the peak (default 0).")
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object (documented keys) and nothing else on stdout.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]
