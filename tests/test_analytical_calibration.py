"""Calibration factors: YAML in and out, fitting from measured times, effect on estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytical.calibration import CalibrationFactors, fit_calibration, load_calibration, save_calibration
from analytical.catalog import get_hardware
from analytical.pipeline import estimate_layer
from foundation.errors import InputError
from workloads.models import load_model_config

L1B = load_model_config("llama-3.2-1b")


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "cal.yaml"
    path.write_text("factors:\n  default: {bandwidth: 0.8}\n  gemm: {compute: 0.54, bandwidth: 0.8}\n")
    cal = load_calibration(path)
    assert cal.compute("gemm") == 0.54 and cal.bandwidth("norm") == 0.8 and cal.compute("norm") == 1.0
    save_calibration(cal, tmp_path / "out.yaml")
    assert load_calibration(tmp_path / "out.yaml").factors == cal.factors


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("factors:\n  gem: {compute: 0.5}\n", "did you mean 'gemm'"),
        ("factors:\n  gemm: {compute: -1}\n", r"factors.gemm.compute"),
        ("factors:\n  gemm: {speed: 1}\n", "expected keys"),
        ("factors: [1, 2\n", "invalid YAML"),
        ("hardware: x\n", "'factors'"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, text, match):
    path = tmp_path / "cal.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        load_calibration(path)
    assert "cal.yaml" in str(err.value)


def test_factors_slow_the_estimate_down():
    hw = get_hardware("mi300x")
    ideal = estimate_layer(L1B, hw, "prefill", seq=1024, engine="vllm")
    cal = CalibrationFactors({"gemm": (0.5, 1.0), "default": (1.0, 0.8)})
    real = estimate_layer(L1B, hw, "prefill", seq=1024, engine="vllm", calibration=cal)
    gemm = ideal["op_class"] == "gemm"
    assert np.allclose(real.loc[gemm, "t_compute_s"], 2 * ideal.loc[gemm, "t_compute_s"])
    assert np.allclose(real.loc[~gemm, "t_memory_s"], ideal.loc[~gemm, "t_memory_s"] / 0.8)


def test_fit_recovers_known_factors():
    table = pd.concat(
        [
            estimate_layer(L1B, get_hardware("mi300x"), "prefill", seq=s, engine="vllm")
            for s in (256, 1024, 4096)
        ]
        + [
            estimate_layer(L1B, get_hardware("mi300x"), "decode", batch=b, context=1024, engine="vllm")
            for b in (1, 8)
        ],
        ignore_index=True,
    )
    truth = CalibrationFactors({"gemm": (0.6, 0.75), "default": (0.9, 0.7)})
    eff_c, eff_b = truth.arrays(table["op_class"].to_numpy())
    table["measured_s"] = np.maximum(table["t_compute_s"] / eff_c, table["t_memory_s"] / eff_b)
    fitted = fit_calibration(table)
    assert fitted.compute("gemm") == pytest.approx(0.6, rel=1e-6)
    assert fitted.bandwidth("gemm") == pytest.approx(0.75, rel=1e-6)
    assert fitted.bandwidth("norm") == pytest.approx(0.7, rel=1e-6)


def test_fit_needs_columns():
    with pytest.raises(InputError, match="measured_s"):
        fit_calibration(pd.DataFrame({"op_class": [], "t_compute_s": [], "t_memory_s": []}))
