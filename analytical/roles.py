"""Roles: the join key between estimated ops and simulated kernels.

A guest driver brackets each module's kernels with a marker whose module code is a *role* in
``workloads.drivers.markers.MODULE_CODES``; the census labels every kernel with the role of
the innermost open marker (``workloads.census``). An analytical op gets the role whose marker
its kernels run under, so ``ops.role == kernels.module`` joins the two tables.

Two more labels come from the census, not from ``MODULE_CODES``: kernels inside a decoder
layer but outside every role marker are labelled ``layer`` (module code 0 inside a layer:
HF's residual adds), kernels of a step outside every layer and role marker ``step`` (module
code 0 outside a layer: GPT-2/OPT's embedding add, masks, sampling). Those two are catch-all
regions, so ops in them always join per role.

Join granularity (column ``join`` of ``analytical.pipeline.estimate_layer``): ``op`` where the
op is the only op of its role in that layer, engine and shape (the role's kernels are that op's
kernels: sum them and compare), ``role`` where several ops share a role (sum kernels and ops
per role, e.g. rope, kv_store, attn_qk, softmax and attn_pv all run inside ``attention``).
``ROLE_TABLE`` is the one table; docs/roles.md renders it with the reasons.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workloads.drivers.markers import MODULE_CODES

#: Census labels of module code 0: inside a layer outside any role marker / outside any layer.
WHOLE_ROLES = ("layer", "step")
#: Every role an op can get: the marker vocabulary, then the two catch-all census labels.
ROLES = (*MODULE_CODES, *WHOLE_ROLES)
JOINS = ("op", "role")


@dataclass(frozen=True)
class RoleRule:
    """``op`` (fnmatch pattern) under ``engine`` (``*`` = any) runs under marker ``role``."""

    op: str
    engine: str
    role: str
    join: str  # "op": one op per role wherever it occurs; "role": shares its role with others
    note: str


#: Op name pattern → role, first match wins (engine-specific rows before ``*`` rows).
ROLE_TABLE: tuple[RoleRule, ...] = (
    # --- attention block
    RoleRule("attn_norm", "*", "input_norm", "op", "vLLM after layer 0: fused residual add + RMSNorm"),
    RoleRule("q_proj", "*", "q_proj", "op", "Llama/OPT self_attn.q_proj"),
    RoleRule("k_proj", "*", "k_proj", "op", "Llama/OPT self_attn.k_proj"),
    RoleRule("v_proj", "*", "v_proj", "op", "Llama/OPT self_attn.v_proj"),
    RoleRule("qkv_proj", "*", "qkv_proj", "op", "GPT-2 attn.c_attn; vLLM's fused QKV GEMM"),
    RoleRule("rope", "vllm", "rotary_emb", "op", "vLLM self_attn.rotary_emb, a module nested in attention"),
    RoleRule(
        "rope", "hf-eager", "attention", "role", "apply_rotary_pos_emb: a function in self_attn, no module"
    ),
    RoleRule("kv_store", "*", "attention", "role", "HF DynamicCache.update / vLLM cache write in attention"),
    RoleRule("repeat_kv*", "*", "attention", "role", "HF eager GQA copy inside self_attn"),
    RoleRule("attn_qk*", "*", "attention", "role", "HF eager Q·Kᵀ matmul (+ scale, mask) inside self_attn"),
    RoleRule("softmax*", "*", "attention", "role", "HF eager softmax inside self_attn"),
    RoleRule("attn_pv*", "*", "attention", "role", "HF eager P·V matmul (+ head merge copy)"),
    RoleRule("attn", "*", "attention", "role", "fused attention (SDPA / vLLM flash); shares with kv_store"),
    RoleRule("attn_decode", "*", "attention", "role", "chunked prefill: the decode requests' attention"),
    RoleRule("o_proj", "*", "o_proj", "op", "Llama o_proj, GPT-2 attn.c_proj, OPT out_proj"),
    RoleRule("attn_residual", "*", "layer", "role", "residual add in the layer's forward, no module"),
    # --- MLP block
    RoleRule("mlp_norm", "*", "post_attention_norm", "op", "GPT-2 ln_2, OPT final_layer_norm"),
    RoleRule("gate_proj", "*", "gate_proj", "op", "HF mlp.gate_proj"),
    RoleRule("up_proj", "*", "up_proj", "op", "HF mlp.up_proj"),
    RoleRule("gate_up_proj", "*", "mlp", "op", "vLLM fused gate/up: no own code, the only op left in mlp"),
    RoleRule("act_fn", "*", "act_fn", "op", "SiLU/GELU module (vLLM SiluAndMul includes the multiply)"),
    RoleRule("act_mul", "*", "mlp", "op", "act(gate) * up in the MLP's forward, no module"),
    RoleRule("down_proj", "*", "down_proj", "op", "HF mlp.down_proj"),
    RoleRule("fc1", "*", "up_proj", "op", "GPT-2 mlp.c_fc, OPT fc1"),
    RoleRule("fc2", "*", "down_proj", "op", "GPT-2 mlp.c_proj, OPT fc2"),
    RoleRule("router", "*", "mlp", "role", "MoE gate; the MoE block is marked as mlp"),
    RoleRule("experts_*", "*", "mlp", "role", "MoE expert GEMMs and activation, unmarked inside mlp"),
    RoleRule("moe_combine", "*", "mlp", "role", "MoE weighted sum of expert outputs"),
    RoleRule("mlp_residual", "*", "layer", "role", "residual add in the layer's forward, no module"),
    # --- model level (layer -1, ``--layers all``)
    RoleRule("embed_tokens", "*", "embed", "op", "token embedding gather"),
    RoleRule("embed_positions", "*", "pos_embed", "op", "GPT-2 wpe, OPT embed_positions"),
    RoleRule("embed_add", "*", "step", "role", "token + position add in the model's forward, no module"),
    RoleRule("final_norm", "*", "final_norm", "op", "model.norm, ln_f, final_layer_norm"),
    RoleRule("lm_head", "*", "lm_head", "op", "LM head GEMM"),
)

#: Guest driver → (engine, attention impl) of the analytical model that matches it; ``None``:
#: the engine has one attention kind (vLLM is always flash-style, ``--attention`` is ignored).
DRIVER_ENGINE: dict[str, tuple[str, str | None]] = {
    "hf": ("hf-eager", "eager"),  # hf.py loads with attn_implementation="eager"
    "layer": ("hf-eager", "eager"),  # layer.py: eager matmul/softmax, HF repeat_kv copies
    "vllm": ("vllm", None),
}


def rule_for(op: str, engine: str) -> RoleRule | None:
    """The first rule of ``ROLE_TABLE`` that matches ``op`` under ``engine``, else None."""
    for rule in ROLE_TABLE:
        if rule.engine in ("*", engine) and fnmatch.fnmatchcase(op, rule.op):
            return rule
    return None


def role_of(op: str, engine: str) -> str:
    rule = rule_for(op, engine)
    if rule is None:
        raise KeyError(f"op {op!r} under engine {engine!r} has no role in analytical.roles.ROLE_TABLE")
    return rule.role


def roles_column(ops: pd.DataFrame) -> pd.Categorical:
    """The ``role`` of every row of an op table (columns ``op`` and ``engine``), categories ``ROLES``.

    One lookup per distinct (engine, op) pair; an op without a rule raises ``KeyError`` (a new
    op in ``analytical.ops`` needs a row in ``ROLE_TABLE``).
    """
    engine, op = pd.Categorical(ops["engine"]), pd.Categorical(ops["op"])
    lookup = np.array(
        [[ROLES.index(role_of(str(o), str(e))) for o in op.categories] for e in engine.categories],
        dtype=np.int32,
    ).reshape(len(engine.categories), len(op.categories))
    return pd.Categorical.from_codes(lookup[engine.codes, op.codes], categories=list(ROLES))


def add_roles(ops: pd.DataFrame) -> pd.DataFrame:
    """``ops`` with a ``role`` column inserted after ``module`` (in place, also returned)."""
    role = roles_column(ops)
    if "role" in ops.columns:
        ops["role"] = role
    else:
        ops.insert(
            ops.columns.get_loc("module") + 1 if "module" in ops.columns else len(ops.columns), "role", role
        )
    return ops


def join_column(table: pd.DataFrame, keys: list[str]) -> pd.Categorical:
    """``op`` where a row's op is the only op of its role within ``keys`` (plus ``role``), else ``role``.

    ``keys`` name one layer of one step (model, engine, phase, layer, shape, hardware...). The
    catch-all roles ``layer`` and ``step`` always give ``role``: their kernels include work no
    op models. Rows without a role (the ``total`` rows) get a missing value.
    """
    group = [*keys, "role"]
    count = table.groupby(group, sort=False, observed=True, dropna=False)["op"].transform("nunique")
    role = table["role"].astype(object)
    single = (count.to_numpy() == 1) & ~role.isin(WHOLE_ROLES).to_numpy()
    codes = np.where(single, 0, 1).astype(np.int8)
    codes[role.isna().to_numpy()] = -1
    return pd.Categorical.from_codes(codes, categories=list(JOINS))


def unmapped(ops: pd.DataFrame) -> list[tuple[str, str]]:
    """(engine, op) pairs of an op table with no rule in ``ROLE_TABLE`` (empty = all mapped)."""
    pairs = ops[["engine", "op"]].astype(str).drop_duplicates().itertuples(index=False)
    return [(e, o) for e, o in pairs if rule_for(o, e) is None]
