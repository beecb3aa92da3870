"""Orchestration overhead: ``layerlab run SPEC`` over 1000 trivial runs, and its resume.

What users run, timed from process start to the command's output (its status table):

(a) **per-run overhead**: a spec whose matrix expands to 250 variants x (boot checkpoint, census,
    2 sliced runs) = 1000 runs on the local backend, ``jobs: 1`` (the baseline runs one at a
    time too), whose gem5 is the INSTANT test double (``tests/gem5_double/instant_gem5_double.py``:
    it replays what the real test double wrote once for a tiny guest -- one layer, 2 kernels a
    step -- with each dump's stats cut to the root and shader lines, so a run costs a process
    start and a few hard links, and its kernel map and kernel table are small). Everything the
    conductor does per run counts: render, store, submit, poll, kernel maps, kernel tables.
    Baseline, same process run: the same 1000 ``run.sh`` scripts run directly in a plain loop.
    Overhead per run = (layerlab wall - baseline wall) / 1000; target <= 20 ms.
(b) **resume of those 1000 completed runs** (a second ``layerlab run``: nothing runs again);
    target <= 1 s. Baseline: ``python -c pass`` plus a stat of the 1000 events files.
(c) **resume of experiments/selftest.yaml** (3 runs, gem5 test double); target <= 1 s.
    Baseline: ``python -c pass``.

Each figure is the median of ``--repeat`` runs (the machine is shared: medians, not minima).
Nothing here is a timed assertion in a test; the figures are PASS/FAIL against the targets.

    .venv/bin/python benchmarks/bench_orchestrator.py [--repeat 3] [--variants 250]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LAYERLAB = Path(sys.executable).with_name("layerlab")
DOUBLE = REPO / "tests" / "gem5_double" / "gem5.opt"
INSTANT = REPO / "tests" / "gem5_double" / "instant_gem5_double.py"
FAKE_TREE = REPO / "tests" / "gem5_double" / "fake_gem5_src"
SELFTEST = REPO / "experiments" / "selftest.yaml"
#: Stat lines the replayed runs leave out: the double's per-CU and cache lines (real fixture
#: lines, ~300 KB a dump), whose parsing is the stats stage's cost (benchmarks/bench_stats.py).
TRIMMED = re.compile(r"system\.(cpu\d+\.CUs|ruby|gpu_mem_ctrls)")
OVERHEAD_TARGET_S = 0.020
RESUME_TARGET_S = 1.0


def tiny_scenario() -> dict:
    """A guest of one layer, a prefill and one decode step, 2 kernels each, with its markers."""
    markers = [
        {"id": 0, "step": 0, "layer": -1, "module": None, "label": "step0.prefill0"},
        {"id": 1000, "step": 0, "layer": 0, "module": None, "label": "layers.0"},
        {"id": 1000000, "step": 1, "layer": -1, "module": None, "label": "step1.decode0"},
        {"id": 1001000, "step": 1, "layer": 0, "module": None, "label": "layers.0"},
    ]
    table = {
        "schema": "layerlab-markers/1",
        "scheme": "step*1000000 + (layer+1)*1000 + module_code",
        "driver": "layer",
        "argv": [],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "decode_steps": 1,
        "steps": [
            {"step": 0, "phase": "prefill", "phase_index": 0, "tokens": 4, "context": 0},
            {"step": 1, "phase": "decode", "phase_index": 0, "tokens": 1, "context": 4},
        ],
        "markers": markers,
    }
    events: list[dict] = [{"type": "host", "ticks": 5_000_000_000}, {"type": "checkpoint"}, {"type": "blit"}]
    for step, layer in ((0, 1000), (1_000_000, 1_001_000)):
        events += [
            {"type": "marker", "op": "workbegin", "id": step},
            {"type": "marker", "op": "workbegin", "id": layer},
        ]
        events += [{"type": "kernel", "ticks": 1_000_000}, {"type": "kernel", "ticks": 2_000_000}]
        events += [
            {"type": "marker", "op": "workend", "id": layer},
            {"type": "marker", "op": "workend", "id": step},
        ]
    events += [
        {"type": "writefile", "name": "layerlab_markers.json", "text": json.dumps(table)},
        {"type": "exit"},
    ]
    return {"schema": "layerlab-gem5-double/1", "events": events}


def spec_data(name: str, binary: Path, env: dict[str, str], inputs: Path, matrix: dict | None) -> dict:
    data = {
        "name": name,
        "model": "llama-3.2-1b",
        "driver": "layer",
        "shapes": {"phases": "both", "prompt_len": 4, "context": 0, "decode_steps": 1, "num_layers": 1},
        "slices": {"steps": [0, 1], "layers": [0]},
        "hardware": {"device": "mi300x"},
        "gem5": {"binary": str(binary), "source": str(FAKE_TREE), "preflight": False, "env": env},
        "image": {"disk": str(inputs / "disk.img"), "kernel": str(inputs / "vmlinux")},
        "backend": {"kind": "local", "jobs": 1},
        "timeouts": {"boot_s": 120, "census_s": 120, "slice_s": 120},
    }
    if matrix:
        data["matrix"] = matrix
    return data


def layerlab_run(spec: Path, workspace: Path, env: dict[str, str], *extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(LAYERLAB), "run", str(spec), "--workspace", str(workspace), *extra],
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"layerlab run {spec} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return elapsed


def record(tmp: Path, env: dict[str, str]) -> Path:
    """Run one variant on the real test double; keep each run kind's outputs for the replay."""
    scenario = tmp / "tiny.json"
    scenario.write_text(json.dumps(tiny_scenario()))
    spec = tmp / "record.yaml"
    spec.write_text(
        yaml.safe_dump(
            spec_data("record", DOUBLE, {"LAYERLAB_GEM5_DOUBLE_SCENARIO": str(scenario)}, tmp, None)
        )
    )
    workspace = tmp / "record-ws"
    layerlab_run(spec, workspace, env, "--quiet")
    recording = tmp / "recording"
    for run_dir in (p.parent for p in workspace.rglob("m5out")):
        kind = "boot" if (run_dir / "checkpoint").is_dir() else run_dir.name
        shutil.copytree(run_dir / "m5out", recording / kind / "m5out")
        if kind == "boot":
            shutil.copytree(run_dir / "checkpoint", recording / kind / "checkpoint")
        stats = recording / kind / "m5out" / "stats.txt"
        if stats.is_file():  # a trivial run's stats: the root and shader lines of each dump
            lines = stats.read_text(encoding="utf-8").splitlines(keepends=True)
            stats.write_text("".join(line for line in lines if not TRIMMED.match(line)), encoding="utf-8")
    return recording


def run_dirs(workspace: Path) -> list[Path]:
    """The run directories of a workspace in the conductor's order (boots, censuses, slices)."""
    rank = {"boot": 0, "census": 1}
    dirs = [p.parent for p in workspace.rglob("run.sh")]
    return sorted(dirs, key=lambda d: (rank.get("boot" if d.parent.name == "boot" else d.name, 2), str(d)))


def baseline_loop(dirs: list[Path], env: dict[str, str]) -> float:
    """The same run.sh scripts, one after another, straight from a loop (outputs cleared first)."""
    for d in dirs:
        for name in ("m5out", "checkpoint"):
            shutil.rmtree(d / name, ignore_errors=True)
    start = time.perf_counter()
    for d in dirs:
        subprocess.run(
            [str(d / "run.sh")],
            cwd=d,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    return time.perf_counter() - start


def stat_baseline(workspace: Path) -> float:
    """What a resume cannot avoid: an interpreter's start, and a look at every run's events file."""
    events = list(workspace.rglob("layerlab_events.jsonl"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    for path in events:
        path.stat()
    return time.perf_counter() - start


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each figure (median)")
    parser.add_argument("--variants", type=int, default=250, help="matrix variants (4 runs each)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average (1/5/15 min) {load()} at the start")
    with tempfile.TemporaryDirectory(prefix="bench-orchestrator-") as name:
        tmp = Path(name)
        (tmp / "vmlinux").write_bytes(b"")
        (tmp / "disk.img").write_bytes(b"")
        (tmp / "no-gem5-trees").mkdir()
        env = dict(
            os.environ,
            LAYERLAB_CACHE_DIR=str(tmp / "cache"),
            LAYERLAB_GEM5_SRC_DIR=str(tmp / "no-gem5-trees"),
        )
        recording = record(tmp, env)
        matrix = {"hardware.knobs.num_cus": [4 * (i + 1) for i in range(args.variants)]}
        spec = tmp / "trivial.yaml"
        replay = {"LAYERLAB_INSTANT_GEM5_RECORDING": str(recording)}
        spec.write_text(yaml.safe_dump(spec_data("trivial", INSTANT, replay, tmp, matrix)))
        runs = 4 * args.variants
        # As the local backend starts run.sh: this interpreter's folder first on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        run_env = {**env, **replay, "PATH": path}

        first, loop, resume, stat = [], [], [], []
        for i in range(args.repeat):  # layerlab and its baselines in turn, so both see the same load
            workspace = tmp / f"ws-{i}"
            first.append(layerlab_run(spec, workspace, env, "--quiet"))
            for _ in range(2):
                resume.append(layerlab_run(spec, workspace, env, "--quiet"))
                stat.append(stat_baseline(workspace))
            dirs = run_dirs(workspace)
            assert len(dirs) == runs, f"expected {runs} run directories, found {len(dirs)}"
            loop.append(baseline_loop(dirs, run_env))
            print(
                f"  repeat {i + 1}: layerlab run {first[-1]:.1f} s, baseline loop {loop[-1]:.1f} s, "
                f"resume {resume[-2]:.2f} / {resume[-1]:.2f} s (load {load()})"
            )
            shutil.rmtree(workspace)
        wall, base = statistics.median(first), statistics.median(loop)
        overhead = (wall - base) / runs
        print(
            f"per-run overhead over {runs} trivial runs: {overhead * 1000:.1f} ms   (layerlab run {wall:.1f} s; "
            f"baseline: the same {runs} run.sh in a plain loop {base:.1f} s)  "
            f"target <= {OVERHEAD_TARGET_S * 1000:.0f} ms: {verdict(overhead, OVERHEAD_TARGET_S)}"
        )
        again = statistics.median(resume)
        print(
            f"resume of {runs} completed runs: {again:.2f} s   (baseline: python -c pass + stat of {runs} "
            f"events files {statistics.median(stat):.2f} s)  target <= {RESUME_TARGET_S:.0f} s: "
            f"{verdict(again, RESUME_TARGET_S)}"
        )
        ok = overhead <= OVERHEAD_TARGET_S and again <= RESUME_TARGET_S

        # (c) the selftest on the gem5 test double as shipped (its preflight runs when a tree is here).
        self_env = dict(os.environ, LAYERLAB_CACHE_DIR=str(tmp / "cache"))
        self_ws = tmp / "selftest-ws"
        full = layerlab_run(SELFTEST, self_ws, self_env, "--quiet")
        times, bare = [], []
        for _ in range(max(3, args.repeat)):
            times.append(layerlab_run(SELFTEST, self_ws, self_env, "--quiet"))
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - start)
        selftest = statistics.median(times)
        print(
            f"resume of experiments/selftest.yaml: {selftest:.2f} s   (baseline: python -c pass "
            f"{statistics.median(bare):.3f} s; the whole pipeline, first run: {full:.1f} s)  "
            f"target <= {RESUME_TARGET_S:.0f} s: {verdict(selftest, RESUME_TARGET_S)}"
        )
        ok = ok and selftest <= RESUME_TARGET_S
    print(f"machine: load average {load()} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
