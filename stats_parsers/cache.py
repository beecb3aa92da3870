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

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from foundation import atomic

#: Bump when the table layout or parsing rules change; old entries are then ignored.
PARSER_VERSION = "stats-1"
_META_KEY = b"layerlab.stats"


def default_cache_dir() -> Path:
    if env := os.environ.get("LAYERLAB_CACHE_DIR"):
        return Path(env) / "stats"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layerlab" / "stats"


def cache_path(source: Path, options: str, cache_dir: Path | None = None) -> Path:
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{PARSER_VERSION}|{options}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return (cache_dir or default_cache_dir()) / f"{source.name}.{digest}.parquet"


def load(path: Path) -> tuple[pl.DataFrame, dict] | None:
    """The cached frame and its metadata, or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return None
    return pl.from_arrow(table.replace_schema_metadata(None)), meta


_pending: list[threading.Thread] = []


def store(path: Path, frame: pl.DataFrame, meta: dict, *, background: bool = False) -> None:
    """Write atomically; a failure to cache (read-only home, full disk) is not an error.

    ``background``: write in a thread (Arrow's writer releases the GIL, so the caller's own
    output is written meanwhile); ``wait()`` joins it, and so does interpreter exit."""
    table = frame.to_arrow()
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})

    def write() -> None:
        with contextlib.suppress(OSError):
            atomic.write_with(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    if not background:
        write()
        return
    thread = threading.Thread(target=write, name="layerlab-stats-cache")  # not daemon: exit waits
    thread.start()
    _pending.append(thread)


def wait() -> None:
    """Join the background cache writes started by ``store(background=True)``."""
    while _pending:
        _pending.pop().join()
