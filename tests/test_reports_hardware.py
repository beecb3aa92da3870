"""Measured kernel times beside gem5 and the analytical model: real traces, and the layer driver on the CPU.

Real GPU traces from ../shared/fixtures (PyTorch profiler on an A100, ROCm 6.2 on an MI250, rocprof
summaries) check the readers; the ``layer`` driver run here on the CPU with ``--profile`` checks the
marker slicing and the joins. CPU times are not GPU times: that source is ``hardware-cpu``. The
gem5 side is the selftest on the gem5 TEST DOUBLE (a pipeline self-test, not a simulation), or a
real gem5 when ``LAYERLAB_GEM5`` is set.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_orchestrator_local import make_spec, real_gem5_spec

from analytical.catalog import get_hardware
from analytical.hardware import gem5_machine
from foundation.errors import InputError
from orchestrator.cli import main
from reports.extrapolate import step_ops
from reports.hardware import (
    FIT_COLUMNS,
    MEASURED_COLUMNS,
    TIMED_COLUMNS,
    compare,
    estimator_sides,
    fit_rows,
    join_times,
    layer_kernels,
    measured_kernels,
    measured_layer_times,
    trace_plan,
)
from reports.join import estimated_ops, simulated_kernels
from workloads.census import KERNEL_COLUMNS, KernelMap

A100 = "kernel_traces/switchtransformer_a100_torchprofiler/trace.json"
MI250 = "kernel_traces/hta_kineto_samples/mi250_minitoy_train_ROCm6_2_kineto.json.gz"
ROCPROF_STATS = "kernel_traces/llamacpp_gfx900_rocprofv1_stats/results_f16.stats.csv"
#: The selftest's driver shapes (experiments/selftest.yaml), on the CPU.
SHAPES = ["--num-layers", "2", "--phases", "both", "-C", "16", "-S", "4", "-D", "2", "--batch", "1"]


def kineto_events(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)["traceEvents"]


@pytest.fixture(scope="module")
def cpu_trace(tmp_path_factory) -> tuple[Path, Path]:
    """The layer driver of Llama-3.2-1B's shipped config (random weights, 2 layers) under torch.profiler."""
    pytest.importorskip("torch")
    from conftest import REPO

    from workloads.drivers import layer

    root = tmp_path_factory.mktemp("cpu")
    trace, table = root / "trace.json", root / "markers.json"
    config = REPO / "workloads" / "model_configs" / "llama-3.2-1b.json"
    argv = ["--config", str(config), *SHAPES, "--dtype", "fp32", "--device", "cpu"]
    assert layer.main([*argv, "--profile", str(trace), "--marker-table", str(table)]) == 0
    return trace, table


@pytest.fixture(scope="module")
def sliced(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("selftest")
    spec = real_gem5_spec(root) or make_spec(root)
    assert main(["run", str(spec), "--quiet"]) == 0
    return next(root.glob("runs/selftest/*/*/*/step1-layer1"))


# -- real traces --------------------------------------------------------------------------------


def test_a100_kineto_trace_kernel_times(fixtures_dir: Path) -> None:
    path = fixtures_dir / A100
    table = measured_kernels(path)
    assert tuple(table.columns) == MEASURED_COLUMNS and len(table) == 494
    kernels = [e for e in kineto_events(path) if e.get("ph") == "X" and e.get("cat") == "kernel"]
    kernels.sort(key=lambda e: (e["args"]["correlation"], e["ts"]))  # launch order
    assert list(table["name"]) == [k["name"] for k in kernels]
    assert np.allclose(table["measured_s"], [k["dur"] * 1e-6 for k in kernels])
    assert set(table["source"]) == {"hardware-gpu"} and set(table["device"]) == {"NVIDIA A100 80GB PCIe"}
    assert table["census_layer"].isna().all() and "no layerlab markers" in table.attrs["notes"][0]
    with pytest.raises(InputError, match="no layer labels"):
        layer_kernels(table, 0, 0)


def test_mi250_rocm_kineto_trace(fixtures_dir: Path) -> None:
    path = fixtures_dir / MI250
    table = measured_kernels(path)
    assert len(table) == 14 and set(table["device"]) == {"AMD Radeon Graphics"}
    assert table["name"].str.startswith("Cijk_").any()  # Tensile GEMMs, as ROCm names them
    durations = {(e["name"], e["dur"]) for e in kineto_events(path) if e.get("cat") == "kernel"}
    assert {(n, round(s * 1e6, 6)) for n, s in zip(table["name"], table["measured_s"], strict=True)} == {
        (n, round(d, 6)) for n, d in durations
    }


def test_rocprof_summary_is_refused(fixtures_dir: Path) -> None:
    with pytest.raises(InputError, match="--stats summary"):
        measured_kernels(fixtures_dir / ROCPROF_STATS)


def test_rocprof_trace_times_and_census_labels(fixtures_dir: Path, tmp_path: Path) -> None:
    names = pd.read_csv(fixtures_dir / ROCPROF_STATS)["Name"].tolist()  # real kernel names
    kernels = [n for n in names if n != "<barrier packet>"][:3]
    lines = ["Index,KernelName,BeginNs,EndNs"]
    begin = 1000
    for index, name in enumerate([kernels[0], "<barrier packet>", kernels[1], kernels[2]]):
        lines.append(f'{index},"{name}",{begin},{begin + 1500 * (index + 1)}')
        begin += 10_000
    path = tmp_path / "results.csv"
    path.write_text("\n".join(lines) + "\n")
    table = measured_kernels(path)
    assert list(table["name"]) == kernels and np.allclose(table["measured_s"], [1.5e-6, 4.5e-6, 6e-6])
    assert "rocprof has no markers" in table.attrs["notes"][0]
    labels = pd.DataFrame(
        [[0, 1, "decode", 0, "q_proj", "", 1003], [1, 1, "decode", 0, "o_proj", "", 1007],
         [2, 1, "decode", 0, "layer", "", 1000]], columns=list(KERNEL_COLUMNS),
    )  # fmt: skip
    labelled = measured_kernels(path, kernel_map=KernelMap(labels, pd.DataFrame()))
    assert list(labelled["census_module"]) == ["q_proj", "o_proj", "layer"]
    with pytest.raises(InputError, match="3 kernels, but the kernel map has 2"):
        measured_kernels(path, kernel_map=KernelMap(labels.head(2), pd.DataFrame()))


# -- the layer driver on the CPU ----------------------------------------------------------------


def test_cpu_trace_sliced_by_the_census_markers(cpu_trace) -> None:
    trace, table = cpu_trace
    measured = measured_kernels(trace, marker_table=table)
    assert set(measured["source"]) == {"hardware-cpu"} and set(measured["device"]) == {"cpu"}
    steps = measured.dropna(subset=["census_step"]).groupby("census_step")["census_phase"].first()
    assert steps.to_dict() == {0: "prefill", 1: "decode", 2: "decode"}
    # A stand-in's time is its top-level aten op's duration in the trace.
    ops = {(e["name"], e["ts"]): e["dur"] for e in kineto_events(trace) if e.get("cat") == "cpu_op"}
    first = measured[measured["census_module"] == "q_proj"].iloc[0]
    starts = [e for e in ops if e[0] == first["name"]]
    assert any(abs(ops[k] * 1e-6 - first["measured_s"]) < 1e-12 for k in starts)
    layer = layer_kernels(measured, 1, 1)
    assert set(layer["census_layer"]) == {1} and {"q_proj", "attention", "down_proj"} <= set(
        layer["census_module"]
    )
    with pytest.raises(InputError, match="no measured kernel in step 9 layer 1"):
        layer_kernels(measured, 9, 1)


def test_model_vs_gem5_vs_hardware(cpu_trace, sliced: Path) -> None:
    trace, table = cpu_trace
    layer = layer_kernels(measured_kernels(trace, marker_table=table), 1, 1)
    simulated = simulated_kernels(sliced)
    work = simulated[~simulated["blit"].astype(bool)]
    double = "TEST DOUBLE" in (sliced / "m5out" / "simout.txt").read_text().splitlines()[0]
    if double:  # the double replays this very driver: the same kernels under the same markers
        assert list(layer["census_module"]) == list(work["census_module"])
    plan = trace_plan(table)
    assert plan.model.num_hidden_layers == 16 and [s["phase"] for s in plan.request] == [
        "prefill",
        "decode",
        "decode",
    ]
    hw_ops = step_ops(plan, 1, get_hardware("mi300x"))
    hw_ops = hw_ops[hw_ops["layer"] == 1]
    measured = join_times(layer, hw_ops, "hardware-cpu")
    assert tuple(measured.columns) == TIMED_COLUMNS
    by_role = measured.set_index("role")
    q = layer.loc[layer["census_module"] == "q_proj", "measured_s"].sum()
    assert by_role.loc["q_proj", "time_s"] == pytest.approx(q)
    assert by_role.loc["q_proj", "est_s"] == pytest.approx(
        hw_ops.loc[hw_ops["op"] == "q_proj", "t_est_s"].sum()
    )
    assert by_role.loc["q_proj", "error_pct"] == pytest.approx((by_role.loc["q_proj", "est_s"] / q - 1) * 100)
    gem5 = join_times(simulated, estimated_ops(sliced), "gem5-test-double" if double else "gem5")
    assert gem5.set_index("role").loc["q_proj", "time_s"] == pytest.approx(
        work.loc[work["census_module"] == "q_proj", "gpu_cycles"].sum() / 1e9
    )
    both = compare(gem5, measured)
    assert tuple(both.columns) == TIMED_COLUMNS
    matched = both[both["matched"]]
    for role in ("q_proj", "o_proj", "down_proj", "attention"):
        sources = list(matched.loc[matched["role"] == role, "source"])
        assert sources == ["gem5-test-double" if double else "gem5", "hardware-cpu"], role
    assert set(both["machine"]) == {"gem5-mi300x", "mi300x"}
    with pytest.raises(InputError, match="source ''"):
        join_times(layer, hw_ops, "")


def test_measured_request_extrapolated(cpu_trace) -> None:
    from reports.extrapolate import extrapolate

    trace, table = cpu_trace
    measured = measured_kernels(trace, marker_table=table)
    times = measured_layer_times(measured)
    assert {(t.step, t.layer) for t in times} == {(s, layer) for s in (0, 1, 2) for layer in (0, 1)}
    one = next(t for t in times if (t.step, t.layer) == (1, 1))
    assert one.seconds == pytest.approx(layer_kernels(measured, 1, 1)["measured_s"].sum())
    result = extrapolate(trace_plan(table), get_hardware("mi300x"), times, source="measured")
    layers = result.components[result.components["component"] == "layers"]
    assert set(layers["source"]) == {"measured"} and set(layers["count"]) == {16}
    step1 = [t.seconds for t in times if t.step == 1]
    assert layers.set_index("step").loc[1, "unit_s"] == pytest.approx(sum(step1) / 2)  # mean of the 2 run
    assert "what the measured layer of that step did" in result.assumption
    assert result.steps["observed_share"].between(0, 1).all()


def test_estimator_sides_and_fit_rows(sliced: Path) -> None:
    from reports.extrapolate import driver_plan
    from workloads.models import load_model_config

    model, machine = load_model_config("llama-3.2-1b"), gem5_machine("mi300x", "v24.0")
    for estimator in ("waves", "tiling", "cache"):
        ops = estimated_ops(sliced, estimator)
        sides = estimator_sides(ops, model, machine, estimator)
        assert np.allclose(np.maximum(sides["t_compute_s"], sides["t_memory_s"]), ops[f"t_{estimator}_s"])
    roofline = estimated_ops(sliced)
    assert estimator_sides(roofline, model, machine, "roofline") is roofline
    waves = estimator_sides(estimated_ops(sliced, "waves"), model, machine, "waves").set_index("op")
    assert waves.loc["kv_store", "t_compute_s"] == 0  # no FLOPs: no compute side
    assert waves.loc["q_proj", "t_compute_s"] > roofline.set_index("op").loc["q_proj", "t_compute_s"]
    with pytest.raises(InputError, match="simple ignores calibration"):
        estimator_sides(roofline, model, machine, "simple")
    params = json.loads((sliced / "params.json").read_text())
    assert driver_plan(params["workload"]["guest_command"]).model.name == model.name
    rows = fit_rows(join_times(simulated_kernels(sliced), roofline, "gem5"), roofline).set_index("role")
    assert tuple(rows.reset_index().columns) == FIT_COLUMNS
    assert rows.loc["q_proj", "usable"] and rows.loc["q_proj", "op_class"] == "gemm"
    assert not rows.loc["attention", "usable"] and rows.loc["attention", "op_class"] == "mixed"
    assert not rows.loc["layer", "usable"] and "catch-all" in rows.loc["layer", "why"]
    one = roofline.set_index("op").loc["down_proj"]
    assert rows.loc["down_proj", "t_memory_s"] == pytest.approx(one["t_memory_s"])
