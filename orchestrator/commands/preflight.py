"""`layerlab preflight`: run a rendered run's gem5 config against a real gem5 tree's own Python."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from foundation.errors import InputError
from orchestrator.commands import SUMMARIES

DESCRIPTION = """\
Check a rendered run directory against a real gem5 source tree, without a gem5 binary.

Everything a gem5 config does before gem5 creates C++ objects is Python in the gem5 tree: option
parsing, configs/ helpers, every SimObject param name, type and default, proxy resolution, and
config.ini. preflight runs the rendered script with that tree's real m5 package, SimObject
declarations, SLICC-generated protocol controllers and gem5's own option parser, up to the C++
boundary, then:

  1. reports unknown options, unknown params, wrong value types, params left unset or as
     unresolved proxies, naming the option or SimObject.param and the line of the script;
  2. writes config.ini / config.json under RUN_DIR/preflight/;
  3. reads that config.ini back and checks the machine gem5 built equals the run's knobs
     (CUs, clocks, TCP/SQC/TCC sizes, TCC count, DRAM class and channels, register allocation):
     the machine `layerlab estimate` describes is the one gem5 builds.

The tree's version (src/base/version.cc) must fit the run's gem5 profile. The tree is read-only;
what it needs built (SLICC output) is cached under $LAYERLAB_CACHE_DIR/gem5py.
Exit status: 0 clean, 2 findings or bad input."""

EPILOG = """\
examples:
  layerlab preflight runs/l3                                     # the tree named when rendering
  layerlab preflight runs/l3 --gem5-src ~/gem5                   # another checkout
  layerlab preflight runs/l3 --json                              # findings and machine check as JSON

trees: v24.0 -> a v24.0.x tree, v24.1 -> v24.1.x, v25 -> v25.x or develop (DEVELOP-FOR-25.0,
a stand-in until a v25.0 tree is at hand)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preflight",
        help=SUMMARIES["preflight"],
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `layerlab render`")
    parser.add_argument(
        "--gem5-src",
        metavar="DIR",
        help="gem5 source tree (default: the run's instantiation.json, then $LAYERLAB_GEM5_SRC)",
    )
    parser.add_argument("--timeout", type=float, default=300, metavar="S", help="give up after S seconds")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.set_defaults(func=run)


def _tree_for(run_dir: Path, given: str | None) -> str:
    if given:
        return given
    from foundation.rundir import INSTANTIATION_FILE, read_json_record

    inst = run_dir / INSTANTIATION_FILE
    if inst.is_file() and read_json_record(inst).get("gem5_src"):
        return str(read_json_record(inst)["gem5_src"])
    if os.environ.get("LAYERLAB_GEM5_SRC"):
        return os.environ["LAYERLAB_GEM5_SRC"]
    raise InputError(f"{run_dir}: give --gem5-src DIR (the run names no gem5 source tree)")


def check_run(run_dir: str | Path, gem5_src: str | None = None, timeout_s: float = 300) -> dict:
    """Preflight + version check + machine check of one run; the report as a dict (``ok`` inside)."""
    from foundation.gem5_names import GEM5_VERSIONS, profile_of_tree_version
    from gem5_configs.preflight import preflight, tree_version
    from gem5_configs.render import read_params

    run = Path(run_dir)
    params = read_params(run)
    src = _tree_for(run, gem5_src)
    if not Path(src).is_dir():
        raise InputError(f"--gem5-src: {src}: not a directory")
    version = tree_version(src)
    if version is None:
        raise InputError(f"--gem5-src: {src} has no src/base/version.cc (not a gem5 source tree?)")
    tree_profile = profile_of_tree_version(version)
    if tree_profile != params.machine.profile:
        raise InputError(
            f"--gem5-src: {src} is gem5 {version} (profile {tree_profile}) but {run} was rendered for "
            f"{params.machine.profile}; check it against a {params.machine.profile} tree or re-render"
        )
    facts = GEM5_VERSIONS[tree_profile]
    result = preflight(run, src, timeout_s=timeout_s)
    report = result.to_json()
    report["profile"] = tree_profile
    report["stand_in"] = (
        f"{version} stands in for the {tree_profile} profile (no release tree checked)"
        if facts.reference_is_stand_in and version.upper().startswith("DEVELOP")
        else None
    )
    mismatches = []
    if result.config_ini is not None and result.reached_boundary:
        from stats_parsers.config import read_config
        from stats_parsers.machine import compare_machine

        mismatches = compare_machine(read_config(result.config_ini), params.gpu)
    report["machine_mismatches"] = [
        {"knob": m.knob, "expected": m.expected, "built": m.built, "where": m.where} for m in mismatches
    ]
    report["ok"] = bool(result.ok and not mismatches)
    return report


def run(args: argparse.Namespace) -> int:
    from foundation import atomic
    from foundation.rundir import read_json_record
    from orchestrator.output import dumps_json

    run_dir = Path(args.run_dir)
    report = check_run(run_dir, args.gem5_src, args.timeout)
    try:
        report["run_id"] = read_json_record(run_dir / "params.json").get("run_id")
    except InputError:
        report["run_id"] = None
    atomic.write_text(Path(report["out_dir"]) / "layerlab_preflight.json", dumps_json(report))
    if args.format == "json":
        sys.stdout.write(dumps_json(report))
    else:
        head = "clean" if report["ok"] else "FAILED"
        print(
            f"preflight {head}: {run_dir} against gem5 {report['gem5_version']} ({report['gem5_src']}), "
            f"{report['sim_objects']} SimObjects in {report['elapsed_s']:.1f} s"
        )
        if report["stand_in"]:
            print(f"  note: {report['stand_in']}")
        for finding in report["findings"]:
            where = f"{finding['script']}:{finding['line']}" if finding["line"] else finding["script"]
            print(f"  {where}: {finding['kind']} {finding['name']}: {finding['message']}")
        for m in report["machine_mismatches"]:
            print(
                f"  machine: {m['knob']}: the run says {m['expected']!r}, gem5 built {m['built']!r} ({m['where']})"
            )
        if report["config_ini"]:
            print(f"  config.ini: {report['config_ini']}")
    if not report["ok"]:
        first = report["findings"][0] if report["findings"] else None
        if first is not None:
            where = f"{first['script']}:{first['line']}" if first["line"] else first["script"]
            what = f"{where}: {first['kind']} {first['name']}: {first['message']}"
        else:
            m = report["machine_mismatches"][0]
            what = f"machine {m['knob']}: the run says {m['expected']!r}, gem5 built {m['built']!r}"
        print(f"layerlab preflight: error: {what}", file=sys.stderr)
        return 2
    return 0
