"""The slurm backend against a real one-node Slurm (tests/services/slurm.py: munged, slurmctld and
slurmd in a temp dir), end to end on the gem5 TEST DOUBLE (not a simulator), or on a real gem5
when LAYERLAB_GEM5 names one (the scripted-fault tests skip then).

The selftest experiment runs as Slurm jobs and resumes without submitting anything; a job
cancelled from outside gets a digest naming Slurm's cancellation; a hanging run ends at its
timeout and leaves the queue; the environment reaches the job quoted, and a path map gives the
nodes their own paths; bad settings are one line naming the field. The cluster starts once for
the module (about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from services.slurm import Slurm, available
from test_orchestrator_local import _conductor, _wait_for, after_restore, make_spec, real_gem5_spec, status

from orchestrator.cli import main
from orchestrator.store import RunStore

pytestmark = pytest.mark.slow

double_only = pytest.mark.skipif(
    bool(os.environ.get("LAYERLAB_GEM5")), reason="scripted faults need the gem5 test double's scenarios"
)


@pytest.fixture(scope="module")
def slurm():
    reason = available()
    if reason:
        pytest.skip(reason)
    cluster = Slurm()
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ.update(cluster.env)  # the conductor's sbatch/squeue, and its subprocesses'
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        cluster.stop()


def settings(**extra) -> dict:
    # The job gets this process's environment (sbatch's --export=ALL); PATH is set explicitly
    # to show backend.settings.env at work (the double's `env python3` finds this interpreter).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"poll_s": 0.5, "grace_s": 1, "env": {"PATH": path}, **extra}


def on_slurm(spec: Path, **backend) -> Path:
    data = yaml.safe_load(spec.read_text())
    data["backend"] = {"kind": "slurm", "jobs": 2, "settings": settings(), **backend}
    spec.write_text(yaml.safe_dump(data))
    return spec


def selftest(tmp_path: Path, events_edit=None, **changes) -> Path:
    """The selftest spec on the slurm backend: a real gem5 when configured, else the double."""
    real = real_gem5_spec(tmp_path) if events_edit is None and not changes else None
    if real is not None:
        return on_slurm(real)
    return on_slurm(make_spec(tmp_path, events_edit, **changes), mem_gib_per_run=0.5)


def census(capsys, spec: Path) -> dict:
    return next(r for r in status(capsys, spec) if r["kind"] == "census")


def test_selftest_runs_as_slurm_jobs_then_resumes(tmp_path: Path, capsys, slurm: Slurm) -> None:
    spec = selftest(tmp_path)
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert [r["kind"] for r in records] == ["boot", "census", "slice"]
    assert all(r["state"] == "done" and r["attempts"] == 1 and r["backend"] == "slurm" for r in records)
    for record in records:
        run_dir = Path(record["run_dir"])
        job = slurm.run("scontrol", "-o", "show", "job", record["handle"]).stdout
        assert f"JobName=layerlab-{record['run_id']}" in job and "JobState=COMPLETED" in job
        assert f"StdOut={run_dir}/logs/backend.out" in job and f"WorkDir={run_dir}" in job
        assert (run_dir / "logs" / "exit_code").read_text().strip() == "0"
        assert json.loads((run_dir / "logs" / "backend.json").read_text())["job_id"] == record["handle"]
        script = (run_dir / "slurm_job.sh").read_text()
        assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --no-requeue" in script
    sliced = Path(records[2]["run_dir"])
    import pandas as pd

    table = pd.read_parquet(sliced / "kernels.parquet")
    assert len(table[~table["blit"].astype(bool)]) == len(
        json.loads((sliced / "slice.json").read_text())["kernels"]
    )
    # Resume in a fresh process: everything is complete, nothing is submitted to Slurm.
    jobs = slurm.jobs()
    again = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet", "--json"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [r["attempts"] for r in json.loads(again.stdout)] == [1, 1, 1]
    assert slurm.jobs() == jobs


def _job_running(spec: Path, slurm: Slurm) -> str | None:
    store = RunStore(spec.parent / "runs" / "selftest")
    record = next((r for r in store.all() if r.kind == "census" and r.state == "running"), None)
    if record is None or record.handle is None:
        return None
    state = slurm.run("squeue", "-h", "-j", record.handle, "-o", "%T").stdout.strip()
    return record.handle if state == "RUNNING" else None


@double_only
def test_a_job_cancelled_from_outside_fails_naming_slurm(tmp_path: Path, capsys, slurm: Slurm) -> None:
    spec = selftest(tmp_path, after_restore({"type": "sleep", "seconds": 300}))
    conductor = _conductor(spec)
    _wait_for(lambda: _job_running(spec, slurm) is not None, 60)
    job_id = _job_running(spec, slurm)
    assert slurm.run("scancel", job_id).returncode == 0  # an administrator, or the user by hand
    assert conductor.wait(timeout=60) == 1
    record = census(capsys, spec)
    assert record["state"] == "failed" and record["digest"]["cause"] == "backend"
    assert f"slurm: job {job_id} CANCELLED" in record["digest"]["detail"]
    assert job_id not in slurm.queued()
    assert main(["status", str(spec)]) == 1
    assert "CANCELLED" in capsys.readouterr().out


@double_only
def test_a_new_conductor_follows_the_job_of_a_killed_one(tmp_path: Path, capsys, slurm: Slurm) -> None:
    spec = selftest(tmp_path, after_restore({"type": "sleep", "seconds": 4}))
    first = _conductor(spec)
    _wait_for(lambda: _job_running(spec, slurm) is not None, 60)
    first.kill()  # the conductor dies; its Slurm job does not
    first.wait()
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert all(r["state"] == "done" for r in records)
    assert next(r for r in records if r["kind"] == "census")["attempts"] == 1  # not submitted twice


@double_only
def test_a_hanging_run_ends_at_its_timeout_and_leaves_the_queue(tmp_path: Path, capsys, slurm: Slurm) -> None:
    spec = selftest(tmp_path, after_restore({"type": "sleep", "seconds": 600}), **{"timeouts.census_s": 3})
    start = time.perf_counter()
    assert main(["run", str(spec), "--quiet"]) == 1
    assert time.perf_counter() - start < 60
    record = census(capsys, spec)
    assert record["state"] == "timed_out" and record["digest"]["cause"] == "timeout"
    logs = Path(record["run_dir"]) / "logs"
    assert (logs / "timed_out").exists() and (logs / "exit_code").read_text().strip() == "124"
    assert record["handle"] not in slurm.queued()


def _run_dir(parent: Path, script: str) -> Path:
    """A minimal rendered run: params.json names its run_id, run.sh is what runs."""
    run_dir = parent / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps({"run_id": "0123456789abcdef"}))
    (run_dir / "run.sh").write_text(f'#!/bin/sh\ncd "$(dirname "$0")"\n{script}\n')
    (run_dir / "run.sh").chmod(0o755)
    return run_dir


def _wait_end(backend, handle: str, timeout: float = 60.0):
    end = time.time() + timeout
    while time.time() < end:
        polled = backend.poll(handle)
        if polled.state != "running":
            return polled
        time.sleep(0.2)
    raise AssertionError("the job did not end")


def test_the_environment_reaches_the_job_quoted(tmp_path: Path, slurm: Slurm) -> None:
    from orchestrator.backends.slurm import SlurmBackend

    weird = 'it\'s $(touch pwned) `touch pwned` "x"; a\nb'
    run_dir = _run_dir(tmp_path, 'printf "%s" "$WEIRD" > seen; printf "%s" "$NODE_ONLY" > node; exit 3')
    backend = SlurmBackend(
        env={"NODE_ONLY": "from settings", "WEIRD": "overridden"}, poll_s=0.2, workspace=tmp_path
    )
    handle = backend.submit(run_dir, {"WEIRD": weird}, timeout_s=60)
    polled = _wait_end(backend, handle)
    assert (polled.state, polled.exit_code, polled.timed_out, polled.detail) == ("exited", 3, False, None)
    assert (run_dir / "seen").read_text() == weird and (run_dir / "node").read_text() == "from settings"
    assert not list(tmp_path.rglob("pwned"))
    # A new backend (a conductor started after a crash) settles the job from its handle alone.
    fresh = SlurmBackend(poll_s=0.2)
    fresh.adopt(handle, run_dir)
    assert fresh.poll(handle).exit_code == 3
    fresh.cancel(handle)  # idempotent on a finished job


def test_a_path_map_gives_the_nodes_their_own_paths(tmp_path: Path, slurm: Slurm) -> None:
    """The nodes see this host's files under other paths (here: symbolic links to them)."""
    from orchestrator.backends.slurm import SlurmBackend

    host, view = tmp_path / "host", tmp_path / "node-view"
    run_dir = _run_dir(host / "runs", "exit 99")  # run.sh is this host's: never run under a map
    (host / "bin").mkdir()
    tool = host / "bin" / "gem5.opt"
    tool.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@" > seen_argv\n')
    tool.chmod(0o755)
    argv = [str(tool), "--outdir=m5out", f"--kernel={host}/data/vmlinux", "--disk-image=/elsewhere/disk.img"]
    (run_dir / "command.json").write_text(json.dumps({"argv": argv, "outdir": "m5out", "container": None}))
    view.mkdir()
    for name in ("runs", "bin"):
        (view / name).symlink_to(host / name)
    mapping = {str(host / name): str(view / name) for name in ("runs", "bin", "data")}
    backend = SlurmBackend(path_map=mapping, poll_s=0.2)
    handle = backend.submit(run_dir, {}, timeout_s=60)
    assert _wait_end(backend, handle).exit_code == 0
    assert (run_dir / "seen_argv").read_text().splitlines() == [
        f"{view}/bin/gem5.opt", "--outdir=m5out", f"--kernel={view}/data/vmlinux", "--disk-image=/elsewhere/disk.img",
    ]  # fmt: skip
    job = slurm.run("scontrol", "-o", "show", "job", handle).stdout
    node_dir = view / "runs" / "run"
    assert f"WorkDir={node_dir}" in job and f"StdOut={node_dir}/logs/backend.out" in job
    assert f"{node_dir}/run.slurm.sh" in (run_dir / "slurm_job.sh").read_text()


def test_slurm_end_states_map_to_the_digest() -> None:
    """End states a one-node test cluster cannot produce in seconds (a time limit is a minute at
    least; no cgroup here to kill for memory), parsed from sacct's and scontrol's own lines."""
    from orchestrator.backends.slurm import SlurmBackend, _Job, parse_sacct, parse_scontrol

    backend = SlurmBackend()
    timeout = backend._settle(
        _Job("7"), parse_scontrol("JobId=7 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15")
    )
    assert timeout.timed_out and timeout.detail is None
    oom = backend._settle(_Job("8"), parse_sacct("OUT_OF_MEMORY|0:125\n"))
    assert (
        oom.state == "exited"
        and "slurm: job 8 OUT_OF_MEMORY" in oom.detail
        and "mem_gib_per_run" in oom.detail
    )
    cancelled = backend._settle(_Job("9"), parse_sacct("CANCELLED by 1000|0:15\n"))
    assert cancelled.detail.startswith("slurm: job 9 CANCELLED by uid 1000") and cancelled.exit_code == 143
    assert backend._settle(_Job("10"), parse_sacct("NODE_FAIL|0:0")).state == "lost"
    asked = _Job("11", cancelled=True)
    assert backend._settle(asked, parse_sacct("CANCELLED by 0|0:15")).detail is None


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ({"partitoin": "debug"}, "backend.settings.partitoin: not a slurm setting; did you mean 'partition'"),
        (
            {"partition": "debug;touch pwned"},
            "backend.settings.partition: 'debug;touch pwned' is not a Slurm name",
        ),
        (
            {"sbatch_args": ["--output=/tmp/elsewhere"]},
            "backend.settings.sbatch_args[0]: --output is set by the backend",
        ),
        (
            {"sbatch_args": ["--comment=$(touch pwned)"]},
            "backend.settings.sbatch_args[0]: the value of --comment",
        ),
        ({"env": {"A B": "x"}}, "backend.settings.env.A B: not an environment variable name"),
        ({"poll_s": 0}, "backend.settings.poll_s: must be > 0"),
    ],
)
def test_bad_settings_are_one_line_naming_the_field(
    tmp_path: Path, capsys, setting: dict, field: str
) -> None:
    spec = on_slurm(make_spec(tmp_path))
    data = yaml.safe_load(spec.read_text())
    data["backend"]["settings"] = setting
    spec.write_text(yaml.safe_dump(data))
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert field in err and err.count("\n") == 1, err
    assert not list(tmp_path.rglob("pwned")) and not list(tmp_path.rglob("slurm_job.sh"))
