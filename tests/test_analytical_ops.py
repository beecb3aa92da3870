"""Layer decomposition: closed forms, anchors, engines, families, property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytical.ops import BYTE_COLUMNS, build_ops, layer_op_table, make_shapes, parse_layers
from foundation.errors import InputError
from workloads.models import load_model_config

L1B = load_model_config("llama-3.2-1b")
L8B = load_model_config("llama-3.1-8b")


def _attention_kv_read(table):
    return table.loc[
        table["op_class"].isin(["attention"]) | table["op"].str.startswith("repeat_kv"), "kv_read_bytes"
    ].sum()


@pytest.mark.parametrize("model", [L1B, L8B])
@pytest.mark.parametrize("engine", ["hf-eager", "vllm"])
@pytest.mark.parametrize(
    ("phase", "kw", "tokens"),
    [
        ("prefill", {"seq": 512}, 512),
        ("decode", {"batch": 16, "context": 1024}, 16),
        ("chunked", {"seq": 256, "context": 1024, "decode_tokens": 8}, 264),
    ],
)
def test_linear_flops_and_weight_bytes_closed_forms(model, engine, phase, kw, tokens):
    table = layer_op_table(model, phase, engine=engine, **kw)
    gemm = table[table["op_class"] == "gemm"]
    linear_params = model.layer_params() - 2 * model.hidden_size  # minus the two RMSNorm weights
    assert gemm["flops"].sum() == pytest.approx(2 * linear_params * tokens)
    assert table["weight_bytes"].sum() == pytest.approx(model.layer_params() * 2)


@pytest.mark.parametrize("engine,attention", [("vllm", "eager"), ("hf-eager", "sdpa"), ("hf-eager", "eager")])
@pytest.mark.parametrize("batch,context", [(1, 1024), (16, 4096), (3, 0)])
def test_decode_kv_read_closed_form(engine, attention, batch, context):
    table = layer_op_table(L8B, "decode", batch=batch, context=context, engine=engine, attention=attention)
    expected = 2 * context * L8B.num_key_value_heads * L8B.head_dim * 2 * batch
    assert _attention_kv_read(table) == pytest.approx(expected)


@pytest.mark.parametrize("batch,seq", [(1, 512), (4, 77), (2, 1)])
def test_causal_prefill_pairs(batch, seq):
    table = layer_op_table(L1B, "prefill", batch=batch, seq=seq, engine="vllm")
    attn = table[table["op"] == "attn"].iloc[0]
    pairs = batch * seq * (seq + 1) / 2
    heads, d = L1B.num_attention_heads, L1B.head_dim
    assert attn["flops"] == pytest.approx((4 * heads * d + 5 * heads) * pairs)


def test_eager_attention_computes_the_full_rectangle():
    table = layer_op_table(L1B, "prefill", seq=512, engine="hf-eager", attention="eager")
    qk = table[table["op"] == "attn_qk"].iloc[0]
    assert qk["flops"] == 2 * 32 * 64 * 512 * 512
    assert "repeat_kv" in set(table["op"])  # GQA copy is a real kernel in HF eager


@pytest.mark.parametrize(
    ("model", "phase", "kw", "gflop", "mb", "tol"),
    [
        (L1B, "prefill", {"seq": 512}, 63.4, 219, 0.05),
        (L1B, "decode", {"context": 1024}, 0.130, 124, 0.02),
        (L1B, "decode", {"batch": 16, "context": 1024}, 2.08, 158, 0.02),
        (L8B, "prefill", {"seq": 2048}, 928.3, 1166, 0.06),
        (L8B, "decode", {"context": 1024}, 0.453, 441, 0.02),
    ],
)
def test_layer_totals_match_anchor_table(model, phase, kw, gflop, mb, tol):
    """analytical_anchors.md §2.5 (vLLM-like fused kernels; our vLLM fuses norm+residual, hence tol)."""
    table = layer_op_table(model, phase, engine="vllm", **kw)
    assert table["flops"].sum() / 1e9 == pytest.approx(gflop, rel=0.01)
    assert table[list(BYTE_COLUMNS)].to_numpy().sum() / 1e6 == pytest.approx(mb, rel=tol)


def test_engine_module_paths():
    hf = layer_op_table(L1B, "decode", context=8, engine="hf-eager", layers=[3])
    assert "model.layers.3.self_attn.q_proj" in set(hf["module"])
    assert "model.layers.3.mlp.gate_proj" in set(hf["module"])
    vllm = build_ops(L1B, make_shapes("decode", context=8), engine="vllm", layers=[0, 3])
    assert {"model.layers.3.self_attn.qkv_proj", "model.layers.3.mlp.gate_up_proj"} <= set(vllm["module"])
    norms = vllm[vllm["op"] == "attn_norm"].set_index("layer")
    # layer 0 has no residual yet: plain RMSNorm; later layers fuse the residual add
    assert norms.loc[3, "act_in_bytes"] == 2 * norms.loc[0, "act_in_bytes"]
    assert not ({"attn_residual", "mlp_residual"} & set(vllm["op"]))


def test_gpt2_and_opt_decompose_with_layernorm_and_plain_mlp():
    gpt2 = layer_op_table(load_model_config("gpt2"), "prefill", seq=64, layers=[2])
    assert {"qkv_proj", "fc1", "act_fn", "fc2"} <= set(gpt2["op"]) and "rope" not in set(gpt2["op"])
    assert "transformer.h.2.attn.c_attn" in set(gpt2["module"])
    opt = layer_op_table(load_model_config("opt-125m"), "decode", context=64, engine="vllm")
    assert "model.decoder.layers.0.self_attn.qkv_proj" in set(opt["module"])
    assert opt["weight_bytes"].sum() == pytest.approx(load_model_config("opt-125m").layer_params() * 2)


def test_moe_reads_only_active_experts_at_decode():
    moe = load_model_config("mixtral-8x7b")
    table = layer_op_table(moe, "decode", context=128, engine="vllm")
    w2 = table[table["op"] == "experts_w2"].iloc[0]
    assert w2["weight_bytes"] == pytest.approx(2 * moe.hidden_size * moe.intermediate_size * 2)  # top-2
    big = layer_op_table(moe, "prefill", seq=4096, engine="vllm")
    assert big[big["op"] == "experts_w2"].iloc[0]["weight_bytes"] == pytest.approx(
        8 * moe.hidden_size * moe.intermediate_size * 2
    )


def test_whole_model_adds_non_layer_ops():
    table = build_ops(
        L1B, make_shapes("prefill", seq=16), layers=parse_layers("all", 16), include_model_ops=True
    )
    assert set(table.loc[table["layer"] == -1, "op"]) == {"embed_tokens", "final_norm", "lm_head"}
    assert table["layer"].max() == 15
    head = table[table["op"] == "lm_head"].iloc[0]
    assert head["flops"] == 2 * 1 * 2048 * 128256  # logits for the last token only


def test_bad_shapes_and_layers():
    with pytest.raises(InputError, match="--seq"):
        make_shapes("prefill", seq=-1)
    with pytest.raises(InputError, match="needs --seq"):
        make_shapes("prefill")
    with pytest.raises(InputError, match="--context"):
        make_shapes("decode", context=-3)
    with pytest.raises(InputError, match="outside"):
        parse_layers("16", 16)
    with pytest.raises(InputError, match="unknown phase"):
        make_shapes("prefil", seq=1)


def test_vectorised_shapes_equal_scalar_shapes():
    seqs = np.array([1, 7, 128, 1000])
    many = build_ops(L1B, make_shapes("prefill", batch=2, seq=seqs), engine="vllm")
    for i, s in enumerate(seqs):
        one = layer_op_table(L1B, "prefill", batch=2, seq=int(s), engine="vllm")
        sub = many[many["shape_id"] == i].reset_index(drop=True)
        assert np.allclose(sub["flops"], one["flops"]) and np.allclose(
            sub["act_in_bytes"], one["act_in_bytes"]
        )


_MODELS = [L1B, load_model_config("gpt2"), load_model_config("mixtral-8x7b")]


@settings(max_examples=40, deadline=None)
@given(
    model=st.sampled_from(_MODELS),
    engine=st.sampled_from(["hf-eager", "vllm"]),
    batch=st.integers(1, 64),
    seq=st.integers(1, 4096),
    context=st.integers(0, 8192),
    which=st.sampled_from(["batch", "seq", "context"]),
    step=st.integers(1, 512),
)
def test_flops_and_bytes_grow_with_batch_seq_context(model, engine, batch, seq, context, which, step):
    base = {"batch": batch, "seq": seq, "context": context}
    more = dict(base, **{which: base[which] + step})
    a = layer_op_table(model, "chunked", engine=engine, **base)
    b = layer_op_table(model, "chunked", engine=engine, **more)
    bytes_a, bytes_b = a[list(BYTE_COLUMNS)].to_numpy().sum(), b[list(BYTE_COLUMNS)].to_numpy().sum()
    assert b["flops"].sum() >= a["flops"].sum()
    assert bytes_b >= bytes_a
    assert (a[["flops", *BYTE_COLUMNS]].to_numpy() >= 0).all()
