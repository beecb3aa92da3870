"""The docker route: e2fsprogs run inside a container, for hosts where docker works and they do not.

The same steps as the rootless route (``e2fsck``, ``resize2fs``, ``debugfs`` reads of the guest
and ``debugfs -w`` injection, all on the partition's byte range inside the image file) run in
one container per build, started with the docker SDK from an image the user names (recipe
``docker_image:``, ``--docker-image``); nothing is pulled. The image needs ``sh``, ``sleep``
and e2fsprogs (``debugfs``, ``e2fsck``, ``resize2fs``). Everything else (the copy, the partition
table, digests, the final rename) stays on the host, which is why files are bind-mounted at
their own paths: a command line means the same inside and out.

No loop device is involved, so the container is unprivileged: no capabilities,
``no-new-privileges``, no network, a read-only root, the caller's uid:gid; the build log says so.
Mounts: the derived image's folder read-write, the base and the payload's folders read-only
(each left out when a writable bind already covers it), and a scratch folder for debugfs scripts.

Cleanup: the container is labelled (``layerlab.image_build`` with this host and pid) and removed
when the build ends, on errors and SIGINT/SIGTERM too (``build`` turns SIGTERM into an
exception). A build killed outright (SIGKILL) cannot clean up: the next build on this host
removes containers whose build process is gone. The engine is the one ``DOCKER_HOST`` names
(default ``/var/run/docker.sock``); it must see this host's files (a local engine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from disk_images import e2fs
from foundation.errors import InputError

LABEL = "layerlab.image_build"
LABEL_HOST = "layerlab.image_build.host"
LABEL_PID = "layerlab.image_build.pid"
#: The container's main process: it only keeps the container up for ``exec``.
KEEPALIVE = ["sleep", "2147483647"]
SCRATCH_PREFIX = ".layerlab-docker-"
NEEDS = "sh, sleep and e2fsprogs (debugfs, e2fsck, resize2fs)"
IMAGE_HINT = (
    "build one, e.g. `printf 'FROM debian:bookworm-slim\\nRUN apt-get update && apt-get install -y "
    "e2fsprogs\\n' | docker build -t layerlab-e2fs -` (README, Disk images)"
)
_PROBE = r"""
for t in debugfs e2fsck resize2fs; do
  p=$(command -v "$t" 2>/dev/null) || p=
  if [ -z "$p" ]; then
    for d in /usr/sbin /sbin /usr/bin /bin; do [ -x "$d/$t" ] && { p="$d/$t"; break; }; done
  fi
  echo "$t=$p"
done
[ -f "$1" ] && echo "marker=seen"
"""


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return " ".join(text.split())[:300]


def engine_url() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def client(timeout: float | None = 60) -> Any:
    """A docker SDK client for ``DOCKER_HOST`` (``InputError`` naming the engine when none answers)."""
    try:
        import docker
        from docker.utils import kwargs_from_env
    except ImportError:
        raise InputError("access docker: the docker SDK is not installed (pip install docker)") from None
    kwargs = kwargs_from_env()
    kwargs.setdefault("base_url", engine_url())
    try:
        return docker.DockerClient(version="auto", timeout=timeout, **kwargs)
    except docker.errors.DockerException as exc:
        raise InputError(
            f"access docker: no docker engine answers at {kwargs['base_url']} ({_short(exc)}); "
            "start dockerd or set DOCKER_HOST"
        ) from None


def unreachable(timeout: float = 5) -> str | None:
    """Why no docker engine can be used here (None: one answers)."""
    try:
        client(timeout).close()
    except InputError as exc:
        return str(exc)
    return None


def _minimal(paths: Iterable[Path]) -> list[Path]:
    """The paths with every one inside another left out (a bind of a folder covers its contents)."""
    kept: list[Path] = []
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: (len(p.parts), str(p))):
        if not any(path == k or path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def bind_mounts(read_only: Iterable[Path], read_write: Iterable[Path]) -> list[tuple[Path, bool]]:
    """``(path, read_only)`` binds, each at its own path: writable ones first, covered ones left out."""
    rw = _minimal(read_write)
    ro = [p for p in _minimal(read_only) if not any(p == w or p.is_relative_to(w) for w in rw)]
    for path in [*rw, *ro]:
        if path == Path("/"):
            raise InputError("access docker: cannot bind-mount / into the container; move the files")
        if not path.exists():
            raise InputError(f"access docker: {path} does not exist on this host")
    return [(p, False) for p in rw] + [(p, True) for p in ro]


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM wait until the block is done (so a second Ctrl-C cannot skip the removal)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _alive(pid: str) -> bool:
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def remove_stale(api: Any, log: Callable[[str], None]) -> list[str]:
    """Remove containers of builds on this host whose process is gone (a SIGKILLed build's)."""
    removed = []
    host = socket.gethostname()
    for container in api.containers.list(all=True, filters={"label": LABEL}):
        labels = container.labels or {}
        if labels.get(LABEL_HOST) != host or _alive(labels.get(LABEL_PID, "")):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.append(container.name)
            log(
                f"docker: removed {container.name}, left by an image build that died "
                f"(pid {labels.get(LABEL_PID)})"
            )
    return removed


def _remove_stale_scratch(near: Path) -> None:
    for folder in near.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


class DockerRunner:
    """An ``e2fs.Runner`` that runs each tool with ``exec`` in the build's container."""

    def __init__(self, container: Any, tools: dict[str, str], scratch: Path, image_ref: dict) -> None:
        self.container = container
        self.tools = tools
        self.scratch = scratch
        self.image_ref = image_ref

    def tool(self, name: str) -> str:
        try:
            return self.tools[name]
        except KeyError:
            raise InputError(f"access docker: {name} is not one of the tools this route runs") from None

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        from docker.errors import APIError, NotFound
        from requests.exceptions import RequestException

        try:
            result = self.container.exec_run(argv, demux=True, environment={"EXT2FS_NO_MTAB_OK": "1"})
        except NotFound:
            raise InputError(
                f"access docker: the build's container {self.container.name} is gone (removed from outside?)"
            ) from None
        except APIError as exc:
            raise InputError(f"access docker: exec in {self.container.name}: {_short(exc)}") from None
        except (OSError, RequestException) as exc:
            raise InputError(f"access docker: lost the engine at {engine_url()} ({_short(exc)})") from None
        out, err = result.output or (None, None)
        return subprocess.CompletedProcess(argv, int(result.exit_code or 0), out or b"", err or b"")


def _start(api: Any, image: str, name: str, user: str, binds: list[tuple[Path, bool]]) -> Any:
    from docker.errors import APIError
    from docker.types import Mount

    token = name.rsplit("-", 1)[-1]
    try:
        container = api.containers.create(
            image,
            KEEPALIVE,
            name=name,
            labels={LABEL: token, LABEL_HOST: socket.gethostname(), LABEL_PID: str(os.getpid())},
            user=user,
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            read_only=True,
            init=True,
            mounts=[Mount(str(p), str(p), type="bind", read_only=ro) for p, ro in binds],
            detach=True,
        )
        container.start()
    except APIError as exc:
        raise InputError(
            f"docker image {image!r}: cannot start its container ({_short(exc)}); it needs {NEEDS}"
        ) from None
    return container


def _probe(container: Any, image: str, scratch: Path) -> dict[str, str]:
    """The tools' paths inside, after checking the container sees this host's files."""
    from docker.errors import APIError

    marker = scratch / "visible"
    marker.touch()
    try:
        probe = container.exec_run(["sh", "-c", _PROBE, "sh", str(marker)], demux=True)
    except APIError as exc:
        raise InputError(
            f"docker image {image!r}: cannot run sh in it ({_short(exc)}); it needs {NEEDS}"
        ) from None
    out = (probe.output[0] or b"").decode("utf-8", "replace") if probe.output else ""
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    missing = [t for t in e2fs.TOOLS if not found.get(t)]
    if probe.exit_code not in (0, 1) or missing:
        what = ", ".join(missing) if missing else f"sh (exit {probe.exit_code})"
        raise InputError(f"docker image {image!r} has no {what}; it needs {NEEDS}: {IMAGE_HINT}")
    if found.get("marker") != "seen":
        raise InputError(
            f"access docker: the engine at {engine_url()} does not see this host's files "
            f"({marker} is not visible in the container); the docker route needs a local engine"
        )
    return {t: found[t] for t in e2fs.TOOLS}


@contextlib.contextmanager
def session(
    image: str,
    *,
    read_only: Iterable[Path] = (),
    read_write: Iterable[Path] = (),
    scratch_near: Path,
    log: Callable[[str], None] = lambda _m: None,
) -> Iterator[DockerRunner]:
    """Start the build's container of ``image`` with the binds; always removed on the way out."""
    from docker.errors import APIError, ImageNotFound, NotFound

    # No read timeout: one e2fsck of a 50 GB filesystem or one debugfs batch can run for minutes.
    api = client(timeout=None)
    name = f"layerlab-image-{secrets.token_hex(4)}"
    user = f"{os.getuid()}:{os.getgid()}"
    container = None
    scratch: Path | None = None
    try:
        try:
            found = api.images.get(image)
        except ImageNotFound:
            raise InputError(
                f"docker image {image!r} is not on the engine at {engine_url()} (nothing is pulled); "
                f"it needs {NEEDS}: {IMAGE_HINT}"
            ) from None
        except APIError as exc:
            raise InputError(f"docker image {image!r}: {_short(exc)}") from None
        remove_stale(api, log)
        _remove_stale_scratch(scratch_near)
        scratch = Path(
            tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=scratch_near)
        ).absolute()
        binds = bind_mounts(read_only, [*read_write, scratch])
        container = _start(api, image, name, user, binds)
        tools = _probe(container, image, scratch)
        image_ref = {"image": image, "id": found.id, "privileged": False}
        runner = DockerRunner(container, tools, scratch, image_ref)
        with e2fs.using(runner):
            version = e2fs.version()
        image_ref["e2fsprogs"] = version
        log(
            f"docker: container {name} of {image} (e2fsprogs {version}) as {user}, unprivileged "
            "(no capabilities, no network, read-only root): e2fsprogs edit the partition's byte range "
            "inside the image file, so no loop device and no privilege is needed; binds: "
            + ", ".join(f"{p} ({'ro' if ro else 'rw'})" for p, ro in binds)
        )
        yield runner
    finally:
        with _signals_held():
            target = container
            if target is None:  # interrupted while the engine was creating it: find it by name
                with contextlib.suppress(Exception):
                    target = api.containers.get(name)
            if target is not None:
                with contextlib.suppress(NotFound, APIError):
                    target.remove(force=True)
            api.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
