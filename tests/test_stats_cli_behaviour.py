"""`layerlab stats` says what is missing instead of printing silent nonsense, writes NaN/inf as
gem5 does, fits a terminal, and loads only what it uses (issue #12)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from stats_data.gpufs import BEGIN, END, Kernel, line, write_run

from orchestrator import output
from orchestrator.cli import main
from orchestrator.output import emit

REPO = Path(__file__).resolve().parents[1]
KERNELS = [Kernel(2_000_000, [100, 200, 300]), Kernel(500_000, [10, 20, 30], blit=True)]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE_DIR", str(tmp_path / "cache"))


def _terminal(monkeypatch: pytest.MonkeyPatch, columns: int = 100) -> None:
    """Make stdout look like a terminal of ``columns`` columns."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", "40")


def _nonfinite_stats(tmp_path: Path) -> Path:
    path = tmp_path / "stats.txt"
    path.write_text(
        BEGIN
        + line("simTicks", 1000, "ticks", "Tick")
        + line("system.a.bw", "nan", "bandwidth", "Byte/Second")
        + line("system.a.up", "inf", "up", "Count")
        + line("system.a.down", "-inf", "down", "Count")
        + line("system.a.ratio", "0.5", "ratio", "Ratio")
        + END
    )
    return path


# -- no silent nonsense: --kernels ---------------------------------------------------------------


def test_kernels_without_config_and_events_say_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    (run / "config.ini").unlink()
    (run / "layerlab_events.jsonl").unlink()
    assert main(["stats", str(run), "--kernels", "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "no config.ini or config.json" in captured.err and "gpu_cycles is empty" in captured.err
    assert "no layerlab_events.jsonl" in captured.err and "kernel_index" in captured.err
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(rows) == 2 and rows[0]["gpu_cycles"] == "" and rows[0]["kernel_index"] == ""


def _census_events(run: Path, n_skipped: int = 3) -> None:
    start = {
        "kind": "start",
        "schema": "layerlab-events/1",
        "skip_until": 10**9,
        "exit_after": -1,
        "exit_at_task": -1,
        "dump_per_kernel": True,
        "gem5_profile": "v24.0",
        "tick": 0,
    }
    records = [start]
    for seq in range(n_skipped):
        records.append(
            {
                "kind": "skip",
                "seq": seq,
                "cause": "Skipping GPU Kernel",
                "exit_code": 0,
                "tick": 1000 * (seq + 1),
                "kernel_index": seq,
                "kernels_done": seq + 1,
                "tasks_done": seq + 1,
                "dump": None,
                "dump_suppressed": False,
                "reset": False,
            }
        )
    (run / "layerlab_events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_census_run_is_an_error_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "census", KERNELS[:1])
    _census_events(run)
    assert main(["stats", str(run), "--kernels"]) == 2
    err = capsys.readouterr().err
    assert "census run (every kernel skipped" in err and "layerlab render --from-census" in err
    assert len(err.strip().splitlines()) == 1
    (run / "stats.txt").unlink()  # the census verdict does not depend on the stats file
    assert main(["stats", str(run), "--kernels"]) == 2
    assert "census run" in capsys.readouterr().err


def test_kernels_grep_and_empty_dump_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    assert main(["stats", str(run), "--kernels", "--grep", "x"]) == 2
    assert "--columns" in capsys.readouterr().err
    assert main(["stats", str(run), "--kernels", "--dump", "9"]) == 2
    assert "no kernel row has that dump" in capsys.readouterr().err


# -- no silent nonsense: --grep ------------------------------------------------------------------


def test_grep_without_a_match_exits_1_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    assert main(["stats", str(run / "stats.txt"), "--grep", "noSuchStat", "--format", "csv"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no stat matches --grep 'noSuchStat'" in captured.err and "distinct stats" in captured.err
    assert main(["stats", str(run / "stats.txt"), "--grep", "simTicks", "--format", "csv"]) == 0


# -- NaN, inf and missing in CSV and JSON --------------------------------------------------------


def test_csv_writes_nan_and_inf_as_gem5_does_and_missing_as_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _nonfinite_stats(tmp_path)
    assert main(["stats", str(path), "--format", "csv", "--no-cache"]) == 0
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows["system.a.bw"]["value"] == "nan"
    assert rows["system.a.up"]["value"] == "inf" and rows["system.a.down"]["value"] == "-inf"
    assert rows["system.a.ratio"]["value"] == "0.5" and rows["simTicks"]["value"] == "1000"
    assert rows["system.a.bw"]["pdf_pct"] == "" and rows["system.a.bw"]["value_int"] == ""  # missing


def test_json_encodes_nan_inf_as_strings_and_missing_as_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _nonfinite_stats(tmp_path)
    assert main(["stats", str(path), "--format", "json", "--no-cache"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["system.a.bw"]["value"] == "nan" and rows["system.a.bw"]["pdf_pct"] is None
    assert rows["system.a.up"]["value"] == "inf" and rows["system.a.down"]["value"] == "-inf"
    assert rows["system.a.ratio"]["value"] == 0.5 and rows["simTicks"]["value_int"] == 1000


def test_help_states_the_csv_and_json_encoding(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert 'JSON: missing is null; NaN, inf, -inf are the strings "nan", "inf", "-inf"' in text
    assert "CSV: missing is an empty field" in text


def test_parquet_keeps_nan_and_null_apart(tmp_path: Path) -> None:
    path = _nonfinite_stats(tmp_path)
    out = tmp_path / "s.parquet"
    assert main(["stats", str(path), "--format", "parquet", "-o", str(out), "--no-cache"]) == 0
    table = pl.from_arrow(pq.read_table(out))
    bw = table.filter(pl.col("name") == "system.a.bw").row(0, named=True)
    assert bw["value"] != bw["value"] and bw["pdf_pct"] is None  # NaN stays NaN, missing stays null


# -- terminal: columns, rows, speed --------------------------------------------------------------


def test_columns_option_and_unknown_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    assert main(["stats", str(run), "--kernels", "--format", "csv", "--columns", "dump,gpu_cycles"]) == 0
    assert capsys.readouterr().out.splitlines() == ["dump,gpu_cycles", "0,2000.0", "1,500.0"]
    assert main(["stats", str(run), "--kernels", "--columns", "dump,gpu_cylces"]) == 2
    assert "did you mean 'gpu_cycles'" in capsys.readouterr().err


def test_kernels_on_a_terminal_show_the_columns_that_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(tmp_path / "run", KERNELS)
    _terminal(monkeypatch, columns=100)
    assert main(["stats", str(run), "--kernels"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    header = lines[1].split()
    assert header[:5] == ["kernel_index", "task_id", "blit", "dump", "gpu_cycles"]
    assert all(len(x) <= 100 for x in lines[1:])  # nothing wraps, no header is cut
    assert "more columns" in captured.err and "--columns" in captured.err and "--format csv" in captured.err


def test_long_table_on_a_terminal_caps_rows_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_run(tmp_path / "run", [Kernel(1000, [1] * 20)] * 3)
    _terminal(monkeypatch, columns=160)
    rows = output.TERMINAL_ROWS
    assert main(["stats", str(run / "stats.txt")]) == 0
    captured = capsys.readouterr()
    body = captured.out.splitlines()[3:]  # title, header, rule
    assert len(body) == rows
    assert f"showing the first {rows}" in captured.err and "--format csv" in captured.err
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)  # piped: every row
    assert main(["stats", str(run / "stats.txt")]) == 0
    assert len(capsys.readouterr().out.splitlines()) > rows + 3


def test_a_big_table_prints_fast(capsys: pytest.CaptureFixture[str]) -> None:
    n = 5000
    frame = pl.DataFrame(
        {"name": [f"system.cpu{i % 7}.stat{i}" for i in range(n)], "value": [i * 1.5 for i in range(n)]}
        | {f"c{j}": list(range(n)) for j in range(8)}
    )
    start = time.perf_counter()
    emit(frame, "table")
    assert time.perf_counter() - start < 2.0  # rich took ~2.5 ms a row
    out = capsys.readouterr().out.splitlines()
    assert len(out) == n + 2 and out[0].split()[:2] == ["name", "value"]
    assert output.render_plain(["a", "bb"], [["1", "22"], ["x", ""]], [True, False]).splitlines() == [
        " a  bb",
        "──  ──",
        " 1  x",
        "22",
    ]


# -- imports: only what the command uses ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_stats_loads_no_pandas_no_analytical_no_numba_for_a_small_file(
    tmp_path: Path, fixtures_dir: Path, fmt: str
) -> None:
    source = fixtures_dir / "gem5_cpu_stats/gem5-v24_bootcamp2024_simpoint0-run_2dumps_stats.txt"
    out = tmp_path / f"out.{fmt}"
    code = (
        "import sys; from orchestrator.cli import main; "
        f"rc = main(['stats', {str(source)!r}, '--format', {fmt!r}, '-o', {str(out)!r}, '--no-cache']); "
        "print(rc, *(m in sys.modules for m in ('pandas', 'analytical', 'numba')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["0", "False", "False", "False"], done.stdout + done.stderr
    assert out.stat().st_size > 0
