"""config.ini/config.json, the naming map, stdout and debug-trace parsing."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from foundation.errors import InputError
from stats_parsers import (
    config_to_stats,
    detect_shader_prefix,
    find_console,
    kernel_timeline,
    read_config,
    read_stdout,
)
from stats_parsers.names import stats_to_config
from stats_parsers.stats_text import parse_stats_text

VIPER_INI = "gem5_config/gem5-2017_04gpu_GPU_VIPER_config.ini"
BFS_JSON = "gem5_config/gem5-2023_x86_bfs_config.json"


def test_old_se_gpu_config(fixtures_dir: Path) -> None:
    config = read_config(fixtures_dir / VIPER_INI)
    gpu = config.gpu()
    assert gpu.shader_path == "system.cpu1" and gpu.shader_stats_prefix == "system.cpu1"
    assert gpu.num_cus == 2 and gpu.clock_period_ticks == 1000 and gpu.clock_hz == 1e9
    assert gpu.tcc_count == 1 and gpu.tcc_size_bytes == 262144
    assert gpu.dram_type is None and gpu.notes  # SE/APU: no separate GPU DRAM
    # clock domains: derived (divider 16 of a 500-tick domain), inherited from the parent
    assert config.clock_period_ticks("system.cpu0.apic_clk_domain") == 8000
    assert config.clock_period_ticks("system.cpu0") == 500
    assert config.clock_period_ticks("system.ruby.tcc_cntrl0.L2cache") == 500


def test_config_json_and_no_gpu_error(fixtures_dir: Path) -> None:
    config = read_config(fixtures_dir / BFS_JSON)
    assert config.params("system.mem_ctrl")["type"] == "MemCtrl"
    assert config.clock_period_ticks("system.cpu") == 1000
    assert config.param("system.mem_ctrl", "dram") == "system.mem_ctrl.dram"
    with pytest.raises(InputError, match="no GPU in this config"):
        config.gpu()


def test_gpufs_config_naming_and_dram(tmp_path: Path) -> None:
    from stats_data.gpufs import config_ini

    path = tmp_path / "config.ini"
    path.write_text(config_ini(12, clock=625))
    gpu = read_config(tmp_path).gpu()
    assert gpu.shader_path == "system.Shader" and gpu.shader_stats_prefix == "system.cpu1"
    assert gpu.num_cus == 12 and gpu.cu_paths[7] == "system.Shader.CUs07"
    assert gpu.clock_period_ticks == 625 and gpu.dram_type == "HBM_1000_4H_1x128" and gpu.dram_channels == 1
    assert config_to_stats("system.Shader.CUs07.wavefronts03", gpu.shader_path, "system.cpu1") == (
        "system.cpu1.CUs7.wavefronts3"
    )
    config = read_config(path)
    assert (
        stats_to_config("system.cpu1.CUs7", gpu.shader_path, "system.cpu1", config.objects)
        == "system.Shader.CUs07"
    )


def test_bad_configs(tmp_path: Path) -> None:
    (tmp_path / "a.ini").write_text("not an ini file at all\n")
    with pytest.raises(InputError, match=r"not a gem5 config\.ini"):
        read_config(tmp_path / "a.ini")
    with pytest.raises(InputError, match=r"no config\.ini or config\.json"):
        read_config(tmp_path)


def test_shader_prefix_detected_from_stats(fixtures_dir: Path) -> None:
    frame = parse_stats_text(fixtures_dir / "gem5_gpu_stats/gem5-2016_04gpu_GPU_VIPER_stats.txt").frame
    names = frame.get_column("name").cast(str).unique().to_list()
    assert detect_shader_prefix(names) == "system.cpu1"
    assert (
        detect_shader_prefix(["system.cpu4.shaderActiveTicks", "system.cpu4.CUs0.totalCycles"])
        == "system.cpu4"
    )
    assert detect_shader_prefix(["simTicks"]) is None


def test_stdout_lines(fixtures_dir: Path, tmp_path: Path) -> None:
    table = read_stdout(fixtures_dir / "gem5_logs/gem5-2016_04gpu_GPU_VIPER_simout.txt")
    exit_row = table[table["kind"] == "exit"].iloc[0]
    assert exit_row["tick"] == 314399500 and exit_row["cause"] == "target called exit()"
    text = (
        "Skipping GPU kernel 0\nSkipping GPU kernel 1\nUnknown exit event: max vALU insts. Continuing...\n"
        "warn: something odd\nExiting after GPU kernel 2\nExiting @ GPU task 9\n"
        "build/X86/sim/foo.cc:12: panic: broken\nfatal: bad\nExiting @ tick 123 because GPU Kernel Completed\n"
    )
    (tmp_path / "simout.txt").write_text(text)
    table = read_stdout(tmp_path)
    assert table["kind"].tolist() == [
        "skip", "skip", "unknown_exit", "warn", "exit_after_kernel", "exit_at_task", "panic", "fatal", "exit",
    ]  # fmt: skip
    assert table.loc[2, "cause"] == "max vALU insts" and table.loc[4, "kernel_index"] == 2
    assert table.loc[5, "task_id"] == 9 and table.loc[6, "message"] == "broken"


def synthetic_trace(flag_names: bool) -> str:
    """A GPU-FS debug trace from the exact v24 DPRINTF formats (gem5_gpufs.md §2.4)."""
    cp, disp = "system.Shader.gpu_cmd_proc", "system.Shader.gpu_cmd_proc.dispatcher"

    def line(tick: int, flag: str, obj: str, msg: str) -> str:
        return f"{tick:7d}: " + (f"{flag}: " if flag_names else "") + f"{obj}: {msg}\n"

    out = []
    tick = 1000
    specs = [
        ("skip", 0x7F00AA00),
        ("skip", 0x7F00BB00),
        ("blit", 0x7F00CC00),
        ("run", 0x7F00AA00),
        ("run", 0x7F00DD00),
    ]
    for task, (kind, kobj) in enumerate(specs):
        out.append(
            line(
                tick,
                "GPUCommandProc",
                cp,
                f"kernel_object vaddr {kobj:#x} paddr {kobj + 0x1000:#x} size 64 s:0",
            )
        )
        out.append(
            line(tick, "GPUCommandProc", cp, "GPU machine code is 256 bytes from start of the kernel object")
        )
        out.append(
            line(
                tick,
                "GPUKernelInfo",
                cp,
                "Kernel name: " + ("Blit kernel" if kind == "blit" else "Some kernel"),
            )
        )
        if kind == "skip":
            out.append(line(tick, "GPUCommandProc", cp, f"Skipping non-blit kernel {task} (Task ID: {task})"))
        else:
            signal = 0x1234 if kind == "blit" else 0
            out.append(
                line(
                    tick,
                    "GPUCommandProc",
                    cp,
                    f"Task ID: {task} Got AQL: wg size (256x1x1), grid size (65536x4x1) kernarg addr: 0x7f0010, "
                    f"completion signal addr:{signal:#x}",
                )
            )
            out.append(
                line(
                    tick + 500,
                    "GPUDisp",
                    disp,
                    f"launching kernel: {'Blit kernel' if kind == 'blit' else 'Some kernel'}, dispatch ID: {task}",
                )
            )
            out.append(line(tick + 600, "GPUWgLatency", disp, f"WG Begin cycle:{tick + 600} wg:0 cu:0"))
            out.append(
                line(
                    tick + 90_000,
                    "GPUWgLatency",
                    disp,
                    f"Kernel Complete ticks:{tick + 90_000} kernel:{task}",
                )
            )
            out.append(line(tick + 90_000, "GPUKernelInfo", disp, f"Completed kernel {task}"))
        tick += 100_000
    return "".join(out)


@pytest.mark.parametrize("flag_names", [True, False])
@pytest.mark.parametrize("compressed", [False, True])
def test_kernel_timeline_from_trace(tmp_path: Path, flag_names: bool, compressed: bool) -> None:
    text = synthetic_trace(flag_names)
    path = tmp_path / ("trace.out.gz" if compressed else "trace.out")
    if compressed:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    table = kernel_timeline(path)
    assert table["task_id"].tolist() == [0, 1, 2, 3, 4]
    assert table["skipped"].tolist() == [True, True, False, False, False]
    assert table["blit"].tolist() == [False, False, True, False, False]
    assert table["kernel_index"].tolist()[:2] == [0, 1] and pd_na(table["kernel_index"][2])
    assert table["kernel_index"].tolist()[3:] == [2, 3]
    assert table["kernel_object"][3] == 0x7F00AA00 == table["kernel_object"][0]  # same kernel function
    row = table.iloc[3]
    assert (row["wg_x"], row["grid_x"], row["grid_y"]) == (256, 65536, 4)
    assert (
        row["launch_tick"] == 301_500 and row["complete_tick"] == 391_000 and row["duration_ticks"] == 89_500
    )


def pd_na(value) -> bool:
    import pandas as pd

    return value is pd.NA


def test_find_console(tmp_path: Path) -> None:
    assert find_console(tmp_path) is None
    (tmp_path / "system.pc.com_1.device").write_text("login:")
    assert find_console(tmp_path).name == "system.pc.com_1.device"
