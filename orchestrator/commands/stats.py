"""`layerlab stats`: gem5 stats as a tidy table, or the per-kernel cycle table of a run."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path

import pandas as pd
import polars as pl

from foundation.errors import InputError
from orchestrator.commands import SUMMARIES
from orchestrator.output import add_format_options, emit

EPILOG = """\
examples:
  layerlab stats m5out/stats.txt --grep 'shaderActiveTicks|simTicks'
  layerlab stats m5out/stats.txt --dump 3 --format csv -o dump3.csv
  layerlab stats 'h5://m5out/stats.h5' --format json
  layerlab stats runs/decode-l3 --kernels                  # one row per kernel dump
  layerlab stats runs/decode-l3 --kernels --format parquet -o kernels.parquet

The long table has one row per printed value: dump,name,value,unit then key, value_int
(exact integers), dump_message, pdf_pct, cdf_pct, line. A stat gem5 did not print in a dump
(nozero/nonan flags) has no row: missing, not zero. --kernels gives kernel_index, task_id,
blit, dump, shader_active_ticks, gpu_cycles (ticks / shader clock period from config.ini),
sim_ticks, host_s, instruction/op/memory counts, TCP/TCC demand hits/misses/accesses, GPU DRAM
bytes, per-CU total cycles; stats a gem5 version lacks are empty (NA). Parsed files are cached as parquet in
$LAYERLAB_CACHE_DIR or ~/.cache/layerlab/stats (--no-cache to bypass).
"""

_LONG_ORDER = [
    "dump",
    "name",
    "value",
    "unit",
    "key",
    "value_int",
    "dump_message",
    "pdf_pct",
    "cdf_pct",
    "line",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stats",
        help=SUMMARIES["stats"],
        description="Parse gem5 stats exactly (every dump, every line kind) into a long table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path",
        help="stats.txt, h5://stats.h5, stats.json, a gem5 outdir, or a run directory (its outdir is read)",
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="per-kernel table from stats.txt + config.ini + layerlab_events.jsonl in PATH",
    )
    parser.add_argument(
        "--dump", type=int, metavar="N", help="only dump N (0-based; negative counts from the end)"
    )
    parser.add_argument("--grep", metavar="RE", help="only stats whose name::key matches RE (Python regex)")
    parser.add_argument("--lenient", action="store_true", help="skip and count bad lines instead of failing")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the parquet cache")
    parser.add_argument("--description", action="store_true", help="add the stat descriptions column")
    add_format_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from foundation.rundir import outputs_dir
    from stats_parsers import grep, kernel_table, read_stats
    from stats_parsers.stats_text import to_pandas

    if not args.path.startswith("h5://"):
        # A run directory means its gem5 outdir, as the run's own command.json names it.
        args.path = str(outputs_dir(args.path))

    if args.kernels:
        with _working(args.path):
            table = kernel_table(args.path, strict=not args.lenient, cache=not args.no_cache)
        if args.dump is not None:
            table = table[table["dump"] == args.dump]
        emit(table, args.format, args.output, title=f"kernels: {args.path}")
        return 0
    with _working(args.path), warnings.catch_warnings():
        # What a reader warns about is also in stats.notes, printed below as one line each.
        warnings.simplefilter("ignore", UserWarning)
        stats = read_stats(
            args.path, strict=not args.lenient, description=args.description, cache=not args.no_cache
        )
    for note in stats.notes:
        print(f"layerlab stats: note: {note}", file=sys.stderr)
    if stats.skipped_lines:
        print(f"layerlab stats: skipped {stats.skipped_lines} bad line(s) (--lenient)", file=sys.stderr)
    frame = stats.frame
    if args.dump is not None:
        dump = args.dump + stats.n_dumps if args.dump < 0 else args.dump
        if not 0 <= dump < stats.n_dumps:
            raise InputError(
                f"--dump {args.dump}: the file has {stats.n_dumps} dumps (0..{stats.n_dumps - 1})"
            )
        frame = frame.filter(pl.col("dump") == dump)
    if args.grep:
        frame = grep(frame, args.grep)
    order = _LONG_ORDER + (["description"] if "description" in frame.columns else [])
    # The parser appends pdf/cdf and bucket rows after the regular ones; print in file order.
    table: pd.DataFrame = to_pandas(frame.select(order).sort("line", maintain_order=True))
    if args.format == "csv":
        # Exact integers in CSV: the float column would print 1e+15 style for large ticks.
        exact = table["value_int"]
        table["value"] = pd.Series(
            [
                v if i is pd.NA else int(i)
                for v, i in zip(table["value"].tolist(), exact.tolist(), strict=True)
            ],
            dtype=object,
            index=table.index,
        )
    emit(table, args.format, args.output, title=f"stats: {args.path}")
    return 0


#: Inputs this big take seconds to parse (and, the first time, to compile the native scanner).
_SLOW_BYTES = 8 * 2**20


def _working(path: str) -> contextlib.AbstractContextManager:
    """A spinner on stderr while a big stats file parses, only when stderr is a terminal."""
    target = Path(path.removeprefix("h5://"))
    if target.is_dir():
        target = target / "stats.txt"
    try:
        size = target.stat().st_size
    except OSError:
        return contextlib.nullcontext()
    if size < _SLOW_BYTES or not sys.stderr.isatty() or os.environ.get("CI"):
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(f"parsing {target} ({size / 1e6:.0f} MB)")
