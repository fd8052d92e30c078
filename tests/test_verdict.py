"""The run classifier on hand-made loss curves."""

from __future__ import annotations

import math

import pytest

from lrphase.dynamics.verdict import classify_run


def decaying(steps=60, rate=0.95, start=1.0):
    return [start * rate**t for t in range(steps + 1)]


def test_monotone_decrease_is_lazy():
    v = classify_run(decaying(), 0.1, lambda_start=5.0, lambda_end=5.0)
    assert v.phase == "lazy" and v.peak_loss_ratio == 1 and v.peak_step == 0


def test_noisy_lazy_curve_is_still_lazy():
    noise = [1 + 0.02 * math.sin(7 * t) for t in range(61)]
    losses = [x * n for x, n in zip(decaying(), noise, strict=False)]
    assert classify_run(losses, 0.1).phase == "lazy"


def test_spike_then_convergence_is_catapult():
    losses = [1, 3, 20, 80, 30, 2, 0.5] + decaying(40, 0.9, 0.4)
    v = classify_run(losses, 1.0, lambda_start=3.0, lambda_end=1.2)
    assert v.phase == "catapult" and v.peak_loss_ratio == 80 and v.peak_step == 3
    assert "loss rose to 80×" in v.reason


def test_rebound_above_running_minimum_is_catapult():
    losses = [1, 0.3, 0.2, 0.5, 0.9, 0.4, 0.1] + decaying(20, 0.9, 0.09)
    v = classify_run(losses, 1.0)
    assert v.phase == "catapult" and v.rebound > 1.25 and v.peak_loss_ratio == 1


def test_curvature_drop_without_spike_is_catapult():
    v = classify_run(decaying(), 1.0, lambda_start=2.2, lambda_end=1.9)
    assert v.phase == "catapult" and v.curvature_dropped


def test_curvature_staying_above_2_over_eta_without_spike_is_lazy():
    assert classify_run(decaying(), 1.0, lambda_start=1.5, lambda_end=1.4).phase == "lazy"


def test_late_rise_while_curvature_sharpens_is_not_a_catapult():
    losses = decaying(30) + [0.3, 0.35, 0.2, 0.1]
    v = classify_run(losses, 1.0, lambda_start=0.5, lambda_end=1.9)
    assert v.phase == "lazy" and "sharpening" in v.reason


def test_nan_is_divergent():
    v = classify_run([1, 2, 5, float("nan")], 1.0)
    assert v.phase == "divergent" and "non-finite at step 3" in v.reason


def test_explosion_is_divergent():
    assert classify_run([1, 10, 1e4, 1e7], 1.0).phase == "divergent"


def test_late_divergence_is_divergent():
    losses = decaying(40) + [0.2 * 2**t for t in range(10)]
    v = classify_run(losses, 1.0)
    assert v.phase == "divergent" and "kept growing" in v.reason


def test_still_high_at_the_end_is_unresolved():
    losses = [1, 5, 30, 60, 40, 20, 8]
    assert classify_run(losses, 1.0).phase == "unresolved"


def test_initial_loss_must_be_positive():
    with pytest.raises(ValueError):
        classify_run([0.0, 0.0], 1.0)
