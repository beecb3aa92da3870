"""`layerlab status`: the runs of an experiment with their states and results (Accel-Sim style)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab status experiments/selftest.yaml          # one row per run: state, kernels, ticks, cycles, time
  layerlab status experiments/selftest.yaml --json   # one record per run (run_id, label, state, ...)
  layerlab status --workspace runs/selftest

Exit status: 0 when every run is done, 1 while any run is failed, timed out, cancelled or still to
run (usable in CI), 2 on bad input."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help=SUMMARIES["status"], description="States and results of an experiment's runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("spec", metavar="SPEC", nargs="?", help="experiment spec (YAML)")
    parser.add_argument(
        "--workspace", metavar="DIR", help="the workspace (default: runs/<name> beside the spec)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.set_defaults(func=run)


COLUMNS = ("label", "state", "kernels", "sim_ticks", "gpu_cycles", "host_s", "predicted_s", "cause", "run_id")


def rows(records: list) -> list[dict]:
    out = []
    for r in records:
        kernels = f"{r.kernels_done or 0}" + (f"/{r.expected_kernels}" if r.expected_kernels else "")
        out.append({
            "label": r.label, "state": r.state, "kernels": kernels, "sim_ticks": r.sim_ticks,
            "gpu_cycles": r.gpu_cycles, "host_s": None if r.host_seconds is None else round(r.host_seconds, 2),
            "predicted_s": "unknown" if r.predicted_s is None else round(r.predicted_s, 2),
            "cause": (r.digest or {}).get("cause") or "", "run_id": r.run_id,
        })  # fmt: skip
    return out


#: Columns flushed right in the table.
NUMERIC = ("sim_ticks", "gpu_cycles", "host_s", "predicted_s")


def print_status(store, experiment: str, fmt: str) -> int:
    records = store.all(experiment)
    if fmt == "json":
        from orchestrator.output import dumps_json

        sys.stdout.write(dumps_json([r.to_json() for r in records]))
    else:
        _print_table(experiment, records)
        failed = [r for r in records if r.state in ("failed", "timed_out")]
        for r in failed:
            d = r.digest or {}
            print(f"  {r.label}: {d.get('cause')}: {d.get('detail')}\n    fix: {d.get('hint')}")
    return 0 if records and all(r.state == "done" for r in records) else 1


def _print_table(experiment: str, records: list) -> None:
    """rich's boxed table for a few runs; the plain renderer beyond ``RICH_MAX_ROWS`` (rich
    takes about a second for a thousand rows, and the resume prints this table every time)."""
    from orchestrator.output import RICH_MAX_ROWS, render_plain

    title = f"{experiment}: {len(records)} runs"
    cells = [["" if row[c] is None else str(row[c]) for c in COLUMNS] for row in rows(records)]
    if len(records) > RICH_MAX_ROWS:
        columns = [[row[i] for row in cells] for i in range(len(COLUMNS))]
        sys.stdout.write(render_plain(list(COLUMNS), columns, [c in NUMERIC for c in COLUMNS], title))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in NUMERIC else "left")
    for row in cells:
        table.add_row(*row)
    Console(file=sys.stdout, width=180).print(table)


def run(args: argparse.Namespace) -> int:
    from foundation.errors import InputError
    from orchestrator.conductor import default_workspace
    from orchestrator.spec import load_spec
    from orchestrator.store import STORE_FILE, RunStore

    if args.spec:
        spec, _ = load_spec(args.spec)
        workspace = Path(args.workspace) if args.workspace else default_workspace(Path(args.spec), spec)
        name = spec.name
    elif args.workspace:
        workspace, name = Path(args.workspace), None
    else:
        raise InputError("give SPEC or --workspace DIR")
    if not (workspace / STORE_FILE).is_file():
        raise InputError(f"{workspace}: no runs yet (no {STORE_FILE}); `layerlab run SPEC` first")
    store = RunStore(workspace)
    if name is None:
        names = sorted({r.experiment for r in store.all()})
        name = names[0] if len(names) == 1 else None
        if name is None:
            raise InputError(f"{workspace}: several experiments ({', '.join(names)}); give SPEC")
    return print_status(store, name, args.format)
