"""`layerlab slice`: find forward steps and per-layer kernel ranges in a trace without markers."""

from __future__ import annotations

import argparse

import pandas as pd

from foundation.errors import InputError
from orchestrator.commands import SUMMARIES
from orchestrator.output import add_format_options, emit
from workloads.slicer import slice_kernels
from workloads.traces import read_trace

EXAMPLES = """\
examples:
  layerlab slice trace.json --layers 16                # PyTorch profiler / Kineto (.json or .json.gz)
  layerlab slice results.csv --model llama-3.2-1b      # rocprof v1 results.csv, layer count from the config
  layerlab slice kernel_trace.csv --layers 32 --format json
  layerlab slice m5out/debug.log --layers 16           # gem5 --debug-flags=GPUCommandProc,GPUKernelInfo

The JSON form is {"steps": [{"kernels": [first, last], "layers": [[first, last], ...],
"exact": [true, ...], "edges": [{"layer": i, "edge": "first"|"last", "similarity": s}, ...]},
...], "confidence": c}, inclusive indices into the trace's launch order (for a gem5 trace: kernel
indices). A trace must repeat one block exactly N times per step, or N-1 times (N-2) with the
first or last layer (both) differing: such edge layers are aligned by best match to the block
(exact false, listed in edges) and lower the confidence; otherwise slice refuses.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "slice",
        help=SUMMARIES["slice"],
        description="Find each forward step and its per-layer kernel ranges in a trace by structure.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("trace", help="Kineto JSON (.gz ok), rocprof CSV, or gem5 debug trace")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--layers", type=int, help="decoder layers per forward step (N)")
    group.add_argument("--model", help="take N from a model config (shipped name or config.json path)")
    add_format_options(parser)
    parser.set_defaults(func=run)


def layer_count(args: argparse.Namespace) -> int:
    if args.layers is not None:
        if args.layers < 1:
            raise InputError(f"--layers must be >= 1, got {args.layers}")
        return args.layers
    from workloads.models import load_model_config

    return load_model_config(args.model).num_hidden_layers


def run(args: argparse.Namespace) -> int:
    layers = layer_count(args)
    trace = read_trace(args.trace)
    result = slice_kernels(trace.kernels, layers)
    rows = []
    for step_index, step in enumerate(result.steps):
        edges = {edge.layer: edge.side for edge in step.edges}
        for layer_index, (first, last) in enumerate(step.layers):
            rows.append(
                {
                    "step": step_index,
                    "step_first": step.first,
                    "step_last": step.last,
                    "layer": layer_index,
                    "first_kernel": first,
                    "last_kernel": last,
                    "num_kernels": last - first + 1,
                    "exact": layer_index not in edges,
                    "edge": edges.get(layer_index),
                }
            )
    frame = pd.DataFrame(rows)
    title = (
        f"{args.trace}: {len(trace)} kernels ({trace.format}), {len(result.steps)} step(s), "
        f"confidence {result.confidence:.2f}"
    )
    if args.format == "table" and result.notes:
        title += "\n" + "\n".join(result.notes)
    emit(frame, args.format, args.output, title=title, json_payload=result.to_json())
    return 0
