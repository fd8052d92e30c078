"""lrphase: the learning-rate phases of a PyTorch model from λ₀, the top eigenvalue of its
training loss's Gauss–Newton matrix (the empirical NTK for the paper's MSE) at initialization.

The public API is imported lazily so that ``lrphase --help`` does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "estimate_lambda0": "lrphase.curvature.estimate",
    "Lambda0Estimate": "lrphase.curvature.estimate",
    "BatchCurvature": "lrphase.curvature.estimate",
    "probe": "lrphase.workflows.probe",
    "check": "lrphase.workflows.check",
    "CheckResult": "lrphase.workflows.check",
    "Optimizer": "lrphase.theory.optimizers",
    "ProbeResult": "lrphase.workflows.probe",
    "confirm": "lrphase.workflows.confirm",
    "Confirmation": "lrphase.workflows.confirm",
    "run_sweep": "lrphase.workflows.sweep",
    "SweepResult": "lrphase.workflows.sweep",
    "predict_phases": "lrphase.theory.phases",
    "PhasePrediction": "lrphase.theory.phases",
    "lanczos_top": "lrphase.curvature.lanczos",
    "LanczosResult": "lrphase.curvature.lanczos",
    "load_spec": "lrphase.cli.model_file",
    "ModelSpec": "lrphase.cli.model_file",
    "resolve_loss": "lrphase.curvature.losses",
    "LrphaseError": "lrphase.errors",
    "InputError": "lrphase.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lrphase' has no attribute {name!r}")
