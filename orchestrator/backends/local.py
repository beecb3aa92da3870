"""The local backend: each run is a process group on this machine, with its own deadline.

``run.sh`` starts in a new session (``setsid``), so the whole tree gem5 spawns is one group that a
timeout or Ctrl-C ends together (SIGTERM, then SIGKILL after a grace period). stdout and stderr go
to ``<run>/logs/``; the pid, start time and deadline go to ``<run>/logs/backend.json`` so a
conductor that crashed can find the run again (the handle is the pid) and tell a live run from a
recycled pid by the process's start time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.backends.base import Poll

GRACE_S = 10.0


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/pid/stat): pid-reuse safe identity."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


class LocalBackend:
    name = "local"

    def __init__(
        self,
        grace_s: float = GRACE_S,
        workspace: Path | None = None,
        resources: tuple[int, float] = (1, 4.0),
    ) -> None:
        self.grace_s = float(grace_s)
        self._children: dict[int, subprocess.Popen] = {}
        self._meta: dict[int, dict] = {}

    def host(self) -> str:
        return socket.gethostname()

    def stage(self, run_dir: Path) -> None:
        """The run's log folder and files, made while the run before it is still going: making
        an inode costs this VM ~1.5 ms when the machine was idle, opening one 0.1 ms, and the
        time between two runs is the conductor's overhead."""
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        for name in ("backend.out", "backend.err"):
            with (logs / name).open("ab"):
                pass

    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        run_dir = run_dir.resolve()
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)  # staged already (``stage``) when the conductor prepared the run
        full_env = {**os.environ, **env}
        # run.sh's gem5 (or the test double) may need this interpreter's environment.
        full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        with (logs / "backend.out").open("ab") as out, (logs / "backend.err").open("ab") as err:
            proc = subprocess.Popen(
                [str(run_dir / "run.sh")],
                cwd=run_dir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        meta = {
            "pid": proc.pid,
            "start": _proc_start(proc.pid),
            "deadline": time.time() + timeout_s,
            "run_dir": str(run_dir),
        }
        (logs / "backend.json").write_text(json.dumps(meta))
        self._children[proc.pid] = proc
        self._meta[proc.pid] = meta
        return str(proc.pid)

    def _meta_of(self, pid: int, run_dir: Path | None = None) -> dict | None:
        if pid in self._meta:
            return self._meta[pid]
        if run_dir is not None and (run_dir / "logs" / "backend.json").is_file():
            meta = json.loads((run_dir / "logs" / "backend.json").read_text())
            if meta.get("pid") == pid:
                self._meta[pid] = meta
                return meta
        return None

    def adopt(self, handle: str, run_dir: Path) -> None:
        """Know a run started by an earlier conductor (its backend.json) before polling it."""
        self._meta_of(int(handle), run_dir)

    def poll(self, handle: str) -> Poll:
        pid = int(handle)
        meta = self._meta.get(pid)
        child = self._children.get(pid)
        if child is not None:
            code = child.poll()
            if code is not None:
                self._children.pop(pid, None)
                timed_out = bool(meta and meta.get("timed_out"))
                return Poll("exited", code, timed_out)
        elif meta is None or _proc_start(pid) != meta.get("start"):
            # Not our child (an earlier conductor's) and gone, or the pid now names another process.
            return Poll("lost", None, bool(meta and meta.get("timed_out")))
        if meta is not None and time.time() > meta["deadline"] and not meta.get("timed_out"):
            meta["timed_out"] = True
            self._kill_group(pid)
        return Poll("running")

    def _kill_group(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        end = time.time() + self.grace_s
        child = self._children.get(pid)
        while time.time() < end:
            if child is not None and child.poll() is not None:
                break
            if child is None and _proc_start(pid) is None:
                break
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def cancel(self, handle: str) -> None:
        pid = int(handle)
        meta = self._meta.get(pid)
        if pid not in self._children and (meta is None or _proc_start(pid) != meta.get("start")):
            return  # not a run this backend knows (or the pid now names another process): leave it
        self._kill_group(pid)
        child = self._children.pop(int(handle), None)
        if child is not None:
            child.wait(timeout=self.grace_s + 5)

    def fetch(self, handle: str, run_dir: Path) -> None:
        return None  # the run wrote into run_dir itself

    def capacity(self) -> tuple[float, float]:
        """This machine's CPUs and available memory (GiB): what runs at once may take."""
        return float(os.cpu_count() or 1), _mem_available_gib()


def _mem_available_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return float("inf")
