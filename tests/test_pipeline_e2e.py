"""The first wave end to end, through the CLI, on the gem5 TEST DOUBLE.

A researcher's path from "layer 1 of decode step 2" to simulated cycles:

1. the real ``layer`` guest driver runs (here on the CPU, with the profiler back end) and its
   kernel and marker sequence becomes the guest the gem5 double replays;
2. ``layerlab render`` a skip-all census run, run its ``command.json`` argv as a backend would;
3. ``layerlab census`` + ``layerlab window`` turn the markers into (skip_until, exit_after);
4. ``layerlab render`` the sliced run with that window and per-kernel dumps, run it;
5. ``layerlab stats --kernels`` gives one row per simulated kernel;
6. ``layerlab estimate`` gives the analytical ops of the same layer on the same machine.

The window found by markers must also equal the one the structural slicer finds without them,
and the simulated kernels must be exactly the kernels the census expected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gem5_configs_support import DOUBLE_BIN, FAKE_SRC

from foundation.vocabulary import SKIP_ALL
from orchestrator.cli import main
from workloads import census
from workloads.slicer import slice_kernels
from workloads.traces import read_trace

pytestmark = pytest.mark.torch
pytest.importorskip("torch")

LAYERS = 2
STEP, LAYER = 2, 1  # step 0 = prefill, steps 1-2 = decode


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the real layer driver once; return its trace, marker table and a double scenario."""
    from workloads.drivers import layer

    root = tmp_path_factory.mktemp("guest")
    config = root / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_type": "llama",
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "num_hidden_layers": 16,
                "vocab_size": 256,
            }
        )
    )
    trace_path, table = root / "trace.json", root / "markers.json"
    argv = ["--config", str(config), "--num-layers", str(LAYERS), "-C", "16", "-S", "4", "-D", "2"]
    argv += ["--dtype", "fp32", "--device", "cpu", "--profile", str(trace_path), "--marker-table", str(table)]
    assert layer.main(argv) == 0
    trace = read_trace(trace_path)
    # The guest gem5 sees: boot, weight-upload blits, then the driver's kernels and m5 markers.
    events: list[dict] = [{"type": "host", "ticks": 5_000_000_000}, {"type": "blit"}, {"type": "blit"}]
    for record in census.events_from_trace(trace)[1:]:
        if record["kind"] == "skip":
            events.append({"type": "kernel", "ticks": 1_000_000 + 1000 * record["kernel_index"]})
        elif record["kind"] in ("workbegin", "workend"):
            events.append({"type": "marker", "op": record["kind"], "id": record["exit_code"]})
    events.append({"type": "exit"})
    scenario = root / "scenario.json"
    scenario.write_text(json.dumps({"schema": "layerlab-gem5-double/1", "events": events}))
    return {"trace": trace, "table": table, "scenario": scenario, "root": root}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _render_and_run(capsys, guest: dict, run_dir: Path, *window: str) -> Path:
    inputs = guest["root"]
    (inputs / "vmlinux").write_bytes(b"")
    (inputs / "disk.img").write_bytes(b"")
    _cli(
        capsys, "render", "--device", "mi300x", "--gem5-version", "v24.0", "--out", str(run_dir), *window,
        "--kernel", str(inputs / "vmlinux"), "--disk", str(inputs / "disk.img"),
        "--gem5", str(DOUBLE_BIN), "--gem5-src", str(FAKE_SRC),
        "--", "python3", "/opt/layerlab/drivers/layer.py", "--phases", "prefill,decode", "--markers", "gem5",
    )  # fmt: skip
    argv = json.loads((run_dir / "command.json").read_text())["argv"]
    env = dict(os.environ, LAYERLAB_GEM5_DOUBLE_SCENARIO=str(guest["scenario"]))
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return run_dir / "m5out"


def test_census_window_sliced_run_and_kernel_table(tmp_path: Path, capsys, guest: dict) -> None:
    # 2. census: every kernel skipped, markers recorded by the rendered loop.
    census_out = _render_and_run(capsys, guest, tmp_path / "census", "--skip-until", str(SKIP_ALL))
    # The guest exports its marker table with `m5 writefile`; the double's guest is scripted.
    (census_out / census.MARKER_TABLE_FILE).write_bytes(guest["table"].read_bytes())

    # 3. census + window through the CLI.
    _cli(capsys, "census", str(census_out))
    assert (census_out / "layerlab_kernel_map.json").is_file()
    window = json.loads(_cli(capsys, "window", str(census_out), "--step", str(STEP), "--layer", str(LAYER),
                             "--format", "json"))  # fmt: skip
    skip_until, exit_after = window["skip_until"], window["exit_after"]
    expected = [k["kernel_index"] for k in window["kernels"]]
    assert expected == list(range(skip_until, exit_after + 1))

    # The same window without markers, from structure alone.
    found = slice_kernels(guest["trace"].kernels, LAYERS)
    assert list(found.steps[STEP].layers[LAYER]) == [skip_until, exit_after]

    # 4. the sliced run with per-kernel dumps.
    run_out = _render_and_run(
        capsys, guest, tmp_path / "layer", "--window", f"{skip_until}:{exit_after}", "--per-kernel-dumps"
    )

    # 5. one row per simulated kernel, exactly the census' kernels, cycles = ticks / 1000 at 1 GHz.
    rows = json.loads(_cli(capsys, "stats", str(run_out), "--kernels", "--format", "json"))
    kernels = [r for r in rows if not r["blit"]]
    assert [r["kernel_index"] for r in kernels] == expected
    for row in kernels:
        assert row["shader_active_ticks"] == 1_000_000 + 1000 * row["kernel_index"]
        assert row["gpu_cycles"] == row["shader_active_ticks"] / 1000

    # 6. the analytical side of the same layer on the machine that was simulated.
    ops = json.loads(_cli(capsys, "estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300",
                          "--phase", "decode", "--context", "16", "--format", "json"))  # fmt: skip
    assert {"op", "module", "t_est_s"} <= set(ops[0])
