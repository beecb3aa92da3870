"""The per-kernel table: one row per kernel stats dump of a GPU run.

Inputs are a run directory's ``stats.txt`` (one dump per kernel, written by the layerlab
simulate loop), ``config.ini`` (the shader clock) and ``layerlab_events.jsonl``
(``foundation.events``: which dump belongs to which kernel and whether stats were reset).
Stat names are the v24 names of ``gem5_gpufs.md`` §3.2, with the shader prefix
``system.cpu<N>`` detected from the file; pre-2020 snake_case names are accepted as aliases.
A stat a gem5 version does not print gives NA in its column, never 0 and never an error.

Runs that dumped without resetting (``reset`` false in the events) hold cumulative counters:
each dump is differenced against the previous one before aggregating, as Accel-Sim does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from foundation import events as events_mod
from foundation.errors import InputError
from stats_parsers import names
from stats_parsers.config import read_config
from stats_parsers.stats import read_stats
from stats_parsers.stats_text import StatsDumps


@dataclass(frozen=True)
class Metric:
    column: str
    patterns: tuple[str, ...]  # regexes over "name::key"; {P} = shader prefix; first that matches wins
    agg: str  # sum | first | max | mean


_CU = r"{P}\.CUs\d+\."
_TCP = r"system\.ruby\.tcp_cntrl\d+\.L1cache\."
_TCC = r"system\.ruby\.tcc_cntrl\d+\.L2cache\."
_DRAM = r"system\.gpu_mem_ctrls\d*\.dram\."

METRICS: tuple[Metric, ...] = (
    Metric("shader_active_ticks", (r"{P}\.shaderActiveTicks",), "first"),
    Metric("sim_ticks", (r"simTicks", r"sim_ticks"), "first"),
    Metric("host_s", (r"hostSeconds", r"host_seconds"), "first"),
    Metric("instructions", (_CU + "numInstrExecuted", _CU + "num_instr_executed"), "sum"),
    Metric("valu_insts", (_CU + "vALUInsts",), "sum"),
    Metric("salu_insts", (_CU + "sALUInsts",), "sum"),
    Metric("vec_ops", (_CU + "numVecOpsExecuted", _CU + "num_vec_ops_executed"), "sum"),
    Metric("vec_ops_f16", (_CU + "numVecOpsExecutedF16",), "sum"),
    Metric("vec_ops_f32", (_CU + "numVecOpsExecutedF32",), "sum"),
    Metric("vec_ops_f64", (_CU + "numVecOpsExecutedF64",), "sum"),
    Metric("mfma_ops", (_CU + "numVecOpsExecutedMFMA",), "sum"),
    Metric("mfma_i8_ops", (_CU + "numVecOpsExecutedMFMAI8",), "sum"),
    Metric("mfma_f16_ops", (_CU + "numVecOpsExecutedMFMAF16",), "sum"),
    Metric("mfma_f32_ops", (_CU + "numVecOpsExecutedMFMAF32",), "sum"),
    Metric("mfma_f64_ops", (_CU + "numVecOpsExecutedMFMAF64",), "sum"),
    Metric("vector_mem_reads", (_CU + "vectorMemReads",), "sum"),
    Metric("vector_mem_writes", (_CU + "vectorMemWrites",), "sum"),
    Metric("scalar_mem_reads", (_CU + "scalarMemReads",), "sum"),
    Metric("scalar_mem_writes", (_CU + "scalarMemWrites",), "sum"),
    Metric("lds_insts", (_CU + "ldsNoFlatInsts",), "sum"),
    Metric("flat_vmem_insts", (_CU + "flatVMemInsts",), "sum"),
    Metric("flat_lds_insts", (_CU + "flatLDSInsts",), "sum"),
    Metric("tcp_demand_hits", (_TCP + "m_demand_hits", _TCP + "demand_hits"), "sum"),
    Metric("tcp_demand_misses", (_TCP + "m_demand_misses", _TCP + "demand_misses"), "sum"),
    Metric("tcp_demand_accesses", (_TCP + "m_demand_accesses", _TCP + "demand_accesses"), "sum"),
    Metric("tcc_demand_hits", (_TCC + "m_demand_hits", _TCC + "demand_hits"), "sum"),
    Metric("tcc_demand_misses", (_TCC + "m_demand_misses", _TCC + "demand_misses"), "sum"),
    Metric("tcc_demand_accesses", (_TCC + "m_demand_accesses", _TCC + "demand_accesses"), "sum"),
    Metric("dram_read_bytes", (_DRAM + "bytesRead::total",), "sum"),
    Metric("dram_written_bytes", (_DRAM + "bytesWritten::total",), "sum"),
    Metric("cu_total_cycles_max", (_CU + "totalCycles", _CU + "num_total_cycles"), "max"),
    Metric("cu_total_cycles_mean", (_CU + "totalCycles", _CU + "num_total_cycles"), "mean"),
)
_WLP_MEAN = _CU + r"waveLevelParallelism::mean"
_WLP_SAMPLES = _CU + r"waveLevelParallelism::samples"

ID_COLUMNS = ("kernel_index", "task_id", "blit", "dump")
KERNEL_COLUMNS = (
    *ID_COLUMNS, "shader_active_ticks", "gpu_cycles", *(m.column for m in METRICS[1:]), "wave_level_parallelism_mean",
)  # fmt: skip


def _full_names(frame: pl.DataFrame) -> list[str]:
    pairs = frame.select("name", "key").unique().cast(pl.String).iter_rows()
    return sorted({n if not k else f"{n}::{k}" for n, k in pairs})


def _wide(frame: pl.DataFrame, wanted: list[str], n_dumps: int) -> np.ndarray:
    """dumps x wanted stats as a float matrix (NaN where gem5 did not print the stat in a dump;
    a stat printed twice in a dump: its first number)."""
    name_set = sorted({w.split("::")[0] for w in wanted})
    name, key = pl.col("name").cast(pl.String), pl.col("key").cast(pl.String)
    stat = pl.when(key == "").then(name).otherwise(pl.concat_str([name, pl.lit("::"), key]))
    rows = (
        frame.lazy()
        .filter(name.is_in(name_set) & pl.col("value").is_not_nan())
        .select("dump", stat.alias("stat"), "value")
        .filter(pl.col("stat").is_in(wanted))
        .select(
            "dump",
            pl.col("stat").replace_strict(wanted, list(range(len(wanted))), return_dtype=pl.Int64),
            "value",
        )
        .collect()
    )
    matrix = np.full((n_dumps, len(wanted)), np.nan)
    # Reversed, so that where a (dump, stat) repeats the first number is the one left.
    dumps = rows.get_column("dump").to_numpy()[::-1]
    matrix[dumps, rows.get_column("stat").to_numpy()[::-1]] = rows.get_column("value").to_numpy()[::-1]
    return matrix


def _diffs(values: np.ndarray) -> np.ndarray:
    """Each dump minus the one before (NaN before counts as 0), for counters that grow."""
    before = np.zeros_like(values)
    before[1:] = np.nan_to_num(values[:-1], nan=0.0)
    return values - before


def _resolve(metric: Metric, prefix: str, all_names: list[str]) -> list[str]:
    for pattern in metric.patterns:
        regex = re.compile(pattern.replace("{P}", re.escape(prefix)) + "$")
        hits = [n for n in all_names if regex.match(n)]
        if hits:
            return hits
    return []


def kernel_metrics(
    stats: StatsDumps, clock_period_ticks: float | None = None, cumulative: bool = False
) -> pd.DataFrame:
    """One row per dump with the metrics of the module doc (no kernel labels)."""
    return pd.DataFrame(
        {
            "dump": np.arange(stats.n_dumps, dtype=np.int64),
            **_metric_arrays(stats, clock_period_ticks, cumulative),
        }
    )


def _metric_arrays(
    stats: StatsDumps, clock_period_ticks: float | None, cumulative: bool
) -> dict[str, np.ndarray]:
    """Each metric column (float, one value per dump), in ``kernel_metrics``' order."""
    frame = stats.frame
    all_names = _full_names(frame)
    prefix = names.detect_shader_prefix(all_names) or "system.cpu1"
    resolved = {m.column: _resolve(m, prefix, all_names) for m in METRICS}
    wlp = {
        "mean": [n for n in all_names if re.match(_WLP_MEAN.replace("{P}", re.escape(prefix)) + "$", n)],
        "samples": [
            n for n in all_names if re.match(_WLP_SAMPLES.replace("{P}", re.escape(prefix)) + "$", n)
        ],
    }
    wanted = sorted({n for hits in resolved.values() for n in hits} | set(wlp["mean"]) | set(wlp["samples"]))
    # numpy on the dumps x stats matrix: pandas' per-column operations cost ~50 ms a table.
    wide = _wide(frame, wanted, stats.n_dumps)
    at = {name: i for i, name in enumerate(wanted)}
    n = stats.n_dumps
    # Weighted mean of the per-CU wave-level parallelism: sum(mean*samples)/sum(samples).
    pairs = [
        (at[m], at[m.replace("::mean", "::samples")])
        for m in wlp["mean"]
        if m.replace("::mean", "::samples") in at
    ]
    wlp_sum = np.zeros(n)
    wlp_n = np.zeros(n)
    for m, k in pairs:
        wlp_sum = wlp_sum + wide[:, m] * wide[:, k]
        wlp_n = wlp_n + wide[:, k]
    if cumulative:
        # Counters grow from the last reset: each dump minus the previous one.
        wide, wlp_sum, wlp_n = _diffs(wide), _diffs(wlp_sum), _diffs(wlp_n)
    out: dict[str, np.ndarray] = {}
    for metric in METRICS:
        cols = [at[c] for c in resolved[metric.column]]
        if not cols:
            out[metric.column] = np.full(n, np.nan)
            continue
        block = wide[:, cols]
        present = ~np.isnan(block)
        any_present = present.any(axis=1)
        if metric.agg == "first":
            values = block[:, 0]
        elif metric.agg == "sum":
            values = np.where(any_present, np.where(present, block, 0.0).sum(axis=1), np.nan)
        elif metric.agg == "max":
            values = np.fmax.reduce(block, axis=1)
        else:
            count = present.sum(axis=1)
            values = np.where(
                any_present, np.where(present, block, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan
            )
        out[metric.column] = np.where(any_present, values, np.nan)
    if pairs:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["wave_level_parallelism_mean"] = wlp_sum / np.where(wlp_n > 0, wlp_n, np.nan)
    else:
        out["wave_level_parallelism_mean"] = np.full(n, np.nan)
    active = out["shader_active_ticks"]
    out["gpu_cycles"] = active / clock_period_ticks if clock_period_ticks else np.full(n, np.nan)
    return out


def kernel_table(
    run_dir: str | os.PathLike[str],
    *,
    strict: bool = True,
    cache: bool = True,
    cumulative: bool | None = None,
) -> pd.DataFrame:
    """The per-kernel table of a run directory (see module doc); one row per kernel dump.

    Without an events side-file every dump becomes a row with NA kernel labels. ``cumulative``
    overrides what the events say about stats resets. What the table lacks and why (no events
    file, no config, stats gem5 did not print) is in ``table.attrs["notes"]``, one line each. A
    run whose events hold no kernel dump (a census run: every kernel skipped) is an
    ``InputError``: its table would be empty.
    """
    base = Path(run_dir)
    stats_path = base / "stats.txt" if base.is_dir() else base
    base = stats_path.parent
    notes: list[str] = []
    events_file = base / events_mod.FILENAME
    kernels = None
    if events_file.is_file():
        # Read first: a census run's stats say nothing per kernel, and the events say why.
        _start, table, _end = events_mod.read_events(events_file)
        kernels = table[table["kind"].isin(["kernel", "blit"]) & table["dump"].notna()].copy()
        if not len(kernels):
            raise InputError(_no_kernel_dumps(base, table))
    else:
        notes.append(
            f"no {events_mod.FILENAME} in {base}: kernel_index, task_id and blit are empty "
            "(each stats dump is a row, not matched to a kernel)"
        )
    stats = read_stats(stats_path, strict=strict, cache=cache)
    period = None
    if (base / "config.ini").is_file() or (base / "config.json").is_file():
        period = read_config(base).gpu().clock_period_ticks
    else:
        notes.append(
            f"no config.ini or config.json in {base}: gpu_cycles is empty (it needs the shader clock)"
        )
    columns: dict[str, object]
    if kernels is not None:
        if cumulative is None:
            cumulative = bool((~kernels["reset"].astype(bool)).any()) if len(kernels) else False
        dump = kernels["dump"].to_numpy().astype("int64")
        beyond = dump >= stats.n_dumps
        if beyond.any() and strict:
            raise InputError(
                f"{events_file}: event names dump {int(dump[beyond][0])} but {stats_path} has {stats.n_dumps} "
                "dumps (run killed mid-dump? lenient mode keeps the kernels with NA stats)"
            )
        columns = {
            "kernel_index": pd.array(kernels["kernel_index"], dtype="Int64"),
            # Tasks complete in dispatch order, so the task just completed is tasks_done - 1.
            "task_id": pd.array(kernels["tasks_done"] - 1, dtype="Int64"),
            "blit": pd.array((kernels["kind"] == "blit").to_numpy(), dtype="boolean"),
            "dump": dump,
        }
    else:
        dump = np.arange(stats.n_dumps, dtype="int64")
        columns = {
            "kernel_index": pd.array([pd.NA] * stats.n_dumps, dtype="Int64"),
            "task_id": pd.array([pd.NA] * stats.n_dumps, dtype="Int64"),
            "blit": pd.array([pd.NA] * stats.n_dumps, dtype="boolean"),
            "dump": dump,
        }
    metrics = _metric_arrays(stats, period, bool(cumulative))
    # Each label's dump row of the metrics (one value per dump 0..n-1; a dump past the end: NA).
    inside = dump < stats.n_dumps
    picked = np.where(inside, dump, 0)
    empty: list[str] = []
    for name in KERNEL_COLUMNS[4:]:
        values = metrics[name][picked] if stats.n_dumps else np.full(len(dump), np.nan)
        if not inside.all():
            values[~inside] = np.nan
        columns[name] = values
        if name != "gpu_cycles" and np.isnan(values).all():
            empty.append(name)
    result = pd.DataFrame(columns, columns=list(KERNEL_COLUMNS))
    if empty and len(result):
        shown = ", ".join(empty[:8]) + (f" and {len(empty) - 8} more" if len(empty) > 8 else "")
        notes.append(f"{shown}: empty in every row (stats this gem5 run did not print)")
    result.attrs["notes"] = notes
    return result


def _no_kernel_dumps(base: Path, events: pd.DataFrame) -> str:
    """Why a run with an events side-file has no per-kernel row (the table would be empty)."""
    kinds = events["kind"]
    n_skip = int((kinds == "skip").sum())
    n_done = int(kinds.isin(["kernel", "blit"]).sum())
    if n_skip and not n_done:
        return (
            f"{base} is a census run (every kernel skipped, {n_skip} of them): no kernel was "
            "simulated, so there is no per-kernel table; slice it with `layerlab render --from-census`"
        )
    if n_done:
        return (
            f"{base}: {n_done} kernel(s) completed but none has a stats dump (dump_per_kernel off, "
            "or every dump suppressed): no per-kernel rows"
        )
    return f"{base}: no kernel completed in this run ({len(events)} event(s) before it ended): no per-kernel rows"
