"""The conductor on the local backend, end to end on the gem5 TEST DOUBLE (not a simulator).

experiments/selftest.yaml runs boot checkpoint -> census -> window -> one sliced layer -> per-kernel
table; a second run resumes (runs nothing). Fault tests: a run that hangs past its timeout, a
gem5 panic with the KVM perf message, an orchestrator killed mid-run and started again, Ctrl-C,
and a stale outdir from another render. Every run is also preflighted against the real gem5 tree
when ../shared/gem5_src has one (the spec's ``source: auto``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from orchestrator.cli import main
from orchestrator.store import RunStore

SELFTEST = REPO / "experiments" / "selftest.yaml"
SCENARIO = REPO / "tests" / "gem5_double" / "scenarios" / "selftest.json"
pytestmark = pytest.mark.slow


def make_spec(tmp_path: Path, events_edit=None, preflight: bool = False, **changes) -> Path:
    """A copy of the selftest spec in tmp_path (inputs and double by absolute path).

    Fault tests skip the conductor's preflight (the selftest test keeps it): it costs seconds per
    run and is tested on its own; the double still writes gem5's real config.ini.
    """
    spec = yaml.safe_load(SELFTEST.read_text())
    spec["gem5"]["preflight"] = preflight
    spec["gem5"]["binary"] = str(REPO / "tests" / "gem5_double" / "gem5.opt")
    spec["image"] = {"disk": str(REPO / "experiments" / "selftest-inputs" / "disk.img"),
                     "kernel": str(REPO / "experiments" / "selftest-inputs" / "vmlinux")}  # fmt: skip
    scenario = SCENARIO
    if events_edit is not None:
        data = json.loads(SCENARIO.read_text())
        data["events"] = events_edit(data["events"])
        scenario = tmp_path / "scenario.json"
        scenario.write_text(json.dumps(data))
    spec["gem5"]["env"] = {"LAYERLAB_GEM5_DOUBLE_SCENARIO": str(scenario)}
    for key, value in changes.items():
        node = spec
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def real_gem5_spec(tmp_path: Path) -> Path | None:
    """The selftest on a real gem5 when LAYERLAB_GEM5 (+ _SRC, _KERNEL, _DISK) name one; else None."""
    binary = os.environ.get("LAYERLAB_GEM5")
    if not binary:
        return None
    needed = ("LAYERLAB_GEM5_SRC", "LAYERLAB_GEM5_KERNEL", "LAYERLAB_GEM5_DISK")
    if not all(os.environ.get(k) for k in needed):
        pytest.skip(f"a real gem5 run needs {', '.join(needed)} too")
    spec = yaml.safe_load(SELFTEST.read_text())
    spec["gem5"] = {
        "binary": binary,
        "source": os.environ["LAYERLAB_GEM5_SRC"],
        "profile": os.environ.get("LAYERLAB_GEM5_PROFILE", "v24.0"),
    }
    spec["image"] = {"disk": os.environ["LAYERLAB_GEM5_DISK"], "kernel": os.environ["LAYERLAB_GEM5_KERNEL"]}
    spec["timeouts"] = {"boot_s": 7200, "census_s": 7200, "slice_s": 86400}
    path = tmp_path / "spec.yaml"
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


def test_selftest_runs_the_whole_pipeline_then_resumes(tmp_path: Path, capsys) -> None:
    spec = real_gem5_spec(tmp_path) or make_spec(tmp_path, preflight=True)
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert [r["kind"] for r in records] == ["boot", "census", "slice"]
    assert all(r["state"] == "done" and r["attempts"] == 1 for r in records)
    assert {"run_id", "label", "state"} <= set(records[0])
    sliced = Path(next(r["run_dir"] for r in records if r["kind"] == "slice"))
    record = json.loads((sliced / "slice.json").read_text())
    assert (record["step"], record["layer"]) == (1, 1)
    import pandas as pd

    table = pd.read_parquet(sliced / "kernels.parquet")
    kernels = table[~table["blit"].astype(bool)]
    assert list(kernels["kernel_index"]) == [k["kernel_index"] for k in record["kernels"]]
    assert set(kernels["census_layer"]) == {1} and (kernels["census_run_id"] == record["census_run_id"]).all()
    # The census restored the boot checkpoint by the run that wrote it.
    census = Path(next(r["run_dir"] for r in records if r["kind"] == "census"))
    boot_id = next(r["run_id"] for r in records if r["kind"] == "boot")
    assert json.loads((census / "params.json").read_text())["workload"]["checkpoint_id"] == f"run:{boot_id}"
    # Resume: nothing runs again, in a fresh process, process start included.
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet", "--json"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert [r["attempts"] for r in again] == [1, 1, 1]
    print(f"resume of the selftest: {elapsed:.2f} s")


def test_spec_errors_name_the_field_and_line(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nmodel: llama-3.2-1b\nshapes:\n  batch: 0\n")
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:4: shapes.batch:" in err and err.count("\n") == 1
    spec.write_text("name: x\nmodel: llama-3.2-1b\nbackend:\n  kind: cloud\n")
    assert main(["run", str(spec)]) == 2
    assert f"{spec}:4: backend.kind:" in capsys.readouterr().err
    spec.write_text("name: x\nmodel: m\nmatrix:\n  nothing.here: [1]\n")
    assert main(["run", str(spec)]) == 2
    assert f"{spec}:4: matrix.nothing.here" in capsys.readouterr().err


def test_matrix_axes_expand_into_variants() -> None:
    from orchestrator.spec import Experiment, variants

    spec = Experiment.model_validate({
        "name": "sweep", "model": "llama-3.2-1b",
        "matrix": {"hardware.knobs.num_cus": [40, 80], "hardware.knobs.tcc_bytes": ["256KiB", "4MiB"]},
    })  # fmt: skip
    out = variants(spec)
    assert len(out) == 4 and out[0][0] == "num_cus40-tcc_bytes256KiB"
    assert {v.hardware.knobs["num_cus"] for _, v in out} == {40, 80}


double_only = pytest.mark.skipif(
    bool(os.environ.get("LAYERLAB_GEM5")), reason="scripted faults need the gem5 test double's scenarios"
)


@double_only
def test_a_hanging_run_is_killed_at_its_timeout(tmp_path: Path, capsys) -> None:
    spec = make_spec(
        tmp_path,
        after_restore({"type": "sleep", "seconds": 600}),
        **{"timeouts.census_s": 3, "backend.settings": {"grace_s": 1}},
    )
    start = time.perf_counter()
    assert main(["run", str(spec), "--quiet"]) == 1
    assert time.perf_counter() - start < 120
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "timed_out" and census["digest"]["cause"] == "timeout"
    pid = json.loads((Path(census["run_dir"]) / "logs" / "backend.json").read_text())["pid"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert main(["status", str(spec)]) == 1  # usable in CI: non-zero while a run failed


@double_only
def test_a_kvm_perf_panic_gets_its_digest_and_fix(tmp_path: Path, capsys) -> None:
    message = "panic: PerfKvmCounter::attach failed (2)\nMemory Usage: 1234 KBytes"
    spec = make_spec(tmp_path, after_restore({"type": "panic", "message": message}))
    assert main(["run", str(spec), "--quiet"]) == 1
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "failed" and census["digest"]["cause"] == "kvm_perf"
    assert "perf_event_paranoid" in census["digest"]["hint"]
    # --retry-failed runs it again (and it fails again the same way).
    assert main(["run", str(spec), "--quiet", "--retry-failed"]) == 1
    assert next(r for r in status(capsys, spec) if r["kind"] == "census")["attempts"] == 2


def _conductor(spec: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(spec), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def _census_state(spec: Path) -> str | None:
    store = RunStore(spec.parent / "runs" / "selftest")
    return next((r.state for r in store.all() if r.kind == "census"), None)


@double_only
def test_a_killed_orchestrator_loses_nothing(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path, after_restore({"type": "sleep", "seconds": 6}))
    first = _conductor(spec)
    _wait_for(lambda: _census_state(spec) == "running")
    first.kill()  # the conductor dies; the census runs on in its own process group
    first.wait()
    assert _census_state(spec) == "running"
    assert main(["run", str(spec), "--quiet"]) == 0  # follows the census, then runs the slice
    records = status(capsys, spec)
    assert all(r["state"] == "done" for r in records)
    assert next(r for r in records if r["kind"] == "census")["attempts"] == 1  # not started twice


@double_only
def test_ctrl_c_cancels_running_runs(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path, after_restore({"type": "sleep", "seconds": 300}))
    conductor = _conductor(spec)
    _wait_for(lambda: _census_state(spec) == "running")
    conductor.send_signal(signal.SIGINT)
    assert conductor.wait(timeout=60) == 130
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "cancelled"
    pid = json.loads((Path(census["run_dir"]) / "logs" / "backend.json").read_text())["pid"]
    _wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ),
        30,
    )


def test_stale_outputs_of_another_render_are_moved_aside(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path)
    assert main(["run", str(spec), "--quiet"]) == 0
    sliced = Path(next(r["run_dir"] for r in status(capsys, spec) if r["kind"] == "slice"))
    events = sliced / "m5out" / "layerlab_events.jsonl"
    lines = events.read_text().splitlines()
    first = json.loads(lines[0])
    first["run_id"] = "0000000000000000"  # outputs from some other render
    events.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert main(["run", str(spec), "--quiet"]) == 0
    assert (sliced / "m5out.stale-1" / "layerlab_events.jsonl").is_file()
    assert (
        json.loads((sliced / "m5out" / "layerlab_events.jsonl").read_text().splitlines()[0])["run_id"]
        != "0" * 16
    )
    assert next(r for r in status(capsys, spec) if r["kind"] == "slice")["attempts"] == 2


@double_only
def test_cancel_from_another_process_and_collect(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path, after_restore({"type": "sleep", "seconds": 300}))
    conductor = _conductor(spec)
    _wait_for(lambda: _census_state(spec) == "running")
    workspace = spec.parent / "runs" / "selftest"
    assert main(["cancel", str(spec), "--workspace", str(workspace)]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert conductor.wait(timeout=60) == 1  # the conductor sees it ended, keeps 'cancelled'
    assert _census_state(spec) == "cancelled"
    assert main(["collect", str(spec), "--workspace", str(workspace)]) == 2  # nothing sliced yet
    assert "no sliced run is done yet" in capsys.readouterr().err


def test_collect_joins_every_sliced_run(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path, **{"slices.layers": [0, 1]})
    assert main(["run", str(spec), "--quiet"]) == 0
    out = tmp_path / "kernels.parquet"
    capsys.readouterr()
    assert main(["collect", str(spec), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"] == 2 and summary["output"] == str(out)
    import pandas as pd

    table = pd.read_parquet(out)
    assert set(table["label"].str.rsplit("/", n=1).str[-1]) == {"step1-layer0", "step1-layer1"}
    assert set(table.loc[~table["blit"].astype(bool), "census_layer"]) == {0, 1}


@double_only
def test_a_census_without_markers_fails_its_branch_only(tmp_path: Path, capsys) -> None:
    """A census that ran but whose kernel map cannot be built (no markers) fails with a digest
    naming the cause; the experiment's other branch runs to the end, and nothing raises."""
    data = json.loads(SCENARIO.read_text())
    data["events"] = [e for e in data["events"] if e["type"] != "marker"]
    bare = tmp_path / "no-markers.json"
    bare.write_text(json.dumps(data))
    wrapper = tmp_path / "nomarkers" / "gem5.opt"  # the same double, scripted without markers
    wrapper.parent.mkdir()
    double = REPO / "tests" / "gem5_double" / "gem5.opt"
    wrapper.write_text(f'#!/bin/sh\nLAYERLAB_GEM5_DOUBLE_SCENARIO={bare} exec {double} "$@"\n')
    wrapper.chmod(0o755)
    spec = make_spec(tmp_path, matrix={"gem5.binary": [str(double), str(wrapper)]})
    for _attempt in range(2):  # the run, then a resume that says the same
        assert main(["run", str(spec), "--quiet"]) == 1
        records = status(capsys, spec)
        failed = [r for r in records if r["state"] != "done"]
        assert [(r["kind"], r["state"], r["digest"]["cause"]) for r in failed] == [
            ("census", "failed", "kernel_map")
        ]
        assert "no workbegin/workend markers" in failed[0]["digest"]["detail"]
        assert "nomarkers" in failed[0]["label"] and failed[0]["attempts"] == 1
        done = [r for r in records if r["state"] == "done"]
        assert sorted(r["kind"] for r in done) == ["boot", "boot", "census", "slice"]
        assert all("nomarkers" not in r["label"] for r in done if r["kind"] != "boot")
    assert main(["status", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "kernel_map" in out and "--markers gem5" in out
