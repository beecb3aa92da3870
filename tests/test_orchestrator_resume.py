"""Resume without rendering, and every way a resume must still notice a change.

The conductor remembers, per run label, a key of what the run's ``run_id`` depends on and the
``run_id`` it rendered to (``orchestrator.conductor``'s module doc). These tests run the selftest
pipeline on the gem5 TEST DOUBLE (not a simulator; a real gem5 with ``LAYERLAB_GEM5``), then
check that a resume renders nothing (the renderer is not even imported), and that a changed
input file, a changed spec knob, an edited ``params.json``, an events file cut short and the
renderer's own code each make the resume look again -- and that ``--force`` and
``--retry-failed`` still run what they say. No timings are asserted (see
benchmarks/bench_orchestrator.py for those).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_orchestrator_local import after_restore, double_only, make_spec, real_gem5_spec, status

from orchestrator.cli import main
from orchestrator.conductor import (
    CHECKPOINT_RECORD,
    CODE_ROOTS,
    events_complete,
    file_identity,
    renderer_stamp,
)
from orchestrator.store import RunStore

pytestmark = pytest.mark.slow
INPUTS = REPO / "experiments" / "selftest-inputs"


def _resume_imports(spec: Path) -> tuple[list[dict], set[str]]:
    """A resume in a fresh process: its final records, and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", "run", str(spec), "--quiet", "--json"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {
        line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
    }
    return json.loads(done.stdout), modules


def _by_kind(records: list[dict]) -> dict[str, dict]:
    return {r["kind"]: r for r in records}


def test_a_resume_renders_nothing_and_notices_edits(tmp_path: Path, capsys) -> None:
    spec = real_gem5_spec(tmp_path) or make_spec(tmp_path)
    assert main(["run", str(spec), "--quiet"]) == 0
    first = status(capsys, spec)
    assert [r["attempts"] for r in first] == [1, 1, 1]
    store = RunStore(spec.parent / "runs" / "selftest")
    assert set(store.renders("selftest")) == {r["label"] for r in first}

    # Nothing changed: every run is skipped from its key; the renderer, jinja2 and pandas stay out.
    again, modules = _resume_imports(spec)
    assert [(r["run_id"], r["attempts"], r["state"]) for r in again] == [
        (r["run_id"], 1, "done") for r in first
    ]
    assert not modules & {"gem5_configs.render", "gem5_configs.params", "jinja2", "pandas", "polars"}

    # params.json edited by hand: that run is rendered again (the render is the judge), not re-run.
    sliced = _by_kind(first)["slice"]
    params = Path(_by_kind(first)["census"]["run_dir"]) / "params.json"
    rendered = params.read_text()
    params.write_text(rendered.replace('"schema"', '"schema" ', 1))
    again, modules = _resume_imports(spec)
    assert "gem5_configs.render" in modules
    assert params.read_text() == rendered
    assert [r["attempts"] for r in again] == [1, 1, 1]

    # The slice's events file cut short (its end record gone): the slice runs again.
    events = Path(sliced["run_dir"]) / "m5out" / "layerlab_events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    events.write_text("".join(lines[:-1]))
    assert main(["run", str(spec), "--quiet"]) == 0
    records = status(capsys, spec)
    assert [r["attempts"] for r in records] == [1, 1, 2]
    assert (Path(sliced["run_dir"]) / "m5out.stale-1").is_dir()

    # --force runs everything again, complete or not.
    assert main(["run", str(spec), "--quiet", "--force"]) == 0
    assert [r["attempts"] for r in status(capsys, spec)] == [2, 2, 3]


@double_only
def test_a_changed_input_or_knob_renders_and_runs_again(tmp_path: Path, capsys, monkeypatch) -> None:
    # No gem5 tree for the double: its config.ini is synthetic, not a cold preflight per machine.
    (tmp_path / "no-trees").mkdir()
    monkeypatch.setenv("LAYERLAB_GEM5_SRC_DIR", str(tmp_path / "no-trees"))
    inputs = tmp_path / "inputs"
    shutil.copytree(INPUTS, inputs)
    image = {"disk": str(inputs / "disk.img"), "kernel": str(inputs / "vmlinux")}
    spec = make_spec(tmp_path, image=image)
    assert main(["run", str(spec), "--quiet"]) == 0
    first = status(capsys, spec)

    # Another kernel (new content, so a new digest): every run is a new simulation.
    time.sleep(0.01)  # a new mtime even on coarse clocks
    (inputs / "vmlinux").write_bytes(b"another kernel")
    assert main(["run", str(spec), "--quiet"]) == 0
    second = status(capsys, spec)
    labels = [r["label"] for r in first]
    assert len(second) == 6  # the earlier simulations' records stay, under their own run_ids
    new = {r["label"]: r for r in second if r["run_id"] not in {f["run_id"] for f in first}}
    assert sorted(new) == sorted(labels) and all(r["state"] == "done" for r in new.values())
    boot = json.loads((Path(new[labels[0]]["run_dir"]) / "params.json").read_text())
    assert boot["run_id"] == new[labels[0]]["run_id"]

    # A spec knob the labels do not show (the CPU model) is a new simulation too.
    spec = make_spec(tmp_path, image=image, **{"gem5.cpu": "atomic"})
    assert main(["run", str(spec), "--quiet"]) == 0
    third = status(capsys, spec)
    latest = {r["label"]: r for r in third if r["run_id"] not in {s["run_id"] for s in second}}
    assert sorted(latest) == sorted(labels) and all(r["state"] == "done" for r in latest.values())
    census = json.loads((Path(latest[labels[1]]["run_dir"]) / "params.json").read_text())
    assert census["machine"]["cpu_type"] == "atomic"


@double_only
def test_retry_failed_still_runs_what_failed(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path, after_restore({"type": "fail", "code": 3}))
    assert main(["run", str(spec), "--quiet"]) == 1
    assert main(["run", str(spec), "--quiet"]) == 1  # a resume leaves the failure as it is
    census = next(r for r in status(capsys, spec) if r["kind"] == "census")
    assert census["state"] == "failed" and census["attempts"] == 1
    assert main(["run", str(spec), "--quiet", "--retry-failed"]) == 1
    assert next(r for r in status(capsys, spec) if r["kind"] == "census")["attempts"] == 2


def test_the_renderer_stamp_follows_the_code(tmp_path: Path) -> None:
    tree = tmp_path / "code"
    (tree / "templates").mkdir(parents=True)
    template = tree / "templates" / "gpufs.py.j2"
    template.write_text("{{ x }}\n")
    (tree / "__pycache__").mkdir()
    stamp = renderer_stamp([tree])
    assert renderer_stamp([tree]) == stamp
    (tree / "__pycache__" / "x.pyc").write_bytes(b"compiled")  # caches are not code
    assert renderer_stamp([tree]) == stamp
    template.write_text("{{ y }}\n")
    assert renderer_stamp([tree]) != stamp
    edited = renderer_stamp([tree])
    os.utime(template, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched: a new stamp too
    assert renderer_stamp([tree]) != edited
    # The renderer's templates, option tables and defaults are all under the stamped roots.
    for path in ("gem5_configs/templates", "gem5_configs/profiles", "gem5_configs/params.py",
                 "analytical/hardware.py", "foundation/digests.py", "workloads/census.py"):  # fmt: skip
        assert any((REPO / path).resolve().is_relative_to(root) for root in CODE_ROOTS), path


def test_the_checkpoint_record_name_is_the_renderers() -> None:
    from gem5_configs.params import CHECKPOINT_ID_FILE

    assert CHECKPOINT_RECORD == CHECKPOINT_ID_FILE


def test_events_complete_reads_the_first_and_last_records(tmp_path: Path) -> None:
    start = {"kind": "start", "run_id": "abc", "tick": 0}
    end = {"kind": "end", "expected": True, "cause": "m5_exit instruction encountered", "tick": 9}
    kernel = {"kind": "kernel", "tick": 5, "pad": "x" * 200}
    events = tmp_path / "layerlab_events.jsonl"

    def write(*records: dict, tail: str = "") -> None:
        events.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)

    write(start, *[kernel] * 2000, end)  # longer than the tail the check reads
    assert events_complete(tmp_path, "abc")
    assert not events_complete(tmp_path, "other")
    write(start, kernel)
    assert not events_complete(tmp_path, "abc")  # no end record
    write(start, kernel, {**end, "expected": False})
    assert not events_complete(tmp_path, "abc")  # ended by something the run did not ask for
    write(start, kernel, end, tail='{"kind": "ker')
    assert not events_complete(tmp_path, "abc")  # a partial last line: the full check decides
    write(start)
    assert not events_complete(tmp_path, "abc")
    events.unlink()
    assert not events_complete(tmp_path, "abc")
    assert file_identity(events).endswith(":missing")
