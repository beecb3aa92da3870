"""The researchers' notebook (the baseline layerlab replaces), reconstructed so old numbers come back.

Two things live here:

* ``notebook_chunk_shape``: layerlab's *exact* chunked-prefill shape built from the notebook's
  chunk approximation (rounded, with √3), used by ``--notebook-chunk`` without ``--notebook``;
* the notebook mode (``--notebook``): the notebook's own workload decomposition, chunk split and
  both of its estimators, with its defects (``bugs=True``) or with those defects fixed.

The notebook's code is not available. What is known is its method (foundation issue #2,
analytical_anchors.md §2) and its outputs on its own example cells (issue #13: Llama-3.1-8B, its
NVL-AX part, 2 bytes/value, per layer). Every choice below is pinned by that arithmetic.

Notation: T tokens through the linear layers, D hidden (4096), H/Hkv query/KV heads (32/8),
d head_dim (128), G = H/Hkv (4), kv = Hkv·d (1024), F intermediate (14336), b bytes/value (2).
NVL-AX: 32 cores × 2048 MAC/cycle = 65,536 MAC/cycle at 2.5 GHz = 1.6384e14 MAC/s;
342 GiB/s = 367,219,703,808 B/s = 146.8879 B/cycle; LLC 36 MiB = 37,748,736 B = 18,874,368 values.

Reconstruction decisions (each with the arithmetic that pins it)
-----------------------------------------------------------------
1. **Op list and MACs** (the compute unit is a MAC, rate = cores × MAC/cycle/core × clock).
   Per phase: fused ``qkv_proj`` (N = H·d + 2·kv), ``attn_qk``, ``attn_pv``, ``o_proj``,
   ``ffn_up``, ``ffn_gate``, ``ffn_down`` (activation × weight, ``AW``, or activation ×
   activation, ``AA``), ``kv_read`` (decode: the C past tokens) and ``kv_store`` (the T new
   tokens). Linear MACs/token = 4096·6144 + 4096·4096 + 3·4096·14336 = 218,103,808; × 8192 =
   1,786,706,395,136. Attention (with the bugs) is QK (M=S, N=L, K=D, batch B) and PV
   (M=S, N=D, K=L, batch B), non-causal: 2·8192²·4096 = 549,755,813,888; sum =
   2,336,462,209,024 = the printed prefill MACs. ✓
2. **Where the two attention defects sit.** That shape contracts over the hidden size (D)
   instead of head_dim, and has neither the heads in the batch nor the G query heads that share
   a K/V head folded into M (the GQA factor a misspelled keyword dropped). Because D = H·d the
   MAC count is still right; only the tile shapes are wrong. Fixed: QK (M=G·S, N=L, K=d,
   batch B·Hkv), PV (M=G·S, N=d, K=L, batch B·Hkv): same MACs, per-(request, KV head) GEMMs.
   K/V bytes always use kv = Hkv·d: the decode KV read of 60,307,018 cycles is
   256·2·8448·1024·2 B / 146.8879 B/cycle = 60,307,017.5 ✓ (with D instead of kv it would be 4×).
   Decode attends over N = C (not C+1): C+1 would make the decode total 64,470,615.
3. **Simple roofline** = Σ over ops of max(MACs / MAC rate, (weight + KV) bytes / BW);
   activations ignored, so AA ops are compute-only and KV ops memory-only. Prefill S=1024:
   compute 231,928,233,984 MAC / 1.6384e14 = 1.415577 ms (every linear op compute-bound), + the
   KV store 2·1024·1024·2 B = 4 MiB / BW = 0.011422 ms → 1.426999 ms ✓ (1.427). Decode C=1024,
   B=1: weights 436,207,616 B → 1.187865 ms + KV read 4 MiB 0.011422 + attention compute
   8,388,608 MAC 0.000051 + store 0.000011 → 1.199349 ms ✓ (1.199). Decode C=8448, B=256:
   1.187865 (weights, memory-bound) + 24.122768 (KV read) + 0.108134 (attention compute
   17,716,740,096 MAC, an op of its own and so *added* to the KV read) + 0.002855 (store)
   = 25.421623 ms ✓ (25.42). A roofline of sums would give 1.4156 / 1.199 / 24.46 ms instead.
4. **Theoretical tiling.** Cache E = LLC / b values. Sort the GEMM's dims d1 ≤ d2 ≤ d3:
   all free (d1 ≥ √(E/3)) → equal tiles √(E/3); one fixed (d2 ≥ x, x² + 2·d1·x = E) → (d1, x, x);
   two fixed → (d1, d2, (E − d1·d2)/(d1 + d2)); tiles clipped to the dims, *fractional* tile
   counts M·N·K / (tm·tn·tk) (no ceil: with ceil decode would be 65,403,988). Per tile:
   max(tm·tn·tk / MAC-per-cycle, (tm·tk + tk·tn)·b / (BW/clock)) — the A and B tiles are
   (re)loaded, the output tile stays on chip (adding it, decode would be off by 0.3 M cycles).
   Batch is folded into M to square up the output: f = min(batch, ⌊N/M⌋), M·f, batch/f.
   KV read ops: bytes / (BW/clock); the KV store has no term (prefill S=8192 is exactly
   2,336,462,209,024 / 65,536 = 35,651,584 cycles although the store would add 228,432; the
   decode total matches to 0.01 cycle without the store's 7,139).
   Prefill S=8192: every GEMM is all-free, tile 2508.3³: compute 240,795 > A+B traffic
   171,327 cycles per tile → 35,651,584 ✓. Decode C=8448, B=256: linear M=256,
   x = √(256² + E) − 256 = 4352 − 256 = 4096 exactly, traffic (1 + 256/4096)·weights =
   3,155,267.7; attention folded to (256, 8448, 4096) and (256, 4096, 8448): 2 × 500,595.4;
   KV read 60,307,017.5; total 64,463,475.99 ✓ (64,463,476).
5. **Chunk split** with the notebook's integers: decode tokens d = chunk·out // (in+out)
   (256·512 // 8704 = 15), prefill p = chunk − d (241), decode context in + out // 2 (8448),
   prefill context int(in / 1.73) − p // 2 (int(4735.26) − 120 = 4615; a float
   in/1.73 − p/2 = 4614.76 would truncate to 4614). Linear ops over all chunk tokens (one GEMM,
   M=256). Prefill part: attention (M=p, N=ctx_p), no KV read (the notebook's prefill op list has
   none); decode part: KV read 2·d·ctx_d·kv·b, attention folded over the d tokens.
6. **The chunked decode attention's width** — *not pinned exactly*. With the decode part
   attending over its context (8448) the chunk would cost lin 3,155,267.7 + prefill attention
   544,944.3 + decode attention 945,566.9 + KV read 3,533,614.3 = 8,179,393 cycles (+11.3 %
   against 7,349,613); the KV read and linear terms alone leave 660,731 cycles for both
   attentions, so the decode attention must be ≈ 115,787 cycles, i.e. an operand of only ~1/8 of
   4096 × 8448. A width of kv = Hkv·d = 1024 in place of the decode context (QK (15, 1024, 4096),
   PV (15, 4096, 1024): 115,263.3 cycles) gives 7,349,089.6 cycles, −0.0071 % of the notebook.
   No combination of the natural candidates (widths 1, 15, 241, 256, 512, 1024, 4096, 4615,
   4856, 8448, ...; KV reads with/without the prefill part; contraction D/kv/d) reproduces the
   figure to the cycle, so this is the closest reconstruction, documented as such. Fixed mode
   attends over the decode context and also reads the prefill part's past KV (2·B·ctx_p·kv·b).

Where the notebook's batch folding is right and where not: folding tokens into M is right for
weights (one weight matrix shared by all tokens). Folding *requests* into M for attention
treats every request's K/V as one shared operand that is loaded once per tile, which it is not:
K and V are per request and KV head. The notebook half-compensates by adding the KV read as
its own op. layerlab's own ``tiling`` estimator (analytical.estimators) does not fold requests
and bounds traffic between compulsory and no-reuse traffic; use it for new numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytical.hardware import HardwareSpec
from analytical.ops import DTYPES, normalise_choice, normalise_dtype
from foundation.errors import InputError
from workloads.models import ModelConfig

#: The estimators the notebook had.
NOTEBOOK_ESTIMATORS = ("simple", "tiling")
#: Operand kinds: activation x weight, activation x activation, KV-cache read / store.
KINDS = ("AW", "AA", "KV_READ", "KV_STORE")
#: The notebook's √3 as it wrote it.
NOTEBOOK_SQRT3 = 1.73


@dataclass(frozen=True)
class ChunkShape:
    seq: int  # prefill tokens in the chunk
    context: int  # their past tokens
    decode_tokens: int
    decode_context: int


def notebook_chunk_shape(chunk: int, input_len: int, output_len: int) -> ChunkShape:
    """layerlab's exact-shape reading of the notebook's split (rounded, √3): ``--notebook-chunk``.

    decode tokens round(chunk·out/(in+out)) at context round(in + out/2); prefill tokens the rest,
    at a context of round(in/√3 − p/2). For the notebook's own integer arithmetic (what
    ``--notebook`` uses) see ``notebook_split``.
    """
    _check_chunk(chunk, input_len, output_len)
    decode = round(chunk * output_len / (input_len + output_len))
    prefill = max(chunk - decode, 1)
    decode = chunk - prefill
    context = max(0, round(input_len / math.sqrt(3) - prefill / 2))
    return ChunkShape(prefill, context, decode, round(input_len + output_len / 2))


def notebook_split(chunk: int, input_len: int, output_len: int) -> ChunkShape:
    """The notebook's own split: ``//``, ``int()`` and 1.73 (decision 5 of the module docstring).

    >>> notebook_split(256, 8192, 512)
    ChunkShape(seq=241, context=4615, decode_tokens=15, decode_context=8448)
    """
    _check_chunk(chunk, input_len, output_len)
    decode = chunk * output_len // (input_len + output_len)
    prefill = chunk - decode
    context = max(0, int(input_len / NOTEBOOK_SQRT3) - prefill // 2)
    return ChunkShape(prefill, context, decode, input_len + output_len // 2)


def _check_chunk(chunk: int, input_len: int, output_len: int) -> None:
    if chunk < 1 or input_len < 1 or output_len < 0:
        raise InputError(
            f"notebook chunk approximation needs chunk >= 1, input >= 1, output >= 0; "
            f"got {chunk}, {input_len}, {output_len}"
        )


# -- the notebook's part --------------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookPart:
    """A machine in the notebook's units: MACs per cycle, bytes per second, cache bytes."""

    name: str
    cores: int
    clock_hz: float
    macs_per_cycle_per_core: float
    bandwidth_bytes_per_s: float
    cache_bytes: float

    @property
    def macs_per_cycle(self) -> float:
        return self.cores * self.macs_per_cycle_per_core

    @property
    def bytes_per_cycle(self) -> float:
        return self.bandwidth_bytes_per_s / self.clock_hz

    @classmethod
    def from_spec(cls, hw: HardwareSpec, dtype: str) -> NotebookPart:
        """MAC rate = FLOP/clk/CU of the dtype's matrix class / 2; bandwidth and the last-level
        cache as the spec holds them (the notebook's parts are stored in its binary units:
        342 GiB/s, 36 MiB)."""
        cls_name = DTYPES[dtype][1]
        per_cu = hw.flops_per_clock_per_cu.get(cls_name)
        if per_cu is None and cls_name == "fp32_matrix":
            per_cu = hw.flops_per_clock_per_cu.get("fp32_vector")
        if per_cu is None:
            raise InputError(f"hardware {hw.name!r} has no {cls_name} peak; pick another --dtype or machine")
        cache = hw.last_level_cache_bytes
        if cache <= 0:
            raise InputError(f"hardware {hw.name!r} has no L2/LLC size; the notebook's tiling needs one")
        return cls(hw.name, hw.compute_units, hw.clock_hz, per_cu / 2.0, hw.dram_bandwidth_bytes_per_s, cache)


# -- the notebook's op list -----------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookShape:
    phase: str
    batch: int
    seq: int  # prefill: tokens per request; chunked: prefill tokens of the chunk; decode: 1
    context: int  # decode: past tokens; chunked: the prefill part's context
    decode_tokens: int = 0
    decode_context: int = 0


class _OpList:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def gemm(self, op: str, module: str, kind: str, m: float, n: float, k: float, batch: float = 1) -> None:
        self.rows.append(
            {
                "op": op,
                "module": module,
                "kind": kind,
                "m": m,
                "n": n,
                "k": k,
                "batch": batch,
                "kv_bytes": 0.0,
            }
        )

    def memory(self, op: str, module: str, kind: str, nbytes: float) -> None:
        self.rows.append(
            {"op": op, "module": module, "kind": kind, "m": 0, "n": 0, "k": 0, "batch": 0, "kv_bytes": nbytes}
        )


def _attention(
    ops: _OpList, suffix: str, rows: float, width: float, requests: float, model: ModelConfig, bugs: bool
) -> None:
    """QK and PV of ``requests`` requests with ``rows`` query tokens over ``width`` keys each."""
    module = "model.layers.{i}.self_attn"
    if bugs:  # contraction over the hidden size, no heads, no GQA fold (decision 2)
        d_model = model.hidden_size
        ops.gemm("attn_qk" + suffix, module, "AA", rows, width, d_model, requests)
        ops.gemm("attn_pv" + suffix, module, "AA", rows, d_model, width, requests)
        return
    g, hkv, d = model.group_size, model.num_key_value_heads, model.head_dim
    ops.gemm("attn_qk" + suffix, module, "AA", g * rows, width, d, requests * hkv)
    ops.gemm("attn_pv" + suffix, module, "AA", g * rows, d, width, requests * hkv)


def notebook_ops(model: ModelConfig, shape: NotebookShape, dtype: str, bugs: bool = False) -> pd.DataFrame:
    """The notebook's op list of one layer for one shape, with MACs and weight/KV bytes."""
    if model.is_moe:
        raise InputError(f"--notebook models dense layers only; {model.name} is a mixture of experts")
    b = float(DTYPES[dtype][0])
    dmod, ffn, kv = model.hidden_size, model.intermediate_size, model.kv_size
    q = model.q_size
    phase = shape.phase
    if phase == "prefill":
        tokens = shape.batch * shape.seq
    elif phase == "decode":
        tokens = shape.batch
    else:
        tokens = shape.batch * shape.seq + shape.decode_tokens
    ops = _OpList()
    p = "model.layers.{i}"
    ops.gemm("qkv_proj", f"{p}.self_attn.qkv_proj", "AW", tokens, q + 2 * kv, dmod)
    if phase == "prefill":
        _attention(ops, "", shape.seq, shape.seq, shape.batch, model, bugs)
    elif phase == "decode":
        _attention(ops, "", 1, shape.context, shape.batch, model, bugs)
        ops.memory("kv_read", f"{p}.self_attn", "KV_READ", 2.0 * shape.batch * shape.context * kv * b)
    else:
        if shape.batch and shape.seq:
            _attention(ops, "", shape.seq, shape.context, shape.batch, model, bugs)
            if not bugs and shape.context:  # the prefill part's past K/V (decision 6)
                ops.memory("kv_read", f"{p}.self_attn", "KV_READ", 2.0 * shape.batch * shape.context * kv * b)
        if shape.decode_tokens:
            width = kv if bugs else shape.decode_context  # decision 6
            _attention(ops, "_decode", 1, width, shape.decode_tokens, model, bugs)
            ops.memory(
                "kv_read_decode",
                f"{p}.self_attn",
                "KV_READ",
                2.0 * shape.decode_tokens * shape.decode_context * kv * b,
            )
    ops.memory("kv_store", f"{p}.self_attn", "KV_STORE", 2.0 * tokens * kv * b)
    ops.gemm("o_proj", f"{p}.self_attn.o_proj", "AW", tokens, dmod, q)
    ops.gemm("ffn_up", f"{p}.mlp.up_proj", "AW", tokens, ffn, dmod)
    if model.gated_mlp:
        ops.gemm("ffn_gate", f"{p}.mlp.gate_proj", "AW", tokens, ffn, dmod)
    ops.gemm("ffn_down", f"{p}.mlp.down_proj", "AW", tokens, dmod, ffn)
    frame = pd.DataFrame(ops.rows)
    for col in ("m", "n", "k", "batch"):
        frame[col] = frame[col].astype(float)
    frame["macs"] = frame["m"] * frame["n"] * frame["k"] * frame["batch"]
    is_aw = (frame["kind"] == "AW").to_numpy()
    frame["weight_bytes"] = np.where(is_aw, frame["n"] * frame["k"] * b, 0.0)
    frame["kv_read_bytes"] = np.where(frame["kind"] == "KV_READ", frame["kv_bytes"], 0.0)
    frame["kv_write_bytes"] = np.where(frame["kind"] == "KV_STORE", frame["kv_bytes"], 0.0)
    frame["elem_bytes"] = b
    return frame.drop(columns="kv_bytes")


# -- the notebook's estimators -------------------------------------------------------------------


def notebook_tiles(
    m: np.ndarray, n: np.ndarray, k: np.ndarray, elems: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile sides (tm, tn, tk) as the notebook sized them (decision 4): fractional, clipped."""
    from analytical.estimators import tile_sides

    tm, tn, tk = tile_sides(m.astype(float), n.astype(float), k.astype(float), elems, whole=False)
    return tm, tn, tk


def notebook_simple(ops: pd.DataFrame, part: NotebookPart) -> np.ndarray:
    """Seconds per op: max(MACs / MAC rate, (weight + KV) bytes / BW); activations ignored."""
    rate = part.macs_per_cycle * part.clock_hz
    nbytes = (
        ops["weight_bytes"].to_numpy() + ops["kv_read_bytes"].to_numpy() + ops["kv_write_bytes"].to_numpy()
    )
    return np.maximum(ops["macs"].to_numpy() / rate, nbytes / part.bandwidth_bytes_per_s)


def notebook_tiling(ops: pd.DataFrame, part: NotebookPart) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cycles per op, and (compute cycles, traffic cycles) of its GEMM tiles (decision 4).

    GEMMs: batch folded into M to square up the output, tiles filling the cache, per tile the
    larger of compute and A+B tile traffic, times the (fractional) tile count. KV reads stream
    at bandwidth; the KV store has no term.
    """
    b = ops["elem_bytes"].to_numpy()
    m, n, k, batch = (ops[c].to_numpy(dtype=float) for c in ("m", "n", "k", "batch"))
    gemm = (batch > 0) & (m > 0)
    safe_m = np.where(gemm, m, 1.0)
    fold = np.where(
        gemm, np.clip(np.minimum(batch, np.floor(np.where(gemm, n, 1.0) / safe_m)), 1.0, None), 1.0
    )
    mf = safe_m * fold
    rest = np.where(gemm, batch / fold, 0.0)
    nn, kk = np.where(gemm, n, 1.0), np.where(gemm, k, 1.0)
    tm, tn, tk = notebook_tiles(mf, nn, kk, part.cache_bytes / float(b[0]) if len(b) else 1.0)
    tiles = mf * nn * kk / (tm * tn * tk) * rest
    compute = tm * tn * tk / part.macs_per_cycle
    traffic = (tm * tk + tk * tn) * b / part.bytes_per_cycle
    cycles = np.where(gemm, tiles * np.maximum(compute, traffic), 0.0)
    kind = ops["kind"].to_numpy()
    cycles = np.where(kind == "KV_READ", ops["kv_read_bytes"].to_numpy() / part.bytes_per_cycle, cycles)
    return cycles, np.where(gemm, tiles * compute, 0.0), np.where(gemm, tiles * traffic, 0.0)


# -- the table the CLI prints ------------------------------------------------------------------------


def notebook_shape(
    phase: str, batch: int, seq: int | None, context: int, decode_tokens: int, decode_context: int | None
) -> NotebookShape:
    phase = normalise_choice("phase", phase, ("prefill", "decode", "chunked"))
    values = {"batch": batch, "seq": seq or 0, "context": context, "decode_tokens": decode_tokens}
    for name, value in values.items():
        if value < 0:
            raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if phase == "decode":
        if batch < 1:
            raise InputError(f"--batch must be >= 1, got {batch}")
        return NotebookShape("decode", batch, 1, context)
    if not seq and phase == "prefill":
        raise InputError("--phase prefill needs --seq (tokens per request)")
    if phase == "prefill":
        if batch < 1:
            raise InputError(f"--batch must be >= 1, got {batch}")
        return NotebookShape("prefill", batch, int(seq or 0), 0)
    dc = context if decode_context is None else decode_context
    if batch * (seq or 0) + decode_tokens < 1:
        raise InputError("chunked prefill needs tokens: --seq >= 1 or --decode-tokens >= 1")
    return NotebookShape("chunked", batch, int(seq or 0), context, decode_tokens, dc)


def notebook_table(
    model: ModelConfig,
    hardware: HardwareSpec | Sequence[HardwareSpec],
    shape: NotebookShape,
    dtype: str | None = None,
    estimator: str = "tiling",
    bugs: bool = False,
    layer: int = 0,
) -> pd.DataFrame:
    """One row per notebook op and machine, in the pipeline's column contract plus notebook columns.

    ``flops`` = 2 × MACs; activations are 0 bytes (the notebook ignores them); ``t_simple_s`` and
    ``t_tiling_s`` are the notebook's two estimators, ``macs``, ``simple_cycles`` and
    ``tiling_cycles`` its own units; ``bound`` is the tiling's per-tile winner for GEMMs.
    """
    from analytical.pipeline import COLUMNS

    estimator = normalise_choice("estimator", estimator, NOTEBOOK_ESTIMATORS)
    dtype = normalise_dtype(dtype or model.torch_dtype)
    ops = notebook_ops(model, shape, dtype, bugs)
    machines = [hardware] if isinstance(hardware, HardwareSpec) else list(hardware)
    frames = []
    for hw in machines:
        part = NotebookPart.from_spec(hw, dtype)
        t = ops.copy()
        t_simple = notebook_simple(ops, part)
        cycles, comp, traffic = notebook_tiling(ops, part)
        t_tiling = cycles / part.clock_hz
        rate = part.macs_per_cycle * part.clock_hz
        nbytes = (t["weight_bytes"] + t["kv_read_bytes"] + t["kv_write_bytes"]).to_numpy()
        t_compute = t["macs"].to_numpy() / rate
        t_memory = nbytes / part.bandwidth_bytes_per_s
        gemm = t["kind"].isin(["AW", "AA"]).to_numpy()
        bound = np.where(gemm, np.where(comp >= traffic, "compute", "memory"), "memory")
        chosen = t_simple if estimator == "simple" else t_tiling
        flops = 2.0 * t["macs"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            intensity = np.where(nbytes > 0, flops / nbytes, np.nan)
        t = t.assign(
            hardware=hw.name,
            model=model.name,
            engine="notebook",
            phase=shape.phase,
            layer=layer,
            module=[m.replace("{i}", str(layer)) for m in t["module"]],
            role=None,
            join=None,
            op_class=np.where(t["kind"] == "AW", "gemm", np.where(t["kind"] == "AA", "attention", "kv")),
            compute_class=np.where(gemm, DTYPES[dtype][1], ""),
            dtype=dtype,
            batch=shape.batch,
            seq=shape.seq,
            context=shape.context,
            decode_tokens=shape.decode_tokens,
            decode_context=shape.decode_context,
            flops=flops,
            act_in_bytes=0.0,
            act_out_bytes=0.0,
            total_bytes=nbytes,
            intensity=intensity,
            bound=bound,
            t_compute_s=t_compute,
            t_memory_s=t_memory,
            t_roofline_s=np.maximum(t_compute, t_memory),
            t_simple_s=t_simple,
            t_tiling_s=t_tiling,
            t_cache_s=np.nan,
            t_waves_s=np.nan,
            t_full_s=np.nan,
            t_launch_s=0.0,
            estimator=estimator,
            t_est_s=chosen,
            est_cycles=chosen * part.clock_hz,
            clock_hz=part.clock_hz,
            fits_l2=False,
            fits_llc=False,
            waves=0.0,
            gemm_m=t["m"],
            gemm_n=t["n"],
            gemm_k=t["k"],
            gemm_batch=t["batch"],
            simple_cycles=t_simple * part.clock_hz,
            tiling_cycles=cycles,
            notebook_bugs=bugs,
        )
        frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    extra = ["kind", "macs", "simple_cycles", "tiling_cycles", "notebook_bugs"]
    return out[[*COLUMNS, *extra]]
