"""The report's HTML page and Markdown summary (jinja2 templates in ``reports/templates``).

The page is the first thing a newcomer reads, so it opens with what was compared and, for runs
of the gem5 test double, with a red box saying the cycles are a stand-in; then runs, machines,
agreement metrics, per run the roofline, the bars and the op table, sweeps, the whole-model
extrapolation (``reports.extrapolate``), the real-hardware section (a trace's measured time per
role beside the model and gem5; a CPU trace says "measured on a CPU, not a GPU" in an orange box,
in every caption and chart) and how every number is made. A trace alone gets its own, shorter page
(``measured.html.j2``) that shares the hardware section.
Numbers are formatted here, once, so the page and the summary say the same thing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analytical.estimators import ESTIMATORS
from reports.hardware import CPU_WARNING
from reports.runs import SELFTEST_TITLE, RunInfo
from reports.tables import PRIMARY, ReportTables

#: Per-run charts on the page at most (the tables always hold every run).
MAX_RUN_CHARTS = 12
NO_TRACE = (
    "No measured trace in this report. `layerlab report RUN_DIR... --measured trace.json` adds one: the layer "
    "driver run on a real GPU with --profile trace.json --marker-table markers.json (the same model, shapes and "
    "step as the runs), sliced by the same markers, so each role gets its measured time beside the model and gem5."
)
CPU_TEXT = (
    "The measured side of this report comes from a CPU run of the layer driver: its 'kernels' are the "
    "top-level aten ops torch.profiler recorded on the CPU, under the same layerlab markers. CPU timings are "
    "not GPU timings: the hardware column exercises the comparison, it does not measure a GPU."
)
HARDWARE_METHOD = (
    "Measured time: the durations torch.profiler recorded for the kernels (GPU) or top-level aten ops (CPU) "
    "under each role's layerlab marker in the same step and layer, summed per role; joined on roles, never on "
    "kernel indices (a profiled trace counts from its first profiled kernel, gem5 from the process start).",
    "error % vs hardware = (model or gem5 - measured) / measured x 100 per role; the model and gem5 describe "
    "the machine each table names, the trace the device it ran on.",
)
ASSUMPTIONS = (
    "Simulated cycles: gem5's shaderActiveTicks of each kernel's stats dump over the shader clock period "
    "(config.ini), summed over the kernels of an op or role; blit kernels are counted apart.",
    "Estimated cycles: each estimator's time of the op at the run's own simulated machine (its Gem5GpuConfig, "
    "read back from config.ini and found equal), times the shader clock.",
    "error % = (estimate - simulated) / simulated x 100; calibration = simulated / estimate, the factor that "
    "would close the gap.",
    "Compared per op where one role has one op (per kernel where that op is one kernel), per role where "
    "several ops share a role marker (attention), so sums on both sides cover the same work.",
    "Achieved FLOP/s and bytes/s: the model's FLOPs and bytes over the simulated time (the estimate's own "
    "work at gem5's speed), against the machine's peaks.",
    "Bound by model: the roofline side (compute time vs memory time). Bound by simulation: VALU issue-slot "
    "share (VALU instructions x issue_period over CUs x SIMDs x cycles) vs DRAM bandwidth share from the "
    "kernel's counters; '-' where the stats lack either counter.",
)
FILES = {
    "report.html": "this page",
    "report.md": "the Markdown summary",
    "kernels.csv": "one row per simulated kernel (blits included and marked), counters and estimates",
    "kernels.parquet": "the same, typed",
    "ops.csv": "one row per op or role and run: simulated, estimated, error_pct_<estimator>, calibration",
    "ops.parquet": "the same, typed",
    "layers.csv": "one row per run: whole-layer cycles and errors, swept parameters",
    "layers.parquet": "the same, typed",
    "summary.csv": "MAPE, Pearson, NRMSE, within 10/20 % per estimator and op class",
    "report.json": "what was written, and the summary metrics (for scripts)",
    "hardware.csv": "one row per role and slice: model, gem5 and measured seconds, error_pct_<side>_vs_hw",
    "hardware.parquet": "the same, typed",
    "hardware-summary.csv": "MAPE, Pearson, NRMSE, within 10/20 % of each side against the measured times",
    "measured-kernels.csv": "one row per kernel of the trace: measured seconds and census labels",
    "measured-kernels.parquet": "the same, typed",
}


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: 3 significant digits, thousands separated, '-' for missing."""
    if value is None or value is pd.NA:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "-"
    if number == 0:
        return "0"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    return f"{number:.{digits}g}"


def _metric_cells(s: Any) -> dict[str, Any]:
    """The agreement metrics of one summary row, formatted as every table of the page shows them."""
    return {
        "pairs": int(s["pairs"]),
        "mape_pct": fmt(s["mape_pct"]),
        "pearson": fmt(s["pearson"]),
        "nrmse": fmt(s["nrmse"]),
        "within_10pct": _share(s["within_10pct"]),
        "within_20pct": _share(s["within_20pct"]),
    }


def _share(value: Any) -> str:
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value) * 100:.0f} %"


def _text(value: Any) -> str:
    return (
        "-"
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
        else str(value)
    )


def _op_rows(ops: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for _, r in ops.iterrows():
        out.append(
            {
                "role": r["role"],
                "ops": _text(r["ops"]).replace(",", ", "),
                "compare_at": r["compare_at"],
                "kernels": int(r["kernels"]),
                "sim_cycles": fmt(r["sim_cycles"]),
                "est": [fmt(r[f"est_cycles_{e}"]) for e in ESTIMATORS],
                "err": [fmt(r[f"error_pct_{e}"]) for e in ESTIMATORS],
                "calibration": fmt(r[f"calibration_{PRIMARY}"]),
                "gflops": fmt(r["achieved_flops_per_s"] / 1e9),
                "flops_pct": fmt(r["flops_pct_of_peak"]),
                "gbs": fmt(r["achieved_bytes_per_s"] / 1e9),
                "bytes_pct": fmt(r["bytes_pct_of_peak"]),
                "bound_model": _text(r["bound_model"]),
                "bound_sim": _text(r["bound_sim"]),
                "matched": bool(r["matched"]),
            }
        )
    return out


def _unmatched(ops: pd.DataFrame) -> str:
    parts = []
    for _, r in ops[~ops["matched"].astype(bool)].iterrows():
        if int(r["n_ops"]) == 0:
            parts.append(
                f"{r['role']}: {int(r['kernels'])} kernel(s), {fmt(r['sim_cycles'])} cycles, no estimated op"
            )
        else:
            parts.append(
                f"{r['role']}: op(s) {_text(r['ops']).replace(',', ', ')} without a simulated kernel"
            )
    return "; ".join(parts)


def _machine_text(run: RunInfo) -> dict[str, str]:
    from analytical.pipeline import gem5_caption
    from analytical.plot import merged_ceilings

    m = run.machine
    peaks = ", ".join(label for _, _, label in merged_ceilings(m))
    return {
        "label": run.machine_label,
        "peaks": f"{m.compute_units} CUs at {m.clock_hz / 1e9:g} GHz; {peaks}; DRAM "
        f"{fmt(m.dram_bandwidth_bytes_per_s / 1e9)} GB/s; {m.l2_bytes // 1024} KiB TCC",
        "caption": gem5_caption(m, run.params.machine.profile),
    }


def _extrapolation(runs: list[RunInfo]) -> list[dict[str, Any]] | None:
    """Whole-model time per (machine, guest command) group; None when the module is absent."""
    try:
        from reports.extrapolate import extrapolate_runs
    except ImportError:
        return None
    from foundation.errors import InputError

    groups: dict[tuple, list[RunInfo]] = {}
    for run in runs:
        groups.setdefault((run.machine_key, tuple(run.params.workload.guest_command)), []).append(run)
    out = []
    per_machine: dict[str, int] = {}
    for members in groups.values():
        per_machine[members[0].machine_label] = per_machine.get(members[0].machine_label, 0) + 1
    for members in groups.values():
        label = members[0].machine_label
        if per_machine[label] > 1:  # one machine, several guest commands: say which runs
            label += " (" + ", ".join(r.slice_label for r in members) + ")"
        try:
            result = extrapolate_runs([r.run_dir for r in members], PRIMARY)
        except InputError as exc:
            out.append({"label": label, "error": str(exc)})
            continue
        request = result.request.iloc[0]
        out.append(
            {
                "label": label,
                "error": None,
                "assumption": result.assumption,
                "steps": [
                    {
                        "step": int(s["step"]),
                        "phase": s["phase"],
                        "tokens": int(s["tokens"]),
                        "context": int(s["context"]),
                        "time_ms": fmt(s["time_s"] * 1e3),
                        "share": _share(s.get("observed_share", s.get("simulated_share"))),
                    }
                    for _, s in result.steps.iterrows()
                ],
                "request_ms": fmt(request["request_s"] * 1e3),
                "prefill_ms": fmt(request["prefill_s"] * 1e3),
                "decode_steps": int(request["decode_steps"]),
                "decode_mean_ms": fmt(request["decode_step_mean_s"] * 1e3),
                "notes": list(result.notes),
            }
        )
    return out


def _agreement(summary: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per estimator over all ops and layers; MAPE per op class x estimator (the page's two tables)."""
    ops = summary[summary["level"] == "op"]
    layers = summary[summary["level"] == "layer"].set_index("estimator")
    overall = []
    for _, s in ops[ops["op_class"] == "all"].iterrows():
        layer = layers.loc[s["estimator"]]
        overall.append(
            {
                "estimator": s["estimator"],
                **_metric_cells(s),
                "layer_pairs": int(layer["pairs"]),
                "layer_mape_pct": fmt(layer["mape_pct"]),
            }
        )
    by_class = []
    classes = ops[ops["op_class"] != "all"]
    for op_class, group in classes.groupby("op_class", sort=True):
        mape = group.set_index("estimator")["mape_pct"]
        by_class.append(
            {
                "op_class": op_class,
                "pairs": int(group["pairs"].iloc[0]),
                "mape": [fmt(mape.get(e)) for e in ESTIMATORS],
            }
        )
    return overall, by_class


def context(
    runs: list[RunInfo],
    tables: ReportTables,
    checks: list[tuple[Any, int]],
    charts: dict[str, Any],
    files: list[str],
    measured: Any = None,
) -> dict[str, Any]:
    """Everything the two templates show, formatted (``measured``: a ``reports.hardware.Measured``)."""
    selftest = any(r.double_evidence for r in runs)
    models = sorted({str(t["model"].iloc[0]) for t in tables.estimates.values() if len(t)})
    subject = ", ".join(models) or "one layer"
    versus = f" vs {_hardware_words(measured)}" if measured is not None else ""
    if selftest:
        title = f"Pipeline self-test report: {subject} — test-double cycles vs the analytical model{versus}"
        whose = "the cycles the gem5 test double reported (a stand-in, not a simulation)"
    else:
        title = f"layerlab report: {subject} — gem5 cycles vs the analytical model{versus}"
        whose = "the cycles gem5 simulated"
    lede = (
        f"{len(runs)} sliced run{'s' if len(runs) != 1 else ''} on "
        f"{len({r.machine_key for r in runs})} simulated machine(s): {whose} for each kernel of one "
        "transformer layer, next to the estimate of the same op on the same simulated machine "
        f"({', '.join(ESTIMATORS)}), and how far apart they are."
    )
    if measured is not None:
        lede += (
            f" The trace {measured.trace.name}, {measured.where}, adds the measured time of the same roles "
            "in the same step and layer."
        )
    layers = tables.layers.set_index("run")
    run_rows = []
    for run, (path, knobs) in zip(runs, checks, strict=True):
        row = layers.loc[run.label]
        run_rows.append(
            {
                "label": run.label,
                "machine": run.machine_label,
                "source": run.source,
                "step": run.step,
                "layer": run.layer,
                "kernels": int(row["kernels"]),
                "blits": int(row["blits"]),
                "sim_us": fmt(row["sim_time_s"] * 1e6),
                "check": f"{knobs} knobs equal in {path.relative_to(run.run_dir)}",
                "run_id": run.run_id,
            }
        )
    machines, seen = [], set()
    for run in runs:
        if run.machine_key not in seen:
            seen.add(run.machine_key)
            machines.append(_machine_text(run))
    per_run = []
    for run in runs[:MAX_RUN_CHARTS]:
        ops = tables.ops[tables.ops["run"] == run.label]
        row = layers.loc[run.label]
        per_run.append(
            {
                "label": run.slice_label,
                "machine": run.machine_label,
                "roofline": charts["roofline"][run.label],
                "bars": charts["bars"][run.label],
                "ops": _op_rows(ops),
                "unmatched": _unmatched(ops),
                "blits": f"{int(row['blits'])} kernel(s), {fmt(row['blit_cycles'])} cycles",
            }
        )
    summary = []
    for _, s in tables.summary.iterrows():
        summary.append(
            {
                "level": s["level"],
                "estimator": s["estimator"],
                "op_class": s["op_class"],
                **_metric_cells(s),
            }
        )
    overall, by_class = _agreement(tables.summary)
    evidence = "; ".join(dict.fromkeys(r.double_evidence for r in runs if r.double_evidence))
    return {
        "title": title,
        "selftest": selftest,
        "selftest_title": SELFTEST_TITLE,
        "evidence": evidence,
        "lede": lede,
        "runs": run_rows,
        "machines": machines,
        "summary": summary,
        "overall": overall,
        "by_class": by_class,
        "histogram": charts.get("histogram"),
        "per_run": per_run,
        "more_runs": len(runs) > MAX_RUN_CHARTS,
        "estimators": list(ESTIMATORS),
        "primary": PRIMARY,
        "sweeps": [{"parameter": p, "png": png} for p, png in charts.get("sweeps", {}).items()],
        "extrapolation": _extrapolation(runs),
        "hardware": (
            hardware_context(tables.hardware, tables.hardware_summary, measured, charts.get("hardware", {}))
            if measured is not None
            else None
        ),
        "no_trace": NO_TRACE,
        "cpu": measured is not None and measured.cpu,
        "cpu_text": CPU_TEXT,
        "cpu_warning": CPU_WARNING,
        "assumptions": list(ASSUMPTIONS) + (list(HARDWARE_METHOD) if measured is not None else []),
        "files": [{"name": f, "what": FILES.get(f, "chart (PNG)")} for f in files],
    }


def _hardware_words(measured: Any) -> str:
    """What a title calls the measured side: a CPU trace says it is not a GPU's."""
    if measured.cpu:
        return f"CPU-measured times ({CPU_WARNING})"
    return f"hardware ({measured.device})"


def _us(seconds: Any) -> str:
    return "-" if seconds is None or pd.isna(seconds) else fmt(float(seconds) * 1e6)


def _hardware_unmatched(rows: pd.DataFrame) -> str:
    parts = []
    for _, r in rows[~rows["matched"].astype(bool)].iterrows():
        if int(r["n_ops"]) == 0 and int(r["measured_kernels"]) == 0:
            parts.append(
                f"{r['role']}: {_text(r['gem5_kernels'])} simulated kernel(s) only, no op, nothing measured"
            )
        elif int(r["n_ops"]) == 0:
            parts.append(
                f"{r['role']}: {int(r['measured_kernels'])} measured kernel(s), {_us(r['measured_s'])} µs, "
                "no estimated op"
            )
        else:
            parts.append(f"{r['role']}: op(s) {_text(r['ops']).replace(',', ', ')} without a measured kernel")
    return "; ".join(parts)


def _outside_layers(measured: Any, steps: set[int]) -> str:
    """The trace's kernels of the compared steps that lie outside every decoder layer (not compared)."""
    k = measured.kernels
    outside = k[k["census_step"].isin(steps) & ~(k["census_layer"].fillna(-1) >= 0)]
    if outside.empty:
        return ""
    return (
        f"{len(outside)} measured kernel(s) of step(s) {', '.join(map(str, sorted(steps)))} lie outside every "
        f"decoder layer (rotary tables, mask: {_us(outside['measured_s'].sum())} µs); like gem5's, they are "
        "not compared."
    )


def hardware_context(
    hardware: pd.DataFrame, summary: pd.DataFrame, measured: Any, charts: dict[str, str]
) -> dict[str, Any]:
    """The real-hardware section: the trace, agreement against it, and per slice a chart and a table."""
    from reports.hardware import step_words

    has_gem5 = bool((hardware["gem5_kernels"].fillna(0) > 0).any())
    slices = []
    groups = list(hardware.groupby("run", sort=False))
    for label, group in groups[:MAX_RUN_CHARTS]:
        rows = []
        for _, r in group.iterrows():
            rows.append(
                {
                    "role": r["role"],
                    "ops": _text(r["ops"]).replace(",", ", "),
                    "model_us": _us(r[f"model_s_{PRIMARY}"]),
                    "gem5_us": _us(r["gem5_s"]),
                    "measured_us": _us(r["measured_s"]),
                    "gem5_kernels": _text(r["gem5_kernels"]),
                    "measured_kernels": int(r["measured_kernels"]),
                    "err_model": fmt(r[f"error_pct_{PRIMARY}_vs_hw"]),
                    "err_gem5": fmt(r["error_pct_gem5_vs_hw"]),
                    "matched": bool(r["matched"]),
                }
            )
        first = group.iloc[0]
        slices.append(
            {
                "label": str(label),
                "what": step_words(measured, int(first["step"])),
                "model_machine": str(first["model_machine"]),
                "gem5_machine": _text(first["gem5_machine"]),
                "chart": charts.get(str(label)),
                "rows": rows,
                "unmatched": _hardware_unmatched(group),
                "measured_us": _us(group["measured_s"].sum()),
                "model_us": _us(group[f"model_s_{PRIMARY}"].sum()),
                "gem5_us": _us(group["gem5_s"].sum(min_count=1)),
            }
        )
    agreement = []
    layer_rows = summary[summary["level"] == "layer"].set_index("compared")
    for _, s in summary[summary["level"] == "op"].iterrows():
        layer = layer_rows.loc[s["compared"]]
        agreement.append(
            {
                "compared": s["compared"],
                "machine": s["machine"],
                **_metric_cells(s),
                "layer_pairs": int(layer["pairs"]),
                "layer_mape_pct": fmt(layer["mape_pct"]),
            }
        )
    steps = {int(s) for s in hardware["step"]}
    return {
        "label": measured.label,
        "trace": str(measured.trace),
        "trace_name": measured.trace.name,
        "marker_table": str(measured.marker_table),
        "source": measured.source,
        "where": measured.where,
        "device": measured.device,
        "cpu": measured.cpu,
        "model": measured.model_name,
        "kernels": len(measured.kernels),
        "has_gem5": has_gem5,
        "slices": slices,
        "more": len(groups) > MAX_RUN_CHARTS,
        "count": len(groups),
        "agreement": agreement,
        "outside": _outside_layers(measured, steps),
    }


def measured_context(
    measured: Any, machine: Any, tables: Any, charts: dict[str, Any], files: list[str]
) -> dict[str, Any]:
    """The page of a trace alone: the model of the same layers on ``machine`` against the trace."""
    hw = _hardware_words(measured)
    title = f"layerlab report: {measured.model_name} — the analytical model vs {hw}, no gem5 run"
    steps = sorted({int(s) for s in tables.hardware["step"]})
    lede = (
        f"The trace {measured.trace.name} of the layer driver, {measured.where}, sliced by its own layerlab "
        f"markers into {tables.hardware['run'].nunique()} (step, layer) slices (steps {', '.join(map(str, steps))}): "
        "the measured time of each role next to the analytical estimate of the same op "
        f"({', '.join(ESTIMATORS)}) on {machine.name}, and how far apart they are. No gem5 run is part of it."
    )
    return {
        "title": title,
        "selftest": False,
        "selftest_title": SELFTEST_TITLE,
        "cpu": measured.cpu,
        "cpu_text": CPU_TEXT,
        "cpu_warning": CPU_WARNING,
        "lede": lede,
        "machine": {
            "label": machine.name,
            "notes": machine.notes or "",
            "peaks": f"{machine.compute_units} CUs/SMs at {machine.clock_hz / 1e9:g} GHz; DRAM "
            f"{fmt(machine.dram_bandwidth_bytes_per_s / 1e9)} GB/s",
        },
        "hardware": hardware_context(tables.hardware, tables.hardware_summary, measured, charts),
        "no_trace": NO_TRACE,
        "estimators": list(ESTIMATORS),
        "primary": PRIMARY,
        "assumptions": [
            "Estimated time: each estimator's time of the op on the machine named above (the catalog's "
            "datasheet part), for the step's own shapes from the driver's command line in the marker table.",
            *HARDWARE_METHOD,
        ],
        "files": [{"name": f, "what": FILES.get(f, "chart (PNG)")} for f in files],
    }


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(ctx: dict[str, Any], page: str = "report") -> str:
    """``report`` (runs, with or without a trace) or ``measured`` (a trace alone)."""
    return _environment().get_template(f"{page}.html.j2").render(**ctx)


def render_markdown(ctx: dict[str, Any], page: str = "report") -> str:
    return _environment().get_template(f"{page}.md.j2").render(**ctx)
