"""The docker backend on a real, private Docker engine (tests/services/dockerd.py), end to end.

The selftest experiment runs in containers of an image made here by ``docker import`` (busybox +
this host's python3), with the gem5 TEST DOUBLE mounted in as the run's gem5 binary (its
numbers are never a simulation); a second ``layerlab run`` resumes. Fault tests: a run that
hangs past its deadline, a container killed (``docker kill``) or removed (``docker rm -f``) from
outside, a conductor killed mid-run, a run rendered without a container, bad settings; and the
backend on its own: logs, labels, cancel, OOM, what cannot start. With LAYERLAB_GEM5 set
the selftest runs a real gem5 in the real gpu-fs image instead (LAYERLAB_GEM5_IMAGE, loaded
into the private engine from LAYERLAB_GEM5_IMAGE_TAR, a ``docker save`` of it) and the
scripted-fault tests skip. One engine per module: starting it costs ~1 s, the image ~2 s.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, REPO
from services.dockerd import PrivateDockerd, build_test_image, load_image, missing_tools, private_dockerd
from test_orchestrator_local import after_restore, make_spec, real_gem5_spec

from orchestrator.cli import main
from orchestrator.store import RunStore

REAL = bool(os.environ.get("LAYERLAB_GEM5"))
WHY_NOT = missing_tools()
pytestmark = pytest.mark.slow
double_only = pytest.mark.skipif(REAL, reason="scripted faults need the gem5 test double's scenarios")


@pytest.fixture(scope="module")
def engine():
    if WHY_NOT is not None:
        pytest.skip(WHY_NOT)
    with private_dockerd() as started:
        yield started


@pytest.fixture(scope="module")
def image(engine: PrivateDockerd) -> str:
    if not REAL:
        return build_test_image(engine)
    name, tarball = os.environ.get("LAYERLAB_GEM5_IMAGE"), os.environ.get("LAYERLAB_GEM5_IMAGE_TAR")
    if not (name and tarball):
        pytest.skip(
            "a real gem5 in docker needs LAYERLAB_GEM5_IMAGE and LAYERLAB_GEM5_IMAGE_TAR (docker save)"
        )
    load_image(engine, Path(tarball))
    return name


def docker_spec(tmp_path: Path, engine: PrivateDockerd, image: str, events_edit=None, **changes) -> Path:
    """The selftest spec on the docker backend: gem5 runs in ``image`` on the private engine.

    On the double, its folder is named by LAYERLAB_GEM5_DOUBLE_DIR (the binary is mounted alone
    at /layerlab/bin/gem5.opt) and the repository, fixtures and scenario are mounted read-only;
    the double's real-config preflight is off inside (no repository Python there).
    """
    spec_path = real_gem5_spec(tmp_path) if REAL else make_spec(tmp_path, events_edit)
    spec = yaml.safe_load(spec_path.read_text())
    settings: dict = {"docker_host": engine.host, "grace_s": 1}
    if not REAL:
        scenario = spec["gem5"]["env"]["LAYERLAB_GEM5_DOUBLE_SCENARIO"]
        spec["gem5"]["env"].update(
            LAYERLAB_GEM5_DOUBLE_DIR=str(REPO / "tests" / "gem5_double"),
            LAYERLAB_GEM5_SRC_DIR="/layerlab/no-gem5-trees",  # synthetic config.ini: no preflight inside
            LAYERLAB_FIXTURES=str(FIXTURES),  # the stats lines the double copies
        )
        mounts = [str(REPO), scenario] + ([str(FIXTURES)] if FIXTURES.is_dir() else [])
        settings["mounts"] = list(dict.fromkeys(m for m in mounts if not m.startswith(f"{REPO}/")))
    spec["gem5"]["container"] = image
    spec["backend"] = {**spec.get("backend", {}), "kind": "docker", "settings": settings}
    for key, value in changes.items():
        node = spec
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    spec_path.write_text(yaml.safe_dump(spec))
    return spec_path


def status(capsys, spec: Path) -> list[dict]:
    capsys.readouterr()
    main(["status", str(spec), "--json"])
    return json.loads(capsys.readouterr().out)


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_selftest_runs_in_containers_then_resumes(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    spec = docker_spec(tmp_path, engine, image)
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert [r["kind"] for r in records] == ["boot", "census", "slice"]
    assert all(r["state"] == "done" and r["attempts"] == 1 and r["backend"] == "docker" for r in records)
    sliced = Path(next(r["run_dir"] for r in records if r["kind"] == "slice"))
    record = json.loads((sliced / "slice.json").read_text())
    assert (record["step"], record["layer"]) == (1, 1)
    import pandas as pd

    table = pd.read_parquet(sliced / "kernels.parquet")
    kernels = table[~table["blit"].astype(bool)]
    assert list(kernels["kernel_index"]) == [k["kernel_index"] for k in record["kernels"]]
    # The boot checkpoint was written through its mount, and the census restored it.
    boot = Path(next(r["run_dir"] for r in records if r["kind"] == "boot"))
    assert any((boot / "checkpoint").iterdir())
    census = Path(next(r["run_dir"] for r in records if r["kind"] == "census"))
    state = json.loads((census / "logs" / "backend.json").read_text())
    assert state["container"] == next(r["handle"] for r in records if r["kind"] == "census")
    assert state["user"] == f"{os.getuid()}:{os.getgid()}" and state["image"] == image
    err = (census / "logs" / "backend.err").read_text()
    assert "unprivileged (no capabilities, no-new-privileges, no network)" in err
    if any(d.startswith("/dev/kvm") for d in state["container_spec"]["devices"]):
        assert "device /dev/kvm:/dev/kvm:rwm (gem5's KVM CPU)" in err  # the one extra privilege, logged
    if not REAL:
        assert "gem5 test double: no real gem5 tree" in err  # the container's stderr, streamed
    assert engine.containers() == []  # every ended run's container removed
    # Resume in a fresh process: nothing runs again, no container is made.
    done = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet", "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["attempts"] for r in json.loads(done.stdout)] == [1, 1, 1]
    assert engine.containers() == []


@double_only
def test_a_hanging_container_is_stopped_at_its_deadline(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    spec = docker_spec(tmp_path, engine, image, after_restore({"type": "sleep", "seconds": 600}),
                       **{"timeouts.census_s": 3})  # fmt: skip
    start = time.perf_counter()
    assert main(["run", str(spec), "--quiet"]) == 1
    assert time.perf_counter() - start < 90
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "timed_out" and census["digest"]["cause"] == "timeout"
    state = json.loads((Path(census["run_dir"]) / "logs" / "backend.json").read_text())
    assert state["timed_out"] is True
    assert engine.containers(f"layerlab.run_id={census['run_id']}") == []


def _census(spec: Path):
    store = RunStore(spec.parent / "runs" / "selftest")
    return next((r for r in store.all() if r.kind == "census"), None)


@double_only
def test_a_container_killed_from_outside_fails_with_a_digest_naming_it(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    spec = docker_spec(tmp_path, engine, image, after_restore({"type": "sleep", "seconds": 300}))
    conductor = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: (r := _census(spec)) is not None and r.state == "running")
        record = _census(spec)
        err = Path(record.run_dir) / "logs" / "backend.err"
        # Logs stream while the run goes: the double's first stderr line is there before it ends.
        _wait_for(lambda: "gem5 test double: no real gem5 tree" in err.read_text(), 30)
        assert engine.containers(f"layerlab.run_id={record.run_id}") == [record.handle]
        engine.docker("kill", record.handle)
        assert conductor.wait(timeout=60) == 1
    finally:
        if conductor.poll() is None:
            conductor.kill()
            conductor.wait()
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    name = json.loads((Path(census["run_dir"]) / "logs" / "backend.json").read_text())["name"]
    assert census["state"] == "failed" and census["digest"]["cause"] == "backend"
    assert "killed from outside layerlab (signal 9" in census["digest"]["detail"]
    assert name in census["digest"]["detail"]
    assert engine.containers() == []


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"docker_host": "docker.example:2375"}, "backend.settings.docker_host"),
        ({"grace_s": "soon"}, "backend.settings.grace_s"),
        ({"mounts": ["relative/path"]}, "backend.settings.mounts[0]"),
        ({"mounts": ["/nonexistent/layerlab"]}, "backend.settings.mounts[0]"),
        ({"env": {"A B": "x"}}, "backend.settings.env"),
        ({"image": "not an image"}, "backend.settings.image"),
        ({"docker_host": "unix:///nonexistent/docker.sock"}, "backend.settings.docker_host"),
        ({"colour": "blue"}, "backend.settings"),  # an unknown key
    ],
)
def test_bad_settings_exit_2_naming_the_field(tmp_path: Path, capsys, settings: dict, field: str) -> None:
    spec = make_spec(tmp_path, **{"backend.kind": "docker", "backend.settings": settings})
    assert main(["run", str(spec), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{field}:") or f": {field}:" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def _conductor(spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


@double_only
def test_a_restarted_conductor_adopts_the_container_and_its_logs(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    spec = docker_spec(tmp_path, engine, image, after_restore({"type": "sleep", "seconds": 3}))
    first = _conductor(spec)
    _wait_for(lambda: (r := _census(spec)) is not None and r.state == "running")
    err = Path(_census(spec).run_dir) / "logs" / "backend.err"
    _wait_for(lambda: "gem5 test double: no real gem5 tree" in err.read_text(), 30)
    first.kill()  # the conductor dies; its container runs on
    first.wait()
    assert main(["run", str(spec), "--quiet"]) == 0  # follows the census, then runs the slice
    records = status(capsys, spec)
    assert all(r["state"] == "done" for r in records)
    assert next(r for r in records if r["kind"] == "census")["attempts"] == 1  # not started twice
    assert err.read_text().count("gem5 test double: no real gem5 tree") == 1  # nothing lost or doubled
    assert engine.containers() == []


@double_only
def test_a_container_removed_from_outside_is_lost(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    spec = docker_spec(tmp_path, engine, image, after_restore({"type": "sleep", "seconds": 300}))
    conductor = _conductor(spec)
    try:
        _wait_for(lambda: (r := _census(spec)) is not None and r.state == "running")
        engine.docker("rm", "-f", _census(spec).handle)
        assert conductor.wait(timeout=60) == 1
    finally:
        if conductor.poll() is None:
            conductor.kill()
            conductor.wait()
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "failed" and census["digest"]["cause"] == "backend"
    assert "is gone (removed outside layerlab" in census["digest"]["detail"]


@double_only
def test_settings_image_runs_a_run_rendered_without_a_container(
    tmp_path: Path, capsys, engine: PrivateDockerd, image: str
) -> None:
    # The census ends at once (the guest's `m5 fail 3`): the boot shows the host render ran.
    spec = docker_spec(
        tmp_path, engine, image, after_restore({"type": "fail", "code": 3}), **{"gem5.container": None}
    )
    data = yaml.safe_load(spec.read_text())
    data["backend"]["settings"]["image"] = image
    spec.write_text(yaml.safe_dump(data))
    assert main(["run", str(spec), "--quiet"]) == 1
    boot, census = status(capsys, spec)
    assert boot["state"] == "done" and census["digest"]["cause"] == "guest_fail"
    assert (
        json.loads((Path(boot["run_dir"]) / "command.json").read_text())["container"] is None
    )  # a host render
    err = (Path(boot["run_dir"]) / "logs" / "backend.err").read_text()
    assert f"its command runs in backend.settings.image {image}" in err
    # Without either, the run is refused before anything starts.
    del data["backend"]["settings"]["image"]
    spec.write_text(yaml.safe_dump(data))
    assert main(["run", str(spec), "--quiet", "--force"]) == 2
    assert ": gem5.container: the docker backend runs gem5 in a container" in capsys.readouterr().err
    assert engine.containers() == []


# ------------------------------------------------------------------------------ the backend itself
@pytest.fixture(scope="module")
def test_image(engine: PrivateDockerd, request) -> str:
    """busybox + python: the gem5 image itself on the double, made apart for a real gem5."""
    if not REAL:
        return request.getfixturevalue("image")
    return build_test_image(engine, "layerlab-test-busybox:1")


def bare_run(run: Path, image: str, argv: list[str], devices: tuple[str, ...] = ()) -> Path:
    """A run directory whose command.json is a container section only (no gem5)."""
    run.mkdir()
    container = {"image": image, "argv": argv, "working_dir": "/layerlab/run", "devices": list(devices),
                 "security_opt": [], "mounts": [{"host": ".", "container": "/layerlab/run", "mode": "rw"}]}  # fmt: skip
    (run / "command.json").write_text(
        json.dumps({"run_id": "0123456789abcdef", "argv": argv, "container": container})
    )
    return run


def test_logs_stream_and_the_ended_container_is_removed(
    tmp_path: Path, engine: PrivateDockerd, test_image: str
) -> None:
    from orchestrator.backends.base import Poll
    from orchestrator.backends.docker import DockerBackend

    script = "echo out-1; echo err-1 >&2; pwd > where; id -u >> where; sleep 30"
    run = bare_run(tmp_path / "run", test_image, ["sh", "-c", script])
    backend = DockerBackend(docker_host=engine.host, grace_s=1, workspace=tmp_path)
    try:
        handle = backend.submit(run, {"LAYERLAB_X": "1"}, timeout_s=60)
        logs = run / "logs"
        _wait_for(lambda: "err-1" in (logs / "backend.err").read_text(), 30)  # while it runs
        assert backend.poll(handle).state == "running"
        assert (logs / "backend.out").read_text() == "out-1\n"
        assert (run / "where").read_text().split() == ["/layerlab/run", str(os.getuid())]
        labels = json.loads(engine.docker("inspect", "--format", "{{json .Config.Labels}}", handle))
        assert labels == {"layerlab.run_id": "0123456789abcdef", "layerlab.run_dir": str(run.resolve()),
                          "layerlab.workspace": str(tmp_path.resolve())}  # fmt: skip
        backend.cancel(handle)
        backend.cancel(handle)  # idempotent
        assert engine.containers() == []
        assert (logs / "backend.out").read_text() == "out-1\n"  # nothing doubled by the catch-up
        # A container that ends by itself: exit code, its whole log once, removed after fetch.
        run = bare_run(tmp_path / "run2", test_image, ["sh", "-c", "echo a; echo b >&2; echo c; exit 3"])
        handle = backend.submit(run, {}, timeout_s=60)
        _wait_for(lambda: backend.poll(handle).state == "exited", 30)
        assert backend.poll(handle) == Poll("exited", 3, False, None)
        assert engine.containers() == [handle]
        backend.fetch(handle, run)
        assert engine.containers() == []
        assert (run / "logs" / "backend.out").read_text() == "a\nc\n"
        assert (run / "logs" / "backend.err").read_text().endswith("no extra privileges\nb\n")
    finally:
        backend.close()


def test_what_cannot_run_is_refused_at_submit(
    tmp_path: Path, engine: PrivateDockerd, test_image: str
) -> None:
    from foundation.errors import InputError
    from orchestrator.backends.docker import DockerBackend

    backend = DockerBackend(docker_host=engine.host)
    try:
        run = bare_run(tmp_path / "a", test_image, ["true"], devices=("/dev/layerlab-no-kvm:/dev/kvm:rwm",))
        with pytest.raises(InputError, match="needs /dev/layerlab-no-kvm, which this host lacks"):
            backend.submit(run, {}, 10)
        run = bare_run(tmp_path / "b", "layerlab-not-here:1", ["true"])
        with pytest.raises(
            InputError,
            match=re.escape("gem5.container: image 'layerlab-not-here:1' is not on the docker engine"),
        ):
            backend.submit(run, {}, 10)
        command = json.loads((run / "command.json").read_text())
        command["container"].update(image=test_image, argv=["/layerlab/bin/gem5.opt"])
        (run / "command.json").write_text(json.dumps(command))
        with pytest.raises(InputError, match=re.escape("gem5.binary: the run's gem5")):
            backend.submit(run, {}, 10)
        assert engine.containers() == []
    finally:
        backend.close()


def test_an_oom_killed_container_says_so(tmp_path: Path, engine: PrivateDockerd, test_image: str) -> None:
    from orchestrator.backends.docker import DockerBackend

    run = bare_run(tmp_path / "run", test_image, ["python3", "-c", "x = b'x' * (512 * 2**20)"])
    backend = DockerBackend(docker_host=engine.host, resources=(1, 0.0625))  # 64 MiB
    try:
        handle = backend.submit(run, {}, timeout_s=60)
        _wait_for(lambda: backend.poll(handle).state == "exited", 30)
        polled = backend.poll(handle)
        assert polled.exit_code == 137 and polled.detail is not None
        assert polled.detail.startswith("docker: OOM killed") and "backend.mem_gib_per_run" in polled.detail
        backend.fetch(handle, run)
        assert engine.containers() == []
    finally:
        backend.close()
