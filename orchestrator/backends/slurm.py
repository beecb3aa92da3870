"""The slurm backend: each run is one batch job, submitted with ``sbatch`` from a job script.

**Limitations** (stated up front, see docs/backend-slurm.md):

* A filesystem shared with the compute nodes is assumed. The job runs in the run directory
  itself and writes straight into it (logs, gem5's outdir, the exit status): ``fetch`` has
  nothing to copy. Where the nodes mount things elsewhere, ``path_map`` maps this host's path
  prefixes to theirs (as for ssh): the job script's paths, and the gem5 binary, ``--path`` and
  the script's path options of a node-side ``run.slurm.sh``. Nothing else is mapped.
* One job per run; no job arrays (the conductor submits a run when its inputs exist, so an
  experiment stage is rarely known whole in advance).
* No admission here (no ``capacity``): Slurm queues what does not fit.

The job script (``slurm_job.sh`` in the run directory, from ``templates/slurm_job.sh.j2``) asks
for the run's CPUs and memory and a time limit a little over the run's timeout, exports the
environment explicitly, runs the run under its own ``timeout`` and writes the run's exit status
to ``logs/exit_code``, so the end is known even where Slurm's accounting is off or has forgotten
the job. A job that left the queue without that file ended by Slurm's hand (cancelled,
preempted, node failure, out of memory, its time limit): ``sacct`` (when accounting works) or
``scontrol`` says which, and ``Poll.detail`` carries it into the failure digest. The handle is
the job id; ``logs/backend.json`` keeps the rest, so a new conductor adopts a job after a crash.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation import atomic
from foundation.errors import InputError, close_matches
from orchestrator.backends.base import Poll
from orchestrator.backends.pathmap import PathMap, instantiate, read_command, run_script

GRACE_S = 10.0
POLL_S = 5.0
JOB_SCRIPT = "slurm_job.sh"
NODE_RUN_SCRIPT = "run.slurm.sh"
EXIT_FILE = "exit_code"
TIMED_OUT_FILE = "timed_out"
STARTED_FILE = "started_at"
META_FILE = "backend.json"
#: How long squeue may keep failing (controller down) before a job counts as lost.
QUEUE_OUTAGE_S = 600.0
COMMAND_TIMEOUT_S = 60.0

#: Values that go into ``#SBATCH`` lines verbatim: what ``shlex.quote`` leaves unquoted, less
#: ``%`` (a filename pattern in --output). sbatch reads those lines with its own quoting rules,
#: so anything that would need quoting is refused instead of quoted.
SBATCH_SAFE = re.compile(r"[\w@+=:,./-]+")
SLURM_NAME = re.compile(r"[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*")
LONG_OPTION = re.compile(r"--([a-z][a-z0-9-]*)(?:=(.*))?", re.S)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: sbatch options the backend sets itself (or takes from a named setting).
RESERVED = frozenset({
    "job-name", "chdir", "output", "error", "open-mode", "time", "cpus-per-task", "mem", "mem-per-cpu",
    "mem-per-gpu", "ntasks", "nodes", "no-requeue", "requeue", "export", "wrap", "array", "parsable",
    "partition", "account", "qos", "input",
})  # fmt: skip
#: Job states in which the job still holds (or waits for) its allocation.
ACTIVE = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
})  # fmt: skip
#: End states that are Slurm's doing, not the run's (the digest names them).
ENDED_BY_SLURM = frozenset({
    "CANCELLED", "PREEMPTED", "OUT_OF_MEMORY", "DEADLINE", "REVOKED", "NODE_FAIL", "BOOT_FAIL",
})  # fmt: skip
#: ... of which these mean the run's node went away (Slurm cannot know the run's status).
LOST_STATES = frozenset({"NODE_FAIL", "BOOT_FAIL"})
SETTINGS = ("partition", "account", "qos", "sbatch_args", "path_map", "env", "grace_s", "poll_s")


@dataclass
class _Job:
    """What this backend knows of one job (``logs/backend.json`` holds the same)."""

    job_id: str
    run_dir: Path | None = None
    timeout_s: float | None = None
    timed_out: bool = False  # this backend ended it at the run's deadline
    cancelled: bool = False  # this backend was asked to cancel it
    settled: bool = False


@dataclass(frozen=True)
class Ending:
    """How Slurm says a job ended: its state, exit status or signal, and who cancelled it."""

    state: str
    exit_code: int | None = None
    signal: int | None = None
    by: str | None = None

    @property
    def status(self) -> int | None:
        """The shell's view: the exit status, or 128 + the signal that ended it."""
        if self.signal:
            return 128 + self.signal
        return self.exit_code


def parse_scontrol(text: str) -> Ending | None:
    """``scontrol show job -o ID`` → its end (None when the output names no job state)."""
    state = re.search(r"\bJobState=(\S+)", text)
    if state is None:
        return None
    code = re.search(r"\bExitCode=(\d+):(\d+)", text)
    return Ending(
        state.group(1).upper(),
        int(code.group(1)) if code else None,
        int(code.group(2)) if code else None,
    )


def parse_sacct(text: str) -> Ending | None:
    """``sacct -n -P -X -j ID -o State,ExitCode`` → its end (``CANCELLED by 0|0:15``)."""
    for line in text.splitlines():
        state, _, code = line.strip().partition("|")
        if not state:
            continue
        words = state.split()
        by = words[2] if len(words) >= 3 and words[1] == "by" else None
        exit_code, _, signal = code.partition(":")
        return Ending(
            words[0].upper().rstrip("+"),
            int(exit_code) if exit_code.isdigit() else None,
            int(signal) if signal.isdigit() else None,
            by,
        )
    return None


def _number(key: str, value: Any, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"backend.settings.{key}: give a number of seconds, not {value!r}")
    if value < minimum or (strict and value == minimum):
        raise InputError(
            f"backend.settings.{key}: must be {'>' if strict else '>='} {minimum:g}, not {value!r}"
        )
    return float(value)


def _slurm_name(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SLURM_NAME.fullmatch(value):
        raise InputError(
            f"backend.settings.{key}: {value!r} is not a Slurm name "
            "(letters, digits, '.', '_', '-'; several separated by ',')"
        )
    return value


def _sbatch_args(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list):
        raise InputError("backend.settings.sbatch_args: give a list of options, e.g. ['--gres=gpu:1']")
    out = []
    for index, item in enumerate(value):
        where = f"backend.settings.sbatch_args[{index}]"
        match = LONG_OPTION.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            raise InputError(f"{where}: {item!r} is not a long sbatch option (--name or --name=value)")
        name, arg = match.groups()
        if name in RESERVED:
            named = name in ("partition", "account", "qos")
            raise InputError(
                f"{where}: --{name} is "
                + (f"a setting of its own (backend.settings.{name})" if named else "set by the backend")
            )
        if arg is not None and not SBATCH_SAFE.fullmatch(arg):
            raise InputError(
                f"{where}: the value of --{name} may hold only letters, digits and @+=:,./- "
                "(it goes into an #SBATCH line verbatim)"
            )
        out.append(item)
    return out


def _env(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{where}: give a mapping of variable names to values")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise InputError(f"{where}.{key}: not an environment variable name")
        if isinstance(item, bool) or not isinstance(item, str | int | float) or "\0" in str(item):
            raise InputError(f"{where}.{key}: give a string value")
        out[key] = str(item)
    return out


def _sbatch_value(path: str, what: str) -> str:
    """A path for an ``#SBATCH`` line: verbatim or refused (never quoted, see SBATCH_SAFE)."""
    if not SBATCH_SAFE.fullmatch(path):
        raise InputError(
            f"{path}: the {what} holds characters an #SBATCH line cannot carry verbatim (spaces, "
            "quotes, '%', '#', ...); use a workspace path of letters, digits and @+=:,./-"
        )
    return path


def _seconds(value: float) -> str:
    """Seconds for coreutils ``timeout`` (no exponent notation)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


class SlurmBackend:
    name = "slurm"

    def __init__(
        self,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        sbatch_args: list[str] | None = None,
        path_map: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        grace_s: float = GRACE_S,
        poll_s: float = POLL_S,
        workspace: Path | None = None,
        resources: tuple[int, float] = (1, 4.0),
        **unknown: Any,
    ) -> None:
        for key in unknown:
            raise InputError(f"backend.settings.{key}: not a slurm setting; {close_matches(key, SETTINGS)}")
        self.partition = _slurm_name("partition", partition)
        self.account = _slurm_name("account", account)
        self.qos = _slurm_name("qos", qos)
        self.sbatch_args = _sbatch_args(sbatch_args)
        if path_map is not None and not isinstance(path_map, dict):
            raise InputError("backend.settings.path_map: give 'this-host prefix: node prefix' pairs")
        self.path_map = PathMap(path_map)
        self.env = _env(env, "backend.settings.env")
        self.grace_s = _number("grace_s", grace_s, 0, strict=False)
        self.poll_s = _number("poll_s", poll_s, 0, strict=True)
        self.workspace = Path(workspace).resolve() if workspace else None
        cpus, mem_gib = resources
        self.cpus, self.mem_mib = int(cpus), max(1, math.ceil(float(mem_gib) * 1024))
        self._jobs: dict[str, _Job] = {}
        self._queue: dict[str, str] = {}  # job id -> state, as of _queried_at
        self._queried_at = 0.0
        self._queue_failing_since: float | None = None
        self._sacct: bool | None = None  # None: not tried yet

    def host(self) -> str:
        return f"slurm:{self.partition}" if self.partition else "slurm"

    # -- submit
    def _node_path(self, path: Path) -> str:
        return self.path_map.map(str(path)) or str(path)

    def _node_script(self, run_dir: Path, run_id: str) -> str:
        """The script the job runs: the rendered ``run.sh``, or the nodes' own instantiation."""
        if not self.path_map:
            return self._node_path(run_dir / "run.sh")
        command = read_command(run_dir)
        if command.get("container"):
            raise InputError(
                f"{run_dir}: a container run's mounts are this host's paths; backend.settings.path_map "
                "maps a host instantiation only (drop gem5.container or the path map)"
            )
        argv = instantiate(list(command["argv"]), lambda _flag, path: self.path_map.map(path) or path)
        script = run_dir / NODE_RUN_SCRIPT
        atomic.write_text(
            script, run_script(argv, run_id, "the Slurm nodes' paths (backend.settings.path_map)")
        )
        script.chmod(0o755)
        return self._node_path(script)

    def _label(self, run_dir: Path) -> str:
        label = str(run_dir)
        if self.workspace is not None and run_dir.is_relative_to(self.workspace):
            label = str(run_dir.relative_to(self.workspace))
        return "".join(c if c.isprintable() else "?" for c in label)

    def job_script(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        """The text of ``slurm_job.sh`` for ``run_dir`` (writes ``run.slurm.sh`` under a path map)."""
        import jinja2

        from foundation.rundir import run_id_of

        run_id = run_id_of(run_dir) or run_dir.name
        node_dir = self._node_path(run_dir)
        variables = {
            "run_id": run_id,
            "label": self._label(run_dir),
            "host_run_dir": "".join(c if c.isprintable() else "?" for c in str(run_dir)),
            "mapped": bool(self.path_map),
            "node_run_dir": _sbatch_value(node_dir, "run directory (as the nodes see it)"),
            "logs": _sbatch_value(f"{node_dir}/logs", "log folder"),
            "minutes": math.ceil((timeout_s + self.grace_s) / 60) + 1,
            "cpus": self.cpus,
            "mem_mib": self.mem_mib,
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "sbatch_args": self.sbatch_args,
            # The backend's own variables first: the experiment's (gem5.env) have the last word.
            "env": sorted({**self.env, **_env(env, "gem5.env")}.items()),
            "script": self._node_script(run_dir, run_id),
            "timeout": _seconds(timeout_s),
            "timeout_whole": int(timeout_s),
            "kill_after": _seconds(max(1.0, self.grace_s)),
        }
        template = jinja2.Environment(
            loader=jinja2.PackageLoader("orchestrator.backends", "templates"),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        template.filters["shquote"] = shlex.quote
        return template.get_template("slurm_job.sh.j2").render(**variables)

    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        run_dir = run_dir.resolve()
        logs = run_dir / "logs"
        logs.mkdir(exist_ok=True)
        script = run_dir / JOB_SCRIPT
        atomic.write_text(script, self.job_script(run_dir, env, timeout_s))
        script.chmod(0o755)
        for name in (EXIT_FILE, TIMED_OUT_FILE, STARTED_FILE):
            (logs / name).unlink(missing_ok=True)  # an earlier attempt's
        done = self._run(["sbatch", "--parsable", str(script)])
        job_id = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not job_id.isdigit():
            message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise InputError(
                f"{script}: sbatch refused the job: {message} (check backend.settings, "
                "backend.cpus_per_run and backend.mem_gib_per_run)"
            )
        job = _Job(job_id, run_dir, float(timeout_s))
        self._jobs[job_id] = job
        self._save(job, fresh=True, submitted_at=time.time(), script=str(script))
        return job_id

    # -- the job's record on this host
    def _meta(self, job: _Job) -> dict[str, Any] | None:
        """The run directory's ``backend.json`` when it is this job's (None: missing or another's)."""
        if job.run_dir is None:
            return None
        try:
            meta = json.loads((job.run_dir / "logs" / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and str(meta.get("job_id")) == job.job_id else None

    def _save(self, job: _Job, fresh: bool = False, **extra: Any) -> None:
        if job.run_dir is None:
            return
        meta = {} if fresh else self._meta(job)
        if meta is None:
            return  # the run directory belongs to another job now
        meta.update(
            backend="slurm",
            job_id=job.job_id,
            run_dir=str(job.run_dir),
            node_run_dir=self._node_path(job.run_dir),
            timeout_s=job.timeout_s,
            grace_s=self.grace_s,
            timed_out=job.timed_out,
            cancelled=job.cancelled,
            **extra,
        )
        atomic.write_text(job.run_dir / "logs" / META_FILE, json.dumps(meta, indent=2) + "\n")

    def adopt(self, handle: str, run_dir: Path) -> None:
        """Know a job an earlier conductor submitted, from its run directory's ``backend.json``."""
        job = self._job(handle)
        job.run_dir = Path(run_dir).resolve()
        if (job.run_dir / "logs" / META_FILE).exists() and self._meta(job) is None:
            job.run_dir = None  # the run directory holds a newer job's record: trust Slurm alone
        self._recall(job)

    def _recall(self, job: _Job) -> None:
        """What another process (a crashed conductor, ``layerlab cancel``) recorded of the job."""
        meta = self._meta(job) or {}
        if job.timeout_s is None and meta.get("timeout_s") is not None:
            job.timeout_s = float(meta["timeout_s"])
        job.timed_out |= bool(meta.get("timed_out"))
        job.cancelled |= bool(meta.get("cancelled"))

    def _job(self, handle: str) -> _Job:
        if handle not in self._jobs:
            self._jobs[handle] = _Job(handle)
        return self._jobs[handle]

    # -- poll
    def poll(self, handle: str) -> Poll:
        job = self._job(handle)
        ended = self._script_end(job)
        if ended is not None:
            job.settled = True
            return ended
        state = self._queue_state(job)
        if state is None or state in ACTIVE:
            if state == "RUNNING":
                self._enforce_deadline(job)
            outage = time.time() - (self._queue_failing_since or time.time())
            if state is None and outage > QUEUE_OUTAGE_S:
                job.settled = True
                detail = (
                    f"slurm: squeue has failed for {outage / 60:.0f} min; job {handle} is no longer followed"
                )
                return Poll("lost", None, job.timed_out, detail)
            return Poll("running")
        # The job left the queue: the script's own record first (it may have landed meanwhile).
        job.settled = True
        ended = self._script_end(job)
        if ended is not None:
            return ended
        return self._settle(job, self._ending(handle))

    def _script_end(self, job: _Job) -> Poll | None:
        if job.run_dir is None:
            return None
        logs = job.run_dir / "logs"
        try:
            text = (logs / EXIT_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        if not text.lstrip("-").isdigit():
            return None  # being written (it is renamed into place, so only a foreign file)
        timed_out = job.timed_out or (logs / TIMED_OUT_FILE).exists()
        return Poll("exited", int(text), timed_out)

    def _settle(self, job: _Job, ending: Ending | None) -> Poll:
        """The Poll of a job that left the queue without the script's exit status."""
        self._recall(job)
        ident = f"slurm: job {job.job_id}"
        if job.timed_out or (ending is not None and ending.state == "TIMEOUT"):
            return Poll("exited", ending.status if ending else None, True)
        if ending is None:
            if job.cancelled:
                return Poll("lost", None, False)
            return Poll("lost", None, False, f"{ident} left the queue, Slurm no longer knows it and it "
                        f"wrote no logs/{EXIT_FILE}: it ended before the run did (see logs/backend.err)")  # fmt: skip
        if ending.state in ENDED_BY_SLURM:
            if job.cancelled:
                return Poll("exited", ending.status, False)
            who = f" by uid {ending.by}" if ending.by else ""
            why = {
                "CANCELLED": "scancel from outside layerlab, or an administrator",
                "PREEMPTED": "a job of higher priority took its resources",
                "OUT_OF_MEMORY": "it passed its memory request; raise backend.mem_gib_per_run",
                "DEADLINE": "its --deadline passed",
                "NODE_FAIL": "its node failed",
                "BOOT_FAIL": "its node failed to boot",
            }.get(ending.state, "ended by Slurm")
            state = "lost" if ending.state in LOST_STATES else "exited"
            return Poll(state, ending.status, False, f"{ident} {ending.state}{who} ({why})")
        # COMPLETED or FAILED, yet no exit status on this host: the script never got that far,
        # or wrote it where this host does not see it.
        return Poll("exited", ending.status, False, f"{ident} {ending.state} (exit {ending.status}) without "
                    f"writing logs/{EXIT_FILE} here: is the run directory on a filesystem the nodes share "
                    "(backend.settings.path_map)? see logs/backend.err")  # fmt: skip

    def _queue_state(self, job: _Job) -> str | None:
        """The job's state in the queue ("": not queued any more; None: squeue failed)."""
        now = time.time()
        if job.job_id in self._queue and now - self._queried_at < self.poll_s:
            return self._queue[job.job_id]
        ids = sorted({job.job_id, *(j.job_id for j in self._jobs.values() if not j.settled)}, key=int)
        done = self._run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T"])
        if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
            if self._queue_failing_since is None:
                self._queue_failing_since = now
            return None
        self._queue_failing_since = None
        states = dict.fromkeys(ids, "")
        for line in done.stdout.splitlines():
            words = line.split()
            if len(words) == 2:
                states[words[0]] = words[1].upper()
        self._queue, self._queried_at = states, now
        return states[job.job_id]

    def _ending(self, job_id: str) -> Ending | None:
        """How Slurm says the job ended: sacct when accounting works, else scontrol."""
        if self._sacct is not False:
            done = self._run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode"])
            if done.returncode == 0:
                self._sacct = True
                ending = parse_sacct(done.stdout)
                if ending is not None:
                    return ending
            elif "disabled" in done.stderr.lower() or "not running" in done.stderr.lower():
                self._sacct = False  # accounting is off here: do not ask again
        done = self._run(["scontrol", "show", "job", "-o", job_id])
        return parse_scontrol(done.stdout) if done.returncode == 0 else None

    def _enforce_deadline(self, job: _Job) -> None:
        """A backstop behind the job script's own ``timeout``: end the job well after the run's
        deadline (its start on the node + timeout + twice the grace period)."""
        if job.run_dir is None or job.timeout_s is None or job.timed_out:
            return
        try:
            started = float((job.run_dir / "logs" / STARTED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if time.time() > started + job.timeout_s + 2 * self.grace_s + 10:
            job.timed_out = True
            self._save(job)
            self._run(["scancel", job.job_id])

    # -- cancel, fetch
    def cancel(self, handle: str) -> None:
        """``scancel`` the job (idempotent: Slurm ignores a finished or unknown job), then wait a
        little for it to leave the queue."""
        job = self._job(handle)
        job.cancelled = True
        self._save(job)
        self._run(["scancel", handle])
        end = time.time() + max(5.0, self.grace_s)
        while time.time() < end:
            done = self._run(["squeue", "-h", "-j", handle, "-o", "%T"])
            if done.returncode != 0 or not done.stdout.strip():
                break
            time.sleep(0.25)
        job.settled = True

    def fetch(self, handle: str, run_dir: Path) -> None:
        return None  # the job wrote into run_dir itself (a shared filesystem)

    # -- the Slurm commands
    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise InputError(
                f"backend.kind: slurm needs Slurm's client commands ({argv[0]} is not on PATH on "
                f"{socket.gethostname()}); run layerlab where sbatch works"
            ) from None
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(
                argv, 1, "", f"{argv[0]}: no answer in {COMMAND_TIMEOUT_S:g} s"
            )
