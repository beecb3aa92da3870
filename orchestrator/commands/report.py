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
  layerlab report runs/l3 --measured mi300x-trace.json --measured-markers markers.json   # model vs gem5 vs hardware
  layerlab report --measured trace.json --measured-hardware mi300x --out hw-report      # a trace alone, no gem5

Inputs: sliced run directories (rendered with --from-census and run), folders holding them, or
one experiment spec (every done sliced run of its workspace). Each run's machine is read back
from its config.ini (gem5's, else preflight's) and must be the machine params.json says.

Writes into --out (default <workspace>/report for a spec, ./report otherwise), all or nothing:
report.html, report.md, kernels/ops/layers .csv + .parquet (an error_pct_<estimator> column per
estimator), summary.csv, report.json and PNG charts (roofline of the simulated machine, time per
op, error histogram, one chart per swept parameter). Runs of the gem5 TEST DOUBLE are titled
"pipeline self-test" everywhere: their cycles are a stand-in, not a simulation.

--measured TRACE adds real hardware: the Kineto trace the layer driver writes with --profile (on a
GPU; on a CPU its times are CPU times, and the report says "measured on a CPU, not a GPU"
everywhere), sliced by its own layerlab markers. Its --marker-table file (--measured-markers,
default layerlab_markers.json beside the trace) names the model and shapes, which must be the
runs' (same model, batch, dtype, and each run's step); each run's roles get the measured time of
the same step and layer, error % of the model and of gem5 against it (hardware.csv, new columns
in ops.csv), a chart with model, gem5 and hardware bars per role and a page section. Without
run directories, the trace alone gives a report of the model against the hardware: the model
estimates --measured-hardware NAME (default: the catalog part the trace's GPU name names).

--json prints MAPE, Pearson r, NRMSE and the share within 10/20 % per estimator and op class
(and against the trace), and the written paths (missing values are null)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help=SUMMARIES["report"], description="Report simulated cycles (and measured times) against the analytical model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="RUN_DIR|SPEC",
        help="sliced run directories (or folders of them), or one spec; none with --measured: a trace alone",
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
    hw = parser.add_argument_group("real hardware")
    hw.add_argument(
        "--measured", metavar="TRACE", help="the layer driver's --profile trace (Kineto JSON, .gz too)"
    )
    hw.add_argument(
        "--measured-label", metavar="TEXT", help="what the page calls the trace (default: its device)"
    )
    hw.add_argument(
        "--measured-markers",
        metavar="PATH",
        help="the driver's --marker-table file of that run (default: layerlab_markers.json beside the trace)",
    )
    hw.add_argument(
        "--measured-hardware",
        metavar="NAME",
        help="a trace alone: the catalog machine the model estimates (default: the one the trace's GPU names)",
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
    from reports.runs import SELFTEST_TITLE, find_run_dirs

    measured = None
    if args.measured is not None:
        from reports.build import MeasuredInput

        measured = MeasuredInput(
            Path(args.measured),
            Path(args.measured_markers) if args.measured_markers else None,
            args.measured_label,
            args.measured_hardware,
        )
    else:
        for flag in ("measured_label", "measured_markers", "measured_hardware"):
            if getattr(args, flag) is not None:
                raise InputError(f"--{flag.replace('_', '-')}: only with --measured TRACE")
    if not args.inputs:
        if measured is None:
            raise InputError("report: give sliced run directories, one spec, or --measured TRACE")
        if args.workspace:
            raise InputError("--workspace: only with a spec")
        run_dirs, out = [], Path(args.out) if args.out else Path("report")
    elif _is_spec(args.inputs):
        from orchestrator.store import done_slices

        _spec, workspace, records = done_slices(args.inputs[0], args.workspace)
        run_dirs = [Path(r.run_dir) for r in records]
        out = Path(args.out) if args.out else workspace / "report"
    else:
        if args.workspace:
            raise InputError("--workspace: only with a spec (run directories name their runs themselves)")
        run_dirs = find_run_dirs(args.inputs)
        out = Path(args.out) if args.out else Path("report")
    report = build_report(run_dirs, out, allow_mixed=args.allow_mixed, measured=measured)
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
    if report.measured is not None:
        trace = report.measured
        print(f"against {trace.label}: {trace.source}")
        hw = report.hardware_summary
        for row in hw[hw["level"] == "op"].itertuples(index=False):
            print(
                f"  {row.compared:9} MAPE {row.mape_pct:9.1f} %  Pearson {row.pearson:6.3f}  "
                f"within 20 %: {row.within_20pct * 100:5.1f} % of {row.pairs} roles"
            )
    what = f"{len(report.runs)} sliced run(s)" if report.runs else "a trace alone (no gem5 run)"
    print(f"report of {what}: {report.out_dir / 'report.html'}")
    return 0
