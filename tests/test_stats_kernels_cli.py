"""The per-kernel table on generated GPU-FS runs and the old GPU fixtures, and the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from stats_data.gpufs import Kernel, write_run

from orchestrator.cli import main
from stats_parsers import KERNEL_COLUMNS, kernel_table, read_stats

KERNELS = [
    Kernel(2_000_000, [100, 200, 300]),
    Kernel(500_000, [10, 20, 30], blit=True),
    Kernel(3_000_000, [1, 2, 3]),
]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_kernel_table_gpufs_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", KERNELS, skip_until=5, clock=625)
    table = kernel_table(run)
    assert list(table.columns) == list(KERNEL_COLUMNS)
    assert table["kernel_index"].tolist()[0] == 5 and table["kernel_index"].isna().tolist() == [
        False,
        True,
        False,
    ]
    assert table["blit"].tolist() == [False, True, False]
    assert table["task_id"].tolist() == [5, 6, 7]
    first = table.iloc[0]
    assert first["shader_active_ticks"] == 2_000_000 and first["gpu_cycles"] == 2_000_000 / 625
    assert first["instructions"] == 600 and first["valu_insts"] == 300 and first["mfma_f16_ops"] == 4800
    assert first["cu_total_cycles_max"] == 2000 and first["cu_total_cycles_mean"] == 1999
    assert first["tcp_demand_hits"] == 270 and first["tcc_demand_accesses"] == 100
    assert first["dram_read_bytes"] == 8192 and first["dram_written_bytes"] == 1024
    assert first["wave_level_parallelism_mean"] == 3.5 and first["host_s"] == 1.5
    assert math.isnan(first["mfma_f64_ops"])  # a stat this run did not print is NA, not 0


def test_kernel_table_cumulative_dumps_are_differenced(tmp_path: Path) -> None:
    same = [Kernel(2_000_000, [100, 200, 300])] * 3
    run = write_run(tmp_path / "run", same, reset=False)
    table = kernel_table(run)
    assert table["instructions"].tolist() == [600, 600, 600]
    assert table["shader_active_ticks"].tolist() == [2_000_000] * 3
    assert table["wave_level_parallelism_mean"].tolist() == [3.5] * 3
    forced = kernel_table(run, cumulative=False)
    assert forced["instructions"].tolist() == [600, 1200, 1800]


def test_kernel_table_without_events_and_old_gpu_fixture(fixtures_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(fixtures_dir / "gem5_gpu_stats/gem5-2016_04gpu_GPU_VIPER_stats.txt", run / "stats.txt")
    shutil.copy(fixtures_dir / "gem5_config/gem5-2017_04gpu_GPU_VIPER_config.ini", run / "config.ini")
    table = kernel_table(run)
    assert len(table) == 1 and table["kernel_index"].isna().all()
    row = table.iloc[0]
    assert row["instructions"] == 282  # legacy num_instr_executed, 141 on each of 2 CUs
    assert row["sim_ticks"] == 314399500 and row["host_s"] == 1.12
    assert (
        row["tcp_demand_accesses"] == 0 and row["tcc_demand_accesses"] >= 0
    )  # legacy demand_* names, printed as 0
    assert math.isnan(row["shader_active_ticks"]) and math.isnan(row["gpu_cycles"])  # not in 2016 gem5


def test_events_beyond_stats_is_an_error_in_strict_mode(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    text = (run / "stats.txt").read_text()
    cut = text[: text.rindex("---------- Begin")]
    (run / "stats.txt").write_text(cut)
    assert main(["stats", str(run), "--kernels", "--no-cache"]) == 2
    assert len(kernel_table(run, strict=False, cache=False)) == 3


def test_cli_csv_header_and_exact_ints(fixtures_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = fixtures_dir / "gem5_cpu_stats/gem5-v24_bootcamp2024_simpoint0-run_2dumps_stats.txt"
    assert main(["stats", str(path), "--grep", "^(simTicks|finalTick)$", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dump,name,value,unit")
    assert lines[1].split(",")[:4] == ["0", "finalTick", "72927", "Tick"] or "simTicks" in lines[1]
    assert len(lines) == 5  # 2 stats x 2 dumps


def test_cli_dump_json_kernels_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", KERNELS, message=True)
    assert (
        main(
            [
                "stats",
                str(run / "stats.txt"),
                "--dump",
                "-1",
                "--grep",
                "shaderActiveTicks",
                "--format",
                "json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "dump": 2,
            "name": "system.cpu1.shaderActiveTicks",
            "value": 3000000.0,
            "unit": "Unspecified",
            "key": "",
            "value_int": 3000000,
            "dump_message": "kernel 2",
            "pdf_pct": None,
            "cdf_pct": None,
            "line": rows[0]["line"],
        }
    ]
    out = tmp_path / "k.parquet"
    assert main(["stats", str(run), "--kernels", "--format", "parquet", "-o", str(out)]) == 0
    assert pd.read_parquet(out)["gpu_cycles"].tolist()[0] == 2000.0
    assert main(["stats", str(run), "--kernels", "--format", "table"]) == 0
    assert "gpu_cycles" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dump", "7"], "has 3 dumps"),
        (["--grep", "("], "not a regular expression"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    assert main(["stats", str(run / "stats.txt"), *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_lenient_and_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "stats.txt"
    path.write_text(
        "\n---------- Begin Simulation Statistics ----------\na.b 1\ngarbage here\n"
        "\n---------- End Simulation Statistics   ----------\n"
    )
    assert main(["stats", str(path), "--no-cache"]) == 2
    assert f"{path}:4:" in capsys.readouterr().err
    assert main(["stats", str(path), "--lenient", "--format", "csv", "--no-cache"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 bad line" in captured.err and "a.b" in captured.out


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "--help"])
    assert "examples:" in capsys.readouterr().out


def test_json_and_hdf5_formats(fixtures_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="last dump"):
        stats = read_stats(
            fixtures_dir
            / "gem5_stats_json/gem5-v24_trusted_stats_GUPSGeneratorEP-2-MIExample-SingleChannelLPDDR3_1600.json"
        )
    row = stats.frame.filter(stats.frame["name"] == "generator.totalReadLat").row(0, named=True)
    assert row["value_int"] == 947523344 and row["unit"] == "Tick"
    h5py = pytest.importorskip("h5py")
    import numpy as np

    with h5py.File(tmp_path / "s.h5", "w") as handle:
        group = handle.create_group("system")
        group.create_dataset("simTicks", data=np.array([10, 20]))
        vec = group.create_dataset("bytes", data=np.array([[1, 2], [3, 4]]))
        vec.attrs["subnames"] = [b"cpu", b"gpu"]
    h5 = read_stats(f"h5://{tmp_path / 's.h5'}")
    assert h5.n_dumps == 2
    got = {(r["dump"], r["name"], r["key"]): r["value"] for r in h5.frame.iter_rows(named=True)}
    assert got[(1, "system.bytes", "gpu")] == 4 and got[(0, "system.simTicks", "")] == 10
