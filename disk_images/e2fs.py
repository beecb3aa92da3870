"""ext4 on a byte range of an image: the superblock in pure Python, e2fsprogs for the rest.

Every e2fsprogs tool (``debugfs``, ``e2fsck``, ``resize2fs``) opens a filesystem that starts
inside a file with the io-option syntax ``IMAGE?offset=BYTES`` (checked on e2fsprogs 1.47;
``debugfs`` has no ``-o offset`` option). That gives a rootless path to read, check, grow and
write the root partition without a loop device. ``debugfs`` exits 0 even when a command fails,
so its stderr is read: any line but the version banner is an error.

**Limitations**: ``debugfs write`` stores runs of zero bytes as holes (fine for a filesystem;
sizes are unchanged). Sizes passed to ``resize2fs`` are in KiB, so partitions are KiB-aligned.

**Where the tools run**: on this host by default; ``using(runner)`` sends every e2fsprogs call
of this module (and so of ``guest`` and the rootless ``inject``) to another runner for the
duration of a ``with`` block, e.g. a container that has e2fsprogs when this host has none
(``docker_access``). Pure-Python reads (the superblock) and file-size changes stay on the host:
the runner sees the same files at the same paths.

**resize2fs on a regular file ignores the offset when it sets the file's size** (e2fsprogs
1.47): after ``resize2fs 'img?offset=N' S`` the file is truncated to S bytes, cutting the last N
bytes of the filesystem and whatever follows it (a GPT backup). ``resize`` therefore restores
the file's size, the caller rewrites the GPT backup, and ``fsck`` repairs and re-checks the
filesystem (the cut region holds free blocks of the new last group, so nothing is lost in
practice). Where a loop device is available, resize the device instead (``resize_device``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from foundation.errors import InputError

_TOOLS_HINT = (
    "install e2fsprogs (Debian/Ubuntu: apt-get install e2fsprogs; or run .ci/install-image-tools.sh)"
)
TOOLS_HINT = _TOOLS_HINT


@dataclass(frozen=True)
class Superblock:
    """The ext2/3/4 facts layerlab needs from a superblock (byte 1024 of the filesystem)."""

    block_size: int
    blocks: int
    free_blocks: int
    inodes: int
    free_inodes: int
    uuid: str
    label: str
    clean: bool  # s_state bit 0: unmounted cleanly
    needs_recovery: bool  # journal has unreplayed transactions (mounted, or crashed while mounted)

    @property
    def size_bytes(self) -> int:
        return self.blocks * self.block_size

    @property
    def free_bytes(self) -> int:
        return self.free_blocks * self.block_size


def read_superblock(image: str | os.PathLike[str], start_bytes: int) -> Superblock:
    """Parse the ext superblock of the filesystem at ``start_bytes`` (``InputError`` if none)."""
    with Path(image).open("rb") as handle:
        handle.seek(start_bytes + 1024)
        sb = handle.read(1024)
    if len(sb) < 1024 or sb[0x38:0x3A] != b"\x53\xef":
        raise InputError(
            f"{image}: no ext2/3/4 superblock at byte {start_bytes + 1024} (magic 0xEF53 missing)"
        )
    inodes, blocks_lo, _r, free_lo, free_inodes, _first, log_bs = struct.unpack_from("<IIIIIII", sb, 0)
    state = struct.unpack_from("<H", sb, 0x3A)[0]
    incompat = struct.unpack_from("<I", sb, 0x60)[0]
    blocks_hi = free_hi = 0
    if incompat & 0x80:  # 64bit
        blocks_hi = struct.unpack_from("<I", sb, 0x150)[0]
        free_hi = struct.unpack_from("<I", sb, 0x158)[0]
    raw_uuid = sb[0x68:0x78].hex()
    return Superblock(
        block_size=1024 << log_bs,
        blocks=blocks_lo | blocks_hi << 32,
        free_blocks=free_lo | free_hi << 32,
        inodes=inodes,
        free_inodes=free_inodes,
        uuid=f"{raw_uuid[:8]}-{raw_uuid[8:12]}-{raw_uuid[12:16]}-{raw_uuid[16:20]}-{raw_uuid[20:]}",
        label=sb[0x78:0x88].rstrip(b"\0").decode("utf-8", "replace"),
        clean=bool(state & 1),
        needs_recovery=bool(incompat & 0x4),
    )


#: The e2fsprogs tools the rootless and docker routes run (the root route needs them too).
TOOLS = ("debugfs", "e2fsck", "resize2fs")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def tool(name: str) -> str:
    """Path of a tool on this host (e2fsprogs live in /sbin, often not on a user's PATH)."""
    found = _which(name)
    if not found:
        raise InputError(f"{name} not found; {_TOOLS_HINT}")
    return found


def missing_host_tools() -> list[str]:
    """The e2fsprogs tools this host lacks (empty: the root and rootless routes can work)."""
    return [name for name in TOOLS if not _which(name)]


class Runner(Protocol):
    """Where e2fsprogs run: ``argv[0]`` is a name from ``TOOLS``, resolved by ``tool``."""

    #: A host folder the runner also sees at the same path (debugfs scripts go there); None: /tmp.
    scratch: Path | None

    def tool(self, name: str) -> str: ...

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]: ...


class HostRunner:
    """The default: e2fsprogs on this host."""

    scratch: Path | None = None

    def tool(self, name: str) -> str:
        return tool(name)

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, capture_output=True, check=False)


_HOST = HostRunner()
_RUNNER: contextvars.ContextVar[Runner | None] = contextvars.ContextVar("e2fs_runner", default=None)


def current_runner() -> Runner:
    return _RUNNER.get() or _HOST


@contextlib.contextmanager
def using(runner: Runner) -> Iterator[Runner]:
    """Run this module's e2fsprogs calls with ``runner`` inside the block."""
    token = _RUNNER.set(runner)
    try:
        yield runner
    finally:
        _RUNNER.reset(token)


def _run_bytes(name: str, *args: str) -> tuple[int, bytes, str]:
    """``(returncode, stdout, stderr)`` of one e2fsprogs tool, run by the current runner."""
    runner = current_runner()
    proc = runner.run([runner.tool(name), *args])
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def _run(name: str, *args: str) -> tuple[int, str, str]:
    code, out, err = _run_bytes(name, *args)
    return code, out.decode("utf-8", "replace"), err


def spec(image: str | os.PathLike[str], start_bytes: int) -> str:
    """The e2fsprogs device argument for a filesystem at ``start_bytes`` inside ``image``."""
    text = os.fspath(image)
    if "?" in text:
        raise InputError(f"{text}: a '?' in the image path clashes with e2fsprogs' io options; rename it")
    return f"{text}?offset={start_bytes}" if start_bytes else text


def _errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not re.match(r"debugfs \d", line) and not line.startswith("Allocated inode")
    ]


def debugfs(image: str | os.PathLike[str], start_bytes: int, request: str) -> str:
    """stdout of one read-only ``debugfs -R request``; ``InputError`` on any debugfs error."""
    code, out, err = _run("debugfs", "-R", request, spec(image, start_bytes))
    errors = _errors(err)
    if code or errors:
        raise InputError(f"debugfs {request!r} on {image}: {'; '.join(errors) or code}")
    return out


def debugfs_script(image: str | os.PathLike[str], start_bytes: int, commands: list[str]) -> None:
    """Run debugfs commands read-write (``-w -f``); ``InputError`` naming the first failing one."""
    scratch = current_runner().scratch
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False, dir=scratch) as script:
        script.write("\n".join(commands) + "\n")
    try:
        code, _out, err = _run("debugfs", "-w", "-f", script.name, spec(image, start_bytes))
    finally:
        os.unlink(script.name)
    errors = _errors(err)
    if code or errors:
        text = "; ".join(errors[:3]) or f"exit {code}"
        if re.search(r"Could not allocate|No free space|allocate block", text, re.IGNORECASE):
            raise InputError(f"{image}: the root filesystem is full while writing the payload ({text})")
        raise InputError(f"debugfs on {image}: {text}")


def read_file(image: str | os.PathLike[str], start_bytes: int, guest_path: str) -> str | None:
    """Text of a guest file (symlinks followed), or None when it does not exist."""
    _code, out, err = _run_bytes("debugfs", "-R", f"cat {_quote(guest_path)}", spec(image, start_bytes))
    if _errors(err):
        return None
    return out.decode("utf-8", "replace")


def list_dir(
    image: str | os.PathLike[str], start_bytes: int, guest_path: str
) -> list[tuple[str, int]] | None:
    """``(name, mode)`` of a guest directory's entries ('.'/'..' left out), or None if missing."""
    _code, out, err = _run("debugfs", "-R", f"ls -p {_quote(guest_path)}", spec(image, start_bytes))
    if _errors(err):
        return None
    entries = []
    for line in out.splitlines():
        fields = line.split("/")  # /inode/mode/uid/gid/name/size/
        if len(fields) >= 7 and fields[5] not in (".", ".."):
            entries.append((fields[5], int(fields[2], 8)))
    return entries


def _quote(path: str) -> str:
    if '"' in path or "\n" in path:
        raise InputError(f"guest path {path!r}: quotes and newlines are not supported")
    return f'"{path}"'


def quote(path: str) -> str:
    """A path quoted for a debugfs command line."""
    return _quote(path)


def fsck(image: str | os.PathLike[str], start_bytes: int, *, repair: bool = False) -> None:
    """``e2fsck -f -p`` (``-y`` with ``repair``): a forced check; ``InputError`` if errors remain."""
    code, out, err = _run("e2fsck", "-f", "-y" if repair else "-p", spec(image, start_bytes))
    if code >= 4:  # 0 clean, 1/2 fixed, 4+ errors left / operational error
        tail = (out + err).strip().splitlines()[-3:]
        raise InputError(f"e2fsck on {image} (partition at byte {start_bytes}) failed: {' | '.join(tail)}")


def resize(image: str | os.PathLike[str], start_bytes: int, size_bytes: int) -> None:
    """``resize2fs`` the filesystem at ``start_bytes`` to ``size_bytes``; the file keeps its size (see above)."""
    file_size = os.stat(image).st_size
    code, out, err = _run("resize2fs", spec(image, start_bytes), f"{size_bytes // 1024}K")
    if os.stat(image).st_size != file_size:
        os.truncate(image, file_size)
    if code:
        raise InputError(f"resize2fs on {image} failed: {(out + err).strip().splitlines()[-1:]}")


def resize_device(device: str) -> None:
    """``e2fsck -f`` then ``resize2fs`` a block device (a loop device on the partition) to its full size."""
    for argv in ([tool("e2fsck"), "-f", "-p", device], [tool("resize2fs"), device]):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode >= (4 if "e2fsck" in argv[0] else 1):
            raise InputError(
                f"{' '.join(argv)} failed: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}"
            )


def version() -> str:
    """e2fsprogs version (for the manifest)."""
    _code, out, err = _run("debugfs", "-V")
    match = re.search(r"debugfs (\S+)", out + err)
    return match.group(1) if match else "unknown"
