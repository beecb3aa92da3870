"""Roles: every op of every engine/phase/model has a marker role, and roles join census kernels."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analytical import roles
from analytical.catalog import get_hardware
from analytical.ops import ATTENTION_IMPLS, ENGINES, PHASES, build_ops, make_shapes
from analytical.pipeline import estimate_layer
from workloads.drivers import DRIVERS
from workloads.drivers import markers as mk
from workloads.drivers.markers import LLAMA_LAYER_ROLES, MODULE_CODES
from workloads.models import list_models, load_config_file, load_model_config

COMBOS = list(itertools.product(list_models(), ENGINES, ATTENTION_IMPLS, PHASES))
#: Shapes per phase: a first prefill (no cache: HF's cache update has no kernel) and one with
#: context, so rows that only exist with work are seen both ways.
SHAPES = {"prefill": {"seq": [16, 16], "context": [0, 32]}, "decode": {"context": [0, 64]}}
SHAPES["chunked"] = {"seq": [8, 8], "context": [0, 32], "decode_tokens": [0, 3]}


def _ops(model: str, engine: str, attention: str, phase: str) -> pd.DataFrame:
    shapes = make_shapes(phase, **SHAPES[phase])
    return build_ops(
        load_model_config(model),
        shapes,
        engine=engine,
        attention=attention,
        layers=[0, 1],
        include_model_ops=True,
    )


@pytest.fixture(scope="module")
def all_ops() -> pd.DataFrame:
    frames = []
    for model, engine, attention, phase in COMBOS:
        ops = _ops(model, engine, attention, phase)
        ops["attention"] = attention
        frames.append(ops.astype({c: str for c in ("model", "engine", "op", "module", "role", "phase")}))
    return pd.concat(frames, ignore_index=True)


def test_every_op_has_a_role_in_the_marker_vocabulary(all_ops):
    assert roles.unmapped(all_ops) == []
    assert all_ops["role"].notna().all()
    assert set(all_ops["role"]) <= set(MODULE_CODES) | set(roles.WHOLE_ROLES)
    assert roles.ROLES[: len(MODULE_CODES)] == tuple(MODULE_CODES)


def test_role_table_is_well_formed_and_every_row_is_used(all_ops):
    for rule in roles.ROLE_TABLE:
        assert rule.engine in ("*", *ENGINES), rule
        assert rule.role in roles.ROLES, rule
        assert rule.join in roles.JOINS, rule
        assert rule.note, rule
    used = {
        roles.rule_for(o, e) for e, o in all_ops[["engine", "op"]].drop_duplicates().itertuples(index=False)
    }
    assert [r for r in roles.ROLE_TABLE if r not in used] == []


def test_unknown_op_is_refused():
    assert roles.rule_for("warp_drive", "vllm") is None
    with pytest.raises(KeyError, match="warp_drive"):
        roles.role_of("warp_drive", "hf-eager")


@pytest.mark.parametrize("model, engine, attention, phase", COMBOS)
def test_join_column_agrees_with_the_table(model, engine, attention, phase):
    table = estimate_layer(
        load_model_config(model),
        get_hardware("gem5-mi300"),
        phase,
        engine=engine,
        attention=attention,
        layers="all",
        **{k: v[1] for k, v in SHAPES[phase].items()},
    )
    ops = table[table["op"] != "total"]
    assert ops["join"].notna().all() and ops["role"].notna().all()
    static = ops["op"].astype(str).map(lambda o: roles.rule_for(o, engine).join)
    # a row the table calls one-to-one is one-to-one in every layer, engine and shape
    assert (ops.loc[static == "op", "join"] == "op").all()
    # one-to-one means exactly one op of that role in that layer
    per_role = ops.groupby(["layer", "role"], observed=True)["op"].nunique()
    for (layer, role), count in per_role.items():
        joins = set(ops.loc[(ops["layer"] == layer) & (ops["role"] == role), "join"])
        expected = {"op"} if count == 1 and role not in roles.WHOLE_ROLES else {"role"}
        assert joins == expected, (layer, role)
    totals = table[table["op"] == "total"]
    assert len(totals) == 1 and totals["role"].isna().all() and totals["join"].isna().all()


def test_attention_core_joins_per_role_under_hf_eager():
    table = estimate_layer(
        load_model_config("llama-3.2-1b"), get_hardware("gem5-mi300"), "decode", context=64
    )
    joins = table.set_index("op")[["role", "join"]].astype(str)
    for op in ("rope", "kv_store", "repeat_kv", "attn_qk", "softmax", "attn_pv"):
        assert tuple(joins.loc[op]) == ("attention", "role"), op
    for op in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "act_fn"):
        assert tuple(joins.loc[op]) == (op, "op"), op
    assert tuple(joins.loc["act_mul"]) == ("mlp", "op")
    assert tuple(joins.loc["attn_residual"]) == ("layer", "role")


def test_estimate_json_carries_role_and_join(capsys):
    from orchestrator.cli import main

    argv = ["estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300", "--phase", "decode"]
    assert main([*argv, "--context", "128", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rope = next(r for r in rows if r["op"] == "rope")
    assert (rope["role"], rope["join"]) == ("attention", "role")
    assert all(r["role"] in roles.ROLES and r["join"] in roles.JOINS for r in rows)


def _hook_role(module: str, layer_roles: dict[str, str], model_roles: dict[str, str]) -> str:
    """The role the census gives a kernel of ``module``: the innermost hooked module around it."""
    parts = module.split(".")
    for prefix in ("model.layers.", "transformer.h.", "model.decoder.layers."):
        if module.startswith(prefix):
            inside = module[len(prefix) :].split(".")[1:]  # drop the layer index
            for cut in range(len(inside), 0, -1):
                if ".".join(inside[:cut]) in layer_roles:
                    return layer_roles[".".join(inside[:cut])]
            return "layer"
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in model_roles:
            return model_roles[".".join(parts[:cut])]
    return "step"


def test_hf_eager_roles_follow_the_hf_driver_hooks(all_ops):
    # The hf driver hooks modules by name; an op's module path must land in the marker its role names.
    from workloads.drivers import hf

    hf_ops = all_ops[all_ops["engine"] == "hf-eager"][["module", "role"]].drop_duplicates()
    for module, role in hf_ops.itertuples(index=False):
        assert _hook_role(module, hf.LAYER_ROLES, hf.MODEL_ROLES) == role, module
    llama = all_ops[(all_ops["engine"] == "hf-eager") & all_ops["model"].str.startswith("llama")]
    for module, role in llama[["module", "role"]].drop_duplicates().itertuples(index=False):
        if module.startswith("model.layers."):  # the layer driver hooks the same names
            assert _hook_role(module, LLAMA_LAYER_ROLES, {}) == role, module


def test_driver_engine_names_known_drivers_and_engines():
    assert set(roles.DRIVER_ENGINE) == set(DRIVERS)
    for driver, (engine, attention) in roles.DRIVER_ENGINE.items():
        assert engine in ENGINES, driver
        assert attention in ATTENTION_IMPLS or (attention is None and engine == "vllm"), driver


def test_census_labels_of_the_catch_all_roles():
    from workloads import census

    # a step marker around layer 0, a layer marker around one q_proj marker: kernels 0..3
    step, whole_layer, q_proj = mk.encode(0), mk.encode(0, 0), mk.encode(0, 0, "q_proj")
    regions = [
        {"marker_id": step, "first_kernel": 0, "end": 4, "blits": 0},
        {"marker_id": whole_layer, "first_kernel": 1, "end": 4, "blits": 0},
        {"marker_id": q_proj, "first_kernel": 2, "end": 3, "blits": 0},
    ]
    frame = census._region_frame(regions, {}, {0: "prefill"})
    innermost = [step, whole_layer, q_proj, whole_layer]
    kernels = census._kernel_frame(
        [{"kernel_index": i, "marker_id": m} for i, m in enumerate(innermost)], frame
    )
    assert list(kernels["module"]) == ["step", "layer", "q_proj", "layer"]
    assert set(kernels["module"]) - set(mk.MODULE_CODES) == set(roles.WHOLE_ROLES)


def test_roles_import_no_torch():
    code = "import sys, analytical.roles, analytical.pipeline; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- end to end on the CPU: census kernels of the real drivers carry the roles of the ops ----------


def _kernel_roles(tmp_path: Path, trace: Path, table: Path) -> pd.DataFrame:
    from workloads import census
    from workloads.traces import read_trace

    run = tmp_path / "census"
    run.mkdir()
    census.write_events(run, census.events_from_trace(read_trace(trace)))
    kernel_map = census.build_kernel_map(run, table)
    return kernel_map.kernels


def _assert_roles_join(kernels: pd.DataFrame, ops: pd.DataFrame, step: int) -> None:
    in_layer = kernels[(kernels["step"] == step) & (kernels["layer"] == 1)]
    kernel_roles = set(in_layer["module"])
    op_roles = set(ops.loc[ops["layer"] == 1, "role"].astype(str))
    assert kernel_roles == op_roles  # no kernels without ops, no ops without kernels, per role
    for role in op_roles:  # one-to-one roles do hold kernels (the op ran there)
        assert (in_layer["module"] == role).sum() >= 1, role


@pytest.mark.torch
def test_layer_driver_kernels_join_hf_eager_roles(tmp_path):
    pytest.importorskip("torch")
    from workloads.drivers import layer

    config = tmp_path / "config.json"
    raw = {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "vocab_size": 256,
        "model_type": "llama",
        "hidden_act": "silu",
    }
    config.write_text(json.dumps(raw))
    trace, table = tmp_path / "trace.json", tmp_path / "markers.json"
    argv = ["--config", str(config), "--num-layers", "2", "-C", "8", "-S", "4", "-D", "1"]
    argv += ["--dtype", "fp32", "--device", "cpu", "--profile", str(trace), "--marker-table", str(table)]
    assert layer.main(argv) == 0
    kernels = _kernel_roles(tmp_path, trace, table)
    engine, attention = roles.DRIVER_ENGINE["layer"]
    model = load_config_file(config)
    for step, phase in ((0, "prefill"), (1, "decode")):
        shape = {"seq": 4, "context": 8} if phase == "prefill" else {"context": 12}
        ops = estimate_layer(
            model,
            get_hardware("gem5-mi300"),
            phase,
            engine=engine,
            attention=attention,
            layers="0-1",
            **shape,
        )
        _assert_roles_join(kernels, ops, step)


def _tiny_hf(family: str, root: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    small = {"vocab_size": 256}
    if family == "llama":
        model = transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                **small,
            )
        )
    elif family == "gpt2":
        model = transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **small
            )
        )
    else:
        model = transformers.OPTForCausalLM(
            transformers.OPTConfig(
                hidden_size=64,
                ffn_dim=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=64,
                word_embed_proj_dim=64,
                **small,
            )
        )
    model.save_pretrained(root / family)
    return root / family


@pytest.mark.torch
@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_hf_driver_kernels_join_hf_eager_roles(tmp_path, family):
    pytest.importorskip("torch")
    from workloads.drivers import hf

    model_dir = _tiny_hf(family, tmp_path)
    trace, table = tmp_path / "trace.json", tmp_path / "markers.json"
    argv = ["--model-dir", str(model_dir), "-S", "5", "-D", "2", "--dtype", "fp32", "--device", "cpu"]
    assert hf.main([*argv, "--profile", str(trace), "--marker-table", str(table)]) == 0
    kernels = _kernel_roles(tmp_path, trace, table)
    engine, attention = roles.DRIVER_ENGINE["hf"]
    model = load_config_file(model_dir / "config.json")
    ops = estimate_layer(
        model,
        get_hardware("gem5-mi300"),
        "decode",
        engine=engine,
        attention=attention,
        layers="all",
        context=5,
    )
    _assert_roles_join(kernels, ops, 1)
    # model level: every op's role holds kernels; kernels may also sit in roles no op models
    # (Llama's rotary_emb cos/sin tables, the step's masks and argmax)
    outside = set(kernels.loc[(kernels["step"] == 1) & kernels["layer"].isna(), "module"])
    assert set(ops.loc[ops["layer"] == -1, "role"].dropna().astype(str)) <= outside


def test_doc_table_names_every_rule_and_driver():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "roles.md").read_text(encoding="utf-8")
    missing = [rule.op for rule in roles.ROLE_TABLE if f"`{rule.op}`" not in doc]
    assert missing == [], "docs/roles.md lacks rows for these ROLE_TABLE ops"
    for driver, (engine, _) in roles.DRIVER_ENGINE.items():
        assert f"| `{driver}` | {engine} |" in doc, driver
