"""The report's tables: per kernel, per op (or role), per layer; simulated beside estimated.

Every estimator of ``analytical.estimators`` is compared, each with its own columns
(``est_cycles_<e>``, ``error_pct_<e>`` = (estimate - simulated) / simulated, ``calibration_<e>`` =
simulated / estimate: the factor an estimate must be multiplied by to close the gap).
Cycles are shader cycles at the run's ``sys_clock_hz`` on both sides.

Where the comparison is made (``compare_at``): ``kernel`` where one kernel is one op (its role
has one kernel and one op), ``op`` where several kernels serve one op (GEMM + reduction),
``role`` where several ops share a role marker (attention); kernels and ops without a partner
stay in the tables with ``matched`` false. Blit kernels (copies the runtime issues) are kept in
the kernel table and counted per layer, but never joined.

Throughput is placed the way the roofline chart places it: the op's model FLOPs and bytes over
the SIMULATED time (``achieved_*``), against the simulated machine's ceilings. The bound "by
model" is the roofline's side (compute time vs memory time of the ops); the bound "by
simulation" comes from the kernels' own counters where the stats have them: the share of SIMD
issue slots the VALU instructions held (each holds its SIMD ``issue_period`` cycles; gem5 issues
MFMAs on the VALU, so under the v25 cycle-table model this is an approximation) against the share
of DRAM peak bandwidth the GPU memory controllers moved; NA where either counter is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytical.estimators import ESTIMATORS
from foundation.errors import InputError
from foundation.rundir import outdir_of
from reports.metrics import SUMMARY_COLUMNS
from reports.runs import RunInfo

#: Role of a non-blit kernel the census map gives no module for.
UNLABELLED = "(no census label)"
#: The estimator the charts and the calibration factor of the page use.
PRIMARY = "roofline"

ID_COLUMNS = ("source", "machine", "run", "run_id", "step", "layer")
OP_COLUMNS = (
    *ID_COLUMNS, "role", "join", "compare_at", "ops", "n_ops", "op_class", "op_classes", "kernels",
    "sim_cycles", "sim_time_s", "clock_hz", "flops", "bytes", "intensity", "t_compute_s", "t_memory_s",
    *(f"est_cycles_{e}" for e in ESTIMATORS), *(f"error_pct_{e}" for e in ESTIMATORS),
    *(f"calibration_{e}" for e in ESTIMATORS),
    "achieved_flops_per_s", "peak_flops_per_s", "flops_pct_of_peak",
    "achieved_bytes_per_s", "peak_bytes_per_s", "bytes_pct_of_peak",
    "sim_dram_bytes", "sim_dram_bytes_per_s", "sim_dram_pct_of_peak", "sim_valu_busy_pct",
    "bound_model", "bound_sim", "matched",
)  # fmt: skip
KERNEL_HEAD = (
    *ID_COLUMNS, "kernel_index", "task_id", "blit", "role", "join", "compare_at", "ops", "sim_cycles",
    "sim_time_s", *(f"est_cycles_{e}" for e in ESTIMATORS), *(f"error_pct_{e}" for e in ESTIMATORS),
    "flops", "achieved_flops_per_s", "sim_dram_bytes", "sim_dram_bytes_per_s", "sim_dram_pct_of_peak",
    "sim_valu_busy_pct", "bound_model", "bound_sim",
)  # fmt: skip
LAYER_COLUMNS = (
    *ID_COLUMNS, "kernels", "blits", "sim_cycles", "blit_cycles", "sim_time_s", "clock_hz",
    *(f"est_cycles_{e}" for e in ESTIMATORS), *(f"error_pct_{e}" for e in ESTIMATORS),
    *(f"calibration_{e}" for e in ESTIMATORS),
    "matched_roles", "unmatched_kernels", "unmatched_ops",
)  # fmt: skip


@dataclass
class RunTables:
    kernels: pd.DataFrame
    ops: pd.DataFrame
    layer: dict[str, Any]
    estimates: pd.DataFrame  # the analytical op table (per op), for the roofline chart


def _pct(est: Any, sim: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (est - sim) / sim * 100.0


def _ratio(a: Any, b: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def _sim_bound(valu_busy: pd.Series, dram_util: pd.Series) -> pd.Series:
    both = valu_busy.notna() & dram_util.notna()
    out = pd.Series(pd.NA, index=valu_busy.index, dtype="object")
    out[both] = np.where(valu_busy[both] >= dram_util[both], "compute", "memory")
    return out


def _counters(table: pd.DataFrame, run: RunInfo) -> pd.DataFrame:
    """DRAM bytes, their share of peak bandwidth and the VALU issue-slot share, from the stats."""
    gpu, machine = run.params.gpu, run.machine
    time_s = table["sim_cycles"] / machine.clock_hz
    dram = table["sim_dram_bytes"]
    slots = gpu.num_cus * gpu.simds_per_cu * table["sim_cycles"]
    out = pd.DataFrame(index=table.index)
    out["sim_dram_bytes_per_s"] = _ratio(dram, time_s)
    out["sim_dram_pct_of_peak"] = out["sim_dram_bytes_per_s"] / machine.dram_bandwidth_bytes_per_s * 100
    out["sim_valu_busy_pct"] = _ratio(table["valu_insts"] * gpu.issue_period, slots) * 100
    out["bound_sim"] = _sim_bound(out["sim_valu_busy_pct"], out["sim_dram_pct_of_peak"])
    return out


def _kernels(run: RunInfo) -> pd.DataFrame:
    from reports.join import simulated_kernels

    table = simulated_kernels(run.run_dir)
    blit = table["blit"].astype(bool) if "blit" in table else pd.Series(False, index=table.index)
    expected = run.record.get("expected_kernels") or len(run.record["kernels"])
    if int((~blit).sum()) != int(expected):
        raise InputError(
            f"{outdir_of(run.run_dir) / 'stats.txt'}: {int((~blit).sum())} kernel stats blocks, but "
            f"{run.run_dir / 'slice.json'} expects {expected} kernels (the run did not finish its window?)"
        )
    return table


def peak_flops(machine: Any, compute_class: str) -> float:
    """The machine's peak for a compute class (no FP32 MMA: the vector ALUs, as the estimators)."""
    per_cu = machine.flops_per_clock_per_cu
    if compute_class not in per_cu and compute_class == "fp32_matrix":
        compute_class = "fp32_vector"
    return machine.peak_flops(compute_class) if compute_class in per_cu else math.nan


def _role_estimates(ops: pd.DataFrame, machine: Any) -> pd.DataFrame:
    """The estimated ops summed per role, with every estimator's cycles."""
    ops = ops[ops["op"].astype(str) != "total"].copy()
    ops["role"] = ops["role"].astype(str)
    clock = ops["clock_hz"].astype(float)
    for e in ESTIMATORS:
        ops[f"est_cycles_{e}"] = ops[f"t_{e}_s"].astype(float) * clock
    rows = []
    for role, group in ops.groupby("role", sort=False, observed=True):
        main = group.loc[group["t_roofline_s"].astype(float).idxmax()]
        heavy = group.loc[group["flops"].astype(float).idxmax()]
        rows.append(
            {
                "role": role,
                "join": str(group["join"].iloc[0]),
                "ops": ",".join(group["op"].astype(str)),
                "n_ops": len(group),
                "op_class": str(main["op_class"]),
                "op_classes": ",".join(dict.fromkeys(group["op_class"].astype(str))),
                "flops": float(group["flops"].sum()),
                "bytes": float(group["total_bytes"].sum()),
                "t_compute_s": float(group["t_compute_s"].sum()),
                "t_memory_s": float(group["t_memory_s"].sum()),
                "peak_flops_per_s": peak_flops(machine, str(heavy["compute_class"])),
                **{f"est_cycles_{e}": float(group[f"est_cycles_{e}"].sum()) for e in ESTIMATORS},
            }
        )
    return pd.DataFrame(rows)


def _roles(kernels: pd.DataFrame, est: pd.DataFrame, run: RunInfo) -> pd.DataFrame:
    work = kernels[~kernels["blit"].astype(bool)].copy()
    work["role"] = work["census_module"].astype(object).where(work["census_module"].notna(), UNLABELLED)
    work["sim_dram_bytes"] = work["dram_read_bytes"] + work["dram_written_bytes"]
    sim = (
        work.groupby("role", sort=False)
        .agg(
            kernels=("gpu_cycles", "size"),
            sim_cycles=("gpu_cycles", "sum"),
            sim_dram_bytes=("sim_dram_bytes", lambda s: s.sum(min_count=1)),
            valu_insts=("valu_insts", lambda s: s.sum(min_count=1)),
        )
        .reset_index()
    )
    table = sim.merge(est, on="role", how="outer")
    table["kernels"] = table["kernels"].fillna(0).astype(int)
    table["n_ops"] = table["n_ops"].fillna(0).astype(int)
    table["matched"] = (table["kernels"] > 0) & (table["n_ops"] > 0)
    table["compare_at"] = np.select(
        [~table["matched"], table["join"] == "role", table["kernels"] == 1],
        ["unmatched", "role", "kernel"],
        default="op",
    )
    clock = run.machine.clock_hz
    table["clock_hz"] = clock
    table["sim_time_s"] = table["sim_cycles"] / clock
    for e in ESTIMATORS:
        table[f"error_pct_{e}"] = _pct(table[f"est_cycles_{e}"], table["sim_cycles"])
        cycles = table[f"est_cycles_{e}"]
        table[f"calibration_{e}"] = _ratio(table["sim_cycles"], cycles).where(cycles > 0)
    table["intensity"] = _ratio(table["flops"], table["bytes"]).where(table["bytes"] > 0)
    table["achieved_flops_per_s"] = _ratio(table["flops"], table["sim_time_s"])
    table["flops_pct_of_peak"] = table["achieved_flops_per_s"] / table["peak_flops_per_s"] * 100
    table["achieved_bytes_per_s"] = _ratio(table["bytes"], table["sim_time_s"])
    table["peak_bytes_per_s"] = run.machine.dram_bandwidth_bytes_per_s
    table["bytes_pct_of_peak"] = table["achieved_bytes_per_s"] / table["peak_bytes_per_s"] * 100
    has_ops = table["n_ops"] > 0
    table["bound_model"] = pd.Series(
        np.where(table["t_compute_s"] >= table["t_memory_s"], "compute", "memory"), dtype="object"
    ).where(has_ops)
    table = pd.concat([table, _counters(table, run)], axis=1)
    order = {r: i for i, r in enumerate(est["role"])} if len(est) else {}
    table["_order"] = table["role"].map(lambda r: order.get(r, len(order)))
    return table.sort_values(["_order", "role"], ignore_index=True).drop(columns="_order")


def _kernel_rows(kernels: pd.DataFrame, roles: pd.DataFrame, run: RunInfo) -> pd.DataFrame:
    table = kernels.copy()
    blit = table["blit"].astype(bool)
    table["role"] = table["census_module"].astype(object).where(table["census_module"].notna(), UNLABELLED)
    table.loc[blit, "role"] = pd.NA
    table["sim_cycles"] = table["gpu_cycles"]
    table["sim_time_s"] = table["sim_cycles"] / run.machine.clock_hz
    table["sim_dram_bytes"] = table["dram_read_bytes"] + table["dram_written_bytes"]
    info = roles.set_index("role")
    one = info.index[info["compare_at"] == "kernel"]
    for column in ("join", "compare_at", "ops", "bound_model"):
        table[column] = table["role"].map(info[column]) if len(info) else pd.NA
    table.loc[blit, "compare_at"] = "blit (not joined)"
    single = table["role"].isin(one) & ~blit
    for e in ESTIMATORS:
        est = table["role"].map(info[f"est_cycles_{e}"]).where(single)
        table[f"est_cycles_{e}"] = est
        table[f"error_pct_{e}"] = _pct(est, table["sim_cycles"])
    table["flops"] = table["role"].map(info["flops"]).where(single)
    table["achieved_flops_per_s"] = _ratio(table["flops"], table["sim_time_s"])
    table = pd.concat([table, _counters(table, run)], axis=1)
    return table


def run_tables(run: RunInfo) -> RunTables:
    """The three tables of one sliced run (no ``source``/``run`` columns yet: ``tag`` adds them)."""
    from reports.join import estimated_ops

    kernels = _kernels(run)
    estimates = estimated_ops(run.run_dir, PRIMARY)
    est = _role_estimates(estimates, run.machine)
    roles = _roles(kernels, est, run)
    kernel_rows = _kernel_rows(kernels, roles, run)
    blit = kernels["blit"].astype(bool)
    sim_cycles = float(kernels.loc[~blit, "gpu_cycles"].sum())
    layer: dict[str, Any] = {
        "kernels": int((~blit).sum()),
        "blits": int(blit.sum()),
        "sim_cycles": sim_cycles,
        "blit_cycles": float(kernels.loc[blit, "gpu_cycles"].sum()),
        "sim_time_s": sim_cycles / run.machine.clock_hz,
        "clock_hz": run.machine.clock_hz,
        "matched_roles": int(roles["matched"].sum()),
        "unmatched_kernels": int(roles.loc[~roles["matched"], "kernels"].sum()),
        "unmatched_ops": int(roles.loc[~roles["matched"], "n_ops"].sum()),
    }
    for e in ESTIMATORS:
        total = float(est[f"est_cycles_{e}"].sum()) if len(est) else math.nan
        layer[f"est_cycles_{e}"] = total
        layer[f"error_pct_{e}"] = _pct(total, sim_cycles) if sim_cycles > 0 else math.nan
        layer[f"calibration_{e}"] = sim_cycles / total if total > 0 else math.nan
    return RunTables(kernel_rows, roles, layer, estimates)


def tag(table: pd.DataFrame, run: RunInfo) -> pd.DataFrame:
    """``table`` with the report's identity columns in front (source first: a self-test says so)."""
    out = table.copy()
    values = {
        "source": run.source,
        "machine": run.machine_label,
        "run": run.label,
        "run_id": run.run_id,
        "step": run.step,
        "layer": run.layer,
    }
    for column in reversed(ID_COLUMNS):
        if column in out.columns:
            out = out.drop(columns=column)
        out.insert(0, column, values[column])
    return out


def ordered(table: pd.DataFrame, head: tuple[str, ...], keep_rest: bool = True) -> pd.DataFrame:
    """Columns ``head`` first (those present), then the rest in their order (if ``keep_rest``)."""
    first = [c for c in head if c in table.columns]
    rest = [c for c in table.columns if c not in first] if keep_rest else []
    return table[first + rest]


def run_parameters(run: RunInfo) -> dict[str, Any]:
    """What a sweep may vary, by name: gem5 profile, GPU knobs, the driver's shapes, step, layer."""
    from dataclasses import asdict

    from reports.join import _driver_args

    args = _driver_args(list(run.params.workload.guest_command))
    values: dict[str, Any] = {"gem5_profile": run.params.machine.profile}
    values.update({k: v for k, v in asdict(run.params.gpu).items()})
    values.update(
        {
            "batch": args.batch,
            "prompt_len": args.prompt_len,
            "context": args.context,
            "dtype": args.dtype,
            "step": run.step,
            "layer": run.layer,
        }
    )
    return values


@dataclass
class ReportTables:
    kernels: pd.DataFrame
    ops: pd.DataFrame
    layers: pd.DataFrame
    summary: pd.DataFrame
    swept: list[str]  # parameters that differ between the runs (sweep axes)
    estimates: dict[str, pd.DataFrame]  # run label -> analytical op table
    hardware: pd.DataFrame | None = None  # HARDWARE_COLUMNS, with a trace
    hardware_summary: pd.DataFrame | None = None  # HARDWARE_SUMMARY_COLUMNS, with a trace


def build_tables(runs: list[RunInfo]) -> ReportTables:
    """The report's tables over all runs (each run's rows tagged with its source and label)."""
    from reports.metrics import agreement_table

    kernels, ops, layers, estimates, params = [], [], [], {}, []
    for run in runs:
        t = run_tables(run)
        kernels.append(tag(t.kernels, run))
        ops.append(tag(t.ops, run))
        layers.append(tag(pd.DataFrame([t.layer]), run))
        estimates[run.label] = t.estimates
        params.append(run_parameters(run))
    swept = [k for k in params[0] if len({str(p[k]) for p in params}) > 1]
    layer_table = ordered(pd.concat(layers, ignore_index=True), LAYER_COLUMNS)
    for k in swept:
        if k not in layer_table.columns:
            layer_table[k] = [p[k] for p in params]
    op_table = ordered(pd.concat(ops, ignore_index=True), OP_COLUMNS, keep_rest=False)
    kernel_table = ordered(pd.concat(kernels, ignore_index=True), KERNEL_HEAD)
    kernel_table = kernel_table.drop(columns=["gpu_cycles", "census_module"], errors="ignore")
    summary = agreement_table(op_table, layer_table, ESTIMATORS)
    summary.insert(0, "source", "; ".join(dict.fromkeys(r.source for r in runs)))
    return ReportTables(kernel_table, op_table, layer_table, summary, swept, estimates)


# -- the measured side: model vs gem5 vs hardware -----------------------------------------------

HARDWARE_COLUMNS = (
    "measured_source", "trace", "device", "model_machine", "gem5_source", "gem5_machine",
    "run", "run_id", "step", "layer", "role", "join", "ops", "n_ops", "op_class",
    "measured_kernels", "gem5_kernels", "measured_s", "gem5_s",
    *(f"model_s_{e}" for e in ESTIMATORS), *(f"error_pct_{e}_vs_hw" for e in ESTIMATORS),
    "error_pct_gem5_vs_hw", "matched",
)  # fmt: skip
#: Columns the per-role table (``ops``) gains when a trace is given.
OP_MEASURED_COLUMNS = (
    "measured_source", "measured_kernels", "measured_s",
    *(f"error_pct_{e}_vs_hw" for e in ESTIMATORS), "error_pct_gem5_vs_hw",
)  # fmt: skip
HARDWARE_SUMMARY_COLUMNS = ("measured_source", "level", "compared", "machine", *SUMMARY_COLUMNS[3:])
GEM5_DOUBLE_SOURCE = "gem5-test-double"


def _measured_roles(kernels: pd.DataFrame) -> pd.DataFrame:
    work = kernels[~kernels["blit"].astype(bool)].copy()
    work["role"] = work["census_module"].astype(object).where(work["census_module"].notna(), UNLABELLED)
    return (
        work.groupby("role", sort=False)
        .agg(measured_kernels=("measured_s", "size"), measured_s=("measured_s", lambda s: s.sum(min_count=1)))
        .reset_index()
    )


def _three_way(base: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Per role: the model's seconds per estimator and gem5's (``base``) beside the measured ones."""
    measured = _measured_roles(kernels)
    table = base.merge(measured, on="role", how="outer")
    order = {r: i for i, r in enumerate([*base["role"], *measured["role"]])}
    table = table.assign(_order=table["role"].map(order)).sort_values("_order", ignore_index=True)
    table["measured_kernels"] = table["measured_kernels"].fillna(0).astype(int)
    table["n_ops"] = table["n_ops"].fillna(0).astype(int)
    for e in ESTIMATORS:
        table[f"error_pct_{e}_vs_hw"] = _pct(table[f"model_s_{e}"], table["measured_s"])
    table["error_pct_gem5_vs_hw"] = _pct(table["gem5_s"], table["measured_s"])
    table["matched"] = (table["measured_kernels"] > 0) & (table["n_ops"] > 0)
    return table.drop(columns="_order")


def _identity(table: pd.DataFrame, **values: Any) -> pd.DataFrame:
    for name, value in values.items():
        table[name] = value
    return ordered(table, HARDWARE_COLUMNS, keep_rest=False)


def _run_slice(run: RunInfo, measured: Any) -> pd.DataFrame:
    """The trace's kernels of the run's step and layer, once the trace is known to run its workload."""
    from reports.extrapolate import driver_plan
    from reports.hardware import check_workload, slice_kernels

    plan = driver_plan(run.params.workload.guest_command)
    check_workload(measured, plan, run.step, run.layer, f"run {run.run_dir}")
    roles = None
    if run.module:  # a module slice: the roles the census put in it
        roles = {str(k.get("module")) for k in run.record["kernels"] if k.get("module")}
    return slice_kernels(measured, run.step, run.layer, roles)


def check_trace_covers(measured: Any, runs: list[RunInfo]) -> None:
    """Every run's workload is the trace's and its (step, layer) is in it; else exit 2 naming the trace."""
    for run in runs:
        _run_slice(run, measured)


def run_hardware(ops: pd.DataFrame, run: RunInfo, measured: Any) -> pd.DataFrame:
    """One sliced run's roles (its ``ops`` rows) beside the same step and layer of the trace."""
    kernels = _run_slice(run, measured)
    base = ops[["role", "join", "ops", "n_ops", "op_class"]].copy()
    base["gem5_kernels"] = ops["kernels"].astype(int)
    base["gem5_s"] = ops["sim_time_s"].where(ops["kernels"] > 0)
    for e in ESTIMATORS:
        base[f"model_s_{e}"] = ops[f"est_cycles_{e}"] / ops["clock_hz"]
    table = _three_way(base, kernels)
    table["gem5_kernels"] = table["gem5_kernels"].fillna(0).astype(int)
    return _identity(
        table,
        measured_source=measured.source,
        trace=str(measured.trace),
        device=measured.device,
        model_machine=run.machine_label,
        gem5_source=GEM5_DOUBLE_SOURCE if run.double_evidence else "gem5",
        gem5_machine=run.machine_label,
        run=run.label,
        run_id=run.run_id,
        step=run.step,
        layer=run.layer,
    )


def trace_hardware(measured: Any, machine: Any) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Every traced (step, layer) beside the model of the same layer on ``machine`` (no gem5).

    Returns the table and, per slice label, the analytical op table (what the roofline places).
    """
    from reports.hardware import plan_layer_ops, slice_kernels, traced_slices

    tables, estimates, per_step = [], {}, {}
    for step, layer in traced_slices(measured):
        if step not in per_step:
            per_step[step] = plan_layer_ops(measured.plan, step, machine)
        est = _role_estimates(per_step[step], machine)
        base = est[["role", "join", "ops", "n_ops", "op_class"]].copy()
        for e in ESTIMATORS:
            base[f"model_s_{e}"] = est[f"est_cycles_{e}"] / machine.clock_hz
        base["gem5_kernels"] = pd.array([pd.NA] * len(base), dtype="Int64")
        base["gem5_s"] = math.nan
        table = _three_way(base, slice_kernels(measured, step, layer))
        label = f"step{step}-layer{layer}"
        estimates[label] = per_step[step]
        tables.append(
            _identity(
                table,
                measured_source=measured.source,
                trace=str(measured.trace),
                device=measured.device,
                model_machine=machine.name,
                gem5_source=pd.NA,
                gem5_machine=pd.NA,
                run=label,
                run_id=pd.NA,
                step=step,
                layer=layer,
            )
        )
    if not tables:
        raise InputError(f"{measured.trace}: no decoder layer in the trace's markers")
    return pd.concat(tables, ignore_index=True), estimates


def with_measured(ops: pd.DataFrame, hardware: pd.DataFrame) -> pd.DataFrame:
    """The per-role table with the trace's time and the errors against it (``OP_MEASURED_COLUMNS``)."""
    extra = hardware[["run", "role", *OP_MEASURED_COLUMNS]]
    return ops.merge(extra, on=["run", "role"], how="left", validate="one_to_one")


def hardware_summary(hardware: pd.DataFrame) -> pd.DataFrame:
    """Agreement against the measured times: per estimator and gem5, over roles and whole layers."""
    from reports.metrics import summary

    rows = []
    source = "; ".join(dict.fromkeys(hardware["measured_source"]))
    matched = hardware[hardware["matched"] & (hardware["measured_s"] > 0)]
    sides = [(e, f"model_s_{e}", "; ".join(dict.fromkeys(hardware["model_machine"]))) for e in ESTIMATORS]
    gem5 = hardware[hardware["gem5_kernels"].fillna(0) > 0]
    if len(gem5):
        label = "; ".join(dict.fromkeys(gem5["gem5_source"].astype(str)))
        sides.append((label, "gem5_s", "; ".join(dict.fromkeys(gem5["gem5_machine"].astype(str)))))
    columns = ["measured_s", *dict.fromkeys(column for _, column, _ in sides)]
    totals = hardware.groupby("run", sort=False)[columns].sum(min_count=1)
    for compared, column, machine in sides:
        pairs = matched if column != "gem5_s" else matched[matched["gem5_kernels"].fillna(0) > 0]
        head = {"measured_source": source, "compared": compared, "machine": machine}
        values = summary(pairs[column].tolist(), pairs["measured_s"].tolist())
        rows.append({**head, "level": "op", **values})
        values = summary(totals[column].tolist(), totals["measured_s"].tolist())
        rows.append({**head, "level": "layer", **values})
    return pd.DataFrame(rows, columns=list(HARDWARE_SUMMARY_COLUMNS))
