"""sha256 of input files (kernels, disk images, gem5 binaries), computed once per file version.

A run names its inputs by content, not path, so the same simulation has the same ``run_id`` on
every host. Disk images are tens of GB: hashing one takes minutes, so a digest is cached under
``$LAYERLAB_CACHE_DIR/digests.sqlite`` keyed by the file's resolved path, size, mtime (ns) and
inode, and recomputed only when one of them changes. The same cache serves ``make image`` and
``layerlab render``. SQLite (WAL) keeps concurrent renders safe; a cache that cannot be opened
or written only costs a re-hash, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from foundation.errors import InputError

CHUNK = 8 << 20
_SCHEMA = "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, sha256 TEXT)"


def cache_dir() -> Path:
    """``$LAYERLAB_CACHE_DIR`` or ``~/.cache/layerlab``: every layerlab cache lives under it."""
    return Path(os.environ.get("LAYERLAB_CACHE_DIR") or Path.home() / ".cache" / "layerlab")


#: This process's digests by (path, size, mtime, inode): the same key the cache file uses.
_SEEN: dict[tuple[str, int, int, int], str] = {}


def _connect() -> sqlite3.Connection | None:
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / "digests.sqlite", timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_SCHEMA)
        return conn
    except (OSError, sqlite3.Error):
        return None


def _hash_file(path: Path, progress: Callable[[int], None] | None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def file_digest(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of a regular file, from the cache when the file is unchanged."""
    target = Path(path).expanduser()
    try:
        resolved = target.resolve(strict=True)
        st = resolved.stat()
    except (OSError, RuntimeError):
        raise InputError(f"{target}: file not found") from None
    if not resolved.is_file():
        raise InputError(f"{target}: not a regular file")
    key = (str(resolved), st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _SEEN:  # a conductor digests the same kernel, disk and binary for every run
        return _SEEN[key]
    conn = _connect()
    if conn is not None:
        with contextlib.closing(conn):
            row = conn.execute(
                "SELECT sha256 FROM digests WHERE path=? AND size=? AND mtime_ns=? AND inode=?", key
            ).fetchone()
            if row:
                _SEEN[key] = f"sha256:{row[0]}"
                return _SEEN[key]
    try:
        hexdigest = _hash_file(resolved, progress)
    except OSError as exc:
        raise InputError(f"{target}: cannot read ({exc.strerror})") from None
    conn = _connect()
    if conn is not None:
        with contextlib.closing(conn), contextlib.suppress(sqlite3.Error):
            conn.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (*key, hexdigest))
            conn.commit()
    _SEEN[key] = f"sha256:{hexdigest}"
    return _SEEN[key]


def text_digest(*parts: str) -> str:
    """``sha256:<hex>`` of strings joined unambiguously (for identities built from text)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") + b"\0")
    return f"sha256:{digest.hexdigest()}"
