"""Parquet cache of parsed stats files, keyed by path, size and mtime.

Why a user cache directory and not a file next to ``stats.txt``: run directories are often
read-only (shared results, archived runs, the fixtures) and users diff or rsync them, so a
parser must not write into them. Default: ``$LAYERLAB_CACHE_DIR`` or
``$XDG_CACHE_HOME/layerlab/stats`` (``~/.cache/layerlab/stats``). The key also holds the parser
version and the options that change the table, so an upgrade or ``--lenient`` never reads a
stale entry. Writes are atomic (``foundation.atomic``); a broken cache entry is ignored and
rewritten, never trusted. Files under 64 KiB are not cached: the reference parser reads them
faster than an entry loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from foundation import atomic

if TYPE_CHECKING:  # imported where used: ``layerlab stats`` checks for an entry before polars loads
    import polars as pl

#: Bump when the table layout or parsing rules change; old entries are then ignored.
PARSER_VERSION = "stats-1"
_META_KEY = "layerlab.stats"


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
    """The cached frame (the parser's column order) and its metadata, or None if absent or
    unreadable."""
    meta = entry_meta(path)
    if meta is None:
        return None
    import polars as pl

    from stats_parsers.stats_text import COLUMNS

    try:
        frame = pl.read_parquet(path)
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return None
    return frame.select([*COLUMNS, *(["description"] if "description" in frame.columns else [])]), meta


def entry_meta(path: Path) -> dict | None:
    """The metadata of the cache entry ``path`` (read from its footer alone), or None if it is
    absent or its footer is unreadable: the check before the entry is copied out whole."""
    if not path.is_file():
        return None
    import polars as pl

    try:
        return json.loads(pl.read_parquet_metadata(path)[_META_KEY])
    except (OSError, KeyError, ValueError, pl.exceptions.PolarsError):
        return None


_pending: list[threading.Thread] = []


def store(path: Path, frame: pl.DataFrame, meta: dict, *, background: bool = False) -> None:
    """Write atomically; a failure to cache (read-only home, full disk) is not an error.

    ``background``: write in a thread (polars' writer releases the GIL, so the caller's own
    output is made meanwhile); ``wait()`` joins it, and so does interpreter exit."""

    def write() -> None:
        with contextlib.suppress(OSError):
            atomic.write_with(path, lambda tmp: write_table(frame, tmp, meta), durable=False)

    if not background:
        write()
        return
    thread = threading.Thread(target=write, name="layerlab-stats-cache")  # not daemon: exit waits
    thread.start()
    _pending.append(thread)


def store_file(path: Path, written: str | os.PathLike[str]) -> None:
    """Make the parquet file ``written`` (by ``write_table``, with its ``meta``) the cache entry
    ``path``: a copy, so the output and the cache never share an inode. Never an error."""
    with contextlib.suppress(OSError):
        atomic.write_with(path, lambda tmp: shutil.copyfile(written, tmp), durable=False)


def write_table(frame: pl.DataFrame, sink, meta: dict | None = None) -> None:
    """A parsed stats table as the parquet file that both ``layerlab stats -o`` and the cache
    hold: ``FILE_COLUMNS`` order, rows in file order, zstd, the parse's ``meta`` (messages,
    notes, ...) as the file's key/value metadata. With polars' own writer: categoricals become
    dictionary columns (read back as categoricals); pyarrow's writer after a conversion to
    Arrow took three times as long."""
    from stats_parsers.stats_text import FILE_COLUMNS

    if meta is not None and list(frame.columns[: len(FILE_COLUMNS)]) != list(FILE_COLUMNS):
        frame = frame.select([*FILE_COLUMNS, *(["description"] if "description" in frame.columns else [])])
    write_parquet(frame, sink, metadata={_META_KEY: json.dumps(meta)} if meta is not None else None)


def write_parquet(frame: pl.DataFrame, sink, *, metadata: dict | None = None) -> None:
    """Any stats table (long, filtered, per kernel) as parquet: zstd at level 1 (a third of
    snappy's size in about the same time), min/max statistics for readers' predicate pushdown."""
    frame.write_parquet(sink, compression="zstd", compression_level=1, metadata=metadata)


def wait() -> None:
    """Join the background cache writes started by ``store(background=True)``."""
    while _pending:
        _pending.pop().join()
