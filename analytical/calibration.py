"""Calibration factors: achieved / ideal, per op class, for compute and for bandwidth.

CHIP-style: a roofline says what the machine could do; a factor per op class (GEMMs reach ~54 %
of MI300X peak FLOPs, HBM ~80 % of peak bandwidth, analytical_anchors.md §3.3) says what kernels
of that class actually get. Factors live in a small YAML file so a calibration done once (from
measured or simulated kernel times) can be reused:

    # calibration.yaml
    hardware: gem5-mi300        # informational
    factors:
      default:   {compute: 1.0, bandwidth: 0.8}
      gemm:      {compute: 0.54, bandwidth: 0.8}
      attention: {compute: 0.4}

A factor of 1 is the ideal; a missing class uses ``default``; a missing key uses 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analytical.ops import OP_CLASSES
from foundation import atomic
from foundation.errors import InputError, close_matches


@dataclass(frozen=True)
class CalibrationFactors:
    """Per op class (compute_efficiency, bandwidth_efficiency); key ``default`` for the rest."""

    factors: dict[str, tuple[float, float]] = field(default_factory=dict)
    source: str = ""

    def compute(self, op_class: str) -> float:
        return self._get(op_class)[0]

    def bandwidth(self, op_class: str) -> float:
        return self._get(op_class)[1]

    def _get(self, op_class: str) -> tuple[float, float]:
        return self.factors.get(op_class, self.factors.get("default", (1.0, 1.0)))

    def arrays(self, op_classes: Any) -> tuple[np.ndarray, np.ndarray]:
        """Compute and bandwidth factors for an array of op classes (vectorised lookup)."""
        if isinstance(getattr(op_classes, "dtype", None), pd.CategoricalDtype):
            cat = pd.Categorical(op_classes)
            codes, uniques = cat.codes, list(cat.categories)
        else:
            codes, uniques = pd.factorize(np.asarray(op_classes))
        comp = np.array([self.compute(c) for c in uniques] or [1.0])
        band = np.array([self.bandwidth(c) for c in uniques] or [1.0])
        return comp[codes], band[codes]

    def to_yaml(self) -> str:
        body = {k: {"compute": float(c), "bandwidth": float(b)} for k, (c, b) in sorted(self.factors.items())}
        return yaml.safe_dump({"factors": body}, sort_keys=False)


def _factor(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) <= 10:
        raise InputError(f"{where}: must be a number in (0, 10], got {value!r}")
    return float(value)


def load_calibration(path: str | os.PathLike[str]) -> CalibrationFactors:
    """Read a calibration YAML file; every error names the file and the key."""
    target = Path(path)
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{target}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f"line {line + 1}: " if line is not None else ""
        raise InputError(f"{target}: {where}invalid YAML") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("factors"), dict):
        raise InputError(f"{target}: expected a mapping with a 'factors' key")
    factors: dict[str, tuple[float, float]] = {}
    valid = (*OP_CLASSES, "default")
    for name, entry in raw["factors"].items():
        if name not in valid:
            raise InputError(f"{target}: unknown op class {name!r}; {close_matches(str(name), valid)}")
        if not isinstance(entry, dict) or set(entry) - {"compute", "bandwidth"}:
            raise InputError(f"{target}: factors.{name}: expected keys 'compute' and/or 'bandwidth'")
        factors[name] = (
            _factor(entry.get("compute", 1.0), f"{target}: factors.{name}.compute"),
            _factor(entry.get("bandwidth", 1.0), f"{target}: factors.{name}.bandwidth"),
        )
    return CalibrationFactors(factors, source=str(target))


def save_calibration(factors: CalibrationFactors, path: str | os.PathLike[str]) -> None:
    atomic.write_text(path, factors.to_yaml())


def fit_calibration(table: pd.DataFrame, measured_column: str = "measured_s") -> CalibrationFactors:
    """Fit per-class factors from estimates joined with measured times.

    ``table`` needs ``op_class``, ``t_compute_s``, ``t_memory_s`` (ideal, uncalibrated) and
    ``measured_column``. Each row is attributed to the side of the roofline it sits on; per class
    and side, least squares through the origin of measured = ideal / factor gives
    factor = Σ ideal² / Σ ideal·measured. Sides are re-attributed with the fitted factors and the
    fit repeated until stable. A side with no rows keeps factor 1.
    """
    needed = {"op_class", "t_compute_s", "t_memory_s", measured_column}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise InputError(f"calibration table: missing column {missing[0]!r}")
    frame = table[list(needed)].dropna()
    frame = frame[frame[measured_column] > 0]
    classes = frame["op_class"].to_numpy()
    t_c, t_m = frame["t_compute_s"].to_numpy(), frame["t_memory_s"].to_numpy()
    measured = frame[measured_column].to_numpy()
    factors = CalibrationFactors({str(c): (1.0, 1.0) for c in np.unique(classes)})
    # Alternate: attribute each row to the side that binds under the current factors, then refit.
    for _ in range(8):
        eff_c, eff_b = factors.arrays(classes)
        compute_side = t_c / eff_c >= t_m / eff_b
        ideal = np.where(compute_side, t_c, t_m)
        work = pd.DataFrame(
            {
                "op_class": classes,
                "side": np.where(compute_side, "compute", "bandwidth"),
                "ii": ideal * ideal,
                "im": ideal * measured,
            }
        )
        sums = work.groupby(["op_class", "side"])[["ii", "im"]].sum()
        fitted = (sums["ii"] / sums["im"]).clip(lower=1e-3, upper=10.0)
        updated = {
            str(c): (
                float(fitted.get((c, "compute"), factors.compute(str(c)))),
                float(fitted.get((c, "bandwidth"), factors.bandwidth(str(c)))),
            )
            for c in np.unique(classes)
        }
        if updated == factors.factors:
            break
        factors = CalibrationFactors(updated, source="fitted")
    return factors
