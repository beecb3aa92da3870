"""One report from sliced runs, written all or nothing.

Order matters for "bad input writes nothing": every run is loaded and checked (census map,
stats blocks, the machine read back from config.ini, one machine unless mixing is allowed)
before the first byte is written; then tables, charts and the page are written into a temp
directory beside the target, and only a complete report is renamed into place. A target that
already holds a report (its ``report.json``) is replaced; any other non-empty directory is
refused, so ``--out`` can never wipe a user's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
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
    summary: Any  # pandas DataFrame (reports.metrics.SUMMARY_COLUMNS)
    selftest: bool
    runs: list[RunInfo]

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "self_test": self.selftest,
            "source": "; ".join(dict.fromkeys(r.source for r in self.runs)),
            "runs": [{"label": r.label, "run_id": r.run_id, "run_dir": str(r.run_dir)} for r in self.runs],
            "metrics": json.loads(self.summary.to_json(orient="records")),
            "files": [str(p) for p in self.files],
        }


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


def build_report(run_dirs: list[Path], out: Path, allow_mixed: bool = False) -> Report:
    """Check every run, then write the whole report into ``out`` (see the module doc)."""
    from reports import page
    from reports.check import check_machine, check_one_machine
    from reports.tables import build_tables

    target = check_target(out)
    runs = load_runs(run_dirs)
    check_one_machine(runs, allow_mixed)
    checks = [check_machine(r) for r in runs]
    tables = build_tables(runs)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        names = _write_tables(tmp, tables)
        charts, pngs = _write_charts(tmp, runs, tables)
        files = ["report.html", "report.md", *names, *pngs, MARKER]
        ctx = page.context(runs, tables, checks, charts, files)
        atomic.write_text(tmp / "report.html", page.render_html(ctx))
        atomic.write_text(tmp / "report.md", page.render_markdown(ctx))
        report = Report(target, [target / f for f in files], tables.summary, ctx["selftest"], runs)
        marker = {"schema": REPORT_SCHEMA, **report.to_json()}
        atomic.write_text(tmp / MARKER, json.dumps(marker, indent=2) + "\n")
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
