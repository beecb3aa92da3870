"""One call from (model, machine, phase, shapes) to the tidy estimate table the CLI prints.

Column contract (scripts and reports rely on these names): ``op``, ``module``, ``role`` (the
marker role that joins census kernels), ``join`` (``op``: one-to-one with the role's kernels,
``role``: aggregate per role; see analytical/roles.py), ``phase``,
``flops``, the five ``*_bytes`` classes, ``intensity``, ``bound``, ``t_compute_s``,
``t_memory_s``, one ``t_<estimator>_s`` per estimator, ``estimator`` + ``t_est_s`` (the selected
one) and ``est_cycles`` at the machine's clock. ``layers='all'`` adds the non-layer ops
(``layer`` = -1) and one ``op='total'`` row per machine with the whole-model sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analytical.calibration import CalibrationFactors
from analytical.estimators import ESTIMATORS, estimate
from analytical.hardware import HardwareSpec
from analytical.ops import BYTE_COLUMNS, build_ops, make_shapes, parse_layers
from analytical.roles import JOINS, ROLES, join_column
from workloads.models import ModelConfig

COLUMNS = (
    "hardware",
    "model",
    "engine",
    "phase",
    "layer",
    "op",
    "module",
    "role",
    "join",
    "op_class",
    "compute_class",
    "dtype",
    "batch",
    "seq",
    "context",
    "decode_tokens",
    "decode_context",
    "flops",
    *BYTE_COLUMNS,
    "total_bytes",
    "intensity",
    "bound",
    "t_compute_s",
    "t_memory_s",
    *(f"t_{e}_s" for e in ESTIMATORS),
    "t_launch_s",
    "estimator",
    "t_est_s",
    "est_cycles",
    "clock_hz",
    "fits_l2",
    "fits_llc",
    "waves",
    "gemm_m",
    "gemm_n",
    "gemm_k",
    "gemm_batch",
)
_SUMMED = (
    "flops",
    *BYTE_COLUMNS,
    "total_bytes",
    "t_compute_s",
    "t_memory_s",
    *(f"t_{e}_s" for e in ESTIMATORS),
    "t_launch_s",
    "t_est_s",
    "est_cycles",
)


def estimate_layer(
    model: ModelConfig,
    hardware: HardwareSpec | Sequence[HardwareSpec],
    phase: str,
    batch: int = 1,
    seq: int | None = None,
    context: int = 0,
    decode_tokens: int = 0,
    decode_context: int | None = None,
    engine: str = "hf-eager",
    attention: str = "eager",
    dtype: str | None = None,
    layers: str | int | None = None,
    estimator: str = "roofline",
    calibration: CalibrationFactors | None = None,
    launch_floor_s: float | None = None,
    notebook_bugs: bool = False,
) -> pd.DataFrame:
    shapes = make_shapes(phase, batch, seq, context, decode_tokens, decode_context)
    whole = str(layers).strip().lower() == "all"
    ops = build_ops(
        model,
        shapes,
        engine=engine,
        dtype=dtype,
        attention=attention,
        layers=parse_layers(layers, model.num_hidden_layers),
        include_model_ops=whole,
    )
    table = estimate(
        ops,
        hardware,
        estimator=estimator,
        calibration=calibration,
        launch_floor_s=launch_floor_s,
        notebook_bugs=notebook_bugs,
    )
    work = (table["flops"] > 0) | (table["total_bytes"] > 0)
    table = table.loc[work].reset_index(drop=True)  # no work = no kernel (HF's first cache update)
    table["join"] = join_column(table, [*_STEP_LAYER, "layer"])  # after the filter: kernels only
    table = table[list(COLUMNS)]
    if whole:
        table = add_totals(table)
    return table


#: Columns that name one step on one machine (a layer within it adds ``layer``).
_STEP_LAYER = (
    "hardware",
    "model",
    "engine",
    "phase",
    "dtype",
    "batch",
    "seq",
    "context",
    "decode_tokens",
    "decode_context",
    "estimator",
)


def add_totals(table: pd.DataFrame) -> pd.DataFrame:
    """Append one ``op='total'`` row per (hardware, shape) with summed FLOPs, bytes and times."""
    keys = list(_STEP_LAYER)
    sums = table.groupby(keys, sort=False, as_index=False, observed=True)[list(_SUMMED)].sum()
    sums["layer"] = -1
    sums["op"] = "total"
    sums["module"] = "model"
    sums["role"] = pd.Categorical([None] * len(sums), categories=list(ROLES))  # no marker
    sums["join"] = pd.Categorical([None] * len(sums), categories=list(JOINS))
    sums["op_class"] = "total"
    sums["compute_class"] = ""
    with np.errstate(divide="ignore", invalid="ignore"):
        sums["intensity"] = np.where(sums["total_bytes"] > 0, sums["flops"] / sums["total_bytes"], np.nan)
    sums["bound"] = np.where(sums["t_compute_s"] >= sums["t_memory_s"], "compute", "memory")
    clock = table.groupby(keys, sort=False, observed=True)["clock_hz"].first().to_numpy()
    sums["clock_hz"] = clock
    sums["fits_l2"] = False
    sums["fits_llc"] = False
    for column in ("waves", "gemm_m", "gemm_n", "gemm_k", "gemm_batch"):
        sums[column] = 0.0
    return pd.concat([table, sums[list(COLUMNS)]], ignore_index=True)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Whole-table sums, for a one-line human summary."""
    return {c: float(table[c].sum()) for c in ("flops", "total_bytes", "t_est_s", "est_cycles")}
