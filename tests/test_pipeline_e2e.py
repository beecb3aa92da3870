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
#: The guest command the runs carry: what the image would run (checked by the driver's own parser).
GUEST_ARGV = (
    "python3", "/opt/layerlab/drivers/layer.py", "--config", "/opt/layerlab/model_configs/llama-3.2-1b.json",
    "--num-layers", str(LAYERS), "--phases", "both", "-C", "16", "-S", "4", "-D", "2", "--markers", "gem5",
)  # fmt: skip


def test_the_rendered_guest_command_is_one_the_real_driver_accepts() -> None:
    from workloads.drivers import layer

    args = layer.parser().parse_args(list(GUEST_ARGV[2:]))
    assert args.num_layers == LAYERS and args.phases == "both" and args.markers == "gem5"


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the real layer driver once; return its trace, marker table and a double scenario."""
    from driver_scenario import TOY_LLAMA, run_layer_driver, scenario_events, write_scenario

    root = tmp_path_factory.mktemp("guest")
    config = {**TOY_LLAMA, "hidden_size": 128, "intermediate_size": 256, "vocab_size": 256}
    trace_path, table = run_layer_driver(
        root, ["--num-layers", str(LAYERS), "-C", "16", "-S", "4", "-D", "2"], config
    )
    trace = read_trace(trace_path)
    # The guest gem5 sees: boot, weight-upload blits, then the driver's kernels and m5 markers.
    scenario = write_scenario(root / "scenario.json", scenario_events(trace_path, blits=2))
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
        "--", *GUEST_ARGV,
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

    # 6. the analytical side of the same layer, of the same toy model, on the machine simulated:
    #    its ops cover the roles the census found in that layer (kernels join ops on roles).
    machine = json.loads((tmp_path / "layer" / "params.json").read_text())["machine"]
    ops = json.loads(_cli(capsys, "estimate", "--model", str(guest["root"] / "config.json"),
                          "--hardware", f"gem5-{machine['device']}", "--gem5-version", machine["profile"],
                          "--phase", "decode", "--context", "16", "--dtype", "fp32", "--layers", str(LAYER),
                          "--json"))  # fmt: skip
    assert {op["hardware"] for op in ops} == {"gem5-mi300x"} and all(op["layer"] == LAYER for op in ops)
    kernel_map = census.load_kernel_map(census_out)
    in_layer = kernel_map.kernels[
        (kernel_map.kernels["step"] == STEP) & (kernel_map.kernels["layer"] == LAYER)
    ]
    simulated_roles = set(in_layer["module"].dropna())
    estimated_roles = {op["role"] for op in ops if op["t_est_s"] > 0}
    assert simulated_roles == estimated_roles, (simulated_roles, estimated_roles)


def _run_sh(run_dir: Path, guest: dict) -> None:
    """Run the instantiation's run.sh as a user (or a backend) would: one command, from anywhere."""
    env = dict(os.environ, LAYERLAB_GEM5_DOUBLE_SCENARIO=str(guest["scenario"]))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the double's python3
    done = subprocess.run(
        [str(run_dir / "run.sh")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_from_census_slices_without_retyping(tmp_path: Path, capsys, guest: dict) -> None:
    """census -> render --from-census -> run.sh -> stats RUN_DIR --kernels, outdir from the record."""
    census_dir = tmp_path / "census"
    inputs = guest["root"]
    (inputs / "vmlinux").write_bytes(b"")
    (inputs / "disk.img").write_bytes(b"")
    _cli(
        capsys, "render", "--device", "mi300x", "--gem5-version", "v24.0", "--out", str(census_dir),
        "--skip-until", str(SKIP_ALL), "--outdir", "out-census",
        "--kernel", str(inputs / "vmlinux"), "--disk", str(inputs / "disk.img"),
        "--gem5", str(DOUBLE_BIN), "--gem5-src", str(FAKE_SRC), "--", *GUEST_ARGV,
    )  # fmt: skip
    _run_sh(census_dir, guest)
    census_out = census_dir / "out-census"  # named by the run's own command.json, not m5out
    (census_out / census.MARKER_TABLE_FILE).write_bytes(guest["table"].read_bytes())
    census_id = json.loads((census_dir / "params.json").read_text())["run_id"]
    assert (
        json.loads((census_out / "layerlab_events.jsonl").read_text().splitlines()[0])["run_id"] == census_id
    )
    _cli(capsys, "census", str(census_dir))
    window = json.loads(_cli(capsys, "window", str(census_dir), "--step", str(STEP), "--layer", str(LAYER),
                             "--json"))  # fmt: skip

    sliced = tmp_path / "l1"
    report = json.loads(_cli(capsys, "render", "--from-census", str(census_dir), "--step", str(STEP),
                             "--layer", str(LAYER), "--out", str(sliced), "--json"))  # fmt: skip
    record = json.loads((sliced / "slice.json").read_text())
    assert record["census_run_id"] == census_id and record["run_id"] == report["run_id"]
    assert (record["skip_until"], record["exit_after"]) == (window["skip_until"], window["exit_after"])
    assert record["expected_kernels"] == len(window["kernels"]) and (record["step"], record["layer"]) == (
        STEP,
        LAYER,
    )
    params = json.loads((sliced / "params.json").read_text())
    census_params = json.loads((census_dir / "params.json").read_text())
    assert params["workload"]["guest_command"] == list(GUEST_ARGV)  # unchanged: indices stay valid
    assert params["workload"]["per_kernel_dumps"] and params["machine"] == census_params["machine"]
    _run_sh(sliced, guest)
    rows = json.loads(_cli(capsys, "stats", str(sliced), "--kernels", "--json"))
    kernels = [r["kernel_index"] for r in rows if not r["blit"]]
    assert kernels == [k["kernel_index"] for k in window["kernels"]]

    # Rendering ANOTHER simulation into the same directory would make these outputs look new.
    again = [
        "render",
        "--from-census",
        str(census_dir),
        "--step",
        str(STEP),
        "--layer",
        "0",
        "--out",
        str(sliced),
    ]
    assert main(again) == 2
    err = capsys.readouterr().err
    assert "holds outputs of another render" in err and "--force" in err and err.count("\n") == 1
    assert main([*again, "--force"]) == 0
    capsys.readouterr()
    outdir = json.loads((sliced / "command.json").read_text())["outdir"]  # inherited from the census
    assert outdir == "out-census"
    assert (sliced / f"{outdir}.stale-1" / "layerlab_events.jsonl").is_file() and not (
        sliced / outdir
    ).exists()
    # The same simulation again over its own outputs is fine (instantiation refreshed, outputs kept).
    assert main(again) == 0


def test_from_census_refuses_retyped_commands_and_other_inputs(tmp_path: Path, capsys, guest: dict) -> None:
    census_dir = tmp_path / "census"
    inputs = guest["root"]
    (inputs / "vmlinux").write_bytes(b"")
    (inputs / "disk.img").write_bytes(b"")
    _render_and_run(capsys, guest, census_dir, "--skip-until", str(SKIP_ALL))
    (census_dir / "m5out" / census.MARKER_TABLE_FILE).write_bytes(guest["table"].read_bytes())
    base = [
        "render",
        "--from-census",
        str(census_dir),
        "--step",
        "1",
        "--layer",
        "0",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main([*base, "--", "python3", "other.py"]) == 2
    assert "comes from the census run" in capsys.readouterr().err
    other = inputs / "other-disk.img"
    other.write_bytes(b"another image")
    assert main([*base, "--disk", str(other)]) == 2
    assert "kernel or disk differs from the census run" in capsys.readouterr().err
    assert main([*base[:-4], "--out", str(tmp_path / "x")]) == 2
    assert "give --step T and --layer L" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
