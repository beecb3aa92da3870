"""End to end on the gem5 TEST DOUBLE: render, run the command.json argv, read the outdir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gem5_configs_support import DOUBLE_BIN, SCENARIOS, load_double, params

from foundation.events import read_events
from gem5_configs.render import render_to_dir

fake_gem5 = load_double()


def _run_dir(tmp_path: Path, name: str, **options) -> tuple[Path, list[str]]:
    options.setdefault("gem5_binary", str(DOUBLE_BIN))
    rendered, _ = render_to_dir(params(tmp_path, **options), tmp_path / name)
    return tmp_path / name, list(rendered.command.argv)


def _scenario(name: str = "layer.json") -> dict:
    return json.loads((SCENARIOS / name).read_text(encoding="utf-8"))


def test_executable_double_runs_the_rendered_command(tmp_path: Path) -> None:
    """The exact command.json argv, as a subprocess (what a backend would do)."""
    run_dir, argv = _run_dir(tmp_path, "run", skip_until=2, exit_after=5, per_kernel_dumps=True)
    env = dict(os.environ, LAYERLAB_GEM5_DOUBLE_SCENARIO=str(SCENARIOS / "layer.json"))
    done = subprocess.run(
        [sys.executable, *argv], cwd=run_dir, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    out = run_dir / "m5out"
    assert {"stats.txt", "config.ini", "simout.txt", "simerr.txt", "layerlab_events.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    simout = (out / "simout.txt").read_text(encoding="utf-8")
    assert simout.rstrip().splitlines()[-1] == "Exiting @ tick 5049001000 because GPU Kernel Completed"
    _start, table, end = read_events(out)
    stats = (out / "stats.txt").read_text(encoding="utf-8")
    blocks = stats.count("---------- Begin Simulation Statistics ----------")
    assert blocks == table.dump.notna().sum() + (end["tail_dump"] is not None)
    assert table[table.kind == "kernel"].kernel_index.tolist() == [2, 3, 4, 5]
    assert "system.cpu1.CUs0." in stats and "system.ruby.tcp_cntrl0" in stats  # lines from the real fixture
    ini = (out / "config.ini").read_text(encoding="utf-8")
    assert "[system.clk_domain]\ntype=SrcClockDomain\nclock=1000" in ini
    assert "[system.Shader.CUs39]" in ini and "kernel_exit_events=true" in ini
    assert "target_non_blit_kernel_id=2" in ini


@pytest.mark.parametrize("version", ["v24.1", "v25"])
def test_stdlib_script_gives_the_same_events_and_blocks(tmp_path: Path, version: str) -> None:
    outs = {}
    for style in ("classic", "stdlib"):
        run_dir, argv = _run_dir(
            tmp_path,
            style,
            profile=version,
            device="mi200",
            skip_until=2,
            exit_after=5,
            per_kernel_dumps=True,
            script_style=style,
        )
        assert fake_gem5.run(argv[1:], scenario=_scenario(), cwd=run_dir) == 0
        outs[style] = run_dir / "m5out"
    classic, stdlib = (read_events(outs[s]) for s in ("classic", "stdlib"))
    assert classic[1].equals(stdlib[1]) and classic[2] == stdlib[2]
    count = [(outs[s] / "stats.txt").read_text(encoding="utf-8").count("Begin Simulation") for s in outs]
    assert count[0] == count[1] == 4


def test_boot_checkpoint_then_restore_runs_the_window(tmp_path: Path) -> None:
    scenario = {
        "schema": fake_gem5.SCENARIO_SCHEMA,
        "events": [
            {"type": "host", "ticks": 4_000_000_000},
            {"type": "checkpoint"},
            {"type": "blit", "ticks": 1_000},
            {"type": "kernel", "ticks": 5_000},
            {"type": "kernel", "ticks": 6_000},
            {"type": "exit"},
        ],
    }
    ckpt = tmp_path / "ckpt"
    boot_dir, boot_argv = _run_dir(tmp_path, "boot", checkpoint_dir=str(ckpt), guest_command=())
    assert fake_gem5.run(boot_argv[1:], scenario=scenario, cwd=boot_dir) == 0
    assert (ckpt / "m5.cpt").is_file()
    _, _, end = read_events(boot_dir / "m5out")
    assert end["cause"] == "checkpoint" and end["expected"]
    run_dir, run_argv = _run_dir(tmp_path, "run", restore_dir=str(ckpt), exit_after=1, per_kernel_dumps=True)
    assert fake_gem5.run(run_argv[1:], scenario=scenario, cwd=run_dir) == 0
    _, table, end = read_events(run_dir / "m5out")
    assert table.kind.tolist() == ["blit", "kernel", "kernel"] and end["tick"] == 4_000_012_000 + 1_000


def test_double_refuses_options_the_version_table_lacks(tmp_path: Path) -> None:
    run_dir, argv = _run_dir(tmp_path, "run")
    bad = [*argv[1:], "--mfma-scale=2.0"]  # v24.0 has no --mfma-scale
    assert fake_gem5.run(bad, scenario=_scenario(), cwd=run_dir) == 2


def test_failing_workload_gives_nonzero_exit(tmp_path: Path) -> None:
    run_dir, argv = _run_dir(tmp_path, "run", per_kernel_dumps=True)
    scenario = {"events": [{"type": "kernel"}, {"type": "fail", "code": 3}]}
    assert fake_gem5.run(argv[1:], scenario=scenario, cwd=run_dir) == 1
    simout = (run_dir / "m5out" / "simout.txt").read_text(encoding="utf-8")
    assert "Exiting @ tick" in simout and "because m5_fail instruction encountered" in simout


def test_double_config_ini_reads_back_as_the_rendered_gpu(tmp_path: Path) -> None:
    """Later stages read the double's config.ini like a real one (stats_parsers.config)."""
    from stats_parsers import config

    run_dir, argv = _run_dir(
        tmp_path,
        "run",
        gpu_overrides={"num_cus": 8, "num_tccs": 2, "dram_channels": 4, "sys_clock_hz": 1.5e9},
    )
    assert fake_gem5.run(argv[1:], scenario=_scenario(), cwd=run_dir) == 0
    gpu = config.read_config(run_dir / "m5out").gpu()
    assert gpu.num_cus == 8 and gpu.tcc_count == 2 and gpu.dram_channels == 4
    assert gpu.clock_period_ticks == 667 and gpu.shader_stats_prefix == "system.cpu1"
    assert gpu.tcc_size_bytes == 128 * 1024 and gpu.dram_type == "HBM_1000_4H_1x128"


def test_the_doubles_option_tables_are_the_profiles() -> None:
    """The double reads profile YAML with a regex (no PyYAML in its python3); pin it to get_profile()."""
    from gem5_configs.profiles import all_profiles

    for name, profile in all_profiles().items():
        assert fake_gem5.option_table(name) == profile.script_options, name
