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
    notebook: bool = False,
) -> pd.DataFrame:
    if notebook:  # the notebook's own decomposition and estimators, independent of the engine
        return _notebook_layer(
            model,
            hardware,
            phase,
            (batch, seq, context, decode_tokens, decode_context),
            dtype,
            layers,
            estimator,
            notebook_bugs,
        )
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


def _notebook_layer(
    model: ModelConfig,
    hardware: HardwareSpec | Sequence[HardwareSpec],
    phase: str,
    step: tuple[int, int | None, int, int, int | None],
    dtype: str | None,
    layers: str | int | None,
    estimator: str,
    bugs: bool,
) -> pd.DataFrame:
    """``--notebook``: one layer as the researchers' notebook computed it (analytical.notebook)."""
    from analytical.notebook import notebook_shape, notebook_table
    from foundation.errors import InputError

    chosen = parse_layers(layers, model.num_hidden_layers)
    if len(chosen) != 1:
        raise InputError(f"--notebook estimates one layer; --layers {layers!r} names {len(chosen)}")
    shape = notebook_shape(phase, *step)
    return notebook_table(
        model, hardware, shape, dtype=dtype, estimator=estimator, bugs=bugs, layer=chosen[0]
    )


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


# -- what makes a gem5 machine unlike the part it is named after ------------------------------

#: The datasheet part (analytical.catalog) each gem5 device imitates.
GEM5_DATASHEET_PART = {"mi300x": "mi300x", "mi200": "mi210"}
_ARCH = {"mi300x": "CDNA3", "mi200": "CDNA2"}


def _bandwidth_text(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e12:.3g} TB/s" if bytes_per_s >= 1e12 else f"{bytes_per_s / 1e9:.3g} GB/s"


def gem5_contrast(machine: HardwareSpec, gem5_version: str = "v24.0") -> list[str]:
    """How a gem5 machine differs from the datasheet part it is named after, one item per fact.

    Computed from the machine's own knobs (``machine.gem5``) against ``analytical.catalog``'s
    part (mi300x for gem5-mi300x, mi210 for gem5-mi200): CUs and clock, DRAM channels x
    per-channel bandwidth, TCC vs L2 (+ Infinity Cache), and the MFMA rate per CU of the gem5
    version's timing model. Facts equal to the part's are left out; [] for a datasheet part.
    """
    config = machine.gem5
    if config is None:
        return []
    from analytical.catalog import get_hardware
    from analytical.hardware import GEM5_DRAM_TYPES, mfma_timing
    from foundation.gem5_names import gem5_profile
    from foundation.units import size_text

    part = get_hardware(GEM5_DATASHEET_PART[config.device])
    arch = _ARCH[config.device]
    items: list[str] = []
    if (machine.compute_units, machine.clock_hz) != (part.compute_units, part.clock_hz):
        items.append(
            f"{machine.compute_units} CUs @ {machine.clock_hz / 1e9:.3g} GHz "
            f"(vs {part.compute_units} @ {part.clock_hz / 1e9:.3g} GHz)"
        )
    bw, part_bw = machine.dram_bandwidth_bytes_per_s, part.dram_bandwidth_bytes_per_s
    if abs(bw - part_bw) > 1e-6 * part_bw:
        per_channel = _bandwidth_text(GEM5_DRAM_TYPES[config.dram_type].peak_bytes_per_s)
        channels = (
            f"one {config.dram_type} channel"
            if config.dram_channels == 1
            else f"{config.dram_channels} {config.dram_type} channels x {per_channel}"
        )
        items.append(f"{channels} = {_bandwidth_text(bw)} (vs {_bandwidth_text(part_bw)})")
    part_cache = size_text(part.l2_bytes) + " L2"
    if part.llc_bytes:
        part_cache += f" + {size_text(part.llc_bytes)} Infinity Cache"
    if config.tcc_bytes != part.l2_bytes or part.llc_bytes:
        items.append(f"{size_text(int(config.tcc_bytes))} TCC (vs {part_cache})")
    version = gem5_profile(gem5_version)
    model = mfma_timing(version)
    by_ratio: dict[float, list[str]] = {}
    for cls, per_cu in machine.flops_per_clock_per_cu.items():
        theirs = part.flops_per_clock_per_cu.get(cls)
        if cls.endswith("_matrix") and theirs and abs(per_cu / theirs - 1) > 1e-9:
            by_ratio.setdefault(per_cu / theirs, []).append(cls.removesuffix("_matrix"))
    if by_ratio:
        rates = [f"{ratio:.3g}x ({'/'.join(classes)})" for ratio, classes in sorted(by_ratio.items())]
        rates[0] = rates[0].replace("x (", f"x {arch}'s (", 1)
        why = (
            f"gem5 {version}'s {model} model runs any MFMA in issue_period={config.issue_period} cycles per SIMD"
            if model == "issue_period"
            else f"gem5 {version}'s {model} model at mfma_scale {config.mfma_scale:g}"
        )
        items.append(f"MFMA FLOP/clk/CU {', '.join(rates)}: {why}")
    return items


def gem5_caption(machine: HardwareSpec, gem5_version: str = "v24.0") -> str:
    """One line: ``gem5's simulated mi300x, not the datasheet part: <differences>``; '' otherwise."""
    if machine.gem5 is None:
        return ""
    head = f"gem5's simulated {machine.gem5.device}, not the datasheet part"
    items = gem5_contrast(machine, gem5_version)
    part = GEM5_DATASHEET_PART[machine.gem5.device]
    return f"{head} ({part}): " + "; ".join(items) if items else f"{head} (matches {part}'s datasheet)"
