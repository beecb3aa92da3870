"""The ssh backend: each run is a session of its own on another host, reached over SSH (fabric).

A run must survive the connection that started it, and must never outlive its deadline, so the
remote side owns both: ``setsid`` makes the run a session of its own (a dropped connection sends
it no SIGHUP), ``timeout -k GRACE T`` ends it at its deadline, and the session leader records
its pid (``logs/backend.pid``) and, last, gem5's exit status (``logs/exit_code``). The handle is
a small JSON object (host, port, user, remote folder, pid, the pid's start time, deadline) so a
conductor started after a crash follows the run with nothing but the store.

Remote layout, under ``remote_root``:

- ``runs/<workspace name>-<tag>/<run dir relative to the workspace>/``: each run's simulation
  files, its ``run.sh``/``command.json`` with the remote paths, gem5's outdir and ``logs/``; the
  tag (a hash of this host's name and the workspace's path) keeps two workspaces apart.
- ``inputs/<sha256>/<name>``: files the host lacks (kernel, disk, a scenario), pushed once by
  content and never again; an upload lands under a temporary name and is renamed when complete.

Host paths in the argv and the env are, in order: inside the workspace -> that run folder (a boot
checkpoint stays on the host that wrote it: only its ``layerlab_checkpoint.json`` comes back);
covered by ``path_map`` -> mapped (gem5, its tree, big images); a file -> pushed by digest. A
directory that is none of these (gem5's ``--path=<tree>/configs``) is refused with the path_map
entry to add: a tree is the host's own install, not an input to copy.

Host keys are verified (``known_hosts``, default ``~/.ssh/known_hosts``; an unknown key is an
error saying how to add it); fabric's own command runner is not used for control commands
because it opens sessions without a timeout (fabric #2197): every remote command here runs on a
channel opened with the connect timeout and read with an operation timeout, over a transport
with keepalives. The remote host needs ``sh``, ``setsid``, ``timeout``, ``tar`` with gzip and
``pkill``/``ps`` (coreutils, util-linux, procps).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import math
import os
import re
import shlex
import socket
import stat
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

import paramiko
from fabric import Config, Connection

from foundation.errors import InputError
from orchestrator.backends.base import Poll
from orchestrator.backends.pathmap import PathMap, host_paths, instantiate, read_command, run_script

#: What travels to the host for each run (besides its own run.sh and command.json).
SIM_FILES = ("gem5_config*.py", "guest_run.sh", "params.json", "instantiation.json", "slice.json")
CHECKPOINT_MARKER = "layerlab_checkpoint.json"
POLL_EVERY_S = 0.5  # a remote state check at most this often (the conductor polls every 0.2 s)
PROGRESS_EVERY_S = 1.0  # the events file, while a run goes, at most this often
RETRY_S = 2.0  # after a failed connect, the next try no sooner (doubling, up to RETRY_MAX_S)
RETRY_MAX_S = 30.0
SLACK_S = 30.0  # an unreachable host's run counts as lost this long after deadline + grace
OP_TIMEOUT_S = 120.0  # a control command that takes longer: the connection is dead
FETCH_TRIES = 3
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FIELD = "backend.settings"

# Shell snippets. Every value reaches them as a positional argument ($1, $2, ...), quoted with
# shlex.quote by the caller; none is ever pasted into the script text.
_STAT = "sed 's/^.*) //' \"/proc/$1/stat\" 2>/dev/null | cut -d' ' -f1,20"  # state, start time
_INNER = (
    'echo $$ >logs/backend.pid; . ./logs/backend.env; timeout -k "$1" "$2" ./run.sh '
    ">>logs/backend.out 2>>logs/backend.err </dev/null; "
    "echo $? >logs/exit_code.tmp && mv logs/exit_code.tmp logs/exit_code"
)
_START = (
    'set -e; mkdir -p "$1"; cd "$1"; '
    'if [ -d "$2" ] && [ -n "$(ls -A "$2")" ]; then n=1; '
    'while [ -e "$2.stale-$n" ]; do n=$((n+1)); done; mv "$2" "$2.stale-$n"; fi; '
    "mkdir -p logs; rm -f logs/exit_code logs/exit_code.tmp logs/backend.pid; "
    'for d in "$@"; do case "$d" in mkdir:*) mkdir -p "${d#mkdir:}";; esac; done; '
    "tar -xzf -; set +e; "
    f'setsid sh -c {shlex.quote(_INNER)} sh "$3" "$4" >/dev/null 2>&1 </dev/null & '
    "i=0; while [ ! -s logs/backend.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
    'pid=$(cat logs/backend.pid); set -- "$pid"; '
    f's=$({_STAT}); echo "layerlab-started $pid ${{s#* }}"'
)
_KILL = (
    f"s=$({_STAT}); "
    'if [ -n "$s" ] && [ "${s#* }" != "$2" ]; then exit 0; fi; '  # the pid names another process
    'pkill -TERM -s "$1" 2>/dev/null || exit 0; i=0; '
    'while [ $i -lt "$3" ]; do ps -o stat= -s "$1" 2>/dev/null | grep -q -v "^Z" || exit 0; '
    "sleep 0.1; i=$((i+1)); done; "
    'pkill -KILL -s "$1" 2>/dev/null; exit 0'
)
_FETCH = (  # the files to bring back: outdir and logs/, minus checkpoints (only their markers)
    'cd "$1" || exit 97; out=$2; shift 2; '
    '{ find "$out" logs -name backend.env -prune -o -type f -print 2>/dev/null | '
    'while IFS= read -r f; do keep=1; for c in "$@"; do case "$f" in "$c"/*) keep=;; esac; done; '
    '[ -n "$keep" ] && printf "%s\\n" "$f"; done; '
    f'for c in "$@"; do [ -f "$c/{CHECKPOINT_MARKER}" ] && printf "%s\\n" "$c/{CHECKPOINT_MARKER}"; done; '
    "} | tar -czf - --no-recursion -T -"
)


def _sh(script: str, *args: str) -> str:
    """One remote command line: ``sh -c SCRIPT sh ARGS...``, every word quoted."""
    return shlex.join(["sh", "-c", script, "sh", *args])


class Unreachable(Exception):
    """The host could not be reached, or the connection died during a command."""


def _settings_error(key: str, message: str) -> InputError:
    return InputError(f"{_FIELD}.{key}: {message}")


def _number(key: str, value: Any, minimum: float, inclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _settings_error(key, f"expected a number of seconds, got {value!r}")
    if value < minimum or (value == minimum and not inclusive):
        raise _settings_error(key, f"must be {'>=' if inclusive else '>'} {minimum:g}, got {value!r}")
    return float(value)


def _local_file(key: str, value: Any, must_exist: bool) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _settings_error(key, f"expected a path, got {value!r}")
    path = Path(value).expanduser()
    if must_exist and not path.is_file():
        raise _settings_error(key, f"{path}: file not found")
    return path


class SshBackend:
    name = "ssh"

    def __init__(
        self,
        host: str | None = None,
        remote_root: str | None = None,
        user: str | None = None,
        port: int = 22,
        key: str | None = None,
        known_hosts: str | None = None,
        path_map: dict[str, str] | None = None,
        env: dict[str, Any] | None = None,
        connect_timeout_s: float = 10,
        keepalive_s: float = 15,
        grace_s: float = 10,
        workspace: Path | None = None,
        resources: tuple[int, float] = (1, 4.0),
        **unknown: Any,
    ) -> None:
        from foundation.errors import close_matches

        for name in unknown:
            choices = [
                p
                for p in inspect.signature(SshBackend).parameters
                if p not in ("workspace", "resources", "unknown")
            ]
            raise _settings_error(name, f"not a setting of the ssh backend; {close_matches(name, choices)}")
        for name, value in (("host", host), ("remote_root", remote_root)):
            if value is None:
                raise _settings_error(
                    name,
                    "required"
                    + (" (the host to run on)" if name == "host" else " (an absolute folder on the host)"),
                )
        assert host is not None and remote_root is not None
        if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9_.:\[\]%-]+", host) or host[0] == "-":
            raise _settings_error("host", f"expected a host name or address, got {host!r}")
        self.hostname = host.strip("[]")
        if not isinstance(remote_root, str) or not remote_root.startswith("/"):
            raise _settings_error(
                "remote_root",
                f"give an absolute path on {host} (no '~': SFTP does not expand it), got {remote_root!r}",
            )
        self.remote_root = PurePosixPath(remote_root)
        if user is not None and (
            not isinstance(user, str) or not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", user)
        ):
            raise _settings_error("user", f"expected a user name, got {user!r}")
        self.user = user
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _settings_error("port", f"expected a TCP port 1-65535, got {port!r}")
        self.port = port
        self.key = _local_file("key", key, must_exist=True)
        self.known_hosts = _local_file("known_hosts", known_hosts, must_exist=True) or (
            Path.home() / ".ssh" / "known_hosts"
        )
        if path_map is not None and not isinstance(path_map, dict):
            raise _settings_error("path_map", "give 'this-host prefix: other-host prefix' pairs")
        self.path_map = PathMap(path_map, where=f"{_FIELD}.path_map")
        if env is not None and not isinstance(env, dict):
            raise _settings_error("env", "give NAME: value pairs")
        self.env = {str(k): _env_text(f"{_FIELD}.env", k, v) for k, v in (env or {}).items()}
        self.connect_timeout_s = _number("connect_timeout_s", connect_timeout_s, 0)
        self.keepalive_s = _number("keepalive_s", keepalive_s, 0, inclusive=True)
        self.grace_s = _number("grace_s", grace_s, 0, inclusive=True)
        self.workspace = Path(workspace).resolve() if workspace is not None else Path("/")
        tag = hashlib.sha256(f"{socket.gethostname()}\0{self.workspace}".encode()).hexdigest()[:8]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.workspace.name) or "root"
        self.remote_workspace = self.remote_root / "runs" / f"{name}-{tag}"
        self._links: dict[tuple[str, int, str | None], _Link] = {}
        self._polls: dict[str, tuple[float, Poll]] = {}
        self._progress: dict[str, float] = {}

    # ------------------------------------------------------------------ the interface
    def host(self) -> str:
        return self.hostname if self.port == 22 else f"{self.hostname}:{self.port}"

    def capacity(self) -> tuple[float, float] | None:
        """The host's CPUs and available memory (GiB). Connecting here, before anything is
        rendered, makes a bad host key or login an error at once; an unreachable host is not
        (runs may be followed once it is back): admission then counts jobs only."""
        try:
            _code, out, _ = self._link(self.hostname, self.port, self.user).run(
                "nproc; sed -n 's/^MemAvailable: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"
            )
        except Unreachable:
            return None
        try:
            cpus, mem_kib = out.decode().split()[:2]
            return float(cpus), int(mem_kib) / (1024 * 1024)
        except ValueError:
            return None

    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        run_dir = Path(run_dir).resolve()
        command = read_command(run_dir)
        remote_dir = self._remote_path(run_dir)
        if remote_dir is None:
            raise InputError(f"{run_dir}: not inside the workspace {self.workspace}")
        pushes: dict[str, Path] = {}
        need_dirs: list[str] = []
        make_dirs: list[str] = []

        def resolve(flag: str, path: str) -> str:
            mapped = self._remote_path(Path(path))
            if mapped is not None:
                if flag == "--restore-dir":
                    need_dirs.append(mapped)
                elif flag == "--checkpoint-dir":
                    make_dirs.append(mapped)
                return mapped
            return self._map_or_push(path, pushes, what=flag or "the gem5 binary", run_dir=run_dir)

        argv = instantiate(list(command["argv"]), resolve)
        remote_env = {**env, **self.env}
        for name, value in remote_env.items():
            if not _ENV_NAME.match(name):
                raise InputError(f"gem5.env.{name}: not a shell variable name")
            remote_env[name] = self._env_value(value, pushes, run_dir)
        outdir = str(command.get("outdir") or "m5out")
        checkpoints = [
            str(Path(path).relative_to(run_dir))
            for _i, flag, path in host_paths(list(command["argv"]))
            if flag == "--checkpoint-dir" and Path(path).is_relative_to(run_dir)
        ]
        link = self._link(self.hostname, self.port, self.user)
        try:
            link.connect(force=True)
            self._push_inputs(link, pushes, need_dirs)
            bundle = self._bundle(run_dir, command, argv, remote_env)
            code, out, err = link.run(
                _sh(_START, remote_dir, outdir, f"{max(self.grace_s, 0.1):.3f}", f"{timeout_s:.3f}",
                    *(f"mkdir:{d}" for d in make_dirs)),
                stdin=bundle,
            )  # fmt: skip
        except Unreachable as exc:
            raise InputError(
                f"{_FIELD}.host: cannot reach {link.where} to start {run_dir.name} ({exc})"
            ) from None
        started = [
            line for line in out.decode(errors="replace").splitlines() if line.startswith("layerlab-started ")
        ]
        words = started[-1].split() if started else []
        if code != 0 or len(words) < 2 or not words[1].isdigit():
            raise InputError(
                f"ssh: {link.where}: cannot start the run in {remote_dir}: {_first_line(err) or f'exit status {code}'}"
            )
        pid, start = words[1], words[2] if len(words) > 2 else ""
        handle = {
            "host": self.hostname, "port": self.port, "user": self.user, "dir": remote_dir, "pid": int(pid),
            "start": start, "deadline": time.time() + timeout_s, "grace": self.grace_s,
            "outdir": outdir, "checkpoints": checkpoints,
        }  # fmt: skip
        text = json.dumps(handle, sort_keys=True)
        from foundation import atomic

        atomic.write_text(run_dir / "logs" / "backend.json", json.dumps(handle, indent=2) + "\n")
        return text

    def poll(self, handle: str) -> Poll:
        meta = _parse(handle)
        now = time.time()
        cached = self._polls.get(handle)
        if cached is not None and cached[1].state == "running" and now - cached[0] < POLL_EVERY_S:
            return cached[1]
        link = self._link(meta["host"], meta["port"], meta["user"])
        end = meta["deadline"] + meta["grace"]
        try:
            state, code = link.state(meta)
        except Unreachable as exc:
            if now > end + SLACK_S:
                result = Poll("lost", detail=f"ssh: {link.where} unreachable past the run's deadline ({exc})")
            else:
                result = Poll("running")  # the run goes on there; look again once the host is back
            self._polls[handle] = (now, result)
            return result
        if state == "exited":
            timed_out = code == 124 or (code == 137 and now >= meta["deadline"])
            result = Poll("exited", code, timed_out)
        elif state == "running":
            if now > end + SLACK_S:  # the remote `timeout` should have ended it by now
                with contextlib.suppress(Unreachable):
                    self._kill(link, meta)
                result = Poll("exited", None, True, detail=f"ssh: {link.where}: killed past its deadline")
            else:
                result = Poll("running")
        elif state == "gone":
            result = Poll("lost", detail=f"ssh: {link.where}: the run folder {meta['dir']} is gone")
        else:
            result = Poll(
                "lost",
                detail=f"ssh: {link.where}: pid {meta['pid']} ended without an exit status (killed, or the host rebooted)",
            )
        self._polls[handle] = (now, result)
        return result

    def fetch(self, handle: str, run_dir: Path) -> None:
        meta = _parse(handle)
        run_dir = Path(run_dir)
        polled = self._polls.get(handle)
        link = self._link(meta["host"], meta["port"], meta["user"])
        if polled is not None and polled[1].state == "running":
            now = time.time()
            if now - self._progress.get(handle, 0.0) < PROGRESS_EVERY_S:
                return
            self._progress[handle] = now
            from foundation.rundir import EVENTS_FILENAME

            with contextlib.suppress(Unreachable):  # progress is a convenience
                link.tail(
                    f"{meta['dir']}/{meta['outdir']}/{EVENTS_FILENAME}",
                    run_dir / meta["outdir"] / EVENTS_FILENAME,
                )
            return
        error: Exception | None = None
        for _ in range(FETCH_TRIES):
            try:
                link.connect(force=True)
                self._fetch_all(link, meta, run_dir)
                return
            except Unreachable as exc:
                error = exc
                time.sleep(min(RETRY_S, 0.5))
        if polled is not None and polled[1].state == "lost":
            return  # nothing to fetch from a host that is gone; the run is recorded lost
        raise InputError(
            f"ssh: cannot fetch the outputs of {run_dir} from {link.where} ({error}); the run ended "
            "there: run `layerlab run SPEC` again to fetch them"
        )

    def cancel(self, handle: str) -> None:
        meta = _parse(handle)
        link = self._link(meta["host"], meta["port"], meta["user"])
        try:
            self._kill(link, meta)
        except Unreachable as exc:
            print(
                f"layerlab: ssh: cannot reach {link.where} to end pid {meta['pid']} in {meta['dir']} "
                f"({exc}); its remote timeout ends it at the deadline",
                file=sys.stderr,
            )

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()

    # ------------------------------------------------------------------ paths
    def _remote_path(self, path: Path) -> str | None:
        """The remote twin of a path inside the workspace (None: outside it)."""
        pure = Path(os.path.abspath(path))
        if pure != self.workspace and self.workspace not in pure.parents:
            return None
        return str(self.remote_workspace / pure.relative_to(self.workspace).as_posix())

    def _map_or_push(self, path: str, pushes: dict[str, Path], what: str, run_dir: Path) -> str:
        mapped = self.path_map.map(path)
        if mapped is not None:
            return mapped
        local = Path(path)
        if local.is_file():
            from foundation.digests import file_digest

            digest = file_digest(local).split(":", 1)[1]
            remote = str(self.remote_root / "inputs" / digest / local.name)
            pushes[remote] = local
            return remote
        if local.is_dir():
            raise InputError(
                f"{_FIELD}.path_map: {what} names the directory {path}, which the ssh backend does "
                f"not copy; add a path_map entry for it ('{path}': where it is on {self.hostname})"
            )
        raise InputError(f"{run_dir / 'command.json'}: {what} {path}: not found on this host")

    def _env_value(self, value: str, pushes: dict[str, Path], run_dir: Path) -> str:
        """A host path in an env value, as the remote host sees it (see the module doc)."""
        if not value.startswith("/"):
            return value
        if ":" in value:  # a search path: map each element, push none
            return ":".join(
                self._remote_path(Path(p)) or self.path_map.map(p) or p if p.startswith("/") else p
                for p in value.split(":")
            )
        mapped = self._remote_path(Path(value)) or self.path_map.map(value)
        if mapped is not None:
            return mapped
        if Path(value).is_file():
            return self._map_or_push(value, pushes, what="an env value", run_dir=run_dir)
        return value

    # ------------------------------------------------------------------ transfers
    def _push_inputs(self, link: _Link, pushes: dict[str, Path], need_dirs: list[str]) -> None:
        if not pushes and not need_dirs:
            return
        for remote in need_dirs:
            if not link.is_dir(remote):
                raise InputError(
                    f"ssh: {link.where}: {remote} is not there: the checkpoint this run restores "
                    "stays on the host that wrote it (run the boot on this backend first)"
                )
        for remote, local in pushes.items():
            if not link.is_file(remote):  # pushed by content: a file by that digest is that file
                link.upload(local, remote)

    def _bundle(self, run_dir: Path, command: dict, argv: list[str], env: dict[str, str]) -> bytes:
        """The run's simulation files, its remote run.sh, command.json and env, as a tar.gz."""
        run_id = str(command.get("run_id") or "")
        members: list[tuple[str, bytes, int]] = []
        seen: set[str] = set()
        for pattern in SIM_FILES:
            for path in sorted(run_dir.glob(pattern)):
                if path.is_file() and path.name not in seen:
                    seen.add(path.name)
                    members.append((path.name, path.read_bytes(), path.stat().st_mode & 0o777))
        note = f"runs gem5 on {self.host()} from this directory"
        members.append(("run.sh", run_script(argv, run_id, note).encode(), 0o755))
        remote_command = {**command, "argv": argv, "host": self.host()}
        members.append(
            ("command.json", (json.dumps(remote_command, indent=2, sort_keys=True) + "\n").encode(), 0o644)
        )
        lines = [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
        members.append(("logs/backend.env", ("\n".join(lines) + "\n").encode(), 0o600))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data, mode in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def _fetch_all(self, link: _Link, meta: dict, run_dir: Path) -> None:
        """The outdir, logs/ and checkpoint markers, one tar.gz; each file written atomically."""
        from foundation import atomic

        outdir, checkpoints = meta["outdir"], list(meta.get("checkpoints") or [])
        command = _sh(_FETCH, meta["dir"], outdir, *checkpoints)
        allowed = {f"{c}/{CHECKPOINT_MARKER}" for c in checkpoints}
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir) as spool:
            code, _out, err = link.run(command, sink=spool, timeout=None)
            if code != 0:
                raise Unreachable(f"tar: {_first_line(err) or f'exit status {code}'}")
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:gz") as tar:
                for member in tar:
                    name = PurePosixPath(member.name)
                    if not member.isfile() or name.is_absolute() or ".." in name.parts:
                        continue
                    inside = _under(name, outdir) or _under(name, "logs") or str(name) in allowed
                    if not inside or (
                        checkpoints and any(_under(name, c) for c in checkpoints) and str(name) not in allowed
                    ):
                        continue
                    source = tar.extractfile(member)
                    assert source is not None
                    with atomic.atomic_open(run_dir / name, "wb") as handle:
                        while block := source.read(1 << 20):
                            handle.write(block)

    def _kill(self, link: _Link, meta: dict) -> None:
        tenths = str(max(1, round(meta["grace"] * 10)))
        link.run(_sh(_KILL, str(meta["pid"]), meta["start"], tenths), timeout=OP_TIMEOUT_S + meta["grace"])

    def _link(self, host: str, port: int, user: str | None) -> _Link:
        key = (host, port, user)
        if key not in self._links:
            self._links[key] = _Link(self, host, port, user)
        return self._links[key]


class _Link:
    """One host's connection: opened on first use, reopened (at most every RETRY_S) once it dies."""

    def __init__(self, backend: SshBackend, host: str, port: int, user: str | None) -> None:
        self.backend, self.host, self.port, self.user = backend, host, port, user
        self.where = f"{user + '@' if user else ''}{host}:{port}"
        self.conn: Any = None
        self.failed_at = 0.0
        self.failures = 0
        self.failure = ""

    def connect(self, force: bool = False) -> Any:
        """The open connection, or a new one. After a failure the next real try waits (2 s,
        doubling to 30 s) so that a host that is down does not stall every poll by the connect
        timeout; ``force`` tries at once (a start or an end-of-run fetch is worth waiting for)."""
        if self.conn is not None and self.conn.transport is not None and self.conn.transport.is_active():
            return self.conn
        self.close()
        wait = min(RETRY_MAX_S, RETRY_S * 2 ** max(0, self.failures - 1))
        if not force and self.failures and time.time() - self.failed_at < wait:
            raise Unreachable(self.failure)
        backend = self.backend
        timeout = backend.connect_timeout_s
        connect_kwargs: dict[str, Any] = {
            "timeout": timeout, "banner_timeout": timeout, "auth_timeout": timeout, "channel_timeout": timeout,
        }  # fmt: skip
        if backend.key is not None:
            connect_kwargs.update(key_filename=str(backend.key), look_for_keys=False, allow_agent=False)
        conn = Connection(
            self.host,
            user=self.user,
            port=self.port,
            config=Config(overrides={"load_ssh_configs": False}),
            connect_kwargs=connect_kwargs,
        )
        conn.client.set_missing_host_key_policy(_RejectUnknown())
        if backend.known_hosts.is_file():
            conn.client.load_system_host_keys(str(backend.known_hosts))
        try:
            conn.open()
        except _UnknownHostKey as exc:
            conn.close()
            known = shlex.quote(str(backend.known_hosts))
            raise InputError(
                f"{_FIELD}.known_hosts: {self.host}:{self.port}'s host key ({exc.key_type}) is not in "
                f"{backend.known_hosts}; check it, then add it: ssh-keyscan -p {self.port} {self.host} >> {known}"
            ) from None
        except paramiko.BadHostKeyException as exc:
            conn.close()
            raise InputError(
                f"{_FIELD}.known_hosts: {self.host}:{self.port} offers a {exc.key.get_name()} key that does not "
                f"match {backend.known_hosts}; if the host was reinstalled, remove its line (ssh-keygen -R "
                f"'[{self.host}]:{self.port}' -f {shlex.quote(str(backend.known_hosts))}) and add the new key"
            ) from None
        except paramiko.AuthenticationException as exc:
            conn.close()
            raise InputError(f"{_FIELD}.key: {self.where}: login refused ({exc})") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            conn.close()
            self.failed_at, self.failures = time.time(), self.failures + 1
            self.failure = f"cannot connect to {self.where}: {exc or type(exc).__name__}"
            raise Unreachable(self.failure) from None
        if backend.keepalive_s > 0:
            conn.transport.set_keepalive(max(1, round(backend.keepalive_s)))
        self.conn, self.failures = conn, 0
        return conn

    def run(
        self, command: str, stdin: bytes | None = None, sink: Any = None, timeout: float | None = OP_TIMEOUT_S
    ) -> tuple[int, bytes, bytes]:
        """(exit status, stdout, stderr) of one remote command; stdout to ``sink`` if given."""
        conn = self.connect()
        out, err = io.BytesIO(), io.BytesIO()
        target = sink if sink is not None else out
        try:
            channel = conn.transport.open_session(timeout=self.backend.connect_timeout_s)
            channel.settimeout(OP_TIMEOUT_S)
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            # ``timeout`` counts from the last data: a long transfer that keeps moving is fine.
            end = time.monotonic() + timeout if timeout else None
            while not channel.exit_status_ready():
                busy = False
                if channel.recv_ready():
                    target.write(channel.recv(1 << 16))
                    busy = True
                if channel.recv_stderr_ready():
                    err.write(channel.recv_stderr(1 << 16))
                    busy = True
                if busy:
                    end = time.monotonic() + timeout if timeout else None
                    continue
                if not conn.transport.is_active() or channel.closed:
                    raise Unreachable(f"{self.where}: connection closed")
                if end is not None and time.monotonic() > end:
                    raise Unreachable(f"{self.where}: no answer in {timeout:g} s")
                time.sleep(0.005)
            while chunk := channel.recv(1 << 16):  # what came with the exit status, up to EOF
                target.write(chunk)
            while chunk := channel.recv_stderr(1 << 16):
                err.write(chunk)
            code = channel.recv_exit_status()
            channel.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise Unreachable(f"{self.where}: {exc or type(exc).__name__}") from None
        return code, out.getvalue(), err.getvalue()

    def _sftp(self, action: str, work: Any) -> Any:
        """``work(sftp)`` on this host's SFTP session (no remote shell: it costs one round trip).
        A missing or unreadable file is the caller's to judge; anything else is the connection."""
        try:
            return work(self.connect().sftp())
        except (FileNotFoundError, PermissionError):
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise Unreachable(f"{self.where}: {action}: {exc or type(exc).__name__}") from None

    def read(self, path: str) -> bytes | None:
        """A remote file's bytes (None: no such file). Reads /proc too (its files have no size)."""

        def work(sftp: Any) -> bytes:
            with sftp.open(path, "rb") as handle:
                return handle.read()

        try:
            return self._sftp(f"read {path}", work)
        except (FileNotFoundError, PermissionError):
            return None

    def _mode(self, path: str) -> int | None:
        try:
            return self._sftp(f"stat {path}", lambda sftp: sftp.stat(path).st_mode)
        except (FileNotFoundError, PermissionError):
            return None

    def is_file(self, path: str) -> bool:
        mode = self._mode(path)
        return mode is not None and stat.S_ISREG(mode)

    def is_dir(self, path: str) -> bool:
        mode = self._mode(path)
        return mode is not None and stat.S_ISDIR(mode)

    def state(self, meta: dict) -> tuple[str, int | None]:
        """("exited", code) | ("running", None) | ("lost", None) | ("gone", None), by SFTP reads of
        the exit status file and the pid's /proc entry (same start time, not a zombie)."""
        exit_file = f"{meta['dir']}/logs/exit_code"
        text = self.read(exit_file)
        if text is None:
            fields = (self.read(f"/proc/{meta['pid']}/stat") or b")").decode(errors="replace")
            fields = fields.rsplit(")", 1)[1].split()
            if meta["start"] and len(fields) > 19 and fields[19] == meta["start"] and fields[0] != "Z":
                return "running", None
            text = self.read(exit_file)  # it may have ended between the two looks
        if text is not None:
            word = text.decode(errors="replace").strip()
            return "exited", int(word) if word.lstrip("-").isdigit() else None
        return ("lost" if self.is_dir(meta["dir"]) else "gone"), None

    def upload(self, local: Path, remote: str) -> None:
        """A file to ``remote`` under a temporary name, renamed when complete (never half there)."""
        parent = PurePosixPath(remote).parent
        part = f"{remote}.part-{socket.gethostname()}-{os.getpid()}"

        def work(sftp: Any) -> None:
            missing = []
            folder = parent
            while self._mode(str(folder)) is None:
                missing.append(folder)
                folder = folder.parent
            for folder in reversed(missing):
                with contextlib.suppress(OSError):  # made meanwhile by another conductor
                    sftp.mkdir(str(folder))
            sftp.put(str(local), part)
            sftp.chmod(part, local.stat().st_mode & 0o777)
            sftp.posix_rename(part, remote)

        self._sftp(f"upload of {local.name}", work)

    def tail(self, remote: str, local: Path) -> None:
        """Bring a growing remote file up to date: only the bytes past the local copy's end."""
        from foundation import atomic

        have = local.read_bytes() if local.is_file() else b""

        def work(sftp: Any) -> tuple[int, bytes] | None:
            try:
                size = sftp.stat(remote).st_size or 0
            except (FileNotFoundError, PermissionError):
                return None
            if size == len(have):
                return None
            start = len(have) if size > len(have) else 0  # shorter: a new file, read it whole
            with sftp.open(remote, "rb") as handle:
                handle.seek(start)
                return start, handle.read(size - start)

        got = self._sftp(f"read {remote}", work)
        if got is not None:
            start, chunk = got
            atomic.write_bytes(local, (have if start else b"") + chunk)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


class _UnknownHostKey(Exception):
    def __init__(self, host: str, key_type: str) -> None:
        super().__init__(f"{host}: host key not in known_hosts")
        self.key_type = key_type


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not known (paramiko's RejectPolicy, with the key type kept)."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise _UnknownHostKey(hostname, key.get_name())


def _parse(handle: str) -> dict:
    try:
        meta = json.loads(handle)
        meta["pid"], meta["deadline"] = int(meta["pid"]), float(meta["deadline"])
        return meta
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"ssh: {handle!r} is not a handle of this backend (was the spec's backend changed?)"
        ) from None


def _under(name: PurePosixPath, folder: str) -> bool:
    return PurePosixPath(folder) in name.parents


def _env_text(where: str, key: Any, value: Any) -> str:
    if not isinstance(key, str) or not _ENV_NAME.match(key):
        raise InputError(f"{where}.{key}: not a shell variable name")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{where}.{key}: expected a string, got {value!r}")
    return str(value)


def _first_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""
