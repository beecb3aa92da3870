"""`layerlab census`: build the kernel map of a skip-all census run from its events side-file."""

from __future__ import annotations

import argparse

from orchestrator.commands import SUMMARIES
from orchestrator.output import add_format_options, emit
from workloads.census import build_kernel_map, save_kernel_map

EXAMPLES = """\
examples:
  layerlab census runs/census                 # writes runs/census/layerlab_kernel_map.json
  layerlab census runs/census --format csv    # also print every kernel: index, step, layer, module
  layerlab census runs/census --markers m5out/layerlab_markers.json

A census run skips every kernel (skip_until = 10^9) with the driver's markers on (--markers gem5);
run the sliced simulation with the very same driver command line so kernel indices match.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "census",
        help=SUMMARIES["census"],
        description="Build and write the kernel map of a census run (events side-file + marker table).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding layerlab_events.jsonl")
    parser.add_argument("--markers", metavar="TABLE", help="marker id table (default: found in RUN_DIR)")
    parser.add_argument("--regions", action="store_true", help="print the per-marker ranges, not the kernels")
    add_format_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kernel_map = build_kernel_map(args.run_dir, args.markers)
    path = save_kernel_map(kernel_map, args.run_dir)
    if args.format == "table" and not args.regions:
        frame = kernel_map.regions[kernel_map.regions["module"].isna()]
        title = (
            f"{path}: {kernel_map.meta['num_kernels']} kernels, {kernel_map.meta['total_blits']} blits, "
            f"{len(kernel_map.steps)} steps (steps and layers shown; --format csv for every kernel)"
        )
        emit(frame, "table", args.output, title=title)
        return 0
    emit(
        kernel_map.regions if args.regions else kernel_map.kernels, args.format, args.output, title=str(path)
    )
    return 0
