"""The events side-file: the contract between the gem5 simulate loop and the analysis stages.

The rendered gem5 config (``gem5_configs``) appends one JSON object per line to
``<outdir>/layerlab_events.jsonl`` and flushes after each, so a killed run keeps every event up
to the kill. ``stats_parsers`` joins it with ``stats.txt`` dumps to label per-kernel blocks, and
the census (``workloads.census``) turns marker events into a kernel map. This module is the one
place the schema is written down; the template takes its field names from here.

Schema ``layerlab-events/2`` -- every record has ``kind``:

``start`` (first line)
    ``schema``, ``run_id`` (the ``run_id`` of the render that wrote the config: outputs are
    tied to their render, and a stale ``m5out/`` is recognised), ``skip_until``, ``exit_after`` (-1 = none), ``exit_at_task`` (-1 = none),
    ``dump_per_kernel`` (bool), ``gem5_profile`` (e.g. ``"v24.0"``), ``tick``.
``skip`` | ``kernel`` | ``blit`` | ``workbegin`` | ``workend`` | ``checkpoint`` | ``other``
    ``seq``        0-based event number within the run,
    ``cause``      gem5's exit cause string, verbatim,
    ``exit_code``  gem5's exit code (the marker id for ``workbegin``/``workend``),
    ``tick``       ``m5.curTick()`` when the loop saw the event,
    ``kernel_index`` the kernel index of the skipped/completed non-blit kernel, else null,
    ``kernels_done`` non-blit kernels finished (skipped or completed) after this event,
    ``tasks_done``   tasks (every dispatch) finished after this event,
    ``dump``       index of the stats dump written for this event, or null,
    ``dump_suppressed`` true when a dump was wanted but gem5 drops a second dump in one tick,
    ``reset``      whether stats were reset after this event.
``end`` (last line, if the loop ended normally)
    ``cause``, ``exit_code``, ``tick``, ``kernels_done``, ``tasks_done``, ``expected`` (bool:
    the cause is one the run asked for), ``tail_dump`` (index of the at-exit dump gem5 writes,
    or null if suppressed by the same-tick rule).

Dump numbering: each loop dump adds one block to ``stats.txt``; gem5's at-exit dump adds the
last block unless it falls in the same tick as the loop's last dump.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation.errors import InputError
from foundation.rundir import EVENTS_FILENAME

if TYPE_CHECKING:  # pandas loads only when a table is built (the CLI and the conductor start fast)
    import pandas as pd

SCHEMA = "layerlab-events/2"
#: Older schemas still read (``/1`` had no ``run_id``).
READABLE_SCHEMAS = ("layerlab-events/1", SCHEMA)
FILENAME = EVENTS_FILENAME

#: Exact gem5 exit causes and the event kind each maps to (gem5_gpufs.md §2.2).
CAUSE_KINDS: dict[str, str] = {
    "Skipping GPU Kernel": "skip",
    "GPU Kernel Completed": "kernel",
    "GPU Blit Kernel Completed": "blit",
    "workbegin": "workbegin",
    "workend": "workend",
    "checkpoint": "checkpoint",
}

EVENT_KINDS = ("skip", "kernel", "blit", "workbegin", "workend", "checkpoint", "other")
EVENT_FIELDS = (
    "seq",
    "kind",
    "cause",
    "exit_code",
    "tick",
    "kernel_index",
    "kernels_done",
    "tasks_done",
    "dump",
    "dump_suppressed",
    "reset",
)
START_FIELDS = (
    "kind",
    "schema",
    "run_id",
    "skip_until",
    "exit_after",
    "exit_at_task",
    "dump_per_kernel",
    "gem5_profile",
    "tick",
)
END_FIELDS = ("kind", "cause", "exit_code", "tick", "kernels_done", "tasks_done", "expected", "tail_dump")

_REQUIRED = {
    "start": tuple(f for f in START_FIELDS if f != "run_id"),
    "end": END_FIELDS,
    **{k: EVENT_FIELDS for k in EVENT_KINDS},
}


def kind_of(cause: str) -> str:
    """Map a gem5 exit cause to an event kind; 'checkpoint' matches as a substring, as runfs does."""
    if cause in CAUSE_KINDS:
        return CAUSE_KINDS[cause]
    if "checkpoint" in cause:
        return "checkpoint"
    return "other"


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield validated records; a bad line raises InputError naming the file and line."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise InputError(f"{path}: events side-file not found (was the run rendered by layerlab?)")
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                # A run killed mid-write leaves a partial last line: say so rather than guess.
                raise InputError(f"{path}:{lineno}: not a JSON record ({exc.msg})") from None
            if not isinstance(record, dict) or "kind" not in record:
                raise InputError(f"{path}:{lineno}: record has no 'kind' field")
            kind = record["kind"]
            if kind not in _REQUIRED:
                raise InputError(f"{path}:{lineno}: unknown event kind {kind!r}")
            missing = [f for f in _REQUIRED[kind] if f not in record]
            if missing:
                raise InputError(f"{path}:{lineno}: {kind} record lacks field(s) {', '.join(missing)}")
            if lineno == 1 and kind != "start":
                raise InputError(f"{path}:1: first record must be 'start', got {kind!r}")
            if kind == "start" and record["schema"] not in READABLE_SCHEMAS:
                raise InputError(f"{path}:{lineno}: schema {record['schema']!r} is not {SCHEMA!r}")
            if kind == "start" and record["schema"] == SCHEMA and "run_id" not in record:
                raise InputError(f"{path}:{lineno}: start record lacks field(s) run_id")
            record["_line"] = lineno
            yield record


def read_events(path: str | Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any] | None]:
    """Read a side-file into (start record, events table, end record or None if the run died)."""
    start: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    for record in iter_records(path):
        kind = record["kind"]
        if kind == "start":
            start = record
        elif kind == "end":
            end = record
        else:
            rows.append({**{f: record[f] for f in EVENT_FIELDS}, "_line": record["_line"]})
    if start is None:
        raise InputError(f"{path}: events side-file is empty")
    import numpy as np
    import pandas as pd

    # Column by column, typed once: a side-file has a few records, and pandas' per-call cost
    # (a DataFrame of records, then seven astype) was most of a small run's kernel table.
    if not rows:
        types = {**{c: "Int64" for c in _NULLABLE_INTS}, **{c: "int64" for c in _INTS}}
        return start, pd.DataFrame([], columns=list(EVENT_FIELDS)).astype(types), end
    data: dict[str, Any] = {}
    for col in EVENT_FIELDS:
        values = [row[col] for row in rows]
        try:
            if col in _NULLABLE_INTS:
                data[col] = pd.array(values, dtype="Int64")
            elif col in _INTS:
                data[col] = np.array(values, dtype="int64")
            else:
                data[col] = values
        except (TypeError, ValueError, OverflowError):
            bad = next((r for r in rows if not _is_int(r[col], col in _NULLABLE_INTS)), rows[0])
            raise InputError(
                f"{path}:{bad['_line']}: field {col!r} is {bad[col]!r}, not an integer"
            ) from None
    return start, pd.DataFrame(data, columns=list(EVENT_FIELDS)), end


_NULLABLE_INTS = ("kernel_index", "dump")
_INTS = ("seq", "exit_code", "tick", "kernels_done", "tasks_done")


def _is_int(value: Any, nullable: bool) -> bool:
    return (value is None and nullable) or (isinstance(value, int) and not isinstance(value, bool))
