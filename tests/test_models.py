"""Model configs: shipped facts, name resolution, HF field mapping and bad input."""

from __future__ import annotations

import json

import pytest

from foundation.errors import InputError
from workloads.models import CONFIG_DIR, list_models, load_model_config


@pytest.mark.parametrize("name", ["llama-3.2-1b", "Llama-3.2-1B", "meta-llama/Llama-3.2-1B", "LLAMA-3.2-1B"])
def test_names_are_case_insensitive_and_accept_repo_ids(name):
    model = load_model_config(name)
    assert model.name == "Llama-3.2-1B"
    assert model.repo_id == "meta-llama/Llama-3.2-1B"


def test_every_shipped_config_loads_and_is_verbatim_hf():
    assert sorted(list_models()) == sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    for name in list_models():
        raw = json.loads((CONFIG_DIR / f"{name}.json").read_text())
        assert not any(k.startswith("_layerlab") for k in raw)
        assert load_model_config(name).num_hidden_layers > 0


def test_llama_facts_match_anchors():
    m1 = load_model_config("llama-3.2-1b")
    assert (m1.hidden_size, m1.intermediate_size, m1.num_hidden_layers) == (2048, 8192, 16)
    assert (m1.num_attention_heads, m1.num_key_value_heads, m1.head_dim) == (32, 8, 64)
    assert m1.tie_word_embeddings and m1.vocab_size == 128256 and m1.group_size == 4
    assert m1.layer_params() == pytest.approx(60.8e6, rel=1e-3)
    m8 = load_model_config("llama-3.1-8b")
    assert m8.head_dim == 128 and not m8.tie_word_embeddings
    assert m8.layer_params() == pytest.approx(218.1e6, rel=1e-3)
    assert m8.kv_bytes_per_token(2) == 4096
    assert m1.kv_bytes_per_token(2) == 2048


def test_explicit_head_dim_wins(tmp_path):
    raw = json.loads((CONFIG_DIR / "llama-3.2-3b.json").read_text())
    assert raw["hidden_size"] // raw["num_attention_heads"] == 128
    raw["head_dim"] = 96
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert load_model_config(tmp_path).head_dim == 96
    assert load_model_config(tmp_path / "config.json").head_dim == 96


def test_gpt2_and_opt_field_names_are_mapped():
    gpt2 = load_model_config("gpt2")
    assert (gpt2.hidden_size, gpt2.intermediate_size, gpt2.num_hidden_layers) == (768, 3072, 12)
    assert gpt2.norm == "layernorm" and not gpt2.gated_mlp and gpt2.num_key_value_heads == 12
    assert gpt2.layer_params() == 7_087_872  # 124M = 12 layers + 38.6M wte + 0.8M wpe
    opt = load_model_config("facebook/opt-125m")
    assert (opt.intermediate_size, opt.activation, opt.torch_dtype) == (3072, "relu", "float16")
    assert opt.learned_positions and opt.norm == "layernorm"


def test_mixtral_moe_fields():
    moe = load_model_config("Mixtral-8x7B")
    assert moe.is_moe and (moe.num_local_experts, moe.num_experts_per_tok) == (8, 2)


def test_unknown_name_lists_close_matches():
    with pytest.raises(InputError, match=r"unknown model 'llama-3.2-1c'.*llama-3.2-1b"):
        load_model_config("llama-3.2-1c")


def test_missing_field_names_file_and_field(tmp_path):
    raw = json.loads((CONFIG_DIR / "llama-3.2-1b.json").read_text())
    del raw["hidden_size"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError) as err:
        load_model_config(path)
    assert str(path) in str(err.value) and "hidden_size" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("field", "value"), [("num_hidden_layers", -2), ("num_attention_heads", "x"), ("num_key_value_heads", 7)]
)
def test_bad_field_values(tmp_path, field, value):
    raw = json.loads((CONFIG_DIR / "llama-3.2-1b.json").read_text())
    raw[field] = value
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=field):
        load_model_config(tmp_path)


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{\n  'x': 1\n}")
    with pytest.raises(InputError, match="line 2"):
        load_model_config(bad)
    with pytest.raises(InputError, match="no such file"):
        load_model_config(str(tmp_path / "nope" / "config.json"))


def test_hub_is_never_used_without_the_flag():
    with pytest.raises(InputError, match="unknown model"):
        load_model_config("someone/some-model")
