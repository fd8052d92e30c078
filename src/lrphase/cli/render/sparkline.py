"""Small terminal charts: a loss curve as one line of block characters."""

from __future__ import annotations

import math
from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], *, width: int = 40, log: bool = True) -> str:
    """``values`` resampled to at most ``width`` columns, log-scaled; non-finite values show as ``×``."""
    if not values:
        return ""
    step = max(1, math.ceil(len(values) / width))
    columns = [max(values[i : i + step], key=lambda v: v if math.isfinite(v) else math.inf) for i in range(0, len(values), step)]
    finite = [_scale(v, log) for v in columns if math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return "×" * len(columns)
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    out = []
    for v in columns:
        if not math.isfinite(v) or (log and v <= 0):
            out.append("×")
        else:
            out.append(BLOCKS[min(len(BLOCKS) - 1, int((_scale(v, log) - lo) / span * len(BLOCKS)))])
    return "".join(out)


def _scale(v: float, log: bool) -> float:
    return math.log10(v) if log else v
