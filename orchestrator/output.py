"""Printing tables the way scripts and people want them: ``--format table|csv|json|parquet``.

Every command that prints a DataFrame goes through ``emit`` so the formats behave the same
everywhere: CSV and JSON are for scripts (stable columns, no decoration), the table is for
people (rich), parquet needs ``-o``.

``-o FILE`` goes through ``write_output``: ``-`` is stdout; a regular file is replaced
atomically; a symlink's target is written; a character device (``/dev/null``) or a FIFO is
written in place; a missing directory is refused, never created (``foundation.atomic``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation import atomic
from foundation.errors import InputError

if TYPE_CHECKING:  # numpy and pandas load only when a table is printed (fast CLI start)
    import pandas as pd

FORMATS = ("table", "csv", "json", "parquet")

#: ``-o -`` means standard output.
STDOUT = "-"


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


def add_format_options(parser: Any, default: str = "table", with_output: bool = True) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default,
        type=str.lower,
        help=f"output format (default: {default}); csv/json are stable for scripts",
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


def _json_default(value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as plain-Python dicts; NaN/NA become None so JSON stays valid."""
    import pandas as pd

    clean = frame.astype(object).where(pd.notna(frame), None)
    return [dict(zip(clean.columns, row, strict=True)) for row in clean.itertuples(index=False, name=None)]


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


def emit(
    frame: pd.DataFrame,
    fmt: str,
    output: str | None = None,
    title: str | None = None,
    json_payload: Any = None,
) -> None:
    """Print or write ``frame`` in ``fmt``; ``json_payload`` overrides the JSON body if given."""
    if fmt == "parquet":
        if not output:
            raise InputError("--format parquet needs -o FILE (parquet is binary)")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_output(output, buffer.getvalue())
        return
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = dumps_json(json_payload if json_payload is not None else records(frame))
    else:
        text = render_table(frame, title=title)
    if output:
        write_output(output, text)
    else:
        sys.stdout.write(text)
