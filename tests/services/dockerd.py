"""A private Docker engine for tests, entirely inside a temp dir, and a tiny image to run in it.

Tests never use the machine's own dockerd (if any): other sessions share that machine, and a
test must leave nothing behind. ``PrivateDockerd`` starts its own ``containerd`` (dockerd 20.10
would otherwise join a system containerd it finds at /run/containerd) and ``dockerd`` with every
path under one temp dir (data root, exec root, pid file, sockets), no bridge and no iptables
(test containers run with no network), and the storage driver dockerd picks itself (overlay2;
vfs where overlay does not work on the filesystem). ``stop`` removes every container, stops the
two daemons it started (by their own pids), unmounts what they left mounted under the temp dir
and deletes it.

No registry is reachable from CI, so the test image is made by ``docker import`` of a rootfs
tarball: busybox-static for a shell and the basic tools, plus this host's ``/usr/bin/python3``
(Debian's python3.11, with its standard library and the shared libraries ``ldd`` names), enough
for the gem5 test double (standard library only) to run inside. Facts on the engine:
../shared/reference/services_on_this_machine.md.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: Parts of the standard library the double never imports (keeps the image ~20 MB, not 55).
_STDLIB_SKIP = {
    "__pycache__",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "site-packages",
    "dist-packages",
}
SHIM_DIR = Path("/run/containerd/s")
_LDD_PATH = re.compile(r"(/\S+) \(0x")


def missing_tools() -> str | None:
    """Why a private engine cannot start here (None: it can)."""
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    for tool in ("dockerd", "containerd", "docker", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/install-services.sh)"
    return None


class PrivateDockerd:
    """containerd + dockerd of this test only; ``host`` is its ``unix://`` URL."""

    def __init__(self, startup_s: float = 60.0) -> None:
        # A short path: unix socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="ll-dockerd-", dir="/tmp"))
        self.sock = self.root / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.log = self.root / "dockerd.log"
        self._procs: list[subprocess.Popen] = []
        # containerd's shims put their sockets in /run/containerd/s whatever its config says:
        # the folders are removed again at stop when this engine made them (and they are empty).
        self._made_run_dirs = [d for d in (SHIM_DIR.parent, SHIM_DIR) if not d.exists()]
        try:
            self._start(startup_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, startup_s: float) -> None:
        ctr = self.root / "containerd"
        ctr.mkdir()
        config = ctr / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{ctr / "root"}"\n'
            f'state = "{ctr / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{ctr / "c.sock"}"\n'
            f'[ttrpc]\n  address = "{ctr / "c.sock.ttrpc"}"\n'
            f'[debug]\n  address = "{ctr / "debug.sock"}"\n'
        )
        with (ctr / "containerd.log").open("wb") as log:
            self._procs.append(
                subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip
        self._wait(lambda: (ctr / "c.sock").is_socket(), startup_s, "containerd")
        argv = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'docker.pid'}",
            f"--host={self.host}",
            f"--containerd={ctr / 'c.sock'}",
            "--containerd-namespace=layerlab-test",
            "--containerd-plugins-namespace=layerlab-test-plugins",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]
        with self.log.open("wb") as log:
            self._procs.append(
                subprocess.Popen(
                    argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
                )
            )
        self._wait(self._ready, startup_s, "dockerd")

    def _ready(self) -> bool:
        if not self.sock.is_socket():
            return False
        done = subprocess.run(
            self.docker_argv("info", "--format", "{{.Driver}}"), capture_output=True, text=True
        )
        self.driver = done.stdout.strip()
        return done.returncode == 0

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError(f"{what} exited at start; see {self.root}: {self._tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        logs = [self.log, self.root / "containerd" / "containerd.log"]
        return " | ".join(p.read_text(errors="replace")[-600:] for p in logs if p.is_file())

    def docker_argv(self, *args: str) -> list[str]:
        """The docker CLI talking to this engine."""
        return ["docker", "-H", self.host, *args]

    def docker(self, *args: str, input: bytes | None = None) -> str:
        done = subprocess.run(self.docker_argv(*args), input=input, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode()

    def containers(self, label: str = "layerlab.run_id") -> list[str]:
        """Ids of the containers (any state) carrying ``label``."""
        return self.docker("ps", "-aq", "--no-trunc", "--filter", f"label={label}").split()

    def stop(self) -> None:
        """Remove every container, stop both daemons (ours only, by pid), delete the temp dir."""
        dockerd = self._procs[1] if len(self._procs) > 1 else None
        if dockerd is not None and dockerd.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.docker("ps", "-aq").split()
                if ids:
                    self.docker("rm", "-f", *ids)
        for proc in reversed(self._procs):  # dockerd first, then its containerd
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()
        for folder in reversed(self._made_run_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.root.exists():  # vfs/overlay layers with odd modes: one more, harder try
            subprocess.run(["rm", "-rf", str(self.root)], check=False)


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever is still mounted below ``root`` (deepest first)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1].replace("\\040", " ") for line in lines]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextlib.contextmanager
def private_dockerd() -> Iterator[PrivateDockerd]:
    engine = PrivateDockerd()
    try:
        yield engine
    finally:
        engine.stop()


# ------------------------------------------------------------------------------ the test image
def _ldd(paths: list[Path]) -> set[str]:
    libs: set[str] = set()
    for path in paths:
        done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            match = _LDD_PATH.search(line)
            if match:
                libs.add(match.group(1))
    return libs


def _add_file(tar: tarfile.TarFile, source: Path, name: str, mode: int | None = None) -> None:
    data = source.read_bytes()  # follows symlinks: the image gets the file itself
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode or (source.stat().st_mode & 0o7777), 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def rootfs_tarball(python: Path = Path("/usr/bin/python3")) -> bytes:
    """busybox-static + ``python`` (its stdlib, its and its extension modules' shared libs)."""
    python = python.resolve()
    version = python.name.removeprefix("python")  # "3.11"
    stdlib = python.parent.parent / "lib" / f"python{version}"
    if not (stdlib / "os.py").is_file():
        raise RuntimeError(f"no standard library beside {python} (looked in {stdlib})")
    busybox = Path(shutil.which("busybox") or "/bin/busybox").resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        made: set[str] = set()

        def parents(name: str) -> None:
            parts = Path(name.lstrip("/")).parts[:-1]
            for i in range(1, len(parts) + 1):
                folder = "/".join(parts[:i])
                if folder not in made:
                    made.add(folder)
                    _add_dir(tar, folder)

        for folder, mode in (("tmp", 0o1777), ("etc", 0o755), ("bin", 0o755), ("dev", 0o755),
                             ("proc", 0o555), ("sys", 0o555), ("root", 0o700)):  # fmt: skip
            made.add(folder)
            _add_dir(tar, folder, mode)
        _add_file(tar, busybox, "bin/busybox", 0o755)
        applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
        for applet in sorted(set(applets.stdout.split())):
            if applet.endswith("/busybox"):
                continue
            parents(applet)
            _add_link(tar, applet, "/bin/busybox")
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
        target = f"usr/bin/python{version}"
        parents(target)
        _add_file(tar, python, target, 0o755)
        _add_link(tar, "usr/bin/python3", f"python{version}")
        modules: list[Path] = [python]
        for path in sorted(stdlib.rglob("*")):
            rel = path.relative_to(stdlib)
            if any(part in _STDLIB_SKIP or part.startswith("config-") for part in rel.parts):
                continue
            name = f"usr/lib/python{version}/{rel}"
            if path.is_dir() and not path.is_symlink():
                parents(name + "/x")
                continue
            if not path.exists():  # a dangling link (Debian's sitecustomize → /etc): leave it out
                continue
            if path.is_file():
                parents(name)
                _add_file(tar, path, name)
                if path.suffix == ".so":
                    modules.append(path)
        for lib in sorted(_ldd(modules)):
            parents(lib)
            _add_file(tar, Path(lib), lib)
    return buf.getvalue()


def build_test_image(engine: PrivateDockerd, tag: str = "layerlab-test-python:1") -> str:
    """``docker import`` the rootfs tarball into ``engine`` as ``tag``; smoke-tested."""
    engine.docker("import", "-", tag, input=rootfs_tarball())
    out = engine.docker(
        "run",
        "--rm",
        "--network=none",
        tag,
        "/usr/bin/python3",
        "-c",
        "import json, sys; print(sys.version_info[:2])",
    )
    if "(3," not in out:
        raise RuntimeError(f"the test image's python does not run: {out!r}")
    return tag


def load_image(engine: PrivateDockerd, tarball: Path) -> None:
    """``docker load`` a saved image (a real gpu-fs image for runs on a real gem5)."""
    with tarball.open("rb") as handle:
        engine.docker("load", input=handle.read())
