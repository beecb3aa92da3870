"""The ssh backend against a real OpenSSH server on 127.0.0.1 (tests/services/sshd.py).

The "remote" host is this machine, but its ``remote_root`` is a temp dir apart from the
workspace, so inputs are really pushed (by digest) and outputs really fetched. The path map
sends the repository checkout to itself, as on a cluster sharing one checkout (the gem5 test
double and the gem5 tree are found there); the selftest inputs are copied out of the checkout
first, so they travel by digest. With ``LAYERLAB_GEM5`` set the pipeline test runs a real gem5
(its binary, tree and images mapped to themselves); the scripted-fault tests need the double.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from services import sshd as sshd_service

from foundation.digests import file_digest
from orchestrator.cli import main
from orchestrator.plan import gem5_source
from orchestrator.spec import load_spec
from orchestrator.store import RunStore

SELFTEST = REPO / "experiments" / "selftest.yaml"
SCENARIO = REPO / "tests" / "gem5_double" / "scenarios" / "selftest.json"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(sshd_service.available()), reason=str(sshd_service.available())),
]
double_only = pytest.mark.skipif(
    bool(os.environ.get("LAYERLAB_GEM5")), reason="scripted faults need the gem5 test double's scenarios"
)


@pytest.fixture(scope="module")
def sshd() -> Iterator[sshd_service.Sshd]:
    server = sshd_service.Sshd()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _real_gem5() -> dict | None:
    """The gem5 section and image of a real gem5 (LAYERLAB_GEM5 + _SRC, _KERNEL, _DISK), or None."""
    binary = os.environ.get("LAYERLAB_GEM5")
    if not binary:
        return None
    needed = ("LAYERLAB_GEM5_SRC", "LAYERLAB_GEM5_KERNEL", "LAYERLAB_GEM5_DISK")
    if not all(os.environ.get(k) for k in needed):
        pytest.skip(f"a real gem5 run needs {', '.join(needed)} too")
    return {
        "gem5": {"binary": binary, "source": os.environ["LAYERLAB_GEM5_SRC"],
                 "profile": os.environ.get("LAYERLAB_GEM5_PROFILE", "v24.0")},
        "image": {"disk": os.environ["LAYERLAB_GEM5_DISK"], "kernel": os.environ["LAYERLAB_GEM5_KERNEL"]},
        "timeouts": {"boot_s": 7200, "census_s": 7200, "slice_s": 86400},
    }  # fmt: skip


def make_spec(tmp_path: Path, server: sshd_service.Sshd, events_edit=None, **settings) -> Path:
    """The selftest spec on the ssh backend, workspace and remote_root both under tmp_path."""
    spec = yaml.safe_load(SELFTEST.read_text())
    spec["gem5"]["preflight"] = False  # local, and tested on its own; not the backend's business
    real = _real_gem5()
    path_map = {str(REPO): str(REPO)}
    if real is not None:
        spec.update(real)
        # The same host: gem5, its tree and the (big) images are mapped to themselves, as given
        # and resolved, never pushed.
        for value in (real["gem5"]["binary"], real["image"]["disk"], real["image"]["kernel"]):
            for folder in {Path(value).absolute().parent, Path(value).resolve().parent}:
                path_map[str(folder)] = str(folder)
        for tree in {Path(real["gem5"]["source"]).absolute(), Path(real["gem5"]["source"]).resolve()}:
            path_map[str(tree)] = str(tree)
    else:
        inputs = tmp_path / "inputs"  # outside the checkout: pushed by digest
        inputs.mkdir()
        for name, text in (("disk.img", "a disk\n"), ("vmlinux", "a kernel\n")):
            (inputs / name).write_text(text)  # the double never reads them; distinct digests
        spec["gem5"]["binary"] = str(REPO / "tests" / "gem5_double" / "gem5.opt")
        spec["image"] = {"disk": str(inputs / "disk.img"), "kernel": str(inputs / "vmlinux")}
        data = json.loads(SCENARIO.read_text())
        if events_edit is not None:
            data["events"] = events_edit(data["events"])
        scenario = tmp_path / "scenario.json"  # an env value naming a file: pushed too
        scenario.write_text(json.dumps(data))
        spec["gem5"]["env"] = {"LAYERLAB_GEM5_DOUBLE_SCENARIO": str(scenario)}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    experiment, base = load_spec(path)
    tree = gem5_source(experiment, base)[0]
    for form in {tree, str(Path(tree).resolve())}:  # the gem5 tree, as given and as rendered
        path_map.setdefault(form, form)
    env = {"LAYERLAB_CACHE_DIR": os.environ["LAYERLAB_CACHE_DIR"]}  # the double's config cache
    spec["backend"] = {
        "kind": "ssh",
        "jobs": 2,
        "settings": server.settings(tmp_path / "remote", path_map=path_map, env=env, **settings),
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def after_restore(event: dict):
    """A scenario edit: ``event`` right after the boot checkpoint's weight upload (inside the census)."""

    def edit(events: list[dict]) -> list[dict]:
        at = next(i for i, e in enumerate(events) if e["type"] == "checkpoint") + 2
        return [*events[:at], event, *events[at:]]

    return edit


def status(capsys, spec: Path) -> list[dict]:
    capsys.readouterr()
    main(["status", str(spec), "--json"])
    return json.loads(capsys.readouterr().out)


def _census(spec: Path):
    store = RunStore(spec.parent / "runs" / "selftest")
    return next((r for r in store.all() if r.kind == "census"), None)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


# ------------------------------------------------------------------------------ the pipeline
def test_selftest_runs_over_ssh_then_resumes(tmp_path: Path, sshd, capsys) -> None:
    spec = make_spec(tmp_path, sshd)
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert [r["kind"] for r in records] == ["boot", "census", "slice"]
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in records), records
    by_kind = {r["kind"]: r for r in records}
    assert by_kind["boot"]["host"] == f"{sshd.host}:{sshd.port}"
    sliced, census, boot = (Path(by_kind[k]["run_dir"]) for k in ("slice", "census", "boot"))
    import pandas as pd

    record = json.loads((sliced / "slice.json").read_text())
    kernels = pd.read_parquet(sliced / "kernels.parquet")
    kernels = kernels[~kernels["blit"].astype(bool)]
    assert list(kernels["kernel_index"]) == [k["kernel_index"] for k in record["kernels"]]
    assert (census / "layerlab_kernel_map.json").is_file()
    # Each run ran in its own remote folder, from a run.sh with that host's paths.
    handle = json.loads(by_kind["census"]["handle"])
    remote = Path(handle["dir"])
    assert remote.is_relative_to(tmp_path / "remote" / "runs") and remote != census
    argv = json.loads((remote / "command.json").read_text())["argv"]
    restore = next(a.split("=", 1)[1] for a in argv if a.startswith("--restore-dir="))
    assert Path(restore).is_relative_to(tmp_path / "remote" / "runs") and (Path(restore) / "m5.cpt").is_file()
    assert json.loads((census / "params.json").read_text())["run_id"] == by_kind["census"]["run_id"]
    if not os.environ.get("LAYERLAB_GEM5"):
        kernel = next(a.split("=", 1)[1] for a in argv if a.startswith("--kernel="))
        digest = file_digest(tmp_path / "inputs" / "vmlinux").split(":")[1]
        assert kernel == str(tmp_path / "remote" / "inputs" / digest / "vmlinux")
        assert argv[0] == str(REPO / "tests" / "gem5_double" / "gem5.opt")  # mapped, not pushed
        env = (remote / "logs" / "backend.env").read_text()
        assert str(tmp_path / "remote" / "inputs") in env and str(tmp_path / "scenario.json") not in env
        # The checkpoint stays on the host; only its marker came back (the census render read it).
        assert sorted(p.name for p in (boot / "checkpoint").iterdir()) == ["layerlab_checkpoint.json"]
        assert not (census / "logs" / "backend.env").exists()
    # Resume: a fresh process runs nothing again.
    done = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet", "--json"],
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [r["attempts"] for r in json.loads(done.stdout)] == [1, 1, 1]


# ------------------------------------------------------------------------------ faults
@double_only
def test_a_dropped_connection_neither_orphans_nor_kills_the_run(tmp_path: Path, sshd, capsys) -> None:
    spec = make_spec(tmp_path, sshd, after_restore({"type": "sleep", "seconds": 5}))
    conductor = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: (r := _census(spec)) is not None and r.state == "running")
        census = _census(spec)
        pid = json.loads(census.handle)["pid"]
        events = Path(census.run_dir) / "m5out" / "layerlab_events.jsonl"
        _wait_for(events.is_file, 30)  # fetched while the run goes (the conductor's progress)
        sshd.kill()  # the host goes away: every connection dies, new ones are refused
        time.sleep(1.5)
        assert _session_members(pid), "the run died with its connection"
        sshd.start()  # back on the same port, same host key
        assert conductor.wait(timeout=90) == 0, conductor.stderr.read() if conductor.stderr else ""
    finally:
        if conductor.poll() is None:
            conductor.kill()
            conductor.wait()
    records = status(capsys, spec)
    assert all(r["state"] == "done" for r in records), records
    assert next(r for r in records if r["kind"] == "census")["attempts"] == 1


@double_only
def test_a_hanging_run_is_timed_out_and_its_session_ends(tmp_path: Path, sshd, capsys) -> None:
    spec = make_spec(tmp_path, sshd, after_restore({"type": "sleep", "seconds": 600}), grace_s=1)
    data = yaml.safe_load(spec.read_text())
    data["timeouts"]["census_s"] = 3
    spec.write_text(yaml.safe_dump(data))
    start = time.perf_counter()
    assert main(["run", str(spec), "--quiet"]) == 1
    assert time.perf_counter() - start < 60
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "timed_out" and census["digest"]["cause"] == "timeout", census
    pid = json.loads(census["handle"])["pid"]
    _wait_for(lambda: not _session_members(pid), 10)
    assert (Path(census["run_dir"]) / "logs" / "exit_code").read_text().strip() == "124"  # fetched


@double_only
def test_cancel_ends_the_remote_session(tmp_path: Path, sshd, capsys) -> None:
    spec = make_spec(tmp_path, sshd, after_restore({"type": "sleep", "seconds": 300}), grace_s=1)
    conductor = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: (r := _census(spec)) is not None and r.state == "running")
        pid = json.loads(_census(spec).handle)["pid"]
        assert _session_members(pid)
        capsys.readouterr()
        assert main(["cancel", str(spec), "--workspace", str(spec.parent / "runs" / "selftest")]) == 0
        assert "cancelled" in capsys.readouterr().out
        _wait_for(lambda: not _session_members(pid), 10)
        assert conductor.wait(timeout=60) == 1
    finally:
        if conductor.poll() is None:
            conductor.kill()
            conductor.wait()
    assert _census(spec).state == "cancelled"
    # Idempotent: cancelling a run that is gone is a no-op.
    from orchestrator.backends import make_backend

    backend = make_backend("ssh", yaml.safe_load(spec.read_text())["backend"]["settings"], spec.parent)
    backend.cancel(_census(spec).handle)
    backend.close()


# ------------------------------------------------------------------------------ bad input
def _one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_an_unknown_host_key_is_refused_with_the_fix(tmp_path: Path, sshd, capsys) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    spec = make_spec(tmp_path, sshd, known_hosts=str(known))
    err = _one_line_error(capsys, ["run", str(spec), "--quiet"])
    assert "backend.settings.known_hosts" in err
    assert f"ssh-keyscan -p {sshd.port} {sshd.host} >> {known}" in err
    assert known.read_text() == ""  # nothing was added behind the user's back
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.sh"))


def test_bad_settings_name_the_field(tmp_path: Path, sshd, capsys) -> None:
    spec = make_spec(tmp_path, sshd)
    data = yaml.safe_load(spec.read_text())
    good = data["backend"]["settings"]
    cases = {
        "port": ("port", "twenty-two"),
        "remote_root": ("remote_root", "relative/dir"),
        "connect_timeout_s": ("connect_timeout_s", -1),
        "key": ("key", str(tmp_path / "no-such-key")),
        "path_map": ("path_map", {"relative": "/x"}),
        "env": ("env", {"NOT A NAME": "x"}),
    }
    for field, (key, value) in cases.items():
        data["backend"]["settings"] = {**good, key: value}
        spec.write_text(yaml.safe_dump(data))
        assert f"backend.settings.{field}" in _one_line_error(capsys, ["run", str(spec), "--quiet"])
    data["backend"]["settings"] = {**good, "hots": "x"}
    spec.write_text(yaml.safe_dump(data))
    assert "backend.settings.hots: not a setting of the ssh backend; did you mean 'host'" in _one_line_error(
        capsys, ["run", str(spec), "--quiet"]
    )
    data["backend"]["settings"] = {k: v for k, v in good.items() if k != "host"}
    spec.write_text(yaml.safe_dump(data))
    assert "backend.settings.host: required" in _one_line_error(capsys, ["run", str(spec), "--quiet"])
    # An unmapped directory (the gem5 tree's configs/) is refused with the entry to add.
    data["backend"]["settings"] = {**good, "path_map": {str(REPO): str(REPO)}}
    spec.write_text(yaml.safe_dump(data))
    tree = str(Path(gem5_source(*load_spec(spec))[0]).resolve())
    if not Path(tree).is_relative_to(REPO):
        err = _one_line_error(capsys, ["run", str(spec), "--quiet"])
        assert "backend.settings.path_map" in err and tree in err
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)
