"""Admission on the local backend: runs at once are bounded by the CPUs and memory each reserves.

Two variants of the self-test (a matrix over the CU count) could run side by side with
``jobs: 2``; when each run reserves more memory than the machine has, the conductor admits one
at a time (never none: a run larger than the machine still runs, alone). Runs on the gem5 TEST
DOUBLE (not a simulator); with LAYERLAB_GEM5 set the same spec runs on a real gem5.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from test_orchestrator_local import make_spec, real_gem5_spec

from orchestrator.backends.local import LocalBackend
from orchestrator.cli import main

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path, mem_gib: float) -> Path:
    path = real_gem5_spec(tmp_path) or make_spec(tmp_path)
    import yaml

    spec = yaml.safe_load(path.read_text())
    spec["backend"] = {"kind": "local", "jobs": 2, "cpus_per_run": 1, "mem_gib_per_run": mem_gib}
    spec["matrix"] = {"hardware.knobs.num_cus": [20, 40]}
    path.write_text(yaml.safe_dump(spec))
    return path


def _intervals(capsys, spec: Path) -> list[tuple[float, float]]:
    capsys.readouterr()
    main(["status", str(spec), "--json"])
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 6 and all(r["state"] == "done" for r in records), records
    from orchestrator.store import RunStore

    store = RunStore(spec.parent / "runs" / "selftest")
    return sorted((r.started_at, r.ended_at) for r in store.all("selftest") if r.started_at)


def test_runs_larger_than_memory_are_admitted_one_at_a_time(tmp_path: Path, capsys) -> None:
    capacity_gib = LocalBackend().capacity()[1]
    spec = _spec(tmp_path, mem_gib=capacity_gib * 0.75)  # two would not fit, one does
    assert main(["run", str(spec), "--quiet"]) == 0
    spans = _intervals(capsys, spec)
    assert len(spans) == 6
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two runs overlapped although their memory does not fit twice: {spans}"


def test_capacity_reports_this_machine() -> None:
    import os

    cpus, mem = LocalBackend().capacity()
    assert cpus == float(os.cpu_count() or 1)
    assert 0 < mem < float("inf")
