"""lrphase: the learning-rate phases of a PyTorch model, from λ₀ at initialization.

λ₀ is the top eigenvalue of the training loss's Gauss–Newton matrix (the empirical NTK for the
paper's MSE). The public API below is imported lazily, so that ``lrphase --help`` does not import
torch; the ``TYPE_CHECKING`` imports make the same names visible to IDEs and type checkers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "estimate_lambda0": "lrphase.curvature.estimate",
    "Lambda0Estimate": "lrphase.curvature.estimate",
    "BatchCurvature": "lrphase.curvature.estimate",
    "probe": "lrphase.workflows.probe",
    "ProbeResult": "lrphase.workflows.probe",
    "Advice": "lrphase.advice",
    "check": "lrphase.workflows.check",
    "CheckResult": "lrphase.workflows.check",
    "Optimizer": "lrphase.theory.optimizers",
    "Schedule": "lrphase.theory.schedules",
    "confirm": "lrphase.workflows.confirm",
    "Confirmation": "lrphase.workflows.confirm",
    "run_sweep": "lrphase.workflows.sweep",
    "SweepResult": "lrphase.workflows.sweep",
    "predict_phases": "lrphase.theory.phases",
    "PhasePrediction": "lrphase.theory.phases",
    "EdgeMeasurement": "lrphase.dynamics.stability",
    "lanczos_top": "lrphase.curvature.lanczos",
    "LanczosResult": "lrphase.curvature.lanczos",
    "load_spec": "lrphase.cli.model_file",
    "ModelSpec": "lrphase.cli.model_file",
    "resolve_loss": "lrphase.curvature.losses",
    "LrphaseError": "lrphase.errors",
    "InputError": "lrphase.errors",
    "ExitCode": "lrphase.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .advice import Advice
    from .cli.model_file import ModelSpec, load_spec
    from .curvature.estimate import BatchCurvature, Lambda0Estimate, estimate_lambda0
    from .curvature.lanczos import LanczosResult, lanczos_top
    from .curvature.losses import resolve_loss
    from .dynamics.stability import EdgeMeasurement
    from .errors import ExitCode, InputError, LrphaseError
    from .theory.optimizers import Optimizer
    from .theory.phases import PhasePrediction, predict_phases
    from .theory.schedules import Schedule
    from .workflows.check import CheckResult, check
    from .workflows.confirm import Confirmation, confirm
    from .workflows.probe import ProbeResult, probe
    from .workflows.sweep import SweepResult, run_sweep


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lrphase' has no attribute {name!r}")
