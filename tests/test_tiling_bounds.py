"""layerlab's tiling estimator obeys what memory traffic can be (issue #13 §2).

A tiled GEMM moves at least the compulsory traffic (each operand once, the output once) and at
most the no-reuse traffic; the roofline is a lower bound; GEMV-like shapes stream once.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytical.catalog import get_hardware
from analytical.estimators import _tiling_traffic, estimate, no_reuse_bytes
from analytical.ops import build_ops, make_shapes
from analytical.pipeline import estimate_layer
from workloads.models import load_model_config

PARTS = ["mi300x", "mi210", "a100", "h100", "nvl-ax", "jgs", "gem5-mi300", "gem5-mi200"]
MODELS = ["llama-3.2-1b", "llama-3.1-8b", "gpt2", "opt-125m", "mixtral-8x7b"]
dims = st.integers(1, 50_000)


@settings(max_examples=200, deadline=None)
@given(
    m=dims, n=dims, k=dims, g=st.integers(1, 4096), part=st.sampled_from(PARTS), b=st.sampled_from([1, 2, 4])
)
def test_tiled_traffic_between_compulsory_and_no_reuse(m, n, k, g, part, b):
    cache = np.array([[float(get_hardware(part).last_level_cache_bytes)]])
    m_, n_, k_, g_, b_ = (np.array([float(v)]) for v in (m, n, k, g, b))
    traffic = _tiling_traffic(m_, n_, k_, g_, b_, cache)[0, 0]
    compulsory = (m * k + k * n + m * n) * g * b
    assert traffic >= compulsory * (1 - 1e-12)
    assert traffic <= no_reuse_bytes(m_, n_, k_, g_, b_)[0] * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    big=st.tuples(dims, dims),
    which=st.integers(0, 2),
    g=st.integers(1, 4096),
    part=st.sampled_from(PARTS),
)
def test_gemv_like_traffic_is_compulsory_within_5_percent(big, which, g, part):
    shape = list(big)
    shape.insert(which, 1)  # smallest dim 1: M, N or K
    m, n, k = (np.array([float(v)]) for v in shape)
    cache = np.array([[float(get_hardware(part).last_level_cache_bytes)]])
    traffic = _tiling_traffic(m, n, k, np.array([float(g)]), np.array([2.0]), cache)[0, 0]
    compulsory = float((m * k + k * n + m * n)[0]) * g * 2
    assert traffic <= 1.05 * compulsory


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(MODELS),
    phase=st.sampled_from(["prefill", "decode", "chunked"]),
    batch=st.integers(1, 256),
    seq=st.integers(1, 4096),
    context=st.integers(1, 8192),
    decode_tokens=st.integers(0, 64),
    engine=st.sampled_from(["hf-eager", "vllm"]),
    attention=st.sampled_from(["eager", "sdpa"]),
    parts=st.lists(st.sampled_from(PARTS), min_size=1, max_size=3, unique=True),
)
def test_layer_tiling_is_bounded(model, phase, batch, seq, context, decode_tokens, engine, attention, parts):
    cfg = load_model_config(model)
    shapes = make_shapes(phase, batch=batch, seq=None if phase == "decode" else seq, context=context,
                         decode_tokens=decode_tokens)  # fmt: skip
    ops = build_ops(cfg, shapes, engine=engine, attention=attention)
    table = estimate(ops, [get_hardware(p) for p in parts], estimator="tiling")
    assert (table["t_tiling_s"] >= table["t_roofline_s"] * (1 - 1e-12)).all()
    assert (table["tiling_bytes"] >= table["total_bytes"] * (1 - 1e-12)).all()
    gemm = table["gemm_batch"] > 0
    elem = np.tile(ops["elem_bytes"].to_numpy(), len(parts))[gemm.to_numpy()]
    g = table.loc[gemm]
    ceiling = np.maximum(
        g["total_bytes"],
        no_reuse_bytes(g["gemm_m"], g["gemm_n"], g["gemm_k"], g["gemm_batch"], elem),
    )
    assert (g["tiling_bytes"] <= ceiling * (1 + 1e-12)).all()
    # GEMV-like rows (one token per weight / one query row per head) stream their operands once
    gemv = g[g["gemm_m"] == 1]
    bw = np.array([get_hardware(h).dram_bandwidth_bytes_per_s for h in gemv["hardware"].astype(str)])
    streaming = gemv["total_bytes"].to_numpy() / bw
    compute = gemv["t_compute_s"].to_numpy()
    assert (gemv["t_tiling_s"].to_numpy() <= 1.05 * np.maximum(streaming, compute) + 1e-15).all()


def test_decode_attention_streams_kv_once_on_nvl_ax():
    """Q·Kᵀ at C=8448, B=256: layerlab's tiling = streaming K (as HF eager's repeat_kv expands it) once."""
    cfg, hw = load_model_config("llama-3.1-8b"), get_hardware("nvl-ax")
    table = estimate_layer(cfg, hw, "decode", batch=256, context=8448, estimator="tiling")
    qk = table[table["op"] == "attn_qk"].iloc[0]
    streaming = qk["total_bytes"] / hw.dram_bandwidth_bytes_per_s
    assert qk["t_tiling_s"] == pytest.approx(streaming, rel=0.05)
    assert qk["t_tiling_s"] == pytest.approx(48.6e-3, rel=0.01)
    fused = estimate_layer(cfg, hw, "decode", batch=256, context=8448, engine="vllm", estimator="tiling")
    attn = fused[fused["op"] == "attn"].iloc[0]
    assert attn["t_roofline_s"] <= attn["t_tiling_s"] <= 1.05 * attn["t_roofline_s"]


def test_weights_shared_across_tokens_are_read_about_once():
    """Tokens fold into M (one weight matrix for all): prefill GEMM traffic stays near the weights."""
    cfg, hw = load_model_config("llama-3.1-8b"), get_hardware("nvl-ax")
    table = estimate(build_ops(cfg, make_shapes("decode", batch=64, context=1024)), hw, estimator="tiling")
    q = table[table["op"] == "q_proj"].iloc[0]
    assert q["tiling_bytes"] <= 1.1 * q["total_bytes"]
