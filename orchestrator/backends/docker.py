"""The docker backend: each run is one detached container on a Docker engine (the docker SDK).

The container is the run's own instantiation, ``command.json``'s ``container`` section (the
render writes it when the spec sets ``gem5.container``): the image, gem5's argv naming fixed
mount points, the bind mounts (host ``.`` is the run directory, the working directory inside),
devices and security options. The gem5 binary is one of the mounts: gem5's gpu-fs image holds
none. A run rendered without a container runs in ``backend.settings.image`` when that is set,
its container section made the same way (``gem5_configs.command``); else submit refuses it.

What the SDK does not do for us, we do here:

* the deadline: ``wait(timeout)`` only bounds one HTTP call, so the deadline is stored beside
  the run (``logs/backend.json``, with the container id: the handle) and a poll past it stops
  the container (SIGTERM through ``docker-init`` to gem5, SIGKILL after ``grace_s``);
* logs: a follower thread per stream appends the container's stdout/stderr to
  ``logs/backend.out|err`` while the run goes; offsets are counted from the start of the
  container's own log, so a conductor that restarted (``adopt``) picks up where the file ends,
  with nothing lost or doubled, and the end of a run always catches up in full;
* the end: exit code, ``State.OOMKilled``, a kill from outside (the engine's own ``kill``
  event), a container removed from outside (``lost``) become ``Poll.detail``;
* cleanup: every container is labelled (``layerlab.run_id``, ``layerlab.workspace``,
  ``layerlab.run_dir``) and removed once its ended run is fetched, or when it is cancelled.

Containers are unprivileged: no capabilities, ``no-new-privileges``, no network, the caller's
uid:gid. What a run needs beyond that (``/dev/kvm`` for gem5's KVM CPU, ``seccomp=unconfined``
for KVM perf counters) comes from its command.json and is written to ``logs/backend.err`` and
``backend.json``. The engine must see this host's paths (a local socket, or a remote engine
with the same paths mounted): bind mounts name them, and outputs land in the run directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from foundation import atomic
from foundation.errors import InputError
from orchestrator.backends.base import Poll

GRACE_S = 10.0
STATE_FILE = "backend.json"
STREAMS = ("out", "err")
LABEL_RUN_ID = "layerlab.run_id"
LABEL_WORKSPACE = "layerlab.workspace"
LABEL_RUN_DIR = "layerlab.run_dir"
#: What each extra privilege a run may ask for is for (written to the run's log).
WHY = {
    "/dev/kvm": "gem5's KVM CPU",
    "seccomp=unconfined": "perf_event_open, for gem5's KVM perf counters",
}
_SCHEMES = ("unix://", "tcp://", "http://", "https://", "ssh://")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IMAGE_REF = re.compile(r"[\w./:@-]+")
_RUNNING = ("created", "running", "paused", "restarting", "removing")


def _setting(key: str, message: str) -> InputError:
    return InputError(f"backend.settings.{key}: {message}")


def _check_settings(
    docker_host: Any, image: Any, mounts: Any, env: Any, grace_s: Any
) -> tuple[str | None, str | None, list[str], dict[str, str], float]:
    if docker_host is not None and not (isinstance(docker_host, str) and docker_host.startswith(_SCHEMES)):
        raise _setting("docker_host", f"{docker_host!r} is not a daemon URL ({', '.join(_SCHEMES)}...)")
    if image is not None and not (isinstance(image, str) and _IMAGE_REF.fullmatch(image)):
        raise _setting("image", f"{image!r} is not an image reference (name[:tag][@sha256:...])")
    if mounts is None:
        mounts = []
    if not isinstance(mounts, list):
        raise _setting("mounts", "give a list of absolute host paths (mounted read-only, same path inside)")
    for index, path in enumerate(mounts):
        if not (isinstance(path, str) and path.startswith("/")):
            raise _setting(f"mounts[{index}]", f"{path!r} is not an absolute path")
        if not os.path.exists(path):
            raise _setting(f"mounts[{index}]", f"{path} does not exist on this host")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise _setting("env", "give a mapping NAME: value (added to each container's environment)")
    for name, value in env.items():
        if not (isinstance(name, str) and _ENV_NAME.fullmatch(name)):
            raise _setting("env", f"{name!r} is not an environment variable name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _setting(f"env.{name}", f"{value!r} is not a string or a number")
    if isinstance(grace_s, bool) or not isinstance(grace_s, int | float) or grace_s < 0:
        raise _setting("grace_s", f"{grace_s!r} is not a number of seconds >= 0")
    return docker_host, image, list(mounts), {k: str(v) for k, v in env.items()}, float(grace_s)


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        docker_host: str | None = None,
        image: str | None = None,
        mounts: list[str] | None = None,
        env: dict[str, str] | None = None,
        grace_s: float = GRACE_S,
        workspace: Path | None = None,
        resources: tuple[int, float] = (1, 4.0),
    ) -> None:
        self.docker_host, self.image, self.mounts, self.env, self.grace_s = _check_settings(
            docker_host, image, mounts, env, grace_s
        )
        self.workspace = Path(workspace).resolve() if workspace else None
        self.cpus, self.mem_gib = float(resources[0]), float(resources[1])
        self._api: Any = None  # docker.APIClient, made on first use (the SDK is slow to import)
        self._kwargs: dict[str, Any] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._followers: dict[tuple[str, str], tuple[threading.Thread, Any]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._ended: set[str] = set()
        self._closing = threading.Event()
        self._info: dict[str, Any] | None = None

    # -- the engine
    def _client(self) -> Any:
        if self._api is None:
            import docker
            from docker.utils import kwargs_from_env

            kwargs = kwargs_from_env()
            if self.docker_host:
                kwargs["base_url"] = self.docker_host
            kwargs.setdefault("base_url", "unix:///var/run/docker.sock")
            try:
                self._api = docker.APIClient(version="auto", timeout=60, **kwargs)
            except docker.errors.DockerException as exc:
                raise _setting(
                    "docker_host", f"no docker engine at {kwargs['base_url']} ({_short(exc)}); start dockerd"
                ) from None
            self._kwargs = {**kwargs, "version": self._api.api_version, "timeout": 60}
        return self._api

    @property
    def _local(self) -> bool:
        """Whether the engine is on this machine (a unix socket): device checks can be made here."""
        self._client()
        return str(self._kwargs.get("base_url")).startswith(("unix://", "http+unix://"))

    def _engine_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self._client().info()
        return self._info

    def host(self) -> str:
        return str(self._engine_info().get("Name") or "docker")

    def capacity(self) -> tuple[float, float]:
        """The engine's CPUs and memory (GiB): what runs at once may reserve (admission)."""
        info = self._engine_info()
        return float(info.get("NCPU") or 1), float(info.get("MemTotal") or 0) / 2**30 or float("inf")

    # -- submit
    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        from docker.errors import APIError, ImageNotFound
        from docker.types import LogConfig, Mount

        from orchestrator.backends.pathmap import read_command

        run_dir = run_dir.resolve()
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        command = read_command(run_dir)
        spec, notes = self._container_of(run_dir, command)
        api = self._client()
        image = spec["image"]
        try:
            api.inspect_image(image)
        except ImageNotFound:
            raise InputError(
                f"gem5.container: image {image!r} is not on the docker engine ({self.host()}); "
                "`docker pull` or `docker load` it there first (nothing is pulled for you)"
            ) from None
        mounts, targets = [], set()
        for mount in spec["mounts"]:
            host = str(run_dir) if mount["host"] == "." else mount["host"]
            if mount["mode"] == "rw" and not os.path.exists(host):
                Path(host).mkdir(parents=True)  # a folder the run writes (a checkpoint): ours, not root's
            if not os.path.exists(host):
                raise InputError(f"{run_dir / 'command.json'}: mount source {host} does not exist")
            mounts.append(Mount(mount["container"], host, type="bind", read_only=mount["mode"] != "rw"))
            targets.add(mount["container"])
        for path in self.mounts:
            if path not in targets:
                mounts.append(Mount(path, path, type="bind", read_only=True))
        argv = list(spec["argv"])
        if argv and argv[0].startswith("/layerlab/") and argv[0] not in targets:
            raise InputError(
                f"gem5.binary: the run's gem5 ({argv[0]}) is not mounted into the container: the gem5 "
                "image holds no binary; name the host's gem5.opt (or a tree with build/VEGA_X86/gem5.opt)"
            )
        privileges, group_add = self._privileges(run_dir, spec)
        notes += self._clear_leftovers(run_dir)
        user = f"{os.getuid()}:{os.getgid()}"
        run_id = str(command.get("run_id") or run_dir.name)
        name = f"layerlab-{run_id}-{secrets.token_hex(3)}"
        labels = {LABEL_RUN_ID: run_id, LABEL_RUN_DIR: str(run_dir)}
        if self.workspace is not None:
            labels[LABEL_WORKSPACE] = str(self.workspace)
        memory = int(self.mem_gib * 2**30)
        host_config = api.create_host_config(
            mounts=mounts,
            devices=list(spec.get("devices") or []),
            security_opt=["no-new-privileges", *(spec.get("security_opt") or [])],
            cap_drop=["ALL"],
            group_add=group_add or None,
            init=True,  # docker-init forwards SIGTERM to gem5 (a PID 1 would ignore it)
            network_mode="none",
            nano_cpus=int(self.cpus * 1e9),
            mem_limit=memory,
            memswap_limit=memory,  # no swap: past its memory a run is OOM killed, not slowed to a crawl
            log_config=LogConfig(type="json-file"),  # readable by `logs`, whatever the engine's default
        )
        header = (
            f"layerlab docker backend: container {name} of {image} on {self.host()}, as {user}, "
            f"unprivileged (no capabilities, no-new-privileges, no network)"
        )
        extra = "; extra privileges: " + ", ".join(privileges) if privileges else "; no extra privileges"
        (logs / "backend.out").touch()
        with (logs / "backend.err").open("a", encoding="utf-8") as err:
            err.write(header + extra + "\n" + "".join(f"layerlab docker backend: {n}\n" for n in notes))
        try:
            created = api.create_container(
                image,
                command=argv,
                working_dir=spec.get("working_dir") or "/layerlab/run",
                user=user,
                environment={**self.env, **env},
                labels=labels,
                name=name,
                host_config=host_config,
            )
        except APIError as exc:
            raise InputError(
                f"{run_dir / 'command.json'}: docker cannot create the container: {_short(exc)}"
            ) from None
        cid = str(created["Id"])
        meta = {
            "container": cid,
            "name": name,
            "image": image,
            "engine": self._kwargs.get("base_url"),
            "user": user,
            "run_dir": str(run_dir),
            "deadline": time.time() + timeout_s,
            "started": time.time(),
            "grace_s": self.grace_s,
            "privileges": privileges,
            "resources": {"cpus": self.cpus, "mem_gib": self.mem_gib},
            "log_base": {s: _size(logs / f"backend.{s}") for s in STREAMS},
            "container_spec": spec,
        }
        self._meta[cid] = meta
        self._save(meta)
        try:
            api.start(cid)
        except APIError as exc:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True)
            self._meta.pop(cid, None)
            raise InputError(
                f"{run_dir / 'command.json'}: docker cannot start the container: {_short(exc)}"
            ) from None
        for stream in STREAMS:
            self._follow(cid, stream)
        return cid

    def _clear_leftovers(self, run_dir: Path) -> list[str]:
        """Remove containers an earlier attempt at this run directory left (a crash mid-submit):
        never two gem5 in one run directory."""
        from docker.errors import APIError, NotFound

        notes = []
        api = self._client()
        for old in api.containers(all=True, filters={"label": f"{LABEL_RUN_DIR}={run_dir}"}):
            with contextlib.suppress(NotFound, APIError):
                api.remove_container(old["Id"], force=True)
            notes.append(f"removed container {old['Id'][:12]} ({old.get('State')}) an earlier attempt left")
        return notes

    def _container_of(self, run_dir: Path, command: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The run's container section; for a run rendered without one, ``settings.image``'s."""
        own = command.get("container")
        if own:
            notes = []
            if self.image and self.image != own.get("image"):
                notes.append(f"backend.settings.image {self.image} not used: the run names its own image")
            return own, notes
        if not self.image:
            raise InputError(
                "gem5.container: the docker backend runs gem5 in a container; name the image it runs "
                "in (gem5's gpu-fs image, pinned by digest), or set backend.settings.image"
            )
        import dataclasses

        from gem5_configs.command import build_command
        from gem5_configs.render import read_params

        params = read_params(run_dir)
        inst = dataclasses.replace(params.instantiation, docker_image=self.image)
        container = build_command(dataclasses.replace(params, instantiation=inst)).container
        assert container is not None
        note = f"the run names no container: its command runs in backend.settings.image {self.image}"
        return container.to_json(), [note]

    def _privileges(self, run_dir: Path, spec: dict[str, Any]) -> tuple[list[str], list[str]]:
        """What the container gets beyond the unprivileged default, and why; refuses what cannot be."""
        out, groups = [], []
        for device in spec.get("devices") or []:
            host = device.split(":", 1)[0]
            out.append(f"device {device} ({WHY.get(host, 'named by command.json')})")
            if not self._local:
                continue
            if not os.path.exists(host):
                need = (
                    " (gem5.cpu: kvm); run on a host with KVM, or use gem5.cpu: atomic"
                    if host == "/dev/kvm"
                    else ""
                )
                raise InputError(
                    f"{run_dir / 'command.json'}: the run needs {host}{need}, which this host lacks"
                )
            gid = os.stat(host).st_gid
            if os.getuid() != 0 and gid != os.getgid() and str(gid) not in groups:
                groups.append(str(gid))
                out.append(f"group {gid} (access to {host})")
        for opt in spec.get("security_opt") or []:
            out.append(f"security-opt {opt} ({WHY.get(opt, 'named by command.json')})")
        return out, groups

    # -- state beside the run
    def _save(self, meta: dict[str, Any]) -> None:
        path = Path(meta["run_dir"]) / "logs" / STATE_FILE
        atomic.write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def _meta_of(self, handle: str, run_dir: Path | None = None) -> dict[str, Any] | None:
        if handle in self._meta:
            return self._meta[handle]
        if run_dir is None:
            with contextlib.suppress(Exception):
                labels = self._client().inspect_container(handle)["Config"]["Labels"] or {}
                run_dir = Path(labels[LABEL_RUN_DIR])
        if run_dir is None:
            return None
        try:
            meta = json.loads((run_dir / "logs" / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("container") != handle:
            return None
        self._meta[handle] = meta
        return meta

    def adopt(self, handle: str, run_dir: Path) -> None:
        """Know a run an earlier conductor started (its backend.json) before polling it."""
        self._meta_of(handle, run_dir.resolve())

    # -- logs
    def _follow(self, cid: str, stream: str) -> None:
        """A follower thread appending the container's ``stream`` to its log file (if none runs)."""
        key = (cid, stream)
        running = self._followers.get(key)
        if self._closing.is_set() or (running is not None and running[0].is_alive()):
            return
        import docker

        holder: dict[str, Any] = {}

        def follow() -> None:
            api = docker.APIClient(**self._kwargs)
            holder["api"] = api
            try:
                chunks = api.logs(
                    cid, stdout=stream == "out", stderr=stream == "err", stream=True, follow=True
                )
                holder["stream"] = chunks
                offset = 0
                for chunk in chunks:
                    self._append(cid, stream, offset, chunk)
                    offset += len(chunk)
            except Exception:  # the engine went away or close() cut it: a later poll catches up
                pass
            finally:
                with contextlib.suppress(Exception):
                    api.close()

        thread = threading.Thread(target=follow, name=f"docker-logs-{cid[:12]}-{stream}", daemon=True)
        self._followers[key] = (thread, holder)
        thread.start()

    def _append(self, cid: str, stream: str, offset: int, chunk: bytes) -> None:
        """Write the part of ``chunk`` (at ``offset`` in the container's log) the file lacks."""
        meta = self._meta.get(cid)
        if meta is None:
            return
        path = Path(meta["run_dir"]) / "logs" / f"backend.{stream}"
        with self._locks.setdefault((cid, stream), threading.Lock()):
            have = _size(path) - int(meta["log_base"][stream])
            if offset + len(chunk) <= have:
                return
            with path.open("ab") as handle:
                handle.write(chunk[max(0, have - offset) :])

    def _catch_up(self, cid: str) -> None:
        """The ended container's whole log into the files (what a follower has not written yet)."""
        for stream in STREAMS:
            running = self._followers.get((cid, stream))
            if running is not None:
                running[0].join(timeout=5)
            with contextlib.suppress(Exception):
                data = self._client().logs(cid, stdout=stream == "out", stderr=stream == "err")
                self._append(cid, stream, 0, data)

    # -- poll, cancel, fetch
    def poll(self, handle: str) -> Poll:
        meta = self._meta_of(handle) or {}
        state = self._state(handle)
        if state is not None and state.get("Status") in _RUNNING and meta:
            if time.time() > float(meta["deadline"]):
                if not meta.get("timed_out"):
                    meta["timed_out"] = True  # first, so a conductor that dies mid-stop knows
                    self._save(meta)
                self._stop(handle)  # again on a later poll, should the engine have failed it
                state = self._state(handle)
            else:
                for stream in STREAMS:
                    self._follow(handle, stream)
        if state is None:
            meta = self._reread(handle, meta)
            self._ended.add(handle)
            if meta.get("cancelled"):
                return Poll("lost", None, bool(meta.get("timed_out")))
            name = meta.get("name") or handle[:12]
            return Poll(
                "lost",
                None,
                bool(meta.get("timed_out")),
                f"docker: container {name} is gone (removed outside layerlab before it was seen to end)",
            )
        if state.get("Status") in _RUNNING:
            return Poll("running")
        self._catch_up(handle)
        self._ended.add(handle)
        code = state.get("ExitCode")
        return Poll(
            "exited",
            None if code is None else int(code),
            bool(meta.get("timed_out")),
            self._detail(handle, state, meta),
        )

    def _state(self, handle: str) -> dict[str, Any] | None:
        """The container's ``State`` (None: the engine no longer has it)."""
        from docker.errors import NotFound

        try:
            return self._client().inspect_container(handle)["State"]
        except NotFound:
            return None

    def _detail(self, handle: str, state: dict[str, Any], meta: dict[str, Any]) -> str | None:
        """How the container ended, when the engine knows better than gem5's own logs."""
        if meta.get("timed_out") or meta.get("cancelled"):
            return None
        name = meta.get("name") or handle[:12]
        if state.get("OOMKilled"):
            return f"docker: OOM killed (container {name}, memory limit {self.mem_gib:g} GiB: backend.mem_gib_per_run)"
        if state.get("Error"):
            return f"docker: container {name}: {state['Error']}"
        signals = self._kills(handle, meta)
        if signals:
            return (
                f"docker: container {name} was killed from outside layerlab "
                f"(signal {'/'.join(signals)} through the docker engine: `docker kill` or `docker stop`)"
            )
        return None

    def _kills(self, handle: str, meta: dict[str, Any]) -> list[str]:
        """Signals the engine sent the container on someone's request (its ``kill`` events)."""
        since = int(float(meta.get("started") or time.time() - 86400)) - 1
        try:
            events = self._client().events(
                since=since,
                until=f"{time.time():.6f}",  # now: an `until` ahead would make the engine wait for it
                filters={"container": handle, "event": "kill"},
                decode=True,
            )
            return [str((e.get("Actor") or {}).get("Attributes", {}).get("signal", "?")) for e in events]
        except Exception:
            return []

    def _reread(self, handle: str, meta: dict[str, Any]) -> dict[str, Any]:
        """backend.json again: another process (`layerlab cancel`) may have written to it."""
        if not meta.get("run_dir"):
            return meta
        fresh = self._meta.pop(handle, None)
        again = self._meta_of(handle, Path(meta["run_dir"])) or fresh or meta
        return again

    def _stop(self, handle: str) -> None:
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            self._client().stop(handle, timeout=math.ceil(self.grace_s))

    def _is_ours(self, handle: str) -> bool:
        from docker.errors import APIError, NotFound

        try:
            labels = self._client().inspect_container(handle)["Config"]["Labels"] or {}
        except (NotFound, APIError):
            return False
        return LABEL_RUN_ID in labels

    def cancel(self, handle: str) -> None:
        from docker.errors import APIError, NotFound

        if not self._is_ours(handle):
            return  # gone already, or not a container layerlab started: leave it
        meta = self._meta_of(handle)
        if meta is not None:
            meta["cancelled"] = True
            self._save(meta)
        self._stop(handle)
        if meta is not None:
            self._catch_up(handle)
        with contextlib.suppress(NotFound, APIError):
            self._client().remove_container(handle, force=True)
        self._forget(handle)

    def fetch(self, handle: str, run_dir: Path) -> None:
        """Outputs are in ``run_dir`` already (bind mounts); an ended run's container is removed."""
        from docker.errors import APIError, NotFound

        if handle not in self._ended:
            return
        with contextlib.suppress(NotFound, APIError):
            self._client().remove_container(handle, force=True)
        self._forget(handle)

    def _forget(self, handle: str) -> None:
        for stream in STREAMS:
            running = self._followers.pop((handle, stream), None)
            if running is not None:
                _cut(running[1])
            self._locks.pop((handle, stream), None)
        self._ended.discard(handle)
        self._meta.pop(handle, None)

    def close(self) -> None:
        """Stop the follower threads (the runs go on: a later conductor adopts them)."""
        self._closing.set()
        followers = list(self._followers.values())
        self._followers.clear()
        for thread, holder in followers:
            _cut(holder)
            thread.join(timeout=2)
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None


def _cut(holder: dict[str, Any]) -> None:
    """Close a follower's stream and client: its blocked read ends, and so does the thread."""
    for key in ("stream", "api"):
        if holder.get(key) is not None:
            with contextlib.suppress(Exception):
                holder[key].close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return " ".join(text.split())[:300]
