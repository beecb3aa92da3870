"""Time estimates for an op table on one or more machines, all vectorised (ops x shapes x hardware).

Every estimator is computed for every row and lands in its own column ``t_<name>_s``; the
selected one is copied to ``t_est_s`` (with its name in ``estimator``) and to ``est_cycles`` at
the machine's clock. Wide rather than long form, because a report compares estimators op by op
and scripts want one record per op.

Estimators (what each assumes):

``roofline``  Σ per op of max(FLOPs / (peak·eff_c), bytes / (BW·eff_b)). Never roofline of sums.
              Every byte class of the op (weights, activations, KV) crosses DRAM exactly once.
``simple``    the notebook's roofline: max(FLOPs / peak, (weights + KV) / BW) per GEMM-like op;
              activations and element-wise work ignored, no calibration. It runs on layerlab's
              op table, so with the default ``hf-eager`` engine it includes HF eager's
              ``repeat_kv`` copies and DynamicCache concat traffic (right for HF eager, not what
              the notebook modelled: that triples decode C=8448, B=256 on NVL-AX). The notebook's
              own fused decomposition is ``--notebook`` (analytical.notebook), independent of
              the engine.
``tiling``    "theoretical tiling" on layerlab's op shapes: tiles sized to fill the last-level
              cache (all free: three equal tiles; one dim fixed: x² + 2fx = E; two fixed: the
              rest of the cache over their sum), traffic = what the tiles (re)load:
              A·⌈N/tn⌉ + B·⌈M/tm⌉ + C once, per independent GEMM of the batch. Tokens are
              folded into M only where the B operand is shared (weights: one matrix for all
              tokens); attention GEMMs stay one per (request, KV head) with the G query heads that
              share the K/V head in M, because K and V are per request and never shared across
              the batch (the notebook's folding of requests into M is wrong there). Traffic is
              clamped between the compulsory traffic (the op's bytes: each operand read once,
              the output written once) and the no-reuse traffic ((2·M·N·K + M·N)·batch
              elements), so ``t_roofline <= t_tiling`` and GEMV-like shapes stream their
              operands once. ``notebook_bugs=True`` restores layerlab's older reading of the
              notebook's dims (no GQA fold, hidden size as the attention contraction); for the
              notebook's exact numbers use ``--notebook``.
``cache``     roofline where weights are served from the LLC when the layer's weights fit in it
              (single-layer replay keeps them resident), and activations from L2 when the op's
              working set fits; levels without a known bandwidth keep DRAM bandwidth.
``waves``     roofline whose compute side is wave-quantised: output macro-tiles over CUs,
              ceil(tiles / CUs) waves of per-tile work (a tail wave costs a full wave), taking
              the best of a few library macro tiles (no split-K: skinny K-heavy GEMMs are
              pessimistic).
``full``      max(waves compute, cache memory, per-kernel launch floor), with calibration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analytical.calibration import CalibrationFactors
from analytical.hardware import DTYPE_CLASSES, HardwareSpec
from foundation.errors import InputError

ESTIMATORS = ("roofline", "simple", "tiling", "cache", "waves", "full")
#: Op-table columns the estimators read but the result does not repeat.
_INTERNAL = frozenset({"legacy_m", "legacy_n", "legacy_k", "legacy_batch", "elem_bytes"})
#: Macro tiles (M x N) the wave estimator may pick from, as GEMM libraries do (hipBLASLt kernel
#: names carry MT256x256, MT128x128, ... ); smaller tiles than 64 are left to skinny shapes,
#: where M or N itself (rounded up to a power of two, at least 16) caps the tile.
DEFAULT_MACRO_TILES = ((256, 256), (256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64))


def _hardware_arrays(hardware: Sequence[HardwareSpec]) -> dict[str, np.ndarray]:
    peaks = np.full((len(hardware), len(DTYPE_CLASSES)), np.nan)
    for i, hw in enumerate(hardware):
        for j, cls in enumerate(DTYPE_CLASSES):
            value = hw.flops_per_clock_per_cu.get(cls)
            if value is None and cls == "fp32_matrix":  # no FP32 MMA: GEMMs run on vector ALUs
                value = hw.flops_per_clock_per_cu.get("fp32_vector")
            if value is not None:
                peaks[i, j] = value
    return {
        "flops_per_clk_cu": peaks,
        "cus": np.array([hw.compute_units for hw in hardware], dtype=float),
        "clock": np.array([hw.clock_hz for hw in hardware], dtype=float),
        "bw": np.array([hw.dram_bandwidth_bytes_per_s for hw in hardware], dtype=float),
        "l2": np.array([hw.l2_bytes for hw in hardware], dtype=float),
        "llc": np.array([hw.llc_bytes for hw in hardware], dtype=float),
        "lastlevel": np.array([hw.last_level_cache_bytes for hw in hardware], dtype=float),
        "l2_bw": np.array([hw.l2_bandwidth_bytes_per_s for hw in hardware], dtype=float),
        "llc_bw": np.array([hw.llc_bandwidth_bytes_per_s for hw in hardware], dtype=float),
        "launch": np.array([hw.kernel_launch_s for hw in hardware], dtype=float),
    }


def tile_sides(
    m: np.ndarray, n: np.ndarray, k: np.ndarray, elems: np.ndarray | float, whole: bool = True
) -> tuple[np.ndarray, ...]:
    """Tile (tm, tn, tk) whose A, B and C tiles fill ``elems`` cache elements.

    The capacity tm·tk + tk·tn + tm·tn is symmetric in the three sides, so sort the dims:
    all free -> x = sqrt(E/3); the smallest fixed at f -> x² + 2fx = E; two fixed f1, f2 ->
    x = (E - f1·f2) / (f1 + f2); a dim smaller than its tile is taken whole.
    """
    dims = np.stack([m, n, k], axis=1)
    order = np.argsort(dims, axis=1)
    s = np.take_along_axis(dims, order, axis=1)
    d1, d2, d3 = s[:, 0], s[:, 1], s[:, 2]
    x0 = np.sqrt(elems / 3.0)
    x1 = np.sqrt(d1 * d1 + elems) - d1
    x2 = (elems - d1 * d2) / np.maximum(d1 + d2, 1.0)
    all_free = d1 >= x0
    one_fixed = ~all_free & (d2 >= x1)
    t1 = np.where(all_free, x0, d1)
    t2 = np.where(all_free, x0, np.where(one_fixed, x1, d2))
    t3 = np.where(all_free, x0, np.where(one_fixed, x1, x2))
    tiles = np.stack([np.minimum(t1, d1), np.minimum(t2, d2), np.minimum(t3, d3)], axis=1)
    if whole:  # a real kernel's tiles are whole elements; the notebook kept fractional ones
        tiles = np.maximum(np.floor(tiles), 1.0)
    out = np.empty_like(tiles)
    np.put_along_axis(out, order, tiles, axis=1)
    return out[:, 0], out[:, 1], out[:, 2]


def _tiling_traffic(m, n, k, g, elem_bytes, cache_bytes):
    """Bytes the cache-sized tiles move: A·⌈N/tn⌉ + B·⌈M/tm⌉ + C once, times the g GEMMs.

    Op arrays are (n,), machine arrays (h, 1); the result is (h, n). Edge tiles move only what
    they hold, so a GEMV (M = 1) streams B once plus A once per column block.
    """
    elems = np.maximum(cache_bytes / elem_bytes, 3.0)  # (h, n)
    shape = elems.shape
    mm, nn, kk = (np.broadcast_to(x, shape).ravel() for x in (m, n, k))
    tm, tn, _ = (t.reshape(shape) for t in tile_sides(mm, nn, kk, elems.ravel()))
    per_gemm = m * k * np.ceil(n / tn) + k * n * np.ceil(m / tm) + m * n
    return per_gemm * g * elem_bytes


def no_reuse_bytes(m, n, k, g, elem_bytes):
    """Traffic with no reuse at all: every MAC reads its A and B element, C written once."""
    return (2.0 * m * n * k + m * n) * g * elem_bytes


def _pow2_ceil(x: np.ndarray) -> np.ndarray:
    return 2.0 ** np.ceil(np.log2(np.maximum(x, 1.0)))


def _layer_weight_bytes(ops: pd.DataFrame) -> np.ndarray:
    """Weight bytes of the whole layer each op belongs to (per shape), without a groupby."""
    shape_id = ops["shape_id"].to_numpy()
    layer = ops["layer"].to_numpy() + 1
    key = shape_id * (int(layer.max(initial=0)) + 1) + layer
    sums = np.bincount(key, weights=ops["weight_bytes"].to_numpy(dtype=float))
    return sums[key]


def estimate(
    ops: pd.DataFrame,
    hardware: HardwareSpec | Sequence[HardwareSpec],
    estimator: str = "roofline",
    calibration: CalibrationFactors | None = None,
    macro_tiles: Sequence[tuple[int, int]] = DEFAULT_MACRO_TILES,
    launch_floor_s: float | None = None,
    notebook_bugs: bool = False,
) -> pd.DataFrame:
    """Add intensity, bound and every estimator's time to ``ops``, once per machine.

    With several machines the result has one block of rows per machine (``hardware`` column).
    ``launch_floor_s`` overrides each machine's ``kernel_launch_s``. Internally every quantity
    is an (machines x ops) array; op columns broadcast along the first axis.
    """
    if estimator not in ESTIMATORS:
        from foundation.errors import unknown_name

        raise unknown_name("estimator", estimator, ESTIMATORS)
    hw_list = [hardware] if isinstance(hardware, HardwareSpec) else list(hardware)
    hw = {k: (v[:, None] if v.ndim == 1 else v) for k, v in _hardware_arrays(hw_list).items()}
    n_ops, n_hw = len(ops), len(hw_list)

    def column(name: str) -> np.ndarray:
        return ops[name].to_numpy(dtype=float)

    flops = column("flops")
    weight, kv_read, kv_write = column("weight_bytes"), column("kv_read_bytes"), column("kv_write_bytes")
    total_bytes = weight + column("act_in_bytes") + column("act_out_bytes") + kv_read + kv_write
    elem_bytes = column("elem_bytes")

    class_codes = pd.Categorical(ops["compute_class"], categories=list(DTYPE_CLASSES)).codes
    if np.any(class_codes < 0):
        raise InputError(
            f"unknown compute class in op table: {set(ops['compute_class']) - set(DTYPE_CLASSES)}"
        )
    per_cu = hw["flops_per_clk_cu"][:, class_codes]  # (h, n)
    missing = (flops > 0) & np.isnan(per_cu)
    if missing.any():
        h, i = np.unravel_index(int(np.argmax(missing)), missing.shape)
        raise InputError(
            f"hardware {hw_list[h].name!r} has no {ops['compute_class'].iloc[i]} peak; "
            "pick another --dtype or machine"
        )
    per_cu = np.nan_to_num(per_cu, nan=1.0)
    clock, cus, bw = hw["clock"], hw["cus"], hw["bw"]
    peak = per_cu * (cus * clock)

    op_class = ops["op_class"]
    eff_c, eff_b = (calibration or CalibrationFactors()).arrays(op_class)

    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(total_bytes > 0, flops / total_bytes, np.nan)
    t_compute = flops / (peak * eff_c)
    t_memory = total_bytes / (bw * eff_b)
    t_roofline = np.maximum(t_compute, t_memory)

    # --- notebook simple roofline: MACs of GEMM-like ops, weight + KV bytes; activations and
    # element-wise work ignored; no calibration
    classes = pd.Categorical(op_class)
    gemm_like = np.isin(np.asarray(classes.categories), ("gemm", "attention"))[classes.codes]
    t_simple = np.maximum(np.where(gemm_like, flops, 0.0) / peak, (weight + kv_read + kv_write) / bw)

    # GEMM-shaped rows only (linear layers, attention matmuls) for tiling and waves
    gi = np.flatnonzero(column("gemm_batch") > 0)
    gm, gn, gk, gb = (column(c)[gi] for c in ("gemm_m", "gemm_n", "gemm_k", "gemm_batch"))
    per_cu_g = per_cu[:, gi]

    # --- notebook tiling (fixed dims by default, the notebook's own with notebook_bugs)
    if notebook_bugs:
        lm, ln, lk, lb = (column(c)[gi] for c in ("legacy_m", "legacy_n", "legacy_k", "legacy_batch"))
    else:
        lm, ln, lk, lb = gm, gn, gk, gb
    # traffic clamped to [compulsory, no reuse]; compute at the un-quantised rate, so the
    # roofline is a lower bound (tile quantisation is the waves estimator's business)
    tiled = _tiling_traffic(lm, ln, lk, lb, elem_bytes[gi], hw["lastlevel"])
    compulsory = np.broadcast_to(total_bytes[gi], tiled.shape)
    ceiling = np.maximum(compulsory, no_reuse_bytes(lm, ln, lk, lb, elem_bytes[gi]))
    tiling_bytes = np.broadcast_to(total_bytes, (n_hw, n_ops)).copy()
    tiling_bytes[:, gi] = np.clip(tiled, compulsory, ceiling)
    legacy_flops = 2.0 * lm * ln * lk * lb
    t_tiling = t_roofline.copy()
    t_tiling[:, gi] = np.maximum(
        np.maximum(legacy_flops / (peak[:, gi] * eff_c[gi]), tiling_bytes[:, gi] / (bw * eff_b[gi])),
        t_roofline[:, gi],
    )

    # --- cache hierarchy: resident layer weights in the LLC, small working sets in L2
    layer_weights = _layer_weight_bytes(ops)
    fits_llc = (hw["llc"] > 0) & (layer_weights <= hw["llc"])
    fits_l2 = (hw["l2"] > 0) & (total_bytes <= hw["l2"])
    weight_bw = np.where(fits_llc & (hw["llc_bw"] > 0), hw["llc_bw"], bw)
    act_bw = np.where(fits_l2 & (hw["l2_bw"] > 0), hw["l2_bw"], bw)
    t_memory_cache = (weight / weight_bw + (total_bytes - weight) / act_bw) / eff_b
    t_cache = np.maximum(t_compute, t_memory_cache)

    # --- wave quantisation: the best of a few library macro tiles, whole waves over the CUs
    best = np.full((n_hw, gi.size), np.inf)
    best_waves = np.zeros((n_hw, gi.size))
    m_cap = np.clip(_pow2_ceil(gm), 16.0, None)
    n_cap = np.clip(_pow2_ceil(gn), 16.0, None)
    rate = per_cu_g * eff_c[gi] * clock
    for tile_m, tile_n in macro_tiles:
        mt_m, mt_n = np.minimum(float(tile_m), m_cap), np.minimum(float(tile_n), n_cap)
        tiles = np.ceil(gm / mt_m) * np.ceil(gn / mt_n) * np.ceil(gb)
        waves = np.ceil(tiles / cus)
        t_tiles = waves * (2.0 * mt_m * mt_n * gk) / rate
        better = t_tiles < best
        best = np.where(better, t_tiles, best)
        best_waves = np.where(better, waves, best_waves)
    # a GEMM never beats its un-quantised compute time (fractional MoE tiles, tiny tiles)
    t_compute_waves = t_compute.copy()
    t_compute_waves[:, gi] = np.maximum(best, t_compute[:, gi])
    waves_all = np.zeros((n_hw, n_ops))
    waves_all[:, gi] = best_waves
    t_waves = np.maximum(t_compute_waves, t_memory)

    # --- launch floor and the combined estimate
    launch = hw["launch"] if launch_floor_s is None else np.full((n_hw, 1), float(launch_floor_s))
    has_work = (flops > 0) | (total_bytes > 0)
    t_launch = np.where(has_work, launch, 0.0)
    t_full = np.maximum(np.maximum(t_compute_waves, t_memory_cache), t_launch)

    names = pd.Categorical.from_codes(np.repeat(np.arange(n_hw), n_ops), categories=[h.name for h in hw_list])
    times = {
        "roofline": t_roofline,
        "simple": t_simple,
        "tiling": t_tiling,
        "cache": t_cache,
        "waves": t_waves,
        "full": t_full,
    }
    chosen = times[estimator]

    def flat(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, (n_hw, n_ops)).ravel()

    data: dict[str, object] = {"hardware": names}
    for name in ops.columns:
        if name in _INTERNAL:
            continue
        values = ops[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            data[name] = pd.Categorical.from_codes(
                np.tile(values.cat.codes.to_numpy(), n_hw), categories=values.cat.categories
            )
        else:
            data[name] = np.tile(values.to_numpy(), n_hw)
    data.update(
        {
            "total_bytes": flat(total_bytes),
            "intensity": flat(intensity),
            "bound": pd.Categorical.from_codes(
                flat(np.where(t_compute >= t_memory, 0, 1)).astype(np.int8), categories=["compute", "memory"]
            ),
            "peak_flops": flat(peak),
            "t_compute_s": flat(t_compute),
            "t_memory_s": flat(t_memory),
            **{f"t_{name}_s": flat(value) for name, value in times.items()},
            "t_launch_s": flat(t_launch),
            "tiling_bytes": flat(tiling_bytes),
            "fits_l2": flat(fits_l2),
            "fits_llc": flat(fits_llc),
            "waves": flat(waves_all),
            "estimator": pd.Categorical.from_codes(
                np.zeros(n_hw * n_ops, dtype=np.int8), categories=[estimator]
            ),
            "t_est_s": flat(chosen),
            "est_cycles": flat(chosen * clock),
            "clock_hz": flat(clock),
        }
    )
    return pd.DataFrame(data, copy=False)


def naive_roofline(ops: pd.DataFrame, hardware: HardwareSpec) -> list[float]:
    """The same per-op roofline as a plain Python loop: the baseline the benchmark compares to."""
    out = []
    for row in ops.itertuples(index=False):
        per_cu = hardware.flops_per_clock_per_cu.get(row.compute_class, 1.0)
        peak = per_cu * hardware.compute_units * hardware.clock_hz
        total = (
            row.weight_bytes + row.act_in_bytes + row.act_out_bytes + row.kv_read_bytes + row.kv_write_bytes
        )
        out.append(max(row.flops / peak, total / hardware.dram_bandwidth_bytes_per_s))
    return out
