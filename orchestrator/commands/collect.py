"""`layerlab collect`: the per-kernel tables of an experiment's sliced runs, in one parquet file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab collect experiments/selftest.yaml --workspace runs/selftest   # -> runs/selftest/selftest-kernels.parquet
  layerlab collect SPEC -o kernels.parquet

One row per simulated kernel of every done sliced run, with its run's label, variant, run_id and the
census labels (step, layer, module) of each kernel; blit kernels are kept and marked."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect", help=SUMMARIES["collect"], description="Collect the per-kernel tables of done sliced runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("spec", metavar="SPEC", help="experiment spec (YAML)")
    parser.add_argument(
        "--workspace", metavar="DIR", help="the workspace (default: runs/<name> beside the spec)"
    )
    from orchestrator.output import output_path

    parser.add_argument("-o", "--output", metavar="FILE", type=output_path, help="parquet file to write")
    parser.add_argument("--json", action="store_true", help="print what was collected as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from orchestrator.followup import KERNELS_FILE, collect_run
    from orchestrator.output import dumps_json, write_output_with
    from orchestrator.store import done_slices

    spec, workspace, records = done_slices(args.spec, args.workspace)
    tables = []
    for record in records:
        run_dir = Path(record.run_dir)
        path = run_dir / KERNELS_FILE
        if not path.is_file():
            path = collect_run(run_dir)
        table = pd.read_parquet(path)
        table.insert(0, "label", record.label)
        table.insert(1, "variant", record.variant)
        tables.append(table)
    combined = pd.concat(tables, ignore_index=True)
    target = args.output or str(workspace / f"{spec.name}-kernels.parquet")
    write_output_with(target, lambda tmp: combined.to_parquet(tmp, index=False))
    summary = {"output": target, "runs": len(records), "kernels": len(combined)}
    if args.json:
        sys.stdout.write(dumps_json(summary))
    else:
        print(f"collected {summary['kernels']} kernel rows of {summary['runs']} sliced runs into {target}")
    return 0
