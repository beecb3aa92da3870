"""The ops of one decoder layer: FLOPs and bytes by class, vectorised over shapes.

Why this shape of code: estimators must run over ops x shapes x hardware without Python
loops per row, so every op formula here takes numpy arrays of shapes (batch, new tokens,
past tokens, decode tokens) and yields one array per column. The only Python loop is over the
~20 op kinds of a layer.

Conventions (analytical_anchors.md §2.2-2.3):

* ``T`` tokens go through the linear layers (one GEMM over all tokens, chunked prefill included);
  attention is per request: a *main* part of ``batch`` requests with ``seq`` new and ``context``
  past tokens, and (chunked prefill only) a *decode* part of ``decode_tokens`` requests with one
  new token over ``decode_context`` past tokens each.
* Causal pairs per head: B·(S·C + S(S+1)/2). Flash-style kernels (vLLM, SDPA) do causal work;
  HF eager attention computes the whole S x L rectangle and masks it, so its FLOPs and score
  bytes use B·S·L.
* Byte classes: ``weight`` (parameters), ``act_in``/``act_out`` (activations read/written),
  ``kv_read`` (KV-cache entries written by *earlier* steps, i.e. the C past tokens),
  ``kv_write`` (KV-cache entries written now). The new tokens' own K/V reach attention as
  activations, so decode KV read is exactly 2·C·Hkv·d·bytes·B.
* Every op carries the module path it corresponds to in the engine (HF transformers or vLLM)
  so reports can join it with simulated kernels; functional ops (RoPE, attention core, KV
  store) carry the attention module's path. ``role`` names the marker (``MODULE_CODES``) the
  op's kernels run under; that, not the path, is what census kernels carry (``analytical.roles``).

Engines: ``hf-eager`` = HF transformers eager mode: separate q/k/v and gate/up GEMMs, residual
adds as their own kernels, DynamicCache (``torch.cat``: copies the past cache every step),
attention ``eager`` (materialised scores; ``repeat_kv`` copies for GQA) or ``sdpa`` (fused).
``vllm`` = fused QKV, fused gate_up, fused add+RMSNorm, paged KV store, flash-style attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytical.roles import add_roles
from foundation.errors import InputError, unknown_name
from workloads.models import ModelConfig

ENGINES = ("hf-eager", "vllm")
PHASES = ("prefill", "decode", "chunked")
ATTENTION_IMPLS = ("eager", "sdpa")

#: Bytes per element and matrix compute class of each dtype name.
DTYPES: dict[str, tuple[int, str]] = {
    "bf16": (2, "bf16_matrix"),
    "fp16": (2, "fp16_matrix"),
    "fp32": (4, "fp32_matrix"),
    "fp8": (1, "fp8_matrix"),
}
_DTYPE_ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "float8_e4m3fn": "fp8",
}

#: Op classes (the unit of calibration factors) and which of them run on matrix units.
OP_CLASSES = ("gemm", "attention", "elementwise", "norm", "kv_store", "embedding")
MATRIX_CLASSES = ("gemm", "attention")

#: Numeric columns of the op table, in output order.
BYTE_COLUMNS = ("weight_bytes", "act_in_bytes", "act_out_bytes", "kv_read_bytes", "kv_write_bytes")
_NUMERIC = (
    "flops",
    *BYTE_COLUMNS,
    "gemm_m",
    "gemm_n",
    "gemm_k",
    "gemm_batch",
    "legacy_m",
    "legacy_n",
    "legacy_k",
    "legacy_batch",
)


def normalise_dtype(name: str) -> str:
    key = name.strip().lower()
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPES:
        raise unknown_name("dtype", name, list(DTYPES) + list(_DTYPE_ALIASES))
    return key


def normalise_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    key = value.strip().lower()
    if key not in choices:
        raise unknown_name(kind, value, choices)
    return key


@dataclass(frozen=True)
class Shapes:
    """One phase and arrays of shapes (all arrays the same length n)."""

    phase: str
    batch: np.ndarray
    seq: np.ndarray
    context: np.ndarray
    decode_tokens: np.ndarray
    decode_context: np.ndarray

    @property
    def n(self) -> int:
        return int(self.batch.shape[0])

    @property
    def tokens(self) -> np.ndarray:
        """Tokens through the linear layers in this step."""
        return self.batch * self.seq + self.decode_tokens

    @property
    def sequences_out(self) -> np.ndarray:
        """Sequences that produce logits this step (prefill/decode requests + decode tokens)."""
        return self.batch + self.decode_tokens


def make_shapes(
    phase: str,
    batch: Any = 1,
    seq: Any = None,
    context: Any = 0,
    decode_tokens: Any = 0,
    decode_context: Any = None,
) -> Shapes:
    """Validate and broadcast shape parameters (scalars or arrays) for one phase.

    prefill: ``seq`` new tokens per request (``context`` = cached prefix, default 0);
    decode: one new token per request over ``context`` past tokens;
    chunked: a chunk of ``seq`` tokens over ``context`` past tokens per request, plus
    ``decode_tokens`` decode requests over ``decode_context`` (default ``context``) each.
    """
    phase = normalise_choice("phase", phase, PHASES)
    if phase == "decode":
        seq = 1 if seq is None else seq
        decode_tokens = 0
    if seq is None:
        raise InputError(f"--phase {phase} needs --seq (tokens per request in this step)")
    if phase == "prefill":
        decode_tokens = 0
    if decode_context is None:
        decode_context = context
    names = ("batch", "seq", "context", "decode_tokens", "decode_context")
    raw = [np.asarray(v) for v in (batch, seq, context, decode_tokens, decode_context)]
    arrays = np.broadcast_arrays(*[np.atleast_1d(a) for a in raw])
    minimum = {"batch": 0 if phase == "chunked" else 1, "seq": 1}
    out = []
    for name, arr in zip(names, arrays, strict=True):
        flag = "--" + name.replace("_", "-")
        try:
            values = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{flag} must be a whole number, got {arr.ravel()[0]!r}") from exc
        if np.any(~np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError(f"{flag} must be a whole number, got {arr.ravel()[0]!r}")
        low = minimum.get(name, 0)
        if np.any(values < low):
            raise InputError(f"{flag} must be >= {low}, got {values[values < low][0]:g}")
        out.append(values.astype(np.int64))
    b, s, c, dn, dc = out
    if phase == "chunked" and np.any(b * s + dn < 1):
        raise InputError("chunked prefill needs tokens: --batch and --seq >= 1 or --decode-tokens >= 1")
    return Shapes(phase, b, s, c, dn, dc)


class _Rows:
    """Accumulates op rows, each op an array over the n shapes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.names: list[tuple[str, str, str]] = []
        self.values: dict[str, list[np.ndarray]] = {k: [] for k in _NUMERIC}

    def add(self, op: str, module: str, op_class: str, **numbers: Any) -> None:
        unknown = set(numbers) - set(_NUMERIC)
        if unknown:  # a typo here would silently zero a byte class
            raise TypeError(f"unknown op fields {sorted(unknown)}")
        self.names.append((op, module, op_class))
        for key in _NUMERIC:
            value = numbers.get(key, 0.0)
            self.values[key].append(np.broadcast_to(np.asarray(value, dtype=float), (self.n,)))


@dataclass(frozen=True)
class _Dims:
    d_model: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    group: int
    b_w: float
    b_a: float
    b_kv: float


def _dims(model: ModelConfig, dtype: str) -> _Dims:
    elem = DTYPES[dtype][0]
    # fp8 means fp8 weights and KV with bf16 activations (the usual W8 inference setting)
    b_a = 2.0 if dtype == "fp8" else float(elem)
    return _Dims(
        model.hidden_size,
        model.intermediate_size,
        model.num_attention_heads,
        model.num_key_value_heads,
        model.head_dim,
        model.group_size,
        float(elem),
        b_a,
        float(elem),
    )


def _linear(
    rows: _Rows,
    op: str,
    module: str,
    tokens: np.ndarray,
    n_out: int,
    k_in: int,
    dm: _Dims,
    bias: bool = False,
    experts: Any = 1,
    routed: Any = None,
) -> None:
    """A linear layer (GEMM over tokens); ``experts``/``routed`` describe a grouped MoE GEMM."""
    rows_in = tokens if routed is None else routed
    flops = 2.0 * rows_in * n_out * k_in + (rows_in * n_out if bias else 0.0)
    weights = dm.b_w * experts * (n_out * k_in + (n_out if bias else 0))
    m = rows_in / experts
    rows.add(
        op,
        module,
        "gemm",
        flops=flops,
        weight_bytes=weights,
        act_in_bytes=dm.b_a * rows_in * k_in,
        act_out_bytes=dm.b_a * rows_in * n_out,
        gemm_m=m,
        gemm_n=n_out,
        gemm_k=k_in,
        gemm_batch=experts,
        legacy_m=m,
        legacy_n=n_out,
        legacy_k=k_in,
        legacy_batch=experts,
    )


def _norm(
    rows: _Rows, op: str, module: str, tokens: np.ndarray, dm: _Dims, kind: str, fused_add: bool
) -> None:
    """RMSNorm (4 FLOP/elem) or LayerNorm (7 FLOP/elem); fused_add also reads+writes the residual."""
    per_elem = 4.0 if kind == "rmsnorm" else 7.0
    n_weights = dm.d_model * (1 if kind == "rmsnorm" else 2)
    streams = 2.0 if fused_add else 1.0
    rows.add(
        op,
        module,
        "norm",
        flops=(per_elem + (1 if fused_add else 0)) * tokens * dm.d_model,
        weight_bytes=dm.b_w * n_weights,
        act_in_bytes=streams * dm.b_a * tokens * dm.d_model,
        act_out_bytes=streams * dm.b_a * tokens * dm.d_model,
    )


def _elementwise(
    rows: _Rows,
    op: str,
    module: str,
    elems: Any,
    flops_per_elem: float,
    inputs: float,
    outputs: float,
    b: float,
) -> None:
    rows.add(
        op,
        module,
        "elementwise",
        flops=flops_per_elem * elems,
        act_in_bytes=inputs * b * elems,
        act_out_bytes=outputs * b * elems,
    )


_ACT_FLOPS = {
    "silu": 4.0,
    "swish": 4.0,
    "gelu": 8.0,
    "gelu_new": 8.0,
    "gelu_pytorch_tanh": 8.0,
    "relu": 1.0,
    "gelu_fast": 8.0,
}


@dataclass(frozen=True)
class _Names:
    """Module paths of one family under one engine ("{i}" = layer index)."""

    layer: str
    attn: str  # module running the attention core (functional ops)
    attn_norm: str
    mlp_norm: str
    q: str
    k: str
    v: str
    qkv: str
    o: str
    rope: str
    fc1: str
    act: str
    fc2: str
    gate: str
    up: str
    gate_up: str
    down: str
    moe: str


def _names(model: ModelConfig, engine: str) -> _Names:
    vllm = engine == "vllm"
    if model.family == "gpt2":
        p = "transformer.h.{i}"
        return _Names(
            p,
            f"{p}.attn" + (".attn" if vllm else ""),
            f"{p}.ln_1",
            f"{p}.ln_2",
            f"{p}.attn.c_attn",
            f"{p}.attn.c_attn",
            f"{p}.attn.c_attn",
            f"{p}.attn.c_attn",
            f"{p}.attn.c_proj",
            "",
            f"{p}.mlp.c_fc",
            f"{p}.mlp.act",
            f"{p}.mlp.c_proj",
            "",
            "",
            "",
            "",
            "",
        )
    if model.family == "opt":
        p = "model.decoder.layers.{i}"
        return _Names(
            p,
            f"{p}.self_attn" + (".attn" if vllm else ""),
            f"{p}.self_attn_layer_norm",
            f"{p}.final_layer_norm",
            f"{p}.self_attn.q_proj",
            f"{p}.self_attn.k_proj",
            f"{p}.self_attn.v_proj",
            f"{p}.self_attn.qkv_proj",
            f"{p}.self_attn.out_proj",
            "",
            f"{p}.fc1",
            f"{p}.activation_fn",
            f"{p}.fc2",
            "",
            "",
            "",
            "",
            "",
        )
    p = "model.layers.{i}"
    moe = f"{p}.block_sparse_moe" if model.is_moe else f"{p}.mlp"
    return _Names(
        p,
        f"{p}.self_attn" + (".attn" if vllm else ""),
        f"{p}.input_layernorm",
        f"{p}.post_attention_layernorm",
        f"{p}.self_attn.q_proj",
        f"{p}.self_attn.k_proj",
        f"{p}.self_attn.v_proj",
        f"{p}.self_attn.qkv_proj",
        f"{p}.self_attn.o_proj",
        f"{p}.self_attn.rotary_emb" if vllm else f"{p}.self_attn",
        "",
        f"{p}.mlp.act_fn",
        "",
        f"{p}.mlp.gate_proj",
        f"{p}.mlp.up_proj",
        f"{p}.mlp.gate_up_proj",
        f"{p}.mlp.down_proj",
        moe,
    )


def _attention(
    rows: _Rows,
    suffix: str,
    module: str,
    req: np.ndarray,
    new: np.ndarray,
    past: np.ndarray,
    dm: _Dims,
    fused: bool,
) -> None:
    """Attention core of one request group (main or decode part)."""
    h, hkv, d, g = dm.heads, dm.kv_heads, dm.head_dim, dm.group
    tq = req * new
    length = past + new
    pairs = req * (new * past + new * (new + 1) / 2.0)
    full = req * new * length
    if fused:
        rows.add(
            "attn" + suffix,
            module,
            "attention",
            flops=4.0 * h * d * pairs + 5.0 * h * pairs,
            act_in_bytes=dm.b_a * tq * (h * d + 2 * hkv * d),
            kv_read_bytes=2.0 * dm.b_kv * req * past * hkv * d,
            act_out_bytes=dm.b_a * tq * h * d,
            gemm_m=new * g,
            gemm_n=length,
            gemm_k=d,
            gemm_batch=2.0 * req * hkv,
            legacy_m=new,
            legacy_n=length,
            legacy_k=dm.d_model,
            legacy_batch=2.0 * req * h,
        )
        return
    if g > 1:  # HF repeat_kv: expand K and V to all query heads (a real copy)
        rows.add(
            "repeat_kv" + suffix,
            module,
            "elementwise",
            kv_read_bytes=2.0 * dm.b_kv * req * past * hkv * d,
            act_in_bytes=2.0 * dm.b_a * tq * hkv * d,
            act_out_bytes=2.0 * dm.b_a * req * length * h * d,
        )
        kv_act, kv_cache = dm.b_a * req * length * h * d, 0.0
    else:
        kv_act, kv_cache = dm.b_a * tq * h * d, dm.b_kv * req * past * h * d
    rows.add(
        "attn_qk" + suffix,
        module,
        "attention",
        flops=2.0 * h * d * full,
        act_in_bytes=dm.b_a * tq * h * d + kv_act,
        kv_read_bytes=kv_cache,
        act_out_bytes=dm.b_a * h * full,
        gemm_m=new,
        gemm_n=length,
        gemm_k=d,
        gemm_batch=req * h,
        legacy_m=new,
        legacy_n=length,
        legacy_k=dm.d_model,
        legacy_batch=req * h,
    )
    rows.add(
        "softmax" + suffix,
        module,
        "elementwise",
        flops=6.0 * h * full,
        act_in_bytes=dm.b_a * (h + 1) * full,
        act_out_bytes=dm.b_a * h * full,
    )
    rows.add(
        "attn_pv" + suffix,
        module,
        "attention",
        flops=2.0 * h * d * full,
        act_in_bytes=dm.b_a * h * full + kv_act,
        kv_read_bytes=kv_cache,
        act_out_bytes=dm.b_a * tq * h * d,
        gemm_m=new,
        gemm_n=d,
        gemm_k=length,
        gemm_batch=req * h,
        legacy_m=new,
        legacy_n=dm.d_model,
        legacy_k=length,
        legacy_batch=req * h,
    )


def _layer_rows(
    model: ModelConfig, shapes: Shapes, engine: str, attention: str, dtype: str, first_layer: bool
) -> _Rows:
    dm = _dims(model, dtype)
    nm = _names(model, engine)
    vllm = engine == "vllm"
    rows = _Rows(shapes.n)
    t = shapes.tokens.astype(float)
    q, kv = model.q_size, model.kv_size
    bias = model.attention_bias
    rms = model.norm == "rmsnorm"
    fused_norm = vllm and rms

    # --- attention block
    _norm(rows, "attn_norm", nm.attn_norm, t, dm, model.norm, fused_add=fused_norm and not first_layer)
    if vllm or model.family == "gpt2":
        _linear(rows, "qkv_proj", nm.qkv, t, q + 2 * kv, dm.d_model, dm, bias)
    else:
        _linear(rows, "q_proj", nm.q, t, q, dm.d_model, dm, bias)
        _linear(rows, "k_proj", nm.k, t, kv, dm.d_model, dm, bias)
        _linear(rows, "v_proj", nm.v, t, kv, dm.d_model, dm, bias)
    if not model.learned_positions:
        heads_d = (dm.heads + dm.kv_heads) * dm.head_dim
        rows.add(
            "rope",
            nm.rope,
            "elementwise",
            flops=3.0 * t * heads_d,
            act_in_bytes=dm.b_a * t * (heads_d + 2 * dm.head_dim),
            act_out_bytes=dm.b_a * t * heads_d,
        )
    past = (shapes.batch * shapes.context + shapes.decode_tokens * shapes.decode_context).astype(float)
    if vllm:
        rows.add(
            "kv_store",
            nm.attn,
            "kv_store",
            act_in_bytes=2.0 * dm.b_a * t * kv,
            kv_write_bytes=2.0 * dm.b_kv * t * kv,
        )
    else:  # DynamicCache.update: torch.cat(past, new) -> the whole cache is copied; no kernel at step 0
        copies = past > 0
        rows.add(
            "kv_store",
            nm.attn,
            "kv_store",
            kv_read_bytes=2.0 * dm.b_kv * past * kv,
            act_in_bytes=np.where(copies, 2.0 * dm.b_a * t * kv, 0.0),
            kv_write_bytes=np.where(copies, 2.0 * dm.b_kv * (past + t) * kv, 0.0),
        )
    fused_attn = vllm or attention == "sdpa"
    _attention(
        rows,
        "",
        nm.attn,
        shapes.batch.astype(float),
        shapes.seq.astype(float),
        shapes.context.astype(float),
        dm,
        fused_attn,
    )
    if shapes.phase == "chunked":
        _attention(
            rows,
            "_decode",
            nm.attn,
            shapes.decode_tokens.astype(float),
            np.ones(shapes.n),
            shapes.decode_context.astype(float),
            dm,
            fused_attn,
        )
    _linear(rows, "o_proj", nm.o, t, dm.d_model, q, dm, bias)
    if not fused_norm:
        _elementwise(rows, "attn_residual", nm.layer, t * dm.d_model, 1.0, 2.0, 1.0, dm.b_a)

    # --- MLP block
    _norm(rows, "mlp_norm", nm.mlp_norm, t, dm, model.norm, fused_add=fused_norm)
    act_flops = _ACT_FLOPS.get(model.activation, 4.0)
    f = dm.ffn
    if model.is_moe:
        _moe(rows, model, nm, t, dm, vllm, act_flops)
    elif model.gated_mlp:
        if vllm:
            _linear(rows, "gate_up_proj", nm.gate_up, t, 2 * f, dm.d_model, dm, model.mlp_bias)
            _elementwise(rows, "act_fn", nm.act, t * f, act_flops + 1.0, 2.0, 1.0, dm.b_a)
        else:
            _linear(rows, "gate_proj", nm.gate, t, f, dm.d_model, dm, model.mlp_bias)
            _linear(rows, "up_proj", nm.up, t, f, dm.d_model, dm, model.mlp_bias)
            _elementwise(rows, "act_fn", nm.act, t * f, act_flops, 1.0, 1.0, dm.b_a)
            _elementwise(rows, "act_mul", nm.act.rsplit(".", 1)[0], t * f, 1.0, 2.0, 1.0, dm.b_a)
        _linear(rows, "down_proj", nm.down, t, dm.d_model, f, dm, model.mlp_bias)
    else:
        _linear(rows, "fc1", nm.fc1, t, f, dm.d_model, dm, model.mlp_bias)
        _elementwise(rows, "act_fn", nm.act, t * f, act_flops, 1.0, 1.0, dm.b_a)
        _linear(rows, "fc2", nm.fc2, t, dm.d_model, f, dm, model.mlp_bias)
    if not fused_norm:
        _elementwise(rows, "mlp_residual", nm.layer, t * dm.d_model, 1.0, 2.0, 1.0, dm.b_a)
    return rows


def _moe(
    rows: _Rows, model: ModelConfig, nm: _Names, t: np.ndarray, dm: _Dims, vllm: bool, act_flops: float
) -> None:
    """Router + top-k expert GEMMs. Expected active experts under uniform routing:
    E·(1 - (1 - k/E)^T); their weights are read once, tokens split evenly among them."""
    e, k, f, dmod = model.num_local_experts, model.num_experts_per_tok, dm.ffn, dm.d_model
    _linear(rows, "router", f"{nm.moe}.gate", t, e, dmod, dm)
    active = e * (1.0 - (1.0 - k / e) ** t)
    routed = t * k
    experts = f"{nm.moe}.experts"
    if vllm:
        _linear(rows, "experts_w13", experts, t, 2 * f, dmod, dm, experts=active, routed=routed)
        _elementwise(rows, "experts_act", experts, routed * f, act_flops + 1.0, 2.0, 1.0, dm.b_a)
    else:
        _linear(rows, "experts_w1", f"{experts}.*.w1", t, f, dmod, dm, experts=active, routed=routed)
        _linear(rows, "experts_w3", f"{experts}.*.w3", t, f, dmod, dm, experts=active, routed=routed)
        _elementwise(
            rows, "experts_act", f"{experts}.*.act_fn", routed * f, act_flops + 1.0, 2.0, 1.0, dm.b_a
        )
    _linear(
        rows,
        "experts_w2",
        experts if vllm else f"{experts}.*.w2",
        t,
        dmod,
        f,
        dm,
        experts=active,
        routed=routed,
    )
    rows.add(
        "moe_combine",
        nm.moe,
        "elementwise",
        flops=2.0 * routed * dmod,
        act_in_bytes=dm.b_a * routed * dmod,
        act_out_bytes=dm.b_a * t * dmod,
    )


def _model_rows(model: ModelConfig, shapes: Shapes, engine: str, dtype: str) -> _Rows:
    """Non-layer ops: embeddings, final norm, LM head (logits for the last token per sequence)."""
    dm = _dims(model, dtype)
    rows = _Rows(shapes.n)
    t = shapes.tokens.astype(float)
    gather = {
        "weight_bytes": dm.b_w * t * dm.d_model,
        "act_in_bytes": 8.0 * t,
        "act_out_bytes": dm.b_a * t * dm.d_model,
    }
    if model.family == "gpt2":
        rows.add("embed_tokens", "transformer.wte", "embedding", **gather)
        rows.add("embed_positions", "transformer.wpe", "embedding", **gather)
        _elementwise(rows, "embed_add", "transformer", t * dm.d_model, 1.0, 2.0, 1.0, dm.b_a)
        norm_module, head = "transformer.ln_f", "lm_head"
    elif model.family == "opt":
        rows.add("embed_tokens", "model.decoder.embed_tokens", "embedding", **gather)
        rows.add("embed_positions", "model.decoder.embed_positions", "embedding", **gather)
        _elementwise(rows, "embed_add", "model.decoder", t * dm.d_model, 1.0, 2.0, 1.0, dm.b_a)
        norm_module, head = "model.decoder.final_layer_norm", "lm_head"
    else:
        rows.add("embed_tokens", "model.embed_tokens", "embedding", **gather)
        norm_module, head = "model.norm", "lm_head"
    fused = engine == "vllm" and model.norm == "rmsnorm"
    _norm(rows, "final_norm", norm_module, t, dm, model.norm, fused_add=fused)
    _linear(rows, "lm_head", head, shapes.sequences_out.astype(float), model.vocab_size, dm.d_model, dm)
    return rows


def _categorical(values: list[str], n: int) -> pd.Categorical:
    """One label per op repeated over n shapes, as a categorical (cheap to build, take and group)."""
    categories = list(dict.fromkeys(values))
    codes = np.array([categories.index(v) for v in values], dtype=np.int32)
    return pd.Categorical.from_codes(np.repeat(codes, n), categories=categories)


def _frame(rows: _Rows, shapes: Shapes, layer: int, dtype: str) -> pd.DataFrame:
    n, k = shapes.n, len(rows.names)
    ops, modules, classes = (list(col) for col in zip(*rows.names, strict=True))
    matrix = DTYPES[dtype][1]
    data: dict[str, Any] = {
        "layer": np.full(n * k, layer, dtype=np.int64),
        "op": _categorical(ops, n),
        "module": _categorical([m.replace("{i}", str(layer)) for m in modules], n),
        "op_class": _categorical(classes, n),
        "compute_class": _categorical([matrix if c in MATRIX_CLASSES else "fp32_vector" for c in classes], n),
        "dtype": _categorical([dtype] * k, n),
        "elem_bytes": np.full(n * k, float(DTYPES[dtype][0])),
        "shape_id": np.tile(np.arange(n), k),
        "phase": _categorical([shapes.phase] * k, n),
        "batch": np.tile(shapes.batch, k),
        "seq": np.tile(shapes.seq, k),
        "context": np.tile(shapes.context, k),
        "decode_tokens": np.tile(shapes.decode_tokens, k),
        "decode_context": np.tile(shapes.decode_context, k),
    }
    for key in _NUMERIC:
        data[key] = np.concatenate(rows.values[key])
    return pd.DataFrame(data)


def parse_layers(spec: str | int | None, num_layers: int) -> list[int]:
    """'3', '0-3', '0,5,7' or 'all' -> sorted layer indices, checked against the model."""
    if spec is None:
        return [0]
    text = str(spec).strip().lower()
    if text == "all":
        return list(range(num_layers))
    out: set[int] = set()
    try:
        for part in text.split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError as exc:
        raise InputError(f"--layers {spec!r}: expected 'all', N, A-B or a comma list") from exc
    bad = [i for i in out if not 0 <= i < num_layers]
    if bad or not out:
        raise InputError(f"--layers {spec!r}: layer {bad[0] if bad else '?'} outside 0..{num_layers - 1}")
    return sorted(out)


def build_ops(
    model: ModelConfig,
    shapes: Shapes,
    engine: str = "hf-eager",
    dtype: str | None = None,
    attention: str = "eager",
    layers: list[int] | None = None,
    include_model_ops: bool = False,
) -> pd.DataFrame:
    """The op table: one row per (layer, op, shape); ``layer`` -1 marks non-layer ops.

    ``role`` (after ``module``) is the marker role the op's kernels run under, the key that joins
    ops with census kernels (``analytical.roles``).
    """
    engine = normalise_choice("engine", engine, ENGINES)
    attention = normalise_choice("attention", attention, ATTENTION_IMPLS)
    dtype = normalise_dtype(dtype or model.torch_dtype)
    layers = [0] if layers is None else layers
    frames = []
    cache: dict[bool, _Rows] = {}
    for layer in layers:
        first = layer == 0
        if first not in cache:
            cache[first] = _layer_rows(model, shapes, engine, attention, dtype, first)
        frames.append(_frame(cache[first], shapes, layer, dtype))
    if include_model_ops:
        frames.append(_frame(_model_rows(model, shapes, engine, dtype), shapes, -1, dtype))
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for column in ("op", "module", "op_class", "compute_class", "dtype", "phase"):
        if not isinstance(out[column].dtype, pd.CategoricalDtype):  # concat of differing categories
            out[column] = out[column].astype("category")
    out.insert(0, "engine", pd.Categorical.from_codes(np.zeros(len(out), dtype=np.int8), categories=[engine]))
    out.insert(
        0, "model", pd.Categorical.from_codes(np.zeros(len(out), dtype=np.int8), categories=[model.name])
    )
    return add_roles(out)  # the marker role each op's kernels run under (analytical.roles)


def layer_op_table(
    model: ModelConfig,
    phase: str,
    batch: int = 1,
    seq: int | None = None,
    context: int = 0,
    decode_tokens: int = 0,
    decode_context: int | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Convenience: the ops of one shape (scalars), e.g. for tests and notebooks."""
    return build_ops(model, make_shapes(phase, batch, seq, context, decode_tokens, decode_context), **kwargs)
