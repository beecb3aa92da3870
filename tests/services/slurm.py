"""A real one-node Slurm for backend tests, entirely in a temp dir of its own.

``Slurm`` makes a munge key there and runs ``munged`` with its socket, key, pid, log and seed
files there; writes a ``slurm.conf`` there (this host as controller and only node, on free
ports, munge authentication through that socket, state, spool, pid and log files in the temp
dir, no accounting, no cgroups); then runs ``slurmctld -D`` and ``slurmd -D`` as children with
``SLURM_CONF`` pointing at it and waits for ``sinfo`` to show the node idle. Nothing under /etc
or /var is touched. ``stop()`` cancels every job of this cluster, waits for them to leave the
queue, stops the three daemons it started (and nothing else) and removes the temp dir.

The scheduler is tuned for tests (a job starts within about a second; a cancelled job's
processes get 5 s between SIGTERM and SIGKILL). Needs root and ``slurm-wlm`` + ``munge``
(``.ci/install-services.sh``); facts on starting them: ../shared/reference/services_on_this_machine.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SBIN = "/usr/sbin:/sbin"
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "sacct")
PARTITION = "debug"


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def available() -> str | None:
    """Why a test Slurm cannot be started here (None: it can)."""
    missing = [tool for tool in (*DAEMONS, *CLIENTS) if _which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (.ci/install-services.sh installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "a test Slurm (SlurmUser=root, slurmd) needs root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mib() -> int:
    """What slurmd may offer: a little under what it will detect (a node offering more than it
    has is drained)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 1024


class Slurm:
    """One test cluster: ``conf`` (its slurm.conf), ``env`` (``SLURM_CONF`` for its clients)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="layerlab-slurm-"))
        self.dir.chmod(0o755)  # munged wants its socket's folders searchable by everyone
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.conf = self.dir / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.socket = self.dir / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        for folder in ("state", "spool"):
            (self.dir / folder).mkdir()
        (self.dir / "plugstack.conf").write_text("")
        self.conf.write_text(self._config())

    def _config(self) -> str:
        d = self.dir
        return "\n".join(
            [
                "ClusterName=layerlabtest",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.socket}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "SchedulerType=sched/builtin",
                "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000",
                "KillWait=5",
                "MinJobAge=600",
                "ReturnToService=2",
                "MpiDefault=none",
                "MailProg=/bin/true",
                f"PlugStackConfig={d / 'plugstack.conf'}",
                f"StateSaveLocation={d / 'state'}",
                f"SlurmdSpoolDir={d / 'spool'}",
                f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                f"SlurmdPidFile={d / 'slurmd.pid'}",
                f"SlurmctldLogFile={d / 'slurmctld.log'}",
                f"SlurmdLogFile={d / 'slurmd.log'}",
                f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_memory_mib()} State=UNKNOWN",
                f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    # -- life cycle
    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.dir / f"{name}.out").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, **self.env}
            )

    def _wait(self, what: str, ready, timeout: float) -> None:
        end = time.time() + timeout
        while time.time() < end:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log(name)}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"{what} not ready after {timeout} s: {self.log('slurmctld')} {self.log('slurmd')}"
        )

    def start(self, timeout: float = 30.0) -> None:
        key = self.dir / "munge.key"
        subprocess.run(
            [_which("mungekey"), "-c", "-b", "1024", "-k", str(key)], check=True, capture_output=True
        )  # type: ignore[list-item]
        d = self.dir
        self._spawn("munged", [_which("munged"), "-F", f"--socket={self.socket}", f"--key-file={key}",  # type: ignore[list-item]
                               f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                               f"--seed-file={d / 'munged.seed'}"])  # fmt: skip
        self._wait("munged", self.socket.exists, timeout)
        self._spawn("slurmctld", [_which("slurmctld"), "-D"])  # type: ignore[list-item]
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node])  # type: ignore[list-item]
        self._wait(
            "the Slurm node", lambda: self.run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", timeout
        )

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
            check=False,
        )

    def queued(self) -> list[str]:
        """Ids of this cluster's jobs still in the queue (pending, running or completing)."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def jobs(self) -> list[str]:
        """Every job the controller remembers (``scontrol show jobs``), one line each."""
        out = self.run("scontrol", "-o", "show", "jobs").stdout
        return [line for line in out.splitlines() if line.startswith("JobId=")]

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user=root")
            end = time.time() + 20
            while self.queued() and time.time() < end:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name: str) -> str:
        text = ""
        for path in (self.dir / f"{name}.log", self.dir / f"{name}.out"):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")[-1500:]
        return text
