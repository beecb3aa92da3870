"""ext4 on a byte range of an image: the superblock in pure Python, e2fsprogs for the rest.

Every e2fsprogs tool (``debugfs``, ``e2fsck``, ``resize2fs``) opens a filesystem that starts
inside a file with the io-option syntax ``IMAGE?offset=BYTES`` (checked on e2fsprogs 1.47;
``debugfs`` has no ``-o offset`` option). That gives a rootless path to read, check, grow and
write the root partition without a loop device. ``debugfs`` exits 0 even when a command fails,
so its stderr is read: any line but the version banner is an error.

**Limitations**: ``debugfs write`` stores runs of zero bytes as holes (fine for a filesystem;
sizes are unchanged). Sizes passed to ``resize2fs`` are in KiB, so partitions are KiB-aligned.

**resize2fs on a regular file ignores the offset when it sets the file's size** (e2fsprogs
1.47): after ``resize2fs 'img?offset=N' S`` the file is truncated to S bytes, cutting the last N
bytes of the filesystem and whatever follows it (a GPT backup). ``resize`` therefore restores
the file's size, the caller rewrites the GPT backup, and ``fsck`` repairs and re-checks the
filesystem (the cut region holds free blocks of the new last group, so nothing is lost in
practice). Where a loop device is available, resize the device instead (``resize_device``).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import InputError

_TOOLS_HINT = (
    "install e2fsprogs (Debian/Ubuntu: apt-get install e2fsprogs; or run .ci/install-image-tools.sh)"
)


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


def tool(name: str) -> str:
    """Path of an e2fsprogs tool (they live in /sbin, often not on a user's PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        raise InputError(f"{name} not found; {_TOOLS_HINT}")
    return found


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
    proc = subprocess.run(
        [tool("debugfs"), "-R", request, spec(image, start_bytes)],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = _errors(proc.stderr)
    if proc.returncode or errors:
        raise InputError(f"debugfs {request!r} on {image}: {'; '.join(errors) or proc.returncode}")
    return proc.stdout


def debugfs_script(image: str | os.PathLike[str], start_bytes: int, commands: list[str]) -> None:
    """Run debugfs commands read-write (``-w -f``); ``InputError`` naming the first failing one."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".debugfs", delete=False) as script:
        script.write("\n".join(commands) + "\n")
    try:
        proc = subprocess.run(
            [tool("debugfs"), "-w", "-f", script.name, spec(image, start_bytes)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(script.name)
    errors = _errors(proc.stderr)
    if proc.returncode or errors:
        text = "; ".join(errors[:3]) or f"exit {proc.returncode}"
        if re.search(r"Could not allocate|No free space|allocate block", text, re.IGNORECASE):
            raise InputError(f"{image}: the root filesystem is full while writing the payload ({text})")
        raise InputError(f"debugfs on {image}: {text}")


def read_file(image: str | os.PathLike[str], start_bytes: int, guest_path: str) -> str | None:
    """Text of a guest file (symlinks followed), or None when it does not exist."""
    proc = subprocess.run(
        [tool("debugfs"), "-R", f"cat {_quote(guest_path)}", spec(image, start_bytes)],
        capture_output=True,
        check=False,
    )
    if _errors(proc.stderr.decode("utf-8", "replace")):
        return None
    return proc.stdout.decode("utf-8", "replace")


def list_dir(
    image: str | os.PathLike[str], start_bytes: int, guest_path: str
) -> list[tuple[str, int]] | None:
    """``(name, mode)`` of a guest directory's entries ('.'/'..' left out), or None if missing."""
    proc = subprocess.run(
        [tool("debugfs"), "-R", f"ls -p {_quote(guest_path)}", spec(image, start_bytes)],
        capture_output=True,
        check=False,
    )
    if _errors(proc.stderr.decode("utf-8", "replace")):
        return None
    entries = []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
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
    proc = subprocess.run(
        [tool("e2fsck"), "-f", "-y" if repair else "-p", spec(image, start_bytes)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode >= 4:  # 0 clean, 1/2 fixed, 4+ errors left / operational error
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InputError(f"e2fsck on {image} (partition at byte {start_bytes}) failed: {' | '.join(tail)}")


def resize(image: str | os.PathLike[str], start_bytes: int, size_bytes: int) -> None:
    """``resize2fs`` the filesystem at ``start_bytes`` to ``size_bytes``; the file keeps its size (see above)."""
    file_size = os.stat(image).st_size
    proc = subprocess.run(
        [tool("resize2fs"), spec(image, start_bytes), f"{size_bytes // 1024}K"],
        capture_output=True,
        text=True,
        check=False,
    )
    if os.stat(image).st_size != file_size:
        os.truncate(image, file_size)
    if proc.returncode:
        raise InputError(
            f"resize2fs on {image} failed: {(proc.stdout + proc.stderr).strip().splitlines()[-1:]}"
        )


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
    proc = subprocess.run([tool("debugfs"), "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"debugfs (\S+)", proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"
