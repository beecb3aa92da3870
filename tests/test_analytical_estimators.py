"""Estimators: roofline per op, notebook variants, cache, waves, launch floor, units, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytical.catalog import get_hardware
from analytical.estimators import ESTIMATORS, estimate, naive_roofline, tile_sides
from analytical.notebook import notebook_chunk_shape
from analytical.ops import build_ops, layer_op_table, make_shapes
from analytical.pipeline import estimate_layer
from foundation.errors import InputError
from workloads.models import load_model_config

L1B = load_model_config("llama-3.2-1b")
L8B = load_model_config("llama-3.1-8b")
MI300X = get_hardware("mi300x")


@pytest.mark.parametrize(
    ("model", "phase", "kw", "hw", "micros"),
    [
        (L1B, "decode", {"context": 1024}, "mi300x", 23.4),
        (L1B, "decode", {"batch": 16, "context": 1024}, "mi300x", 29.9),
        (L1B, "decode", {"context": 1024}, "mi210", 75.6),
        (L8B, "decode", {"context": 1024}, "mi300x", 83.2),
        (L8B, "decode", {"batch": 16, "context": 1024}, "mi250x-gcd", 311),
        (L1B, "prefill", {"seq": 512}, "mi300x", 58.7),
    ],
)
def test_roofline_matches_anchor_worked_examples(model, phase, kw, hw, micros):
    table = estimate_layer(model, get_hardware(hw), phase, engine="vllm", **kw)
    assert table["t_roofline_s"].sum() * 1e6 == pytest.approx(micros, rel=0.04)


def test_roofline_is_sum_of_per_op_maxima():
    table = estimate_layer(L1B, MI300X, "prefill", seq=512)
    per_op = np.maximum(table["t_compute_s"], table["t_memory_s"])
    assert table["t_roofline_s"].sum() == pytest.approx(per_op.sum())
    roofline_of_sums = max(table["t_compute_s"].sum(), table["t_memory_s"].sum())
    assert table["t_roofline_s"].sum() > roofline_of_sums


def test_vectorised_equals_naive_loop_over_hardware():
    ops = build_ops(L1B, make_shapes("decode", batch=[1, 4, 64], context=[128, 1024, 4096]), engine="vllm")
    machines = [MI300X, get_hardware("gem5-mi300"), get_hardware("a100")]
    table = estimate(ops, machines)
    for hw in machines:
        got = table.loc[table["hardware"] == hw.name, "t_roofline_s"].to_numpy()
        assert np.allclose(got, naive_roofline(ops, hw))


def test_units_are_consistent():
    table = estimate_layer(L1B, get_hardware("gem5-mi300"), "chunked", seq=64, context=512, decode_tokens=4)
    assert np.allclose(table["est_cycles"], table["t_est_s"] * 1e9)
    assert np.allclose(table["intensity"] * table["total_bytes"], table["flops"])
    faster = estimate_layer(
        L1B, get_hardware("gem5-mi300", dram_channels=2), "chunked", seq=64, context=512, decode_tokens=4
    )
    assert np.allclose(faster["t_memory_s"] * 2, table["t_memory_s"])
    clocked = estimate_layer(
        L1B, get_hardware("gem5-mi300", sys_clock_hz=2e9), "chunked", seq=64, context=512, decode_tokens=4
    )
    assert np.allclose(clocked["t_compute_s"] * 2, table["t_compute_s"])


def test_bound_flips_at_the_ridge():
    table = estimate_layer(L8B, MI300X, "prefill", seq=4096, engine="vllm")
    gemms = table[table["op_class"] == "gemm"]
    assert (gemms["bound"] == "compute").all()
    decode = estimate_layer(L8B, MI300X, "decode", context=1024, engine="vllm")
    assert (decode["bound"] == "memory").all()


def test_estimator_selection_and_launch_floor():
    for name in ESTIMATORS:
        table = estimate_layer(L1B, MI300X, "decode", context=256, estimator=name)
        assert (table["estimator"] == name).all()
        assert np.allclose(table["t_est_s"], table[f"t_{name}_s"])
    full = estimate_layer(L1B, MI300X, "decode", context=256, estimator="full", launch_floor_s=1e-5)
    assert (full["t_est_s"] >= 1e-5).all()
    with pytest.raises(InputError, match="unknown estimator"):
        estimate_layer(L1B, MI300X, "decode", context=256, estimator="rooflin")


def testtile_sides_fill_the_cache():
    big = np.array([1e5])
    tm, tn, tk = tile_sides(big, big, big, np.array([3 * 100.0**2]))
    assert (tm[0], tn[0], tk[0]) == (100, 100, 100)
    # one small dim f: x² + 2fx = E
    f, elems = 4.0, 10_000.0
    tm, tn, tk = tile_sides(np.array([f]), big, big, np.array([elems]))
    x = np.sqrt(f * f + elems) - f
    assert tm[0] == f and tn[0] == np.floor(x) and tk[0] == np.floor(x)
    # two small dims: the rest of the cache over their sum
    tm, tn, tk = tile_sides(np.array([4.0]), np.array([8.0]), big, np.array([1000.0]))
    assert tk[0] == np.floor((1000 - 32) / 12)


def test_tiling_fix_folds_gqa_and_contracts_over_head_dim():
    fixed = estimate_layer(L8B, get_hardware("nvl-ax"), "decode", batch=8, context=4096, engine="vllm")
    legacy = estimate_layer(
        L8B, get_hardware("nvl-ax"), "decode", batch=8, context=4096, engine="vllm", notebook_bugs=True
    )
    attn_fixed = fixed.loc[fixed["op"] == "attn", "t_tiling_s"].iloc[0]
    attn_legacy = legacy.loc[legacy["op"] == "attn", "t_tiling_s"].iloc[0]
    assert attn_legacy > 4 * attn_fixed
    gemm = fixed["op_class"] == "gemm"
    assert np.allclose(fixed.loc[gemm, "t_tiling_s"], legacy.loc[gemm, "t_tiling_s"])


def test_simple_ignores_activations():
    table = estimate_layer(L1B, MI300X, "decode", context=1024, engine="vllm")
    rope = table[table["op"] == "rope"].iloc[0]
    assert rope["t_simple_s"] == 0
    qkv = table[table["op"] == "qkv_proj"].iloc[0]
    assert qkv["t_simple_s"] == pytest.approx(qkv["weight_bytes"] / MI300X.dram_bandwidth_bytes_per_s)


def test_cache_term_uses_llc_when_layer_weights_fit():
    small = estimate_layer(L1B, MI300X, "decode", context=1024, engine="vllm")
    assert small["fits_llc"].all()
    assert small["t_cache_s"].sum() < 0.5 * small["t_roofline_s"].sum()
    big = estimate_layer(load_model_config("mixtral-8x7b"), MI300X, "prefill", seq=4096, engine="vllm")
    assert not big["fits_llc"].any()  # 8 experts x 352 MB do not fit 256 MB
    assert np.allclose(big["t_cache_s"], big["t_roofline_s"])


def test_wave_quantisation_penalises_partial_waves():
    table = estimate_layer(L1B, MI300X, "prefill", seq=512, engine="vllm")
    gemm = table[table["op_class"] == "gemm"]
    assert (gemm["t_waves_s"] >= gemm["t_roofline_s"] - 1e-15).all()
    assert (gemm["waves"] >= 1).all()


def test_notebook_chunk_approximation():
    shape = notebook_chunk_shape(512, 1000, 250)
    assert shape.decode_tokens == round(512 * 250 / 1250)
    assert shape.seq == 512 - shape.decode_tokens
    assert shape.context == round(1000 / np.sqrt(3) - shape.seq / 2)
    assert shape.decode_context == 1125


def test_missing_dtype_peak_is_an_input_error():
    with pytest.raises(InputError, match="no fp8_matrix peak"):
        estimate_layer(L1B, get_hardware("mi100"), "decode", context=16, dtype="fp8")


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 32),
    seq=st.integers(1, 2048),
    context=st.integers(0, 4096),
    which=st.sampled_from(["batch", "seq", "context"]),
    step=st.integers(1, 256),
    hw=st.sampled_from(["mi300x", "gem5-mi300", "gem5-mi200", "a100"]),
)
def test_times_are_monotone(batch, seq, context, which, step, hw):
    machine = get_hardware(hw)
    base = {"batch": batch, "seq": seq, "context": context}
    more = dict(base, **{which: base[which] + step})
    a = estimate_layer(L1B, machine, "chunked", engine="vllm", **base)
    b = estimate_layer(L1B, machine, "chunked", engine="vllm", **more)
    for name in ("roofline", "simple", "cache", "waves", "full"):
        assert b[f"t_{name}_s"].sum() >= a[f"t_{name}_s"].sum() * (1 - 1e-12)
    assert (a["t_est_s"] >= 0).all()


def test_estimate_over_many_shapes_keeps_rows_aligned():
    shapes = make_shapes("prefill", seq=np.arange(1, 65))
    ops = build_ops(L1B, shapes, engine="vllm")
    table = estimate(ops, [MI300X, get_hardware("mi210")])
    assert len(table) == 2 * len(ops)
    single = estimate(layer_op_table(L1B, "prefill", seq=33, engine="vllm"), MI300X)
    row = table[(table["hardware"] == "mi300x") & (table["seq"] == 33)]
    assert np.allclose(row["t_roofline_s"].to_numpy(), single["t_roofline_s"].to_numpy())
