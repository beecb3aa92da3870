"""Whole-step and whole-request time from one simulated layer, with the assumption in words.

Hand-checked cases on the selftest's own driver command (numbers from the analytical model they
must reuse), then the selftest's sliced run on the gem5 TEST DOUBLE (a pipeline self-test, not a
simulation: its cycles are a stand-in) or on a real gem5 when ``LAYERLAB_GEM5`` is set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_orchestrator_local import make_spec, real_gem5_spec

from analytical.hardware import gem5_machine
from foundation.errors import InputError
from orchestrator.cli import main
from reports.extrapolate import (
    COMPONENT_COLUMNS,
    REQUEST_COLUMNS,
    STEP_COLUMNS,
    LayerTime,
    driver_plan,
    extrapolate,
    extrapolate_runs,
    layer_seconds,
    step_ops,
)
from reports.join import estimated_ops, join, simulated_kernels

#: The guest command experiments/selftest.yaml renders (2 of Llama-3.2-1B's 16 layers).
COMMAND = [
    "python3", "/opt/layerlab/drivers/layer.py", "--config", "/opt/layerlab/model_configs/llama-3.2-1b.json",
    "--num-layers", "2", "--phases", "both", "--context", "16", "--prompt-len", "4", "--decode-steps", "2",
    "--batch", "1", "--dtype", "bf16", "--markers", "gem5",
]  # fmt: skip
MACHINE = gem5_machine("mi300x", "v24.0")


@pytest.fixture(scope="module")
def sliced(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("selftest")
    spec = real_gem5_spec(root) or make_spec(root)
    assert main(["run", str(spec), "--quiet"]) == 0
    return next(root.glob("runs/selftest/*/*/*/step1-layer1"))


def by(table: pd.DataFrame, step: int, component: str) -> pd.Series:
    rows = table[(table["step"] == step) & (table["component"] == component)]
    assert len(rows) == 1, (step, component)
    return rows.iloc[0]


def test_driver_plan_is_the_drivers_own_run_order() -> None:
    plan = driver_plan(COMMAND)
    assert plan.model.num_hidden_layers == 16 and plan.layers_run == 2 and plan.dtype == "bf16"
    assert [(s["step"], s["phase"], s["tokens"], s["context"]) for s in plan.request] == [
        (0, "prefill", 4, 16), (1, "decode", 1, 20), (2, "decode", 1, 21),
    ]  # fmt: skip
    warm = driver_plan([*COMMAND, "--warmup", "1"])
    assert [s["phase"] for s in warm.steps] == ["warmup", "prefill", "decode", "decode"]
    assert [s["step"] for s in warm.request] == [1, 2, 3]  # the warm-up pass is no part of a request
    decode_only = driver_plan([w if w != "both" else "decode" for w in COMMAND])
    assert [(s["phase"], s["context"]) for s in decode_only.request] == [("decode", 16), ("decode", 17)]


def test_one_decode_layer_scaled_to_the_whole_request() -> None:
    plan = driver_plan(COMMAND)
    result = extrapolate(plan, MACHINE, [LayerTime(1, 1, 1e-3, "hand")])
    table = result.components
    assert tuple(table.columns) == COMPONENT_COLUMNS and tuple(result.steps.columns) == STEP_COLUMNS
    assert tuple(result.request.columns) == REQUEST_COLUMNS
    layers = by(table, 1, "layers")
    assert (layers["source"], layers["count"], layers["time_s"]) == ("simulated", 16, pytest.approx(16e-3))
    borrowed = by(table, 2, "layers")  # decode step 2 costs what step 1's layer did
    assert borrowed["source"] == "simulated" and borrowed["time_s"] == pytest.approx(16e-3)
    assert "step 2 not simulated" in borrowed["basis"]
    # The prefill has no simulated layer: the analytical model's 16 layers on the same machine.
    prefill_ops = step_ops(plan, 0, MACHINE)
    prefill = by(table, 0, "layers")
    assert prefill["source"] == "analytical"
    assert prefill["time_s"] == pytest.approx(prefill_ops.loc[prefill_ops["layer"] >= 0, "t_est_s"].sum())
    # Non-layer ops: the analytical model's own rows (layer -1) of each step.
    for step in (0, 1, 2):
        ops = step_ops(plan, step, MACHINE).set_index("op")
        for op, component in (
            ("embed_tokens", "embedding"),
            ("final_norm", "final_norm"),
            ("lm_head", "lm_head"),
        ):
            row = by(table, step, component)
            assert row["source"] == "analytical" and row["time_s"] == pytest.approx(ops.loc[op, "t_est_s"])
    steps = result.steps.set_index("step")
    assert steps["time_s"].sum() == pytest.approx(table["time_s"].sum())
    assert steps.loc[1, "observed_s"] == pytest.approx(16e-3) and steps.loc[0, "observed_share"] == 0
    request = result.request.iloc[0]
    assert request["prefill_s"] == pytest.approx(steps.loc[0, "time_s"]) and request["decode_steps"] == 2
    assert request["request_s"] == pytest.approx(steps["time_s"].sum())
    assert request["decode_s"] == pytest.approx(steps.loc[1, "time_s"] + steps.loc[2, "time_s"])
    text = result.assumption
    for phrase in (
        "16 decoder layers of Llama-3.2-1B", "Step 2 was not simulated", "KV context differs by up to 1 token",
        "Step 0 has no simulated layer", "analytical model (roofline) on the same machine (gem5's simulated mi300x",
        "prefill step + 2 decode steps", "warm-up passes excluded", "The guest ran 2 of the model's 16 layers",
    ):  # fmt: skip
        assert phrase in text, phrase
    assert "TEST DOUBLE" not in text
    json.dumps(result.to_json())  # plain JSON for a page


def test_a_simulated_non_layer_window_replaces_the_model() -> None:
    plan = driver_plan(COMMAND)
    result = extrapolate(
        plan, MACHINE, [LayerTime(0, 0, 2e-3), LayerTime(0, 1, 4e-3), LayerTime(1, 0, 1e-3)],
        windows={(1, "lm_head"): 5e-4}, stand_in=True,
    )  # fmt: skip
    table = result.components
    assert by(table, 0, "layers")["unit_s"] == pytest.approx(3e-3)  # two layers of a step: their mean
    head = by(table, 1, "lm_head")
    assert (head["source"], head["time_s"]) == ("simulated", 5e-4)
    assert by(table, 2, "lm_head")["source"] == "analytical"
    assert (
        "except lm head" in result.assumption and "their mean where a step has several" in result.assumption
    )
    assert "gem5 TEST DOUBLE: a pipeline self-test" in result.assumption


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([], "at least one simulated whole layer"),
        ([LayerTime(7, 0, 1e-3)], "step 7: not a step"),
        ([LayerTime(1, 16, 1e-3)], "outside the model's 0..15"),
    ],
)
def test_bad_layer_times(layers, message) -> None:
    with pytest.raises(InputError, match=message):
        extrapolate(driver_plan(COMMAND), MACHINE, layers)


def test_other_drivers_and_bad_commands_are_refused() -> None:
    with pytest.raises(InputError, match="only runs of the `layer` driver"):
        driver_plan(["python3", "/opt/layerlab/drivers/hf.py", "--model-dir", "/m"])
    with pytest.raises(InputError, match=r"not a `layer` driver command line .*--bogus"):
        driver_plan([*COMMAND, "--bogus"])
    with pytest.raises(InputError, match="'simulated' or 'measured'"):
        extrapolate(driver_plan(COMMAND), MACHINE, [LayerTime(1, 1, 1e-3)], source="guessed")


def test_selftest_slice_extrapolated(sliced: Path) -> None:
    kernels = pd.read_parquet(sliced / "kernels.parquet")  # the conductor's table, read directly
    params = json.loads((sliced / "params.json").read_text())
    clock = params["machine"]["gpu"]["sys_clock_hz"]
    layer_s = kernels.loc[~kernels["blit"].astype(bool), "gpu_cycles"].sum() / clock
    joined = join(simulated_kernels(sliced), estimated_ops(sliced))
    assert layer_seconds(joined, clock) == pytest.approx(layer_s)
    with pytest.raises(InputError, match="clock_hz"):
        layer_seconds(joined)
    result = extrapolate_runs([sliced])
    layers = by(result.components, 1, "layers")
    assert layers["unit_s"] == pytest.approx(layer_s) and layers["count"] == 16
    assert f"run {json.loads((sliced / 'slice.json').read_text())['run_id']}" in layers["basis"]
    double = "TEST DOUBLE" in (sliced / "m5out" / "simout.txt").read_text().splitlines()[0]
    assert ("gem5 TEST DOUBLE" in result.assumption) == double
    assert result.request.iloc[0]["request_s"] == pytest.approx(result.components["time_s"].sum())


def test_runs_that_cannot_be_extrapolated(sliced: Path) -> None:
    with pytest.raises(InputError, match="at least one"):
        extrapolate_runs([])
    census = sliced.parent / "census"
    with pytest.raises(InputError, match=r"no slice\.json"):
        extrapolate_runs([census])
