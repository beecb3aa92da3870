"""`layerlab report`: gem5's per-kernel cycles beside the analytical estimate, as a page, tables and charts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab report experiments/selftest.yaml --workspace runs/selftest   # -> runs/selftest/report/
  layerlab report runs/selftest/llama-3.2-1b/*/*/step1-layer1 --out l1-report
  layerlab report runs/sweep --allow-mixed --json     # every sliced run under runs/sweep, several machines

Inputs: sliced run directories (rendered with --from-census and run), folders holding them, or
one experiment spec (every done sliced run of its workspace). Each run's machine is read back
from its config.ini (gem5's, else preflight's) and must be the machine params.json says.

Writes into --out (default <workspace>/report for a spec, ./report otherwise), all or nothing:
report.html, report.md, kernels/ops/layers .csv + .parquet (an error_pct_<estimator> column per
estimator), summary.csv, report.json and PNG charts (roofline of the simulated machine, time per
op, error histogram, one chart per swept parameter). Runs of the gem5 TEST DOUBLE are titled
"pipeline self-test" everywhere: their cycles are a stand-in, not a simulation.

--json prints MAPE, Pearson r, NRMSE and the share within 10/20 % per estimator and op class,
and the written paths (missing values are null)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help=SUMMARIES["report"], description="Report simulated cycles against the analytical model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN_DIR|SPEC",
        help="sliced run directories (or folders of them), or one spec",
    )
    parser.add_argument(
        "--workspace", metavar="DIR", help="a spec's workspace (default: runs/<name> beside it)"
    )
    parser.add_argument("--out", metavar="DIR", help="report directory (replaced if it holds a report)")
    parser.add_argument(
        "--allow-mixed", action="store_true", help="allow runs of different simulated machines in one report"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the summary metrics and written paths as JSON"
    )
    parser.set_defaults(func=run)


def _is_spec(inputs: list[str]) -> bool:
    if len(inputs) != 1:
        return False
    path = Path(inputs[0])
    return path.is_file() or (not path.exists() and path.suffix.lower() in (".yaml", ".yml"))


def run(args: argparse.Namespace) -> int:
    from foundation.errors import InputError
    from reports.build import build_report
    from reports.runs import SELFTEST_TITLE, find_run_dirs, spec_run_dirs

    if _is_spec(args.inputs):
        run_dirs, workspace = spec_run_dirs(args.inputs[0], args.workspace)
        out = Path(args.out) if args.out else workspace / "report"
    else:
        if args.workspace:
            raise InputError("--workspace: only with a spec (run directories name their runs themselves)")
        run_dirs = find_run_dirs(args.inputs)
        out = Path(args.out) if args.out else Path("report")
    report = build_report(run_dirs, out, allow_mixed=args.allow_mixed)
    if args.json:
        from orchestrator.output import dumps_json

        sys.stdout.write(dumps_json(report.to_json()))
        return 0
    if report.selftest:
        print(SELFTEST_TITLE)
    overall = report.summary[(report.summary["level"] == "op") & (report.summary["op_class"] == "all")]
    for row in overall.itertuples(index=False):
        print(
            f"  {row.estimator:9} MAPE {row.mape_pct:9.1f} %  Pearson {row.pearson:6.3f}  "
            f"within 20 %: {row.within_20pct * 100:5.1f} % of {row.pairs} ops/roles"
        )
    print(f"report of {len(report.runs)} sliced run(s): {report.out_dir / 'report.html'}")
    return 0
