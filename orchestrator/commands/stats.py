"""`layerlab stats`: gem5 stats as a tidy table, or the per-kernel cycle table of a run."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.errors import InputError, close_matches
from orchestrator.commands import SUMMARIES
from orchestrator.output import (
    CSV_ENCODING,
    JSON_ENCODING,
    TERMINAL_ROWS,
    add_format_options,
    emit,
    on_terminal,
)

if TYPE_CHECKING:  # polars loads in run(); pandas only for --kernels (fast start, lean imports)
    import polars as pl

    from stats_parsers.stats_text import StatsDumps

EPILOG = f"""\
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
bytes, per-CU total cycles; stats a gem5 version lacks are empty (NA), and a note on stderr says
what a run lacks (no config.ini: no gpu_cycles; no events file: no kernel labels). A census run
(every kernel skipped) has no per-kernel table: an error says so. --grep that matches nothing
exits 1, as grep does. Parsed files are cached as parquet in $LAYERLAB_CACHE_DIR or
~/.cache/layerlab/stats (--no-cache to bypass).

Values: {CSV_ENCODING}. {JSON_ENCODING}. Parquet keeps null and NaN apart as they are.
On a terminal the table shows at most {TERMINAL_ROWS} rows and, for --kernels, the columns that fit
(a note says how many more: --columns or --format csv); csv/json/parquet have everything.
"""


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
    parser.add_argument(
        "--columns",
        metavar="A,B,...",
        help="only these columns, in this order (any format); default on a terminal: those that fit",
    )
    add_format_options(parser)
    parser.set_defaults(func=run)


#: --kernels columns on a terminal, most wanted first; as many as fit the terminal's width.
_KERNEL_TERMINAL = (
    "kernel_index",
    "task_id",
    "blit",
    "dump",
    "gpu_cycles",
    "shader_active_ticks",
    "instructions",
    "mfma_ops",
    "valu_insts",
    "vector_mem_reads",
    "vector_mem_writes",
    "tcp_demand_misses",
    "tcc_demand_misses",
    "dram_read_bytes",
    "dram_written_bytes",
    "wave_level_parallelism_mean",
    "sim_ticks",
    "host_s",
)
#: The long table's columns on a terminal, most wanted first.
_LONG_TERMINAL = ("dump", "name", "key", "value", "unit", "pdf_pct", "cdf_pct", "dump_message", "description")


def run(args: argparse.Namespace) -> int:
    import gc

    from foundation.rundir import outputs_dir

    # One file in, one table out, then exit: the collector's passes over the imports' objects
    # (polars, pyarrow: ~0.1 s of a 100 MB parse) would free nothing this process keeps.
    gc.disable()

    if not args.path.startswith("h5://"):
        # A run directory means its gem5 outdir, as the run's own command.json names it.
        args.path = str(outputs_dir(args.path))
    wanted = _column_list(args.columns)
    if args.kernels:
        return _kernels(args, wanted)
    # numpy's OpenBLAS starts a worker per core that spins a while: this command does no linear
    # algebra, and on two cores that spin is taken from the scan threads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _preload_scanner(args)
    if args.format == "parquet" and args.output and wanted is None and args.dump is None and not args.grep:
        return _whole_parquet(args)
    from stats_parsers import cache as cache_mod
    from stats_parsers.stats import read_stats

    with _working(args.path), warnings.catch_warnings():
        # What a reader warns about is also in stats.notes, printed below as one line each.
        warnings.simplefilter("ignore", UserWarning)
        stats = read_stats(
            args.path,
            strict=not args.lenient,
            description=args.description,
            cache=not args.no_cache,
            cache_in_background=True,  # written while the output is made (Arrow drops the GIL)
        )
    try:
        return _long_table(args, wanted, stats)
    finally:
        cache_mod.wait()


def _preload_scanner(args: argparse.Namespace) -> None:
    """Start the native scan of a big text file that is not cached, in the background, before
    polars and pyarrow load (~0.3 s): the scan kernels hold no GIL, so the scan and the imports
    run side by side, and the parse picks the result up (``scan.prefetch``)."""
    if args.path.startswith("h5://"):
        return
    from stats_parsers import scan

    target = Path(args.path)
    if target.is_dir():
        target = target / "stats.txt"
    try:
        big = (
            target.suffix not in (".h5", ".hdf5", ".json") and target.stat().st_size >= scan.NATIVE_MIN_BYTES
        )
        if big and not args.no_cache:
            from stats_parsers.cache import entry_path

            big = not entry_path(target, strict=not args.lenient, description=args.description).is_file()
    except OSError:
        return
    if big and scan.HAVE_NUMBA:
        scan.prefetch(target)


def _whole_parquet(args: argparse.Namespace) -> int:
    """The whole long table to a parquet file: straight from (or into) the parquet cache, whose
    layout it shares (``stats.stats_to_parquet``)."""
    from orchestrator.output import write_output_with
    from stats_parsers.stats import stats_to_parquet

    found: list[dict] = []
    with _working(args.path), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the notes below say it, one line each
        write_output_with(
            args.output,
            lambda sink: found.append(
                stats_to_parquet(
                    args.path,
                    sink,
                    strict=not args.lenient,
                    description=args.description,
                    cache=not args.no_cache,
                )
            ),
        )
    _parse_notes(found[0]["notes"], found[0]["skipped_lines"])
    return 0


def _parse_notes(notes: list[str] | tuple[str, ...], skipped_lines: int) -> None:
    for note in notes:
        _note(note)
    if skipped_lines:
        print(f"layerlab stats: skipped {skipped_lines} bad line(s) (--lenient)", file=sys.stderr)


def _long_table(args: argparse.Namespace, wanted: list[str] | None, stats: StatsDumps) -> int:
    import polars as pl

    from stats_parsers.stats import grep
    from stats_parsers.stats_text import FILE_COLUMNS

    _parse_notes(stats.notes, stats.skipped_lines)
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
        if frame.height == 0:
            where = f" in dump {args.dump}" if args.dump is not None else ""
            n_stats = stats.frame.select("name", "key").n_unique()
            _note(f"no stat matches --grep {args.grep!r}{where} ({n_stats:,} distinct stats in {args.path})")
            return 1
    frame = frame.select([*FILE_COLUMNS, *(["description"] if "description" in frame.columns else [])])
    if args.format == "parquet" and args.output:
        return _parquet(args, wanted, frame)
    if args.format in ("csv", "table"):
        # Exact integers as text: a float prints 1e+15 style for large ticks; NaN as gem5's nan.
        value = pl.col("value")
        text = pl.when(value.is_nan()).then(pl.lit("nan")).otherwise(value.cast(pl.String))
        frame = frame.with_columns(
            pl.when(pl.col("value_int").is_not_null())
            .then(pl.col("value_int").cast(pl.String))
            .otherwise(text)
            .alias("value")
        )
    frame = _choose_columns(frame, wanted, args, _LONG_TERMINAL)
    emit(
        frame,
        args.format,
        args.output,
        title=f"stats: {args.path}",
        right_align=("value",),
        terminal_rows=TERMINAL_ROWS,
        prog="layerlab stats",
    )
    return 0


def _parquet(args: argparse.Namespace, wanted: list[str] | None, frame: pl.DataFrame) -> int:
    """A filtered long table (--dump/--grep/--columns) as parquet, by polars' own writer (no
    Arrow or pandas detour). (Without -o, ``emit`` gives the error.)"""
    from orchestrator.output import write_output_with
    from stats_parsers.cache import write_parquet

    frame = _choose_columns(frame, wanted, args, _LONG_TERMINAL)
    write_output_with(args.output, lambda sink: write_parquet(frame, sink))
    return 0


def _kernels(args: argparse.Namespace, wanted: list[str] | None) -> int:
    import polars as pl

    from stats_parsers.kernels import kernel_table

    if args.grep:
        raise InputError("--grep filters the long table; with --kernels pick columns with --columns")
    with _working(args.path):
        table = kernel_table(args.path, strict=not args.lenient, cache=not args.no_cache)
    for note in table.attrs.get("notes", ()):
        _note(note)
    if args.dump is not None:
        dumps = table["dump"]
        table = table[dumps == args.dump]
        if not len(table):
            shown = f"{dumps.min()}..{dumps.max()}" if len(dumps) else "none"
            raise InputError(f"--dump {args.dump}: no kernel row has that dump (kernel dumps: {shown})")
    # Missing is null (empty in CSV, null in JSON), not NaN: the table's NaN means "not printed".
    frame = pl.from_pandas(table, nan_to_null=True)
    frame = _choose_columns(frame, wanted, args, _KERNEL_TERMINAL)
    emit(
        frame,
        args.format,
        args.output,
        title=f"kernels: {args.path}",
        terminal_rows=TERMINAL_ROWS,
        prog="layerlab stats",
    )
    return 0


def _note(text: str) -> None:
    print(f"layerlab stats: note: {text}", file=sys.stderr)


def _column_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [c.strip() for c in value.split(",") if c.strip()]
    if not names:
        raise InputError("--columns: give column names separated by commas")
    return names


def _choose_columns(
    frame: pl.DataFrame, wanted: list[str] | None, args: argparse.Namespace, terminal: tuple[str, ...]
) -> pl.DataFrame:
    """--columns as asked (unknown names are an error); else, for a table on a terminal, the
    columns of ``terminal`` that hold a value and fit its width, with a note on the rest."""
    if wanted is not None:
        unknown = [c for c in wanted if c not in frame.columns]
        if unknown:
            raise InputError(
                f"--columns: no column {unknown[0]!r}; {close_matches(unknown[0], frame.columns)}"
            )
        return frame.select(wanted)
    if args.format != "table" or not on_terminal(args.output):
        return frame
    width = shutil.get_terminal_size((160, 40)).columns
    shown: list[str] = []
    used = 0
    for name in terminal:
        if name not in frame.columns or (
            frame.height and frame.get_column(name).null_count() == frame.height
        ):
            continue
        need = _width(frame, name) + 2
        if shown and used + need > width:
            break
        shown.append(name)
        used += need
    rest = [c for c in frame.columns if c not in shown]
    if rest:
        listed = ", ".join(rest[:4]) + (", ..." if len(rest) > 4 else "")
        _note(f"{len(rest)} more columns ({listed}): --columns NAME,NAME,... or --format csv")
    return frame.select(shown)


def _width(frame: pl.DataFrame, name: str) -> int:
    """A column's printed width, estimated from the first rows (the renderer pads to the widest)."""
    import polars as pl

    head = frame.get_column(name).head(200)
    longest = 10 if head.dtype.is_float() else int(head.cast(pl.String).str.len_chars().max() or 0)
    return max(len(name), longest)


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
