"""lrphase: the learning-rate phases of a PyTorch model from λ₀, the top eigenvalue of its
training loss's Gauss–Newton matrix (the empirical NTK for the paper's MSE) at initialization.

The public API is imported lazily so that ``lrphase --help`` does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "estimate_lambda0": "lrphase.estimate",
    "Lambda0Estimate": "lrphase.estimate",
    "BatchCurvature": "lrphase.estimate",
    "probe": "lrphase.probing",
    "check": "lrphase.checking",
    "CheckResult": "lrphase.checking",
    "Optimizer": "lrphase.optimizers",
    "ProbeResult": "lrphase.probing",
    "confirm": "lrphase.confirming",
    "Confirmation": "lrphase.confirming",
    "run_sweep": "lrphase.sweep",
    "SweepResult": "lrphase.sweep",
    "predict_phases": "lrphase.phases",
    "PhasePrediction": "lrphase.phases",
    "lanczos_top": "lrphase.lanczos",
    "LanczosResult": "lrphase.lanczos",
    "load_spec": "lrphase.spec",
    "ModelSpec": "lrphase.spec",
    "resolve_loss": "lrphase.losses",
    "LrphaseError": "lrphase.errors",
    "InputError": "lrphase.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lrphase' has no attribute {name!r}")
