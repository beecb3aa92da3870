"""`layerlab window`: the gem5 kernel window of one layer (or module) of one step."""

from __future__ import annotations

import argparse

from orchestrator.commands import SUMMARIES
from orchestrator.output import add_format_options, dumps_json, emit, records, write_output
from workloads.census import load_kernel_map, marker_region, window

EXAMPLES = """\
examples:
  layerlab window runs/census --step 1 --layer 3               # layer 3 of the first decode step
  layerlab window runs/census --step 1 --layer 3 --module o_proj
  layerlab window runs/census --step 0 --layer 0 --format json

Prints --skip-until-gpu-kernel=K --exit-after-gpu-kernel=M for the gem5 script and the kernels
the window will simulate. Steps count from 0 in run order (warm-up, prefill, then decode).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "window",
        help=SUMMARIES["window"],
        description="Turn 'layer L of step T' into gem5's --skip-until/--exit-after kernel indices.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="census run directory (kernel map or side-file)")
    parser.add_argument("--step", type=int, required=True, help="step in run order (0-based)")
    parser.add_argument("--layer", type=int, required=True, help="decoder layer (0-based)")
    parser.add_argument("--module", help="one module of the layer, e.g. q_proj, attention, down_proj")
    parser.add_argument("--model", help="check --layer against this model config's num_hidden_layers")
    add_format_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kernel_map = load_kernel_map(args.run_dir)
    num_layers = None
    if args.model:
        from workloads.models import load_model_config

        num_layers = load_model_config(args.model).num_hidden_layers
    win, expected = window(kernel_map, args.step, args.layer, args.module, num_layers=num_layers)
    blits = int(marker_region(kernel_map, args.step, args.layer, args.module, num_layers)["blits"])
    if args.format == "json":
        payload = {
            "skip_until": win.skip_until,
            "exit_after": win.exit_after,
            "num_kernels": win.num_kernels,
            "blits": blits,
            "gem5_options": win.gem5_options(),
            "kernels": records(expected),
        }
        text = dumps_json(payload)
        if args.output:
            write_output(args.output, text)
        else:
            print(text, end="")
        return 0
    title = (
        f"window {win.skip_until}..{win.exit_after} ({win.num_kernels} kernels, {blits} blits): "
        + " ".join(win.gem5_options())
    )
    emit(expected, args.format, args.output, title=title)
    return 0
