"""`layerlab report --measured`: model vs gem5 vs hardware, and a trace alone (model vs hardware).

The hardware side is the ``layer`` driver run here on the CPU with ``--profile`` (Llama-3.2-1B's
shipped config, random weights, the selftest's shapes), once per module: its "kernels" are
top-level aten ops and its times CPU times, so every page, table and chart must say "measured on
a CPU, not a GPU". The gem5 side is the selftest on the gem5 TEST DOUBLE (a pipeline self-test,
not a simulation), or a real gem5 when ``LAYERLAB_GEM5`` is set. Bad traces (no markers, another
model or dtype, a step or layer the trace lacks, no marker table, a rocprof file) exit 2 with one
line naming the trace and leave no report behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from test_orchestrator_local import make_spec, real_gem5_spec
from test_reports_page import Page, _texts, assert_readable

from orchestrator.cli import main
from reports import plots
from reports.hardware import CPU_WARNING, device_hardware, layer_kernels, measured_kernels
from reports.runs import SELFTEST_TITLE
from reports.tables import HARDWARE_COLUMNS, HARDWARE_SUMMARY_COLUMNS, OP_COLUMNS, OP_MEASURED_COLUMNS

pytestmark = [pytest.mark.slow, pytest.mark.torch]

#: The selftest's driver shapes (experiments/selftest.yaml) and dtype, run on the CPU.
SHAPES = ["--num-layers", "2", "--phases", "both", "-C", "16", "-S", "4", "-D", "2", "--batch", "1"]
A100 = "kernel_traces/switchtransformer_a100_torchprofiler/trace.json"
ROCPROF_STATS = "kernel_traces/llamacpp_gfx900_rocprofv1_stats/results_f16.stats.csv"
CPU_SOURCE = f"hardware-cpu ({CPU_WARNING})"


@pytest.fixture(scope="module")
def cpu_trace(tmp_path_factory) -> SimpleNamespace:
    """The layer driver under torch.profiler on the CPU; its marker table beside it (the default)."""
    pytest.importorskip("torch")
    from conftest import REPO

    from workloads.drivers import layer

    root = tmp_path_factory.mktemp("trace")
    trace, table = root / "trace.json", root / "layerlab_markers.json"
    config = REPO / "workloads" / "model_configs" / "llama-3.2-1b.json"
    argv = ["--config", str(config), *SHAPES, "--dtype", "bf16", "--device", "cpu"]
    assert layer.main([*argv, "--profile", str(trace), "--marker-table", str(table)]) == 0
    return SimpleNamespace(trace=trace, table=table, root=root)


@pytest.fixture(scope="module")
def sliced(tmp_path_factory) -> SimpleNamespace:
    """The self-test experiment run once: one sliced run of step 1, layer 1."""
    root = tmp_path_factory.mktemp("selftest")
    spec = real_gem5_spec(root)
    double = spec is None
    assert main(["run", str(spec or make_spec(root)), "--quiet"]) == 0
    run = next(root.glob("runs/selftest/*/*/*/step1-layer1"))
    return SimpleNamespace(run=run, double=double, root=root)


def _report(argv: list[str]) -> dict:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main([*argv, "--json"]) == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def three_way(cpu_trace, sliced, tmp_path_factory) -> SimpleNamespace:
    """`layerlab report RUN --measured TRACE --measured-markers TABLE`."""
    out = tmp_path_factory.mktemp("three") / "report"
    printed = _report(
        ["report", str(sliced.run), "--measured", str(cpu_trace.trace), "--measured-markers",
         str(cpu_trace.table), "--measured-label", "this CPU", "--out", str(out)]
    )  # fmt: skip
    return SimpleNamespace(out=out, printed=printed)


@pytest.fixture(scope="module")
def alone(cpu_trace, tmp_path_factory) -> SimpleNamespace:
    """`layerlab report --measured TRACE --measured-hardware mi300x` (the marker table found beside it)."""
    out = tmp_path_factory.mktemp("alone") / "report"
    printed = _report(
        ["report", "--measured", str(cpu_trace.trace), "--measured-hardware", "mi300x", "--out", str(out)]
    )
    return SimpleNamespace(out=out, printed=printed)


def assert_pngs(out: Path, names: list[str]) -> None:
    for name in names:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
        image = plt.imread(out / name)
        assert len({tuple(px) for px in image[::9, ::9, :3].reshape(-1, 3).round(2).tolist()}) > 10, name


def read_page(out: Path) -> Page:
    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert "{{" not in page.text and "{%" not in page.text
    for src in page.images:
        assert (out / src).is_file() and (out / src).stat().st_size > 0, src
    for href in page.links:
        assert (out / href).is_file(), href
    return page


# -- model vs gem5 vs hardware ------------------------------------------------------------------


def test_three_way_tables_join_the_same_layer(cpu_trace, sliced, three_way) -> None:
    out = three_way.out
    hw = pd.read_parquet(out / "hardware.parquet")
    assert list(hw.columns) == list(HARDWARE_COLUMNS)
    assert set(hw["measured_source"]) == {CPU_SOURCE} and set(hw["run"]) == {"step1-layer1"}
    layer = layer_kernels(measured_kernels(cpu_trace.trace, marker_table=cpu_trace.table), 1, 1)
    by_role = hw.set_index("role")
    for role, seconds in layer.groupby("census_module")["measured_s"].sum().items():
        assert by_role.loc[role, "measured_s"] == pytest.approx(seconds), role
    assert hw["measured_kernels"].sum() == len(layer)  # every kernel of the layer, none dropped
    matched = hw[hw["matched"]]
    expected = (matched["model_s_roofline"] - matched["measured_s"]) / matched["measured_s"] * 100
    assert matched["error_pct_roofline_vs_hw"].to_numpy() == pytest.approx(expected.to_numpy())
    expected = (matched["gem5_s"] - matched["measured_s"]) / matched["measured_s"] * 100
    assert matched["error_pct_gem5_vs_hw"].to_numpy() == pytest.approx(expected.to_numpy())
    # the per-role table carries the same measured times and errors
    ops = pd.read_parquet(out / "ops.parquet")
    assert list(ops.columns) == [*OP_COLUMNS, *OP_MEASURED_COLUMNS]
    joined = ops.set_index("role")
    for role in ("q_proj", "attention", "down_proj"):
        assert joined.loc[role, "measured_s"] == pytest.approx(by_role.loc[role, "measured_s"])
        assert joined.loc[role, "sim_time_s"] == pytest.approx(by_role.loc[role, "gem5_s"])
        assert joined.loc[role, "est_cycles_roofline"] / joined.loc[role, "clock_hz"] == pytest.approx(
            by_role.loc[role, "model_s_roofline"]
        )
    if sliced.double:  # the double replays this very driver: the same roles under the same markers
        assert hw["matched"].all() and set(hw["gem5_source"]) == {"gem5-test-double"}
    summary = pd.read_csv(out / "hardware-summary.csv")
    assert list(summary.columns) == list(HARDWARE_SUMMARY_COLUMNS)
    assert {"roofline", "gem5-test-double" if sliced.double else "gem5"} <= set(summary["compared"])
    measured = three_way.printed["measured"]
    assert measured["cpu"] is True and measured["label"] == "this CPU" and measured["source"] == CPU_SOURCE
    assert {m["compared"] for m in three_way.printed["hardware_metrics"]} == set(summary["compared"])


def test_three_way_page_markdown_and_chart(sliced, three_way) -> None:
    out = three_way.out
    page = read_page(out)
    assert {"hardware", "cpu-measured", "hardware-1"} <= page.ids
    assert "vs CPU-measured times (measured on a CPU, not a GPU)" in page.headings[0]
    assert "HOOK" not in page.text and "measured µs" in page.text and "error %gem5 vs hw" in page.text
    assert "hardware-step1-layer1.png" in page.images
    hw_captions = [c for c in page.captions if "measured" in c.lower()]
    assert hw_captions and all(CPU_WARNING in c for c in hw_captions), hw_captions
    assert (SELFTEST_TITLE in page.title) is sliced.double
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert f"## Real hardware — this CPU, {CPU_WARNING}" in markdown
    assert markdown.count(CPU_WARNING) >= 3 and "![model, gem5 and hardware per role]" in markdown
    assert "| q_proj | q_proj |" in markdown.split("## Real hardware")[1]
    names = [Path(p).name for p in three_way.printed["files"]]
    assert {"hardware.csv", "hardware.parquet", "hardware-summary.csv", "hardware-step1-layer1.png"} <= set(
        names
    )
    assert_pngs(out, [n for n in names if n.endswith(".png")])
    rows = pd.read_parquet(out / "hardware.parquet")
    fig = plots.three_way_figure(rows, "three bars", sliced.double, "this CPU", True)
    texts = [t.get_text() for t in _texts(fig)]
    assert "time in one layer, summed over the role's kernels (µs, log scale)" in texts
    assert any(CPU_WARNING in t for t in texts) and any(t.startswith("simulated: ") for t in texts)
    assert len(fig.axes[0].containers) == 3  # model, gem5, hardware
    assert_readable(fig, sliced.double)


# -- a trace alone ------------------------------------------------------------------------------


def test_a_trace_alone_is_model_vs_hardware(cpu_trace, alone) -> None:
    out = alone.out
    hw = pd.read_parquet(out / "hardware.parquet")
    assert list(hw.columns) == list(HARDWARE_COLUMNS)
    assert set(hw["run"]) == {f"step{s}-layer{n}" for s in (0, 1, 2) for n in (0, 1)}
    assert hw["gem5_s"].isna().all() and set(hw["model_machine"]) == {"mi300x"}
    assert set(hw["measured_source"]) == {CPU_SOURCE} and alone.printed["runs"] == []
    summary = pd.read_csv(out / "hardware-summary.csv")
    assert "gem5" not in " ".join(summary["compared"]) and alone.printed["self_test"] is False
    kernels = pd.read_parquet(out / "measured-kernels.parquet")
    assert kernels["measured_s"].sum() == pytest.approx(
        measured_kernels(cpu_trace.trace, marker_table=cpu_trace.table)["measured_s"].sum()
    )
    page = read_page(out)
    assert "no gem5 run" in page.headings[0] and "CPU-measured times" in page.headings[0]
    assert {"hardware", "cpu-measured", "machine"} <= page.ids and "runs" not in page.ids
    assert sorted(page.images) == sorted(p.name for p in out.glob("*.png")) and len(page.images) == 6
    assert "Llama-3.2-1B" in page.text and "gem5 µs" not in page.text
    assert_pngs(out, page.images)
    fig = plots.three_way_figure(hw[hw["run"] == "step0-layer0"], "two bars", False, "CPU", True)
    assert len(fig.axes[0].containers) == 2
    assert_readable(fig, False)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "no gem5 run" in markdown.splitlines()[0] and CPU_WARNING in markdown


def test_the_gpu_a_trace_names_is_the_default_machine(fixtures_dir: Path) -> None:
    device = str(measured_kernels(fixtures_dir / A100)["device"].iloc[0])  # a real PyTorch profiler trace
    assert device_hardware(device) == "a100" and device_hardware("AMD Radeon Graphics") is None


# -- bad traces ---------------------------------------------------------------------------------


def _edit_table(table: Path, folder: Path, flag: str, value: str) -> Path:
    data = json.loads(table.read_text())
    argv = data["argv"]
    argv[argv.index(flag) + 1] = value
    folder.mkdir(exist_ok=True)
    path = folder / "markers.json"
    path.write_text(json.dumps(data))
    return path


def _drop_span(measured: SimpleNamespace, folder: Path, step: int, layer: int | None = None) -> Path:
    """A trace and marker table without one step (or one layer of it): what a run that never reached
    it would have recorded (both files edited alike, so they still agree with each other)."""
    data = json.loads(measured.trace.read_text())
    events = data["traceEvents"]
    marker_id = step * 1_000_000 + (0 if layer is None else (layer + 1) * 1_000)
    span = next(e for e in events if str(e.get("name", "")).startswith(f"layerlab:{marker_id}:"))
    t0, t1 = float(span["ts"]), float(span["ts"]) + float(span["dur"])
    data["traceEvents"] = [e for e in events if not (e.get("ph") == "X" and t0 <= float(e["ts"]) <= t1)]
    folder.mkdir(exist_ok=True)
    (folder / "trace.json").write_text(json.dumps(data))
    table = json.loads(measured.table.read_text())
    scale = 1_000_000 if layer is None else 1_000
    table["markers"] = [m for m in table["markers"] if int(m["id"]) // scale != marker_id // scale]
    (folder / "markers.json").write_text(json.dumps(table))
    return folder / "trace.json"


def _rocprof(fixtures: Path, folder: Path) -> Path:
    names = [n for n in pd.read_csv(fixtures / ROCPROF_STATS)["Name"] if n != "<barrier packet>"][:2]
    folder.mkdir(exist_ok=True)
    path = folder / "results.csv"
    path.write_text(
        "Index,KernelName,BeginNs,EndNs\n"
        + "".join(f'{i},"{n}",{i * 10},{i * 10 + 5}\n' for i, n in enumerate(names))
    )
    return path


# name: (make the (trace, marker table) pair, with the run, extra argv, words the line must hold)
BAD = {
    "no layerlab markers": (lambda t, f, x: (x / A100, t.table), True, [], ["no layer is labelled"]),
    "another model": (
        lambda t, f, x: (t.trace, _edit_table(t.table, f, "--config", "llama-3.2-3b.json")), True, [],
        ["model hidden_size", "3072", "2048"],
    ),
    "another dtype": (lambda t, f, x: (t.trace, _edit_table(t.table, f, "--dtype", "fp32")), True, [], ["dtype", "'fp32'"]),
    "another context": (lambda t, f, x: (t.trace, _edit_table(t.table, f, "-C", "32")), True, [], ["step 1 context", "36"]),
    "step not traced": (lambda t, f, x: (_drop_span(t, f, 1), f / "markers.json"), True, [], ["step 1 layer 1", "[0, 2]"]),
    "layer not traced": (lambda t, f, x: (_drop_span(t, f, 1, 1), f / "markers.json"), True, [], ["step 1 layer 1"]),
    "trace and marker table disagree": (
        lambda t, f, x: (_drop_span(t, f, 1), t.table), True, [], ["do not match the marker table", "lacks"],
    ),
    "no marker table": (lambda t, f, x: (Path(shutil.copy(t.trace, f)), None), False, [], ["--measured-markers"]),
    "rocprof trace": (lambda t, f, x: (_rocprof(x, f), t.table), True, [], ["no layerlab markers"]),
    "a CPU trace alone, no machine": (lambda t, f, x: (t.trace, t.table), False, [], ["--measured-hardware"]),
    "a machine with runs": (lambda t, f, x: (t.trace, t.table), True, ["--measured-hardware", "mi300x"], ["only for a report of a trace alone"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_traces_exit_2_naming_the_trace(case, cpu_trace, sliced, fixtures_dir, tmp_path, capsys) -> None:
    make, with_run, extra, words = BAD[case]
    folder = tmp_path / "in"
    folder.mkdir()
    trace, table = make(cpu_trace, folder, fixtures_dir)
    out = tmp_path / "out"
    argv = ["report", *([str(sliced.run)] if with_run else []), "--measured", str(trace)]
    argv += [*(["--measured-markers", str(table)] if table else []), *extra, "--out", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    named = str(trace) in err or (case == "a machine with runs" and "--measured-hardware" in err)
    assert named and all(w in err for w in words), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_measured_options_need_a_trace(sliced, tmp_path, capsys) -> None:
    for argv in (["--measured-label", "x"], ["--measured-markers", "m.json"], []):
        capsys.readouterr()
        assert (
            main(["report", *([str(sliced.run)] if argv else []), *argv, "--out", str(tmp_path / "o")]) == 2
        )
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and ("--measured" in err), err
    assert not (tmp_path / "o").exists()
