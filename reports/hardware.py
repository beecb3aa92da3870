"""Measured kernel times of the same layer on real hardware, beside gem5 and the analytical model.

CHIP-style: one report shows the roofline of a machine, what gem5 simulated, and what a real GPU
measured, op by op. The measured side is a profiler trace of the ``layer`` guest driver run with
``--profile trace.json`` (torch.profiler: a Kineto chrome trace whose ``layerlab:<id>:<label>``
spans are the same markers gem5's census counts), or a rocprof kernel trace labelled with a
census kernel map of the same program. The trace is labelled by the census code itself
(``workloads.census.events_from_trace`` -> ``build_kernel_map``), so a kernel's step, layer and
module mean exactly what they mean for a simulated kernel.

Tables (columns are stable; times in seconds):

``measured_kernels``  one row per kernel (``MEASURED_COLUMNS``): ``measured_s``, the census labels
                      (``census_step``, ``census_layer``, ``census_module``, ...) and ``source``:
                      ``hardware-gpu``, or ``hardware-cpu`` for a trace taken on the CPU, whose
                      "kernels" are top-level aten ops (``workloads.traces``) and whose times are
                      CPU times, never GPU times.
``join_times``        ``reports.join.join`` of any source (gem5's cycles or measured seconds) with
                      the analytical ops, in seconds (``TIMED_COLUMNS``), one row per role.
``compare``           several ``join_times`` tables stacked: model vs gem5 vs hardware, long form.
``fit_rows``          per role: op class and the estimator's compute and memory sides beside the
                      source's time, the rows ``analytical.calibration.fit_calibration`` fits.

``layerlab report --measured`` uses the rest of this module: ``load_measured`` (the trace, its
marker table, every check before the report writes a byte), ``check_workload`` (the same model,
shapes and step as a sliced run) and ``slice_kernels``; ``reports.tables`` joins them per role.

Kernel indices of a profiled trace count from the first profiled kernel (``--profile`` records
the steps only), not from the process start like gem5's census; joins are on roles, never on
indices.
"""

from __future__ import annotations

import csv
import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError

SOURCES = ("gem5", "gem5-test-double", "hardware-gpu", "hardware-cpu")
MEASURED_COLUMNS = (
    "kernel_index", "name", "blit", "start_s", "measured_s", "census_step", "census_phase",
    "census_layer", "census_module", "census_op_name", "source", "device", "trace_format",
)  # fmt: skip
TIMED_COLUMNS = (
    "role", "join", "ops", "kernels", "time_s", "est_s", "cycles", "est_cycles", "error_pct",
    "calibration", "matched", "source", "machine", "clock_hz",
)  # fmt: skip
FIT_COLUMNS = (
    "role", "join", "ops", "op_class", "t_compute_s", "t_memory_s", "time_s", "est_s", "source",
    "machine", "usable", "why",
)  # fmt: skip
_LABELS = {
    "step": "census_step",
    "phase": "census_phase",
    "layer": "census_layer",
    "module": "census_module",
    "op_name": "census_op_name",
}


# -- durations ----------------------------------------------------------------------------------
# workloads.traces reads launch order and spans; only this comparison needs each kernel's time,
# so it is read here, in the reader's own order (checked name by name against it).


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="")


def _kineto_durations(trace: Any) -> tuple[list[float], list[float], str]:
    """(start µs, duration µs, device name) per kernel of a Kineto trace, in the reader's order."""
    path = Path(trace.path)
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(f"{path}: not a readable JSON trace ({exc})") from None
    events = data.get("traceEvents") if isinstance(data, dict) else data
    events = [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "ts" in e]
    if trace.format == "kineto-gpu":

        def corr(e: dict) -> Any:
            return (e.get("args") or {}).get("correlation")

        kernels = [e for e in events if e.get("cat") == "kernel"]
        ordered = all(corr(k) is not None for k in kernels)
        kernels.sort(key=(lambda k: (corr(k), k["ts"])) if ordered else (lambda k: k["ts"]))
        names = [str(k["name"]) for k in kernels]
        starts = [float(k["ts"]) for k in kernels]
        durations = [float(k.get("dur", 0.0)) for k in kernels]
        devices = (
            {p.get("id"): p.get("name") for p in (data.get("deviceProperties") or [])}
            if isinstance(data, dict)
            else {}
        )
        ids = {(k.get("args") or {}).get("device") for k in kernels}
        named = sorted({str(devices[i]) for i in ids if devices.get(i)})
        device = ", ".join(named) or "gpu"
    else:  # kineto-cpu: the stand-in is the top-level aten op starting at that time
        longest: dict[tuple[str, float], float] = {}
        for e in events:
            if e.get("cat") == "cpu_op":
                key = (str(e["name"]), float(e["ts"]))
                longest[key] = max(longest.get(key, 0.0), float(e.get("dur", 0.0)))
        names = list(trace.kernels)
        starts = list(trace.times)
        durations = [longest.get(key, float("nan")) for key in zip(names, starts, strict=True)]
        device = "cpu"
    if names != list(trace.kernels):
        raise InputError(f"{path}: kernel order differs from workloads.traces' reading of the same file")
    return starts, durations, device


def _rocprof_durations(trace: Any) -> tuple[list[float], list[float], str]:
    """(start µs, duration µs, device) per dispatch of a rocprof CSV, in the reader's order."""
    path = Path(trace.path)
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    if "KernelName" in columns:
        name_col, order_cols, begin, end = (
            "KernelName",
            ("Index", "DispatchNs", "BeginNs"),
            "BeginNs",
            "EndNs",
        )
    else:
        name_col, begin, end = "Kernel_Name", "Start_Timestamp", "End_Timestamp"
        order_cols = ("Dispatch_Id", "Correlation_Id", "Start_Timestamp")
    if not {begin, end} <= columns:
        raise InputError(f"{path}: no {begin!r}/{end!r} columns: a rocprof trace without kernel times")
    order_col = next((c for c in order_cols if c in columns), None)
    parsed = []
    for lineno, row in enumerate(rows, start=2):
        name = (row.get(name_col) or "").strip()
        if not name or name == "<barrier packet>":
            continue
        try:
            key = int(row[order_col]) if order_col else 0
            t0, t1 = float(row[begin]), float(row[end])
        except (TypeError, ValueError):
            raise InputError(f"{path}:{lineno}: field {begin!r} or {end!r} is not a number") from None
        parsed.append((key, lineno, name, t0 / 1e3, (t1 - t0) / 1e3))
    parsed.sort()
    if [p[2] for p in parsed] != list(trace.kernels):
        raise InputError(f"{path}: kernel order differs from workloads.traces' reading of the same file")
    return [p[3] for p in parsed], [p[4] for p in parsed], "gpu"


# -- the measured kernels -----------------------------------------------------------------------


def _marker_labels(trace: Any, marker_table: str | Path | None) -> pd.DataFrame | None:
    """The census kernel map of a trace's own ``layerlab:`` spans (None without such spans)."""
    from workloads import census
    from workloads.drivers import markers as mk

    if not any(mk.parse_profiler_name(span.name) is not None for span in trace.spans):
        return None
    with tempfile.TemporaryDirectory(prefix="layerlab-trace-") as folder:
        events = census.write_events(folder, census.events_from_trace(trace))
        try:
            kernel_map = census.build_kernel_map(folder, marker_table)
        except InputError as exc:  # the census names its side-file: here a temp copy of the markers
            detail = str(exc).removeprefix(f"{events}: ").replace(str(events), "the trace's markers")
            detail = detail.replace("side-file", "trace").split("; was exit_on_work_items")[0]
            raise InputError(
                f"{trace.path}: its layerlab markers do not match the marker table {marker_table} ({detail})"
            ) from None
    return kernel_map.kernels


def measured_kernels(
    trace_path: str | Path,
    *,
    marker_table: str | Path | None = None,
    kernel_map: Any = None,
) -> pd.DataFrame:
    """One row per kernel of a profiler trace with its measured time and census labels.

    Kineto traces are labelled by their own ``layerlab:`` marker spans (``marker_table``, the
    driver's ``--marker-table`` file, adds each step's phase). A rocprof trace has no markers:
    give ``kernel_map`` (``workloads.census.load_kernel_map`` of a census of the same program,
    whose kernel indices are the trace's dispatch order). A trace without either keeps empty
    labels, and ``attrs["notes"]`` says why.
    """
    from workloads.traces import read_trace

    trace = read_trace(trace_path)
    if trace.format.startswith("kineto"):
        starts, durations, device = _kineto_durations(trace)
    elif trace.format.startswith("rocprof"):
        starts, durations, device = _rocprof_durations(trace)
    else:
        raise InputError(
            f"{trace_path}: a gem5 debug trace has no kernel times; give a Kineto or rocprof trace"
        )
    n = len(trace.kernels)
    t0 = min(starts) if starts else 0.0
    table = pd.DataFrame(
        {
            "kernel_index": pd.array(range(n), dtype="Int64"),
            "name": trace.kernels,
            "blit": pd.array([False] * n, dtype="boolean"),
            "start_s": [(s - t0) * 1e-6 for s in starts],
            "measured_s": [d * 1e-6 for d in durations],
        }
    )
    notes: list[str] = []
    labels = None
    if kernel_map is not None:
        labels = kernel_map.kernels
        if len(labels) != n:
            raise InputError(
                f"{trace_path}: {n} kernels, but the kernel map has {len(labels)}: not the same program "
                "(or the trace does not start at the process's first kernel)"
            )
    elif trace.format.startswith("kineto"):
        labels = _marker_labels(trace, marker_table)
        if labels is None:
            notes.append(
                f"{trace_path}: no layerlab markers (run the driver with --profile): kernels are unlabelled"
            )
    else:
        notes.append(f"{trace_path}: rocprof has no markers; give a census kernel map to label its kernels")
    if labels is not None:
        labels = labels.rename(columns=_LABELS)[["kernel_index", *_LABELS.values()]]
        labels = labels.astype({"kernel_index": "Int64"})
        table = table.merge(labels, on="kernel_index", how="left")
    for column in _LABELS.values():
        if column not in table:
            table[column] = pd.array(
                [pd.NA] * n, dtype="Int64" if column in ("census_step", "census_layer") else "object"
            )
    table["source"] = "hardware-cpu" if trace.format == "kineto-cpu" else "hardware-gpu"
    table["device"] = device
    table["trace_format"] = trace.format
    table = table[list(MEASURED_COLUMNS)]
    table.attrs["notes"] = notes
    return table


def layer_kernels(measured: pd.DataFrame, step: int, layer: int) -> pd.DataFrame:
    """The measured kernels of (step, layer): the same kernels a sliced gem5 run of it simulates."""
    if measured["census_layer"].isna().all():
        raise InputError("the trace's kernels carry no layer labels (no layerlab markers in it)")
    chosen = measured[(measured["census_step"] == step) & (measured["census_layer"] == layer)]
    if chosen.empty:
        steps = sorted(int(s) for s in measured["census_step"].dropna().unique())
        raise InputError(f"no measured kernel in step {step} layer {layer} (steps in the trace: {steps})")
    return chosen.reset_index(drop=True)


def measured_layer_times(measured: pd.DataFrame) -> list[Any]:
    """Every labelled (step, layer) of a trace as a ``reports.extrapolate.LayerTime`` (kernel time).

    Feed them to ``reports.extrapolate.extrapolate(..., source="measured")`` with the trace's
    ``trace_plan`` and the real GPU's machine for the whole-request time the hardware measured.
    """
    from reports.extrapolate import LayerTime

    labelled = measured.dropna(subset=["census_step", "census_layer"])
    if labelled.empty:
        raise InputError("the trace's kernels carry no layer labels (no layerlab markers in it)")
    device = str(measured["device"].iloc[0])
    sums = labelled.groupby(["census_step", "census_layer"])["measured_s"].sum()
    return [
        LayerTime(int(step), int(layer), float(s), f"{device} trace") for (step, layer), s in sums.items()
    ]


def trace_plan(marker_table: str | Path) -> Any:
    """The driver plan (``reports.extrapolate.DriverPlan``) of a traced run, from its marker table."""
    from reports.extrapolate import driver_plan
    from workloads.census import read_marker_table

    table = read_marker_table(marker_table)
    argv = table.get("argv")
    if table.get("driver") != "layer" or not isinstance(argv, list):
        raise InputError(
            f"{marker_table}: not a marker table of the `layer` driver (field 'argv' or 'driver')"
        )
    return driver_plan([str(a) for a in argv])


# -- joins in seconds ---------------------------------------------------------------------------


def _one(ops: pd.DataFrame, column: str) -> Any:
    values = pd.unique(ops[column].dropna())
    if len(values) != 1:
        raise InputError(f"op table: expected one {column}, found {len(values)} ({list(values)[:3]})")
    return values[0]


def join_times(kernels: pd.DataFrame, ops: pd.DataFrame, source: str) -> pd.DataFrame:
    """``reports.join.join`` of one source's kernels with the analytical ops, in seconds.

    ``kernels`` has ``measured_s`` (a trace: ``measured_kernels``) or ``gpu_cycles`` (a sliced
    run: ``reports.join.simulated_kernels``) per kernel; ``ops`` is one layer on one machine.
    ``cycles`` is the source's time at the machine's clock, so ``error_pct`` and ``calibration``
    mean the same for every source.
    """
    from reports.join import join

    if not source:
        raise InputError(f"source {source!r}: name where the times come from (e.g. {', '.join(SOURCES)})")
    clock = float(_one(ops, "clock_hz"))
    work = kernels.copy()
    if "measured_s" in work:
        work["gpu_cycles"] = work["measured_s"].astype(float) * clock
    elif "gpu_cycles" not in work:
        raise InputError("kernel table: no 'measured_s' or 'gpu_cycles' column")
    table = join(work, ops).rename(columns={"sim_cycles": "cycles"})
    table["time_s"] = table["cycles"] / clock
    table["est_s"] = table["est_cycles"] / clock
    table["source"] = source
    table["machine"] = str(_one(ops, "hardware"))
    table["clock_hz"] = clock
    return table[list(TIMED_COLUMNS)]


def compare(*tables: pd.DataFrame) -> pd.DataFrame:
    """``join_times`` tables of several sources stacked (long form: one row per role and source)."""
    if not tables:
        raise InputError("compare needs at least one join_times table")
    frame = pd.concat(tables, ignore_index=True)
    order = {name: i for i, name in enumerate(SOURCES)}
    frame["_order"] = frame["source"].map(order)
    frame = frame.sort_values(["role", "_order"], na_position="last", kind="stable", ignore_index=True)
    return frame.drop(columns="_order")[list(TIMED_COLUMNS)]


# -- calibration rows ---------------------------------------------------------------------------

#: Factor that pushes one side of the roofline out of the way to read the other side alone.
_AWAY = 1e9


def estimator_sides(ops: pd.DataFrame, model: Any, machine: Any, estimator: str) -> pd.DataFrame:
    """``ops`` with ``t_compute_s``/``t_memory_s`` replaced by ``estimator``'s own two sides.

    Every estimator but ``simple`` is max(compute side / compute factor, memory side / bandwidth
    factor) (the launch floor of ``full``, which no factor scales, counts on both sides), so a
    factor fitted against these sides is the one that estimator needs. Each side is read by
    estimating the same ops again with the other side's factor far away.
    """
    from analytical.calibration import CalibrationFactors
    from analytical.pipeline import estimate_layer

    if estimator == "roofline":
        return ops
    if estimator == "simple":
        raise InputError(
            "--estimator simple ignores calibration factors (the notebook's roofline); "
            "pick roofline, tiling, cache, waves or full"
        )
    row = ops.iloc[0]
    phase = str(row["phase"])
    layers = sorted({int(x) for x in ops["layer"]})
    shape = {
        "batch": int(row["batch"]),
        "seq": None if phase == "decode" else int(row["seq"]),
        "context": int(row["context"]),
        "decode_tokens": int(row["decode_tokens"]),
        "decode_context": int(row["decode_context"]),
        "engine": str(row["engine"]),
        "dtype": str(row["dtype"]),
        "layers": "all" if layers[0] < 0 else ",".join(map(str, layers)),
        "estimator": estimator,
    }
    key = ops[["layer", "op"]].astype({"op": str}).reset_index(drop=True)
    sides = []
    for factors in ((1.0, _AWAY), (_AWAY, 1.0)):
        table = estimate_layer(
            model, machine, phase, calibration=CalibrationFactors({"default": factors}), **shape
        )
        table = table.loc[table["op"] != "total", ["layer", "op", "t_est_s"]].astype({"op": str})
        sides.append(key.merge(table, on=["layer", "op"], how="left")["t_est_s"].to_numpy(float))
    compute, memory = sides
    if len(compute) != len(ops) or np.isnan(compute).any() or np.isnan(memory).any():
        raise InputError("op table: its ops are not the ones estimate_layer builds for its own shape")
    compute = np.where(compute <= memory / _AWAY * (1 + 1e-6), 0.0, compute)  # no FLOPs: no compute side
    memory = np.where(memory <= compute / _AWAY * (1 + 1e-6), 0.0, memory)
    out = ops.copy()
    out["t_compute_s"] = compute
    out["t_memory_s"] = memory
    return out


def fit_rows(timed: pd.DataFrame, ops: pd.DataFrame) -> pd.DataFrame:
    """Per role of a ``join_times`` table: op class and summed sides, and whether it can be fitted.

    Usable: matched rows joined per op, and per-role rows whose ops share one op class (their
    sides are summed: exact when they sit on the same side of the roofline). Left out, with the
    reason in ``why``: unmatched roles, roles mixing op classes (attention: rope, softmax, GEMMs),
    and the catch-all census roles ``layer`` and ``step`` (their kernels include work no op models).
    """
    from analytical.roles import WHOLE_ROLES

    work = ops[ops["op"] != "total"].copy()
    work["role"] = work["role"].astype(str)
    work["op_class"] = work["op_class"].astype(str)
    per_role = work.groupby("role", sort=False).agg(
        classes=("op_class", lambda s: ",".join(dict.fromkeys(s))),
        t_compute_s=("t_compute_s", "sum"),
        t_memory_s=("t_memory_s", "sum"),
    )
    table = timed.merge(per_role, left_on="role", right_index=True, how="left")
    classes = table["classes"].fillna("")
    mixed = classes.str.contains(",")
    whole = table["role"].isin(WHOLE_ROLES)
    matched = table["matched"].astype(bool)
    table["op_class"] = np.where(mixed, "mixed", classes)
    table["usable"] = matched & ~mixed & ~whole & (table["time_s"] > 0)
    why = np.select(
        [~matched, whole, mixed, ~(table["time_s"] > 0)],
        [
            "unmatched (no kernel or no op)",
            "catch-all census role (work no op models)",
            "op classes " + classes.str.replace(",", ", ") + " under one role",
            "no measured time",
        ],
        default="",
    )
    table["why"] = why
    return table[list(FIT_COLUMNS)].reset_index(drop=True)


def calibrated_s(rows: pd.DataFrame, factors: Any) -> np.ndarray:
    """The calibrated roofline of fit rows: max(compute / compute factor, memory / bandwidth factor)."""
    eff_c, eff_b = factors.arrays(rows["op_class"].astype(str).to_numpy())
    return np.maximum(rows["t_compute_s"].to_numpy(float) / eff_c, rows["t_memory_s"].to_numpy(float) / eff_b)


# -- the measured side of `layerlab report` -----------------------------------------------------
# A report joins a trace only when it is the same workload as the runs beside it (same model
# shapes, batch, dtype, and the same step in the driver's run order), so everything that can be
# wrong with a trace is found here, before the report writes anything, and every error names it.

#: What every table, chart and page built from a CPU trace says about its times.
CPU_WARNING = "measured on a CPU, not a GPU"
#: The shape facts of a model that two runs of the layer driver must share to be one workload.
_MODEL_FIELDS = (
    "family", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
    "head_dim", "norm", "activation", "gated_mlp", "attention_bias", "mlp_bias",
)  # fmt: skip


@dataclass(frozen=True)
class Measured:
    """One profiler trace of the ``layer`` driver, labelled by its own markers, and its plan."""

    trace: Path
    marker_table: Path
    label: str
    kernels: pd.DataFrame  # measured_kernels
    plan: Any  # reports.extrapolate.DriverPlan of the traced command
    device: str

    @property
    def cpu(self) -> bool:
        return bool((self.kernels["source"] == "hardware-cpu").all())

    @property
    def source(self) -> str:
        """The ``measured_source`` of every row: a CPU trace says it is not a GPU's."""
        if self.cpu:
            return f"hardware-cpu ({CPU_WARNING})"
        return f"hardware-gpu ({self.device})"

    @property
    def where(self) -> str:
        """Where the times were measured, in words a title can carry."""
        return CPU_WARNING if self.cpu else f"measured on {self.device}"

    @property
    def model_name(self) -> str:
        return model_name(self.plan)

    def to_json(self) -> dict[str, Any]:
        return {
            "trace": str(self.trace),
            "marker_table": str(self.marker_table),
            "label": self.label,
            "source": self.source,
            "device": self.device,
            "cpu": self.cpu,
            "kernels": len(self.kernels),
        }


def _naming(trace: Path, exc: InputError) -> InputError:
    """``exc`` with the trace named first (a reader's error may name only a file it made)."""
    text = str(exc)
    return InputError(text if text.startswith(str(trace)) else f"{trace}: {text}")


def model_name(plan: Any) -> str:
    """A shipped model's display name for a plan whose ``--config`` is that model's shipped file."""
    from workloads.drivers import layer
    from workloads.models import load_model_config

    config = layer.parser().parse_known_args(list(plan.argv))[0].config if plan.argv else None
    if not config:
        return str(plan.model.name)
    stem = Path(config).stem
    try:
        shipped = load_model_config(stem)
    except InputError:
        return str(plan.model.name) if stem == "config" else stem
    same = all(getattr(shipped, f) == getattr(plan.model, f) for f in _MODEL_FIELDS)
    return str(shipped.name) if same else stem


def load_measured(
    trace: str | Path, marker_table: str | Path | None = None, label: str | None = None
) -> Measured:
    """A trace for a report: the layer driver's ``--profile`` file and its ``--marker-table``.

    The marker table (default: ``layerlab_markers.json`` beside the trace) holds the driver's
    command line, the only record of the model and shapes the trace measured; without it the
    trace cannot be checked against the runs, so it is required.
    """
    from foundation.rundir import MARKER_TABLE_FILE
    from workloads.traces import read_trace

    trace = Path(trace)
    wanted = "give the Kineto trace the layer driver writes with --profile"
    if trace.is_file():
        try:
            with _open_text(trace) as handle:
                head = handle.read(4096).lstrip()
        except (OSError, EOFError) as exc:
            raise InputError(f"{trace}: cannot read ({exc})") from None
        if not head.startswith(("{", "[")):  # read_trace would take it for a gem5 debug log
            kind = "a rocprof CSV" if "KernelName" in head.split("\n", 1)[0] else "not a JSON trace"
            raise InputError(f"{trace}: {kind}, so no layerlab markers to slice by; {wanted}")
    try:
        kind = read_trace(trace).format
    except InputError as exc:
        raise _naming(trace, exc) from None
    if not kind.startswith("kineto"):
        raise InputError(f"{trace}: a {kind} trace has no layerlab markers to slice by; {wanted}")
    table = Path(marker_table) if marker_table else trace.parent / MARKER_TABLE_FILE
    if not table.is_file():
        raise InputError(
            f"{trace}: no marker table {table} (the layer driver's --marker-table file of the same run, "
            "which names the model and shapes): give --measured-markers PATH"
        )
    try:
        plan = trace_plan(table)
        kernels = measured_kernels(trace, marker_table=table)
    except InputError as exc:
        raise _naming(trace, exc) from None
    if kernels["census_layer"].isna().all():
        raise InputError(
            f"{trace}: no layer is labelled by layerlab markers (record it with the layer driver's "
            "--profile, which brackets every layer and module)"
        )
    planned = {int(s["step"]) for s in plan.steps}
    traced = {int(s) for s in kernels["census_step"].dropna().unique()}
    if not traced <= planned:
        raise InputError(
            f"{trace}: steps {sorted(traced - planned)} are not in the plan of {table}: "
            "the marker table of another run"
        )
    device = str(kernels["device"].iloc[0]) if len(kernels) else "gpu"
    if label is not None and not label.strip():
        raise InputError(f"{trace}: --measured-label is empty")
    default = f"{'CPU' if device == 'cpu' else device}: {trace.name}"
    return Measured(trace, table, (label or default).strip(), kernels, plan, device)


def check_workload(measured: Measured, plan: Any, step: int, layer: int, where: str) -> None:
    """The trace ran the workload of ``where`` (a run): the same model, shapes and step; else exit 2."""
    trace = measured.trace

    def differ(what: str, theirs: Any, ours: Any) -> InputError:
        return InputError(
            f"{trace}: not the workload of {where}: {what} is {theirs!r} in the trace, {ours!r} in the run"
        )

    for name in _MODEL_FIELDS:
        theirs, ours = getattr(measured.plan.model, name), getattr(plan.model, name)
        if theirs != ours:
            raise differ(f"model {name}", theirs, ours)
    for name in ("batch", "dtype"):
        if getattr(measured.plan, name) != getattr(plan, name):
            raise differ(name, getattr(measured.plan, name), getattr(plan, name))
    try:
        ours = plan.step(step)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    theirs = next((s for s in measured.plan.steps if s["step"] == step), None)
    if theirs is None:
        steps = [s["step"] for s in measured.plan.steps]
        raise InputError(f"{trace}: step {step} of {where} is not in the trace (its steps: {steps})")
    for name in ("phase", "tokens", "context"):
        if theirs[name] != ours[name]:
            raise differ(f"step {step} {name}", theirs[name], ours[name])
    if layer >= measured.plan.layers_run:
        raise InputError(
            f"{trace}: layer {layer} of {where} is not in the trace (it ran {measured.plan.layers_run} "
            "layer(s))"
        )


def slice_kernels(measured: Measured, step: int, layer: int, roles: set[str] | None = None) -> pd.DataFrame:
    """The measured kernels of (step, layer) (of ``roles`` only, for a module slice)."""
    try:
        chosen = layer_kernels(measured.kernels, step, layer)
    except InputError as exc:
        raise _naming(measured.trace, exc) from None
    if roles is not None:
        chosen = chosen[chosen["census_module"].isin(roles)].reset_index(drop=True)
    return chosen


def step_words(measured: Measured, step: int) -> str:
    """``decode, 1 token, KV context 20``: what the driver ran in ``step`` (from its marker table)."""
    entry = next((s for s in measured.plan.steps if s["step"] == step), None)
    if entry is None:
        return f"step {step}"
    tokens = int(entry["tokens"])
    return f"{entry['phase']}, {tokens} token{'s' if tokens != 1 else ''}, KV context {entry['context']}"


def traced_slices(measured: Measured) -> list[tuple[int, int]]:
    """Every (step, layer) of the trace that has kernels, in run order."""
    labelled = measured.kernels.dropna(subset=["census_step", "census_layer"])
    pairs = {(int(s), int(n)) for s, n in zip(labelled["census_step"], labelled["census_layer"], strict=True)}
    return sorted(p for p in pairs if p[1] >= 0)


def plan_layer_ops(plan: Any, step: int, machine: Any) -> pd.DataFrame:
    """The analytical ops of one decoder layer of ``step`` of the plan on ``machine`` (every estimator)."""
    from reports.extrapolate import plan_ops

    return plan_ops(plan, step, machine, "0")


def device_hardware(device: str) -> str | None:
    """The catalog's datasheet part a profiler's device name names (``NVIDIA A100 80GB PCIe``: a100)."""
    import re

    from analytical.catalog import GEM5_MACHINES, list_hardware

    words = set(re.split(r"[^a-z0-9]+", device.lower()))
    parts = [n for n in list_hardware() if n not in GEM5_MACHINES]
    found = [n for n in parts if n in words]
    return found[0] if len(found) == 1 else None


def measured_machine(measured: Measured, name: str | None) -> Any:
    """The machine the model estimates for a trace alone: ``name``, else the trace's own GPU."""
    from analytical.catalog import get_hardware

    if name is None:
        name = None if measured.cpu else device_hardware(measured.device)
        if name is None:
            what = "a CPU" if measured.cpu else f"device {measured.device!r}, which no catalog part names"
            raise InputError(
                f"{measured.trace}: measured on {what}: name the machine the model should estimate "
                "with --measured-hardware NAME (see `layerlab estimate --help`)"
            )
    try:
        return get_hardware(name)
    except InputError as exc:
        raise InputError(f"--measured-hardware: {exc}") from None
