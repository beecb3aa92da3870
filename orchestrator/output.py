"""Printing tables the way scripts and people want them: ``--format table|csv|json|parquet``.

Every command that prints a DataFrame goes through ``emit`` so the formats behave the same
everywhere: CSV and JSON are for scripts (stable columns, no decoration), the table is for
people (rich), parquet needs ``-o``. Writing to ``-o FILE`` is atomic.
"""

from __future__ import annotations

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
            "-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout"
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
        atomic.write_with(output, lambda tmp: frame.to_parquet(tmp, index=False))
        return
    if fmt == "csv":
        text = frame.to_csv(index=False)
    elif fmt == "json":
        text = dumps_json(json_payload if json_payload is not None else records(frame))
    else:
        text = render_table(frame, title=title)
    if output:
        atomic.write_text(Path(output), text)
    else:
        sys.stdout.write(text)
