"""Agreement between estimated and simulated values, as Accel-Sim's correlator reports it.

All take paired arrays (estimate, reference); pairs with a missing or non-positive reference are
left out, since a percentage error against zero or nothing says nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


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


SUMMARY_COLUMNS = (
    "level",
    "estimator",
    "op_class",
    "pairs",
    "mape_pct",
    "pearson",
    "nrmse",
    "within_10pct",
    "within_20pct",
)


def agreement_table(ops: Any, layers: Any, estimators: Sequence[str]) -> Any:
    """The metrics of ``summary`` per estimator: over matched op/role rows (all, then per op class)
    and over whole layers (one pair per run). ``ops``/``layers``: report tables with
    ``sim_cycles`` and ``est_cycles_<estimator>``; ``ops`` with ``matched`` and ``op_class``."""
    import pandas as pd

    rows = []
    matched = ops[ops["matched"].astype(bool)]
    classes = sorted(matched["op_class"].dropna().astype(str).unique())
    for estimator in estimators:
        column = f"est_cycles_{estimator}"
        groups = [("all", matched)] + [(c, matched[matched["op_class"].astype(str) == c]) for c in classes]
        for op_class, group in groups:
            values = summary(group[column].tolist(), group["sim_cycles"].tolist())
            rows.append({"level": "op", "estimator": estimator, "op_class": op_class, **values})
        values = summary(layers[column].tolist(), layers["sim_cycles"].tolist())
        rows.append({"level": "layer", "estimator": estimator, "op_class": "all", **values})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
