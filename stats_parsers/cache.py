"""Parquet cache of parsed stats files, keyed by path, size and mtime.

Why a user cache directory and not a file next to ``stats.txt``: run directories are often
read-only (shared results, archived runs, the fixtures) and users diff or rsync them, so a
parser must not write into them. Default: ``$LAYERLAB_CACHE_DIR`` or
``$XDG_CACHE_HOME/layerlab/stats`` (``~/.cache/layerlab/stats``). The key also holds the parser
version and the options that change the table, so an upgrade or ``--lenient`` never reads a
stale entry. Writes are atomic (``foundation.atomic``); a broken cache entry is ignored and
rewritten, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from foundation import atomic

if TYPE_CHECKING:  # imported where used: ``layerlab stats`` checks for an entry before polars loads
    import polars as pl

#: Bump when the table layout or parsing rules change; old entries are then ignored.
PARSER_VERSION = "stats-1"
_META_KEY = b"layerlab.stats"


def default_cache_dir() -> Path:
    if env := os.environ.get("LAYERLAB_CACHE_DIR"):
        return Path(env) / "stats"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerlab" / "stats"


def entry_path(
    source: Path, *, strict: bool, description: bool, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where ``read_stats`` caches the parse of the text file ``source`` with these options."""
    options = f"strict={strict};description={description}"
    return cache_path(source, options, Path(cache_dir) if cache_dir else None)


def cache_path(source: Path, options: str, cache_dir: Path | None = None) -> Path:
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{PARSER_VERSION}|{options}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return (cache_dir or default_cache_dir()) / f"{source.name}.{digest}.parquet"


def load(path: Path) -> tuple[pl.DataFrame, dict] | None:
    """The cached frame and its metadata, or None if absent or unreadable."""
    if not path.is_file():
        return None
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return pl.from_arrow(table.replace_schema_metadata(None)), meta


_pending: list[threading.Thread] = []


def store(path: Path, frame: pl.DataFrame, meta: dict, *, background: bool = False) -> None:
    """Write atomically; a failure to cache (read-only home, full disk) is not an error.

    ``background``: convert and write in a thread (polars' conversion and Arrow's writer
    release the GIL, so the caller's own output is made meanwhile); ``wait()`` joins it, and
    so does interpreter exit."""
    blob = json.dumps(meta).encode()

    def write() -> None:
        with contextlib.suppress(OSError):
            atomic.write_with(
                path,
                lambda tmp: write_parquet_rows(
                    frame, None, tmp, compression="zstd", metadata={_META_KEY: blob}
                ),
            )

    if not background:
        write()
        return
    thread = threading.Thread(target=write, name="layerlab-stats-cache")  # not daemon: exit waits
    thread.start()
    _pending.append(thread)


def _writer_options(schema) -> dict:
    """The settings a stats table wants: dictionary pages only for the columns that are
    dictionaries already (name, key, unit...: trying it on a million distinct floats is wasted
    work), min/max statistics only for the other columns (on the dictionary columns they were
    40 % of the write). Same table when read back, written in about half the time."""
    import pyarrow as pa

    dicts = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    return {"use_dictionary": dicts, "write_statistics": [f.name for f in schema if f.name not in dicts]}


#: Rows gathered and written at a time by ``write_parquet_rows``: pyarrow's default row group.
ROW_GROUP = 1 << 20


def write_parquet_rows(
    frame: pl.DataFrame, rows, sink, *, compression: str = "snappy", metadata: dict | None = None
) -> None:
    """``frame`` as parquet, its rows in the order ``rows`` (indices; None: as they are), one
    row group at a time, converted to Arrow as it goes: neither the reordered table nor its
    Arrow copy is ever whole in memory (fresh memory costs a page fault per 4 KiB, and sorting
    a 500 MB file's table first was a third of its write). ``metadata``: the schema's."""
    import polars as pl
    import pyarrow.parquet as pq

    def part(lo: int):
        if rows is None:
            return frame.slice(lo, ROW_GROUP).to_arrow()
        return frame[pl.Series(rows[lo : lo + ROW_GROUP])].to_arrow()

    first = part(0)
    schema = first.schema.with_metadata(metadata) if metadata else first.schema
    with pq.ParquetWriter(sink, schema, compression=compression, **_writer_options(schema)) as out:
        out.write_table(first)
        for lo in range(ROW_GROUP, frame.height, ROW_GROUP):
            out.write_table(part(lo))


def wait() -> None:
    """Join the background cache writes started by ``store(background=True)``."""
    while _pending:
        _pending.pop().join()
