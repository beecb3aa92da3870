"""Write a payload (host files → guest paths) into the root partition of a derived image.

Three ways to touch the filesystem, chosen by ``choose_access`` (overridable):

* ``root``: a loop device limited to the partition (``losetup --offset --sizelimit``), mounted,
  files copied with ``copy_file_range``; guest paths are resolved inside the mount, symlinks
  included, so an absolute guest symlink never escapes to the host;
* ``rootless``: ``debugfs -w`` on ``IMAGE?offset=N`` (``mkdir``, ``write``, ``sif`` for mode and
  owner); no mount, no privileges;
* ``docker``: the rootless steps run in a container that has e2fsprogs (``docker_access``), for
  a host with docker but without e2fsprogs; ``build`` opens the session, so here it is the
  rootless writer with ``e2fs`` pointed at the container.

``auto`` takes ``root`` when this host has e2fsprogs and loop devices as root, ``rootless`` when
it has e2fsprogs only, else ``docker`` when a container image is named and an engine answers.

Every loop device and mount is released on the way out, on errors and on SIGINT/SIGTERM too
(``build`` turns SIGTERM into an exception so ``finally`` runs).

**Limitations**: files are written owned by root (0:0) with the payload's mode; the rootless
path stores zero runs as holes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from disk_images import e2fs
from foundation.errors import InputError

ACCESS = ("auto", "root", "rootless", "docker")
CHUNK = 16 << 20
#: copy_file_range per call into a mount: large, so the kernel streams (progress moves per call).
COPY_CHUNK = 256 << 20


@dataclass(frozen=True)
class Item:
    """One payload entry: ``source`` (a host file) to ``guest`` (absolute guest path)."""

    guest: str
    source: Path
    mode: int = 0o644

    @property
    def size(self) -> int:
        return self.source.stat().st_size


def payload_bytes(items: list[Item]) -> int:
    return sum(item.size for item in items)


def tree_items(source: Path, guest_dir: str, mode: int = 0o644) -> list[Item]:
    """Every regular file under ``source`` (symlinks followed, as in an HF snapshot) under ``guest_dir``."""
    items = []
    for path in sorted(source.rglob("*")):
        if path.is_file():
            rel = path.relative_to(source).as_posix()
            items.append(Item(posixpath.join(guest_dir, rel), path.resolve(), mode))
    return items


def can_loop_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


def decide_access(
    wanted: str,
    *,
    loop_ok: bool,
    missing_tools: list[str],
    docker_image: str | None,
    docker_unreachable: Callable[[], str | None],
) -> str:
    """The access route from the host's facts (pure, so every branch is testable on any host)."""
    if wanted not in ACCESS:
        raise InputError(f"access {wanted!r}: one of {', '.join(ACCESS)}")
    tools_hint = f"{', '.join(missing_tools)} not found on this host ({e2fs.TOOLS_HINT})"
    if wanted == "docker":
        if not docker_image:
            raise InputError(
                "access docker: name the container image that has e2fsprogs "
                "(--docker-image IMAGE, or docker_image: in the recipe)"
            )
        return "docker"
    if wanted in ("root", "rootless") and missing_tools:
        raise InputError(f"access {wanted}: {tools_hint}; or use --access docker --docker-image IMAGE")
    if wanted == "root" and not loop_ok:
        raise InputError(
            "access root: needs root and loop devices (/dev/loop-control); use --access rootless"
        )
    if wanted != "auto":
        return wanted
    if not missing_tools:
        return "root" if loop_ok else "rootless"
    why = "no container image is named (--docker-image IMAGE or docker_image: in the recipe)"
    if docker_image:
        reason = docker_unreachable()
        if reason is None:
            return "docker"
        why = reason
    raise InputError(
        f"no way to edit the image's filesystem: {tools_hint}, and the docker route cannot be used: {why}"
    )


def choose_access(wanted: str = "auto", docker_image: str | None = None) -> str:
    """``decide_access`` on this host's facts; an explicit choice is checked."""

    def unreachable() -> str | None:
        from disk_images import docker_access

        return docker_access.unreachable()

    return decide_access(
        wanted,
        loop_ok=can_loop_mount(),
        missing_tools=e2fs.missing_host_tools(),
        docker_image=docker_image,
        docker_unreachable=unreachable,
    )


def _dirs_of(items: list[Item]) -> list[str]:
    dirs: set[str] = set()
    for item in items:
        parent = posixpath.dirname(item.guest)
        while parent not in ("/", ""):
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def inject_rootless(
    image: Path, start: int, items: list[Item], progress: Callable[[int], None] | None = None
) -> None:
    """debugfs -w: create missing directories, replace existing files, set mode and owner."""
    dirs = _dirs_of(items)
    existing: dict[str, dict[str, int]] = {}
    for folder in ["/", *dirs]:
        listing = e2fs.list_dir(image, start, folder)
        if listing is not None:
            existing[folder] = dict(listing)
    commands = []
    for folder in dirs:
        if folder not in existing:
            commands += [f"mkdir {e2fs.quote(folder)}", f"sif {e2fs.quote(folder)} mode 040755"]
    if commands:
        e2fs.debugfs_script(image, start, commands)
    # Files in batches so the progress bar moves and one debugfs command line stays short.
    batch: list[str] = []
    done = 0
    for i, item in enumerate(items):
        name = posixpath.basename(item.guest)
        here = existing.get(posixpath.dirname(item.guest), {})
        if name in here:
            if here[name] & 0o170000 == 0o040000:
                raise InputError(
                    f"{image}: guest path {item.guest} is a directory; cannot write a file there"
                )
            batch.append(f"rm {e2fs.quote(item.guest)}")
        q = e2fs.quote(item.guest)
        batch += [
            f"write {e2fs.quote(str(item.source))} {q}",
            f"sif {q} mode 0{0o100000 | item.mode:o}",
            f"sif {q} uid 0",
            f"sif {q} gid 0",
        ]
        done += item.size
        if len(batch) >= 400 or i == len(items) - 1 or done >= 256 << 20:
            e2fs.debugfs_script(image, start, batch)
            if progress is not None:
                progress(done)
            batch, done = [], 0


def resolve_in(root: Path, guest: str) -> Path:
    """Host path of ``guest`` inside a mounted guest ``root``, symlinks resolved against that root."""
    parts = [p for p in guest.split("/") if p]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise InputError(f"guest path {guest}: too many symbolic links")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
            continue
        current = candidate
    return current


def _copy(src: Path, dst: Path, mode: int, progress: Callable[[int], None] | None) -> None:
    tmp = dst.with_name(f".{dst.name}.layerlab-tmp")
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            remaining = os.fstat(fin.fileno()).st_size
            while remaining > 0:
                try:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), min(COPY_CHUNK, remaining))
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise
                    n = fout.write(fin.read(min(CHUNK, remaining)))
                if n == 0:
                    break
                remaining -= n
                if progress is not None:
                    progress(n)
        os.chown(tmp, 0, 0)
        os.chmod(tmp, mode)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def loop_device(image: Path, start: int, size: int) -> Iterator[str]:
    """A loop device on the partition's byte range (offset + size limit); always detached after."""
    losetup = e2fs.tool("losetup")
    proc = subprocess.run(
        [losetup, "--find", "--show", "--offset", str(start), "--sizelimit", str(size), str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise InputError(f"losetup on {image}: {proc.stderr.strip()}")
    device = proc.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run([losetup, "-d", device], capture_output=True, check=False)


@contextlib.contextmanager
def loop_mount(image: Path, start: int, size: int) -> Iterator[Path]:
    """Attach the partition's byte range to a loop device and mount it; always unmounted and detached."""
    with loop_device(image, start, size) as device, _mounted(device, image, start) as mnt:
        yield mnt


@contextlib.contextmanager
def _mounted(device: str, image: Path, start: int) -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="layerlab-mnt-"))
    mounted = False
    try:
        proc = subprocess.run(
            ["mount", "-t", "ext4", device, str(mnt)], capture_output=True, text=True, check=False
        )
        if proc.returncode:
            raise InputError(f"mount {device} ({image} at byte {start}): {proc.stderr.strip()}")
        mounted = True
        yield mnt
    finally:
        if mounted and subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def inject_mounted(root: Path, items: list[Item], progress: Callable[[int], None] | None = None) -> None:
    """Copy the payload into a mounted guest ``root``."""
    for item in items:
        dst = resolve_in(root, item.guest)
        parent = dst.parent
        made = []
        while not parent.exists():
            made.append(parent)
            parent = parent.parent
        for folder in reversed(made):
            folder.mkdir(mode=0o755)
            os.chown(folder, 0, 0)
        if dst.is_dir() and not dst.is_symlink():
            raise InputError(f"guest path {item.guest} is a directory; cannot write a file there")
        try:
            _copy(item.source, dst, item.mode, progress)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InputError(f"the root filesystem is full while writing {item.guest}") from None
            raise
    os.sync()


def inject(
    image: Path,
    start: int,
    size: int,
    items: list[Item],
    access: str,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``items`` into the ext4 at ``start`` (``size`` bytes) of ``image`` using ``access``."""
    if access == "root":
        with loop_mount(image, start, size) as mnt:
            inject_mounted(mnt, items, progress)
    elif access in ("rootless", "docker"):  # docker: e2fs runs in the build's container
        inject_rootless(image, start, items, progress)
    else:
        raise InputError(f"access {access!r}: one of {', '.join(ACCESS)}")
