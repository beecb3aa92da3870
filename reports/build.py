"""One report from sliced runs, written all or nothing.

Order matters for "bad input writes nothing": every run is loaded and checked (census map,
stats blocks, the machine read back from config.ini, one machine unless mixing is allowed)
before the first byte is written; then tables, charts and the page are written into a temp
directory beside the target, and only a complete report is renamed into place. A target that
already holds a report (its ``report.json``) is replaced; any other non-empty directory is
refused, so ``--out`` can never wipe a user's folder.

A trace (``--measured``) is loaded and checked against every run (same model, shapes, step and
layer present) in the same first phase. A trace without runs gives a report of its own: the
model of the traced layers on the machine the trace ran on, against the trace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from foundation import atomic
from foundation.errors import InputError
from reports.runs import RunInfo, load_runs

REPORT_SCHEMA = "layerlab-report/1"
MARKER = "report.json"


@dataclass
class Report:
    out_dir: Path
    files: list[Path]
    summary: Any  # pandas DataFrame (reports.metrics.SUMMARY_COLUMNS); empty for a trace alone
    selftest: bool
    runs: list[RunInfo]
    measured: Any = None  # reports.hardware.Measured, when a trace was given
    hardware_summary: Any = None  # reports.tables.HARDWARE_SUMMARY_COLUMNS, with a trace

    def to_json(self) -> dict[str, Any]:
        sources = [r.source for r in self.runs] + ([self.measured.source] if self.measured else [])
        hardware = self.hardware_summary
        return {
            "out": str(self.out_dir),
            "self_test": self.selftest,
            "source": "; ".join(dict.fromkeys(sources)),
            "runs": [{"label": r.label, "run_id": r.run_id, "run_dir": str(r.run_dir)} for r in self.runs],
            "metrics": json.loads(self.summary.to_json(orient="records")),
            "measured": self.measured.to_json() if self.measured else None,
            "hardware_metrics": json.loads(hardware.to_json(orient="records"))
            if hardware is not None
            else [],
            "files": [str(p) for p in self.files],
        }


@dataclass(frozen=True)
class MeasuredInput:
    """What `layerlab report --measured` names: a trace, its marker table, a label, a machine."""

    trace: Path
    marker_table: Path | None = None
    label: str | None = None
    hardware: str | None = None  # the machine the model estimates for a trace alone


def check_target(out: Path) -> Path:
    """Where the report goes: absent, empty, or a previous report; its parent must exist."""
    target = Path(os.path.abspath(out))
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise InputError(f"{out}: exists and is not a directory")
        entries = [p.name for p in target.iterdir()]
        if entries and MARKER not in entries:
            raise InputError(
                f"{out}: a non-empty directory that is not a layerlab report; choose another --out"
            )
    elif not target.parent.is_dir():
        raise InputError(f"{out}: no such directory {target.parent} (it is not created)")
    return target


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def _write_tables(folder: Path, tables: Any) -> list[str]:
    names = []
    for stem, frame in (("kernels", tables.kernels), ("ops", tables.ops), ("layers", tables.layers)):
        frame.to_csv(folder / f"{stem}.csv", index=False)
        frame.to_parquet(folder / f"{stem}.parquet", index=False)
        names += [f"{stem}.csv", f"{stem}.parquet"]
    tables.summary.to_csv(folder / "summary.csv", index=False)
    return [*names, "summary.csv"]


def _write_charts(folder: Path, runs: list[RunInfo], tables: Any) -> tuple[dict[str, Any], list[str]]:
    from analytical.pipeline import gem5_caption
    from reports import plots
    from reports.page import MAX_RUN_CHARTS
    from reports.tables import PRIMARY

    selftest = any(r.double_evidence for r in runs)
    charts: dict[str, Any] = {"roofline": {}, "bars": {}, "sweeps": {}}
    names: list[str] = []
    for run in runs[:MAX_RUN_CHARTS]:
        ops = tables.ops[tables.ops["run"] == run.label]
        slug = _slug(run.label)
        where = f"{run.slice_label} on {run.machine_label}"
        name = f"roofline-{slug}.png"
        fig = plots.roofline_figure(
            ops, run.machine, f"Roofline of the simulated machine: {where}",
            gem5_caption(run.machine, run.params.machine.profile), selftest, PRIMARY,
        )  # fmt: skip
        plots.save(fig, folder / name)
        charts["roofline"][run.label] = name
        names.append(name)
        name = f"bars-{slug}.png"
        plots.save(
            plots.bars_figure(ops, f"Simulated vs estimated time per op: {where}", selftest), folder / name
        )
        charts["bars"][run.label] = name
        names.append(name)
    if tables.ops["matched"].any():
        plots.save(
            plots.histogram_figure(tables.ops, "Estimate vs simulation: error per estimator", selftest),
            folder / "error-histogram.png",
        )
        charts["histogram"] = "error-histogram.png"
        names.append("error-histogram.png")
    for parameter in tables.swept:
        name = f"sweep-{_slug(parameter)}.png"
        fig = plots.sweep_figure(
            tables.layers, parameter, tables.swept, f"Layer time against {parameter}", selftest
        )
        plots.save(fig, folder / name)
        charts["sweeps"][parameter] = name
        names.append(name)
    return charts, names


def _write_hardware(
    folder: Path, tables: Any, measured: Any, selftest: bool
) -> tuple[dict[str, str], list[str]]:
    """The three-way table, its summary and one chart per slice (model, gem5, hardware bars)."""
    from reports import plots
    from reports.hardware import step_words
    from reports.page import MAX_RUN_CHARTS
    from reports.tables import PRIMARY

    hardware = tables.hardware
    hardware.to_csv(folder / "hardware.csv", index=False)
    hardware.to_parquet(folder / "hardware.parquet", index=False)
    tables.hardware_summary.to_csv(folder / "hardware-summary.csv", index=False)
    names = ["hardware.csv", "hardware.parquet", "hardware-summary.csv"]
    charts: dict[str, str] = {}
    sides = (
        "model vs gem5 vs hardware" if (hardware["gem5_kernels"].fillna(0) > 0).any() else "model vs hardware"
    )
    for label, rows in list(hardware.groupby("run", sort=False))[:MAX_RUN_CHARTS]:
        name = f"hardware-{_slug(str(label))}.png"
        title = f"Time per role, {sides}: {label}"
        what = f"{step_words(measured, int(rows['step'].iloc[0]))}; the trace: {measured.trace.name}"
        fig = plots.three_way_figure(rows, title, selftest, measured.label, measured.cpu, PRIMARY, what)
        plots.save(fig, folder / name)
        charts[str(label)] = name
        names.append(name)
    return charts, names


def _swap_in(tmp: Path, target: Path) -> None:
    """``tmp`` becomes ``target``; a previous report there goes only once the new one is in place."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "report")
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old / "report", target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _publish(target: Path, fill: Any) -> Report:
    """``fill(tmp)`` writes a whole report into a temp folder beside ``target``; then it is swapped in."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        report = fill(tmp)
        marker = {"schema": REPORT_SCHEMA, **report.to_json()}
        atomic.write_text(tmp / MARKER, json.dumps(marker, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def build_report(
    run_dirs: list[Path], out: Path, allow_mixed: bool = False, measured: MeasuredInput | None = None
) -> Report:
    """Check every run (and the trace), then write the whole report into ``out`` (see the module doc).

    Without runs, a trace alone gives a report of the model against the hardware it measured.
    """
    from reports import page
    from reports.check import check_machine, check_one_machine
    from reports.hardware import load_measured
    from reports.tables import build_tables, check_trace_covers, hardware_summary, run_hardware, with_measured

    target = check_target(out)
    if not run_dirs:
        if measured is None:
            raise InputError("report: give sliced run directories, one spec, or --measured TRACE")
        return _build_measured_only(target, measured)
    if measured is not None and measured.hardware is not None:
        raise InputError(
            f"--measured-hardware {measured.hardware}: only for a report of a trace alone (with runs, the "
            "model is the estimate of each run's own simulated machine)"
        )
    runs = load_runs(run_dirs)
    check_one_machine(runs, allow_mixed)
    checks = [check_machine(r) for r in runs]
    trace = load_measured(measured.trace, measured.marker_table, measured.label) if measured else None
    if trace is not None:  # every run's workload and slice found in the trace before any work
        check_trace_covers(trace, runs)
    tables = build_tables(runs)
    if trace is not None:
        import pandas as pd

        parts = [run_hardware(tables.ops[tables.ops["run"] == r.label], r, trace) for r in runs]
        tables.hardware = pd.concat(parts, ignore_index=True)
        tables.ops = with_measured(tables.ops, tables.hardware)
        tables.hardware_summary = hardware_summary(tables.hardware)

    def fill(tmp: Path) -> Report:
        names = _write_tables(tmp, tables)
        charts, pngs = _write_charts(tmp, runs, tables)
        if trace is not None:
            charts["hardware"], more = _write_hardware(
                tmp, tables, trace, any(r.double_evidence for r in runs)
            )
            names, pngs = names + more[:3], pngs + more[3:]
        files = ["report.html", "report.md", *names, *pngs, MARKER]
        ctx = page.context(runs, tables, checks, charts, files, trace)
        atomic.write_text(tmp / "report.html", page.render_html(ctx))
        atomic.write_text(tmp / "report.md", page.render_markdown(ctx))
        return Report(
            target, [target / f for f in files], tables.summary, ctx["selftest"], runs, trace,
            tables.hardware_summary,
        )  # fmt: skip

    return _publish(target, fill)


def _build_measured_only(target: Path, given: MeasuredInput) -> Report:
    """A trace alone: the model of the same layers on the machine it ran on, against the trace."""
    import pandas as pd

    from reports import page
    from reports.hardware import load_measured, measured_machine
    from reports.metrics import SUMMARY_COLUMNS
    from reports.tables import hardware_summary, trace_hardware

    trace = load_measured(given.trace, given.marker_table, given.label)
    machine = measured_machine(trace, given.hardware)
    hardware, _ = trace_hardware(trace, machine)
    tables = SimpleNamespace(hardware=hardware, hardware_summary=hardware_summary(hardware))
    summary = pd.DataFrame(columns=["source", *SUMMARY_COLUMNS])

    def fill(tmp: Path) -> Report:
        trace.kernels.to_csv(tmp / "measured-kernels.csv", index=False)
        trace.kernels.to_parquet(tmp / "measured-kernels.parquet", index=False)
        charts, more = _write_hardware(tmp, tables, trace, False)
        names = [*more[:3], "measured-kernels.csv", "measured-kernels.parquet"]
        files = ["report.html", "report.md", *names, *more[3:], MARKER]
        ctx = page.measured_context(trace, machine, tables, charts, files)
        atomic.write_text(tmp / "report.html", page.render_html(ctx, "measured"))
        atomic.write_text(tmp / "report.md", page.render_markdown(ctx, "measured"))
        return Report(target, [target / f for f in files], summary, False, [], trace, tables.hardware_summary)

    return _publish(target, fill)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
