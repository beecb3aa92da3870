"""Atomic file writes: a temp file in the target directory, fsync, then rename.

Every stage writes results that later stages trust (stats caches, renders, kernel maps,
manifests). A crash or a bad input half-way must never leave a truncated file behind, so all
writes go through here. It lives in ``foundation`` so all stages may import it.

Atomic replace is for regular files only. What ``path`` names decides how it is written:

* a regular file, or nothing yet: temp file in the same directory, fsync, rename over it;
* a symbolic link: its target is written (atomically, in the target's directory); the link
  stays. A dangling link writes the path it points to if that path's directory exists;
* a character device (``/dev/null``, a terminal) or a FIFO: opened and written in place, never
  replaced (as root, a rename would turn ``/dev/null`` into a regular file);
* a directory, a block device, a socket: refused with ``InputError``.

A missing parent directory is created only with ``make_parents=True``; otherwise it is refused
with an ``InputError`` naming the path ("no such directory"). User-facing ``-o FILE`` passes
``make_parents=False`` (``orchestrator.output.write_output``); internal writers of caches and
run directories rely on the default.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from foundation.errors import InputError


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's 0600 would surprise users)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@dataclass(frozen=True)
class Target:
    """Where a write to a path really goes: ``path`` (symlinks followed) and whether in place."""

    path: Path
    in_place: bool


def resolve(path: str | os.PathLike[str], *, make_parents: bool = True) -> Target:
    """Decide where and how ``path`` is written (see the module doc); create parents if asked.

    Raises ``InputError`` for a directory, an unsupported special file, a symlink loop, or a
    missing parent directory when ``make_parents`` is False.
    """
    given = Path(path)
    target = given
    if target.is_symlink():
        target = Path(os.path.realpath(target))
        if target.is_symlink():  # realpath stops at a loop
            raise InputError(f"{given}: symbolic link loop")
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):  # the parent checks below say which
        info = None
    except OSError as exc:
        raise InputError(f"{given}: cannot write ({exc.strerror})") from None
    if info is not None:
        if stat.S_ISREG(info.st_mode):
            return Target(target, in_place=False)
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            return Target(target, in_place=True)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{given}: is a directory")
        raise InputError(f"{given}: not a regular file, character device or FIFO; refusing to write it")
    parent = target.parent
    if not parent.is_dir():
        if make_parents:
            parent.mkdir(parents=True, exist_ok=True)
        elif parent.exists() or parent.is_symlink():
            raise InputError(f"{given}: {parent} is not a directory")
        else:
            shown = f"{given} -> {target}" if target != given else str(given)
            raise InputError(f"{shown}: no such directory: {parent}")
    return Target(target, in_place=False)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "w",
    encoding: str | None = "utf-8",
    *,
    make_parents: bool = True,
    durable: bool = True,
) -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on clean exit rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. A character
    device or FIFO is opened and written in place instead; a symlink's target is written.
    ``durable=False`` keeps the rename (no reader ever sees half a file) but skips the fsyncs:
    for files that are a pure function of their inputs and are compared and rewritten by
    whoever relies on them (a run's rendered files), where two fsyncs a file were most of a
    trivial run's orchestration cost.
    """
    target = resolve(path, make_parents=make_parents)
    binary = "b" in mode
    if target.in_place:
        with open(target.path, mode, encoding=None if binary else encoding) as handle:
            yield handle
        return
    final = target.path
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(final.parent)


def write_text(
    path: str | os.PathLike[str], text: str, *, make_parents: bool = True, durable: bool = True
) -> None:
    with atomic_open(path, "w", make_parents=make_parents, durable=durable) as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = True) -> None:
    with atomic_open(path, "wb", make_parents=make_parents) as handle:
        handle.write(data)


def write_with(
    path: str | os.PathLike[str],
    writer: Callable[[str], None],
    *,
    make_parents: bool = True,
    durable: bool = True,
) -> None:
    """Let ``writer`` produce a file by path (e.g. ``DataFrame.to_parquet``), then rename it in place.

    For a character device or FIFO the writer fills a private temp file whose bytes are then
    streamed into the device (a writer may seek; a FIFO cannot). ``durable=False``: no fsyncs
    (as ``atomic_open``), for files that can be made again (caches).
    """
    target = resolve(path, make_parents=make_parents)
    final = target.path
    if target.in_place:
        scratch = tempfile.mkdtemp(prefix="layerlab-write-")
        try:
            tmp = os.path.join(scratch, final.name or "out")
            writer(tmp)
            with open(tmp, "rb") as source, open(final, "wb") as sink:
                shutil.copyfileobj(source, sink)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(final.parent)
