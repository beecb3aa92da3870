"""Write a payload (host files → guest paths) into the root partition of a derived image.

Three ways to touch the filesystem, chosen by ``choose_access`` (overridable):

* ``root``: a loop device limited to the partition (``losetup --offset --sizelimit``), mounted,
  files copied with ``sendfile`` (kernel to kernel, see ``_stream``) and made durable with one
  ``syncfs`` of the mount; guest paths are resolved inside the mount, symlinks
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
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from disk_images import e2fs
from foundation.errors import InputError

ACCESS = ("auto", "root", "rootless", "docker")
CHUNK = 16 << 20
#: sendfile per call into a mount: large, so the kernel streams; each full one goes to writeback
#: at once (``_stream``) and the progress bar moves per call.
COPY_CHUNK = 16 << 20
#: Progress reported in steps of at least this much (many small files report together).
PROGRESS_STEP = 8 << 20
#: Sources opened (and asked for) this many files ahead of the copy (``_Sources``).
PREFETCH_FILES = 16
#: How much of each source is asked for ahead: all of a small file, the head of a big one.
PREFETCH_HEAD = 4 << 20
#: The user-space copy's one buffer (only where sendfile is refused): stays in the CPU's caches.
_BUFFER = 1 << 20


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
    """Every regular file under ``source`` (symlinks followed, as in an HF snapshot) under ``guest_dir``.

    The order is that of the sorted paths (the group digests depend on it). Directory symlinks are
    not descended (as ``Path.rglob`` in 3.11 does not). Only a symlink is resolved on its own; a
    plain file's real path is the resolved ``source`` joined with its relative path, which saves
    an ``lstat`` per path component of every file of a wheelhouse.
    """
    root = source.resolve()
    found: list[tuple[tuple[str, ...], Path]] = []

    def walk(folder: str, rel: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except PermissionError:
            return
        for entry in entries:
            here = (*rel, entry.name)
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, here)
            elif entry.is_symlink():
                if entry.is_file():
                    found.append((here, Path(os.path.realpath(entry.path))))
            elif entry.is_file(follow_symlinks=False):
                found.append((here, root.joinpath(*here)))

    walk(os.fspath(source), ())
    found.sort(key=lambda pair: pair[0])
    return [Item(posixpath.join(guest_dir, *rel), path, mode) for rel, path in found]


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
    missing: set[str] = set()
    for folder in ["/", *dirs]:  # parents first: a missing folder's children are not listed
        if posixpath.dirname(folder) in missing:
            missing.add(folder)
            continue
        listing = e2fs.list_dir(image, start, folder)
        if listing is None:
            missing.add(folder)
        else:
            existing[folder] = dict(listing)
    commands = []
    for folder in dirs:
        if folder not in existing:
            commands += [f"mkdir {e2fs.quote(folder)}", f"sif {e2fs.quote(folder)} mode 040755"]
    if commands:
        e2fs.debugfs_script(image, start, commands)
    # Files in batches so the progress bar moves; each batch is one debugfs run (open, bitmaps,
    # fsync at close), so a batch holds up to 500 small files (fewer runs: ~10 % on a wheelhouse).
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
        if len(batch) >= 2000 or i == len(items) - 1 or done >= 256 << 20:
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


class _Meter:
    """Progress in steps of ``PROGRESS_STEP``: one bar update per wheel file would cost more than its copy."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.pending = 0

    def __call__(self, n: int) -> None:
        self.pending += n
        if self.pending >= PROGRESS_STEP:
            self.flush()

    def flush(self) -> None:
        if self.progress is not None and self.pending:
            self.progress(self.pending)
        self.pending = 0


def _stream(fin: int, fout: int, size: int, meter: _Meter) -> None:
    """``size`` bytes from ``fin`` to ``fout`` in the kernel, page cache to page cache.

    ``copy_file_range`` cannot serve here: since Linux 5.19 it refuses two different ext4
    superblocks (the source tree and the loop-mounted guest) with EXDEV, and the old fallback of a
    fresh 16 MiB ``bytes`` per chunk cost more than the copy. ``sendfile`` takes any regular file
    as output; where a kernel refuses it, one reused buffer does the same in user space. The
    source is read sequentially once, so readahead may grow (as ``cp`` asks too).

    Each full chunk written is handed to writeback at once (``POSIX_FADV_DONTNEED`` on the
    output starts it without waiting, and later drops the clean pages): the final ``syncfs``
    then finds little left to write, disk writes overlap the reads of the next chunk, and a
    multi-GB model does not sit twice in the page cache as dirty pages (guest filesystem, then
    image file). Small files are left to the ``syncfs``, which writes them in one batch.
    """
    with contextlib.suppress(OSError):
        os.posix_fadvise(fin, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    off = 0
    while off < size:
        try:
            n = os.sendfile(fout, fin, off, min(COPY_CHUNK, size - off))
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            _read_write(fin, fout, off, size, meter)
            return
        if n == 0:  # the source shrank while copying: it is written as it is now
            return
        if n == COPY_CHUNK:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fout, off, n, os.POSIX_FADV_DONTNEED)
        off += n
        meter(n)


def _read_write(fin: int, fout: int, off: int, size: int, meter: _Meter) -> None:
    view = memoryview(bytearray(_BUFFER))
    while off < size:
        n = os.preadv(fin, [view[: min(_BUFFER, size - off)]], off)
        if n == 0:
            return
        done = 0
        while done < n:
            done += os.write(fout, view[done:n])
        off += n
        meter(n)


def _write_file(fin: int, dst: str, mode: int, replace: bool, meter: _Meter) -> None:
    """Write the open source ``fin`` to ``dst`` owned by 0:0 with ``mode``; never leaves a
    partial file behind.

    A new file is created under its own name (no rename per file); an existing one is replaced
    by a rename from a temporary file, so its other hard links and open readers keep the old bytes.
    """
    if replace:
        folder, name = os.path.split(dst)
        target = os.path.join(folder, f".{name}.layerlab-tmp")
    else:
        target = dst
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if replace else os.O_EXCL)
    fout = os.open(target, flags, 0o600)
    try:
        try:
            _stream(fin, fout, os.fstat(fin).st_size, meter)
            os.fchown(fout, 0, 0)
            os.fchmod(fout, mode)
        finally:
            os.close(fout)
        if replace:
            os.replace(target, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise


class _Sources:
    """The payload's sources, opened ``PREFETCH_FILES`` items ahead of the copy, each with a
    ``POSIX_FADV_WILLNEED`` on its first ``PREFETCH_HEAD`` bytes.

    The kernel then reads the next files while this one is copied: a cold wheelhouse waits on
    many small reads at once instead of one after the other, without threads (the copy stays
    one sequential loop, so an interrupt leaves nothing running). Only the head of a big file
    is asked for; sequential readahead does the rest. A source that cannot be opened ahead is
    opened again at its turn, so its error names that item.
    """

    def __init__(self, items: list[Item]) -> None:
        self.paths = [os.fspath(item.source) for item in items]
        self.ahead: dict[int, int] = {}
        self.opened = 0

    def take(self, index: int) -> int:
        """The open source of item ``index`` (items are taken in order); the caller closes it."""
        while self.opened < min(index + PREFETCH_FILES, len(self.paths)):
            try:
                fd = os.open(self.paths[self.opened], os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass
            else:
                self.ahead[self.opened] = fd
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, 0, PREFETCH_HEAD, os.POSIX_FADV_WILLNEED)
            self.opened += 1
        fd = self.ahead.pop(index, None)
        return fd if fd is not None else os.open(self.paths[index], os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in self.ahead.values():
            os.close(fd)
        self.ahead.clear()


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


def _make_dirs(root: Path, folder: Path, guest: str) -> None:
    """Create the missing directories down to ``folder`` (inside ``root``), 0755 and owned by 0:0."""
    made = []
    parent = folder
    while not parent.exists():
        made.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        rel = "/" + parent.relative_to(root).as_posix() if parent != root else "/"
        raise InputError(f"guest path {guest}: {rel} in the image is not a directory")
    for made_dir in reversed(made):
        made_dir.mkdir(mode=0o755)
        os.chown(made_dir, 0, 0)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def inject_mounted(root: Path, items: list[Item], progress: Callable[[int], None] | None = None) -> None:
    """Copy the payload into a mounted guest ``root`` and make it durable (``syncfs`` of that mount).

    Each guest directory is resolved (symlinks inside ``root``) and created once, not once per
    file; a file's own name is looked up with one ``lstat`` and resolved only when the guest has
    a symlink there. Paths are plain strings in the loop: a wheelhouse has thousands of files.
    """
    meter = _Meter(progress)
    folders: dict[str, str] = {}
    sources = _Sources(items)
    try:
        for index, item in enumerate(items):
            guest_dir, name = posixpath.split(item.guest)
            folder = folders.get(guest_dir)
            if folder is None:
                resolved = resolve_in(root, guest_dir)
                _make_dirs(root, resolved, item.guest)
                folder = folders[guest_dir] = os.fspath(resolved)
            dst = os.path.join(folder, name)
            st = _lstat(dst)
            if st is not None and stat.S_ISLNK(st.st_mode):
                target = resolve_in(root, item.guest)
                _make_dirs(root, target.parent, item.guest)
                dst = os.fspath(target)
                st = _lstat(dst)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise InputError(f"guest path {item.guest} is a directory; cannot write a file there")
            fin = sources.take(index)
            try:
                _write_file(fin, dst, item.mode, st is not None, meter)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InputError(f"the root filesystem is full while writing {item.guest}") from None
                if exc.errno == errno.ENOTDIR:
                    raise InputError(
                        f"guest path {item.guest}: a parent in the image is not a directory"
                    ) from None
                raise
            finally:
                os.close(fin)
    finally:
        sources.close()
    sync_mount(root)
    meter.flush()


def sync_mount(root: Path) -> None:
    """``syncfs`` of the filesystem mounted at ``root``: its data reaches the loop device, whose
    flush fsyncs the image file, so the bytes are on disk without syncing every other filesystem
    of the host (``os.sync`` also waits for unrelated writers). ``os.sync`` where libc has none."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        os.sync()
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {root}: {os.strerror(err)}")
    finally:
        os.close(fd)


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
