"""Simulated kernels joined with estimated ops on roles; agreement metrics on hand-checked cases."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from test_orchestrator_local import make_spec

from orchestrator.cli import main
from reports import metrics
from reports.join import estimated_ops, join, simulated_kernels


def test_metrics_on_hand_checked_cases() -> None:
    est, ref = [110.0, 90.0, 50.0], [100.0, 100.0, 100.0]
    assert metrics.mape(est, ref) == pytest.approx((10 + 10 + 50) / 3)
    assert metrics.within(est, ref, 10) == pytest.approx(2 / 3) and metrics.within(est, ref, 5) == 0
    assert metrics.nrmse(est, ref) == pytest.approx(math.sqrt((100 + 100 + 2500) / 3) / 100)
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)
    assert math.isnan(metrics.mape([1.0], [0.0])) and metrics.summary(est, ref)["pairs"] == 3


def test_join_keeps_unmatched_and_says_the_granularity() -> None:
    kernels = pd.DataFrame({
        "kernel_index": [0, 1, 2, 3, 4], "blit": [False, False, False, True, False],
        "gpu_cycles": [100.0, 50.0, 70.0, 5.0, 30.0],
        "census_module": ["q_proj", "attention", "attention", None, "layer"],
    })  # fmt: skip
    ops = pd.DataFrame({
        "op": ["q_proj", "rope", "attn_qk", "o_proj", "total"], "role": ["q_proj", "attention", "attention", "o_proj", None],
        "join": ["op", "role", "role", "op", None], "est_cycles": [80.0, 10.0, 60.0, 40.0, 190.0],
    })  # fmt: skip
    table = join(kernels, ops).set_index("role")
    assert table.loc["q_proj", "join"] == "op" and table.loc["q_proj", "error_pct"] == pytest.approx(-20.0)
    assert table.loc["attention", "join"] == "role" and table.loc["attention", "kernels"] == 2
    assert table.loc["attention", "est_cycles"] == 70.0 and table.loc["attention", "sim_cycles"] == 120.0
    assert not table.loc["o_proj", "matched"] and not table.loc["layer", "matched"]  # kept, not dropped
    assert table["kernels"].sum() == 4  # the blit is left out of the join


def test_selftest_slice_joins_every_role(tmp_path: Path, capsys) -> None:
    spec = make_spec(tmp_path)
    assert main(["run", str(spec), "--quiet"]) == 0
    sliced = next(tmp_path.glob("runs/selftest/*/*/*/step1-layer1"))
    kernels = simulated_kernels(sliced)
    ops = estimated_ops(sliced)
    assert set(ops["hardware"]) == {"gem5-mi300x"} and set(ops["phase"]) == {"decode"}
    table = join(kernels, ops)
    roles = set(table.loc[table["matched"], "role"])
    assert {"q_proj", "o_proj", "down_proj", "attention"} <= roles
    assert table.loc[table["matched"], "calibration"].gt(0).all()
