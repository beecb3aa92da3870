"""Printing tables the way scripts and people want them: ``--format table|csv|json|parquet``.

Every command that prints a DataFrame goes through ``emit`` so the formats behave the same
everywhere: CSV and JSON are for scripts (stable columns, no decoration), the table is for
people (rich), parquet needs ``-o``.

``-o FILE`` goes through ``write_output``: ``-`` is stdout; a regular file is replaced
atomically; a symlink's target is written; a character device (``/dev/null``) or a FIFO is
written in place; a missing directory is refused, never created (``foundation.atomic``).

Missing values and NaN (``JSON_ENCODING``): a polars table keeps them apart, so CSV writes a
missing value (null) as an empty field and NaN/inf as gem5 prints them, ``nan``/``inf``/``-inf``;
JSON writes null for missing and the strings ``"nan"``/``"inf"``/``"-inf"`` (JSON has no NaN).
A pandas table cannot tell NaN from missing: its NaN is missing (empty / null); inf is as above.
Parquet keeps both as they are (null, IEEE NaN). Big tables print through a plain renderer
(rich takes seconds for thousands of rows), and a terminal gets at most ``TERMINAL_ROWS``
rows with a note on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation import atomic
from foundation.errors import InputError

if TYPE_CHECKING:  # numpy, pandas and polars load only when a table is printed (fast CLI start)
    import pandas as pd
    import polars as pl

FORMATS = ("table", "csv", "json", "parquet")

#: ``-o -`` means standard output.
STDOUT = "-"

#: How JSON output encodes what JSON cannot hold (said in ``--help`` of the commands).
JSON_ENCODING = 'JSON: missing is null; NaN, inf, -inf are the strings "nan", "inf", "-inf"'
#: CSV's rule for the same values.
CSV_ENCODING = "CSV: missing is an empty field; NaN, inf, -inf are nan, inf, -inf as gem5 prints them"
#: Rows a table prints to a terminal; the rest are counted in a note (csv/-o give them all).
TERMINAL_ROWS = 200
#: Above this many rows (or for a polars table) the plain renderer replaces rich.
RICH_MAX_ROWS = 200


def output_path(value: str) -> str:
    """argparse ``type`` of ``-o``: refuse a directory or a missing parent before any work."""
    if not value:
        raise argparse.ArgumentTypeError("empty file name (use '-' for stdout)")
    if value != STDOUT:
        try:
            atomic.resolve(value, make_parents=False)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def write_output(output: str | Path, payload: str | bytes) -> None:
    """Write ``payload`` where the user's ``-o`` says (see the module doc); OSError -> InputError."""
    if str(output) == STDOUT:
        if isinstance(payload, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(payload)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(payload)
        return
    try:
        if isinstance(payload, bytes):
            atomic.write_bytes(output, payload, make_parents=False)
        else:
            atomic.write_text(output, payload, make_parents=False)
    except BrokenPipeError:  # a FIFO's reader went away: as `| head`, not an error
        raise
    except OSError as exc:
        raise InputError(f"{output}: cannot write ({exc.strerror or exc})") from None


def write_output_with(output: str | Path, writer: Callable[[Any], None]) -> None:
    """Like ``write_output`` for writers that take a path or file (``pq.write_table``): the file
    is made by ``atomic.write_with`` (same rules); ``-`` gets the bytes on stdout."""
    if str(output) == STDOUT:
        buffer = io.BytesIO()
        writer(buffer)
        write_output(output, buffer.getvalue())
        return
    try:
        atomic.write_with(output, writer, make_parents=False)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise InputError(f"{output}: cannot write ({exc.strerror or exc})") from None


def on_terminal(output: str | None) -> bool:
    """True when the table goes to a terminal (no ``-o`` file and stdout is a tty)."""
    return (not output or output == STDOUT) and sys.stdout.isatty()


def add_format_options(parser: Any, default: str = "table", with_output: bool = True) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default,
        type=str.lower,
        help=f"output format (default: {default}); csv/json are stable for scripts. "
        f"{CSV_ENCODING}. {JSON_ENCODING}",
    )
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    if with_output:
        parser.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            type=output_path,
            help="write to FILE instead of stdout ('-': stdout); a regular file is replaced atomically",
        )


def json_float(value: float) -> float | str:
    """A float as JSON holds it: finite as is, NaN/inf as the strings of ``JSON_ENCODING``."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _json_default(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else json_float(float(value))
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def records(frame: pd.DataFrame | pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain-Python dicts that JSON holds (``JSON_ENCODING``): a pandas NaN/NA is missing
    (None); a polars null is None and its NaN/inf become strings; inf becomes a string."""
    if _is_polars(frame):
        return _polars_records(frame)
    import pandas as pd

    clean = frame.astype(object).where(pd.notna(frame), None)
    rows = [dict(zip(clean.columns, row, strict=True)) for row in clean.itertuples(index=False, name=None)]
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                row[key] = json_float(value)
    return rows


def _is_polars(frame: Any) -> bool:
    return type(frame).__module__.startswith("polars")


def _polars_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    rows = frame.rows(named=True)
    for row in rows:
        for c in floats:
            value = row[c]
            if value is not None and not math.isfinite(value):
                row[c] = json_float(value)
    return rows


def dumps_json(payload: Any) -> str:
    return json.dumps(payload, indent=2, default=_json_default, allow_nan=False) + "\n"


def render_table(frame: pd.DataFrame, title: str | None = None, float_digits: int = 4) -> str:
    import numpy as np
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for value in row:
            if isinstance(value, float | np.floating):
                cells.append("" if np.isnan(value) else f"{value:.{float_digits}g}")
            else:
                cells.append("" if value is None or value is pd.NA else str(value))
        table.add_row(*cells)
    buffer = io.StringIO()
    Console(file=buffer, width=max(100, 14 * len(frame.columns)), force_terminal=False).print(table)
    return buffer.getvalue()


def _cells(
    frame: pl.DataFrame, float_digits: int, right_align: tuple[str, ...] = ()
) -> tuple[list[list[str]], list[bool]]:
    """Each column of a polars table as display strings (null → "", NaN → nan), and whether
    it is numeric or in ``right_align`` (right-aligned)."""
    import polars as pl

    columns, right = [], []
    for name, dtype in frame.schema.items():
        series = frame.get_column(name)
        if dtype.is_float():
            columns.append(["" if v is None else f"{v:.{float_digits}g}" for v in series.to_list()])
        else:
            columns.append(series.cast(pl.String).fill_null("").to_list())
        right.append(dtype.is_numeric() or name in right_align)
    return columns, right


def render_plain(
    header: list[str], columns: list[list[str]], right: list[bool], title: str | None = None
) -> str:
    """Aligned columns under a header rule, no boxes: linear in the cells, unlike rich, so
    thousands of rows print in milliseconds. A column is as wide as its widest cell."""
    widths = [max([len(h), *map(len, col)]) for h, col in zip(header, columns, strict=True)]

    def pad(cell: str, width: int, flush_right: bool) -> str:
        return cell.rjust(width) if flush_right else cell.ljust(width)

    out = [title] if title else []
    out.append("  ".join(pad(h, w, r) for h, w, r in zip(header, widths, right, strict=True)).rstrip())
    out.append("  ".join("─" * w for w in widths))
    n_rows = len(columns[0]) if columns else 0
    for i in range(n_rows):
        out.append(
            "  ".join(pad(col[i], w, r) for col, w, r in zip(columns, widths, right, strict=True)).rstrip()
        )
    return "\n".join(out) + "\n"


def _polars_csv(frame: pl.DataFrame) -> str:
    """CSV of a polars table: null is an empty field, NaN is ``nan`` (polars would write NaN),
    inf/-inf as they are: the text gem5 itself prints for them."""
    import polars as pl

    floats = [c for c, t in frame.schema.items() if t.is_float()]
    if floats:
        frame = frame.with_columns(
            pl.when(pl.col(c).is_nan()).then(pl.lit("nan")).otherwise(pl.col(c).cast(pl.String)).alias(c)
            for c in floats
        )
    return frame.write_csv()


def _parquet_writer(frame: pd.DataFrame | pl.DataFrame) -> Callable[[Any], None]:
    """A writer of ``frame`` as parquet straight from Arrow (polars: no copy through pandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame.to_arrow() if _is_polars(frame) else pa.Table.from_pandas(frame, preserve_index=False)
    return lambda sink: pq.write_table(table, sink)


def emit(
    frame: pd.DataFrame | pl.DataFrame,
    fmt: str,
    output: str | None = None,
    title: str | None = None,
    json_payload: Any = None,
    *,
    terminal_rows: int | None = None,
    prog: str = "layerlab",
    right_align: tuple[str, ...] = (),
) -> None:
    """Print or write ``frame`` (pandas or polars) in ``fmt``; ``json_payload`` overrides the
    JSON body if given. ``terminal_rows``: a table printed to a terminal shows at most that many
    rows and says on stderr how many it left out; ``right_align`` names text columns that hold
    numbers (flushed right like numeric ones)."""
    if fmt == "parquet":
        if not output:
            raise InputError("--format parquet needs -o FILE (parquet is binary)")
        write_output_with(output, _parquet_writer(frame))
        return
    polars_frame = _is_polars(frame)
    if fmt == "csv":
        text = _polars_csv(frame) if polars_frame else frame.to_csv(index=False)
    elif fmt == "json":
        text = dumps_json(json_payload if json_payload is not None else records(frame))
    else:
        total = len(frame)
        if terminal_rows is not None and total > terminal_rows and on_terminal(output):
            frame = frame.head(terminal_rows)
            print(
                f"{prog}: note: showing the first {terminal_rows:,} of {total:,} rows on this terminal; "
                "--format csv or -o FILE for all of them",
                file=sys.stderr,
            )
        if polars_frame:
            columns, right = _cells(frame, 4, right_align)
            text = render_plain([str(c) for c in frame.columns], columns, right, title)
        elif len(frame) > RICH_MAX_ROWS:
            import polars as pl

            columns, right = _cells(pl.from_pandas(frame, nan_to_null=True), 4)
            text = render_plain([str(c) for c in frame.columns], columns, right, title)
        else:
            text = render_table(frame, title=title)
    if output:
        write_output(output, text)
    else:
        sys.stdout.write(text)
