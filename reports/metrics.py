"""Agreement between estimated and simulated values, as Accel-Sim's correlator reports it.

All take paired arrays (estimate, reference); pairs with a missing or non-positive reference are
left out, since a percentage error against zero or nothing says nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _pairs(estimate: Sequence[float], reference: Sequence[float]) -> list[tuple[float, float]]:
    out = []
    for e, r in zip(estimate, reference, strict=True):
        if e is None or r is None or (isinstance(r, float) and math.isnan(r)) or r <= 0:
            continue
        if isinstance(e, float) and math.isnan(e):
            continue
        out.append((float(e), float(r)))
    return out


def mape(estimate: Sequence[float], reference: Sequence[float]) -> float:
    """Mean absolute percentage error, in % (NaN without a usable pair)."""
    pairs = _pairs(estimate, reference)
    return sum(abs(e - r) / r for e, r in pairs) / len(pairs) * 100 if pairs else math.nan


def pearson(estimate: Sequence[float], reference: Sequence[float]) -> float:
    """Pearson correlation coefficient (NaN with fewer than two pairs or no variance)."""
    pairs = _pairs(estimate, reference)
    if len(pairs) < 2:
        return math.nan
    n = len(pairs)
    me = sum(e for e, _ in pairs) / n
    mr = sum(r for _, r in pairs) / n
    cov = sum((e - me) * (r - mr) for e, r in pairs)
    ve = sum((e - me) ** 2 for e, _ in pairs)
    vr = sum((r - mr) ** 2 for _, r in pairs)
    return cov / math.sqrt(ve * vr) if ve > 0 and vr > 0 else math.nan


def nrmse(estimate: Sequence[float], reference: Sequence[float]) -> float:
    """Root-mean-square error normalised by the mean reference (NaN without a usable pair)."""
    pairs = _pairs(estimate, reference)
    if not pairs:
        return math.nan
    rmse = math.sqrt(sum((e - r) ** 2 for e, r in pairs) / len(pairs))
    return rmse / (sum(r for _, r in pairs) / len(pairs))


def within(estimate: Sequence[float], reference: Sequence[float], pct: float) -> float:
    """Share (0..1) of pairs whose estimate is within ``pct`` % of the reference."""
    pairs = _pairs(estimate, reference)
    return sum(abs(e - r) / r <= pct / 100 for e, r in pairs) / len(pairs) if pairs else math.nan


def summary(estimate: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    return {
        "pairs": len(_pairs(estimate, reference)),
        "mape_pct": mape(estimate, reference),
        "pearson": pearson(estimate, reference),
        "nrmse": nrmse(estimate, reference),
        "within_10pct": within(estimate, reference, 10),
        "within_20pct": within(estimate, reference, 20),
    }
