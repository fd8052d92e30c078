"""Every enumerated value lrphase uses, defined once; torch-free, so the command line can import it.

Each ``Literal`` alias has a tuple of its values beside it for validation and help texts.
"""

from __future__ import annotations

from typing import Literal, get_args

Phase = Literal["lazy", "catapult", "divergent"]
PHASES: tuple[Phase, ...] = get_args(Phase)

RunPhase = Literal["lazy", "catapult", "divergent", "unresolved"]  # a training run's verdict can be open

Confidence = Literal["high", "medium", "low"]

Source = Literal["predicted", "measured"]  # where an advised η_max comes from

LossKind = Literal["mse", "cross_entropy"]
Reduction = Literal["paper", "mean", "sum"]

ActivationFamily = Literal["relu", "tanh", "sigmoid", "linear", "mixed", "unknown"]

JvpMode = Literal["auto", "double", "jvp", "linearize"]
JVP_MODES: tuple[JvpMode, ...] = get_args(JvpMode)

DType = Literal["float32", "float64"]
DTYPES: tuple[DType, ...] = get_args(DType)

Decay = Literal["constant", "cosine", "linear", "one-cycle"]  # a schedule's shape after its warmup
DECAYS: tuple[Decay, ...] = get_args(Decay)
