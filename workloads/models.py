"""Model configs: the shape facts of a Hugging Face causal LM, from its ``config.json``.

Every stage needs the same handful of numbers (hidden size, heads, KV heads, head_dim, layers,
MLP kind...). HF spells them differently per family (GPT-2 says ``n_embd``/``n_layer``, OPT says
``ffn_dim``), and models cannot be downloaded here, so the configs of the models we study ship
as data in ``workloads/model_configs/`` (verbatim HF ``config.json`` files) and any local
``config.json`` can be loaded too. ``ModelConfig`` is the one normalised view of all of them.

Name lookup is case-insensitive and accepts the HF repo id (``meta-llama/Llama-3.2-1B``), the
bare model name (``Llama-3.2-1B``) or our short name (``llama-3.2-1b``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InputError, unknown_name

CONFIG_DIR = Path(__file__).with_name("model_configs")


@dataclass(frozen=True)
class ShippedModel:
    """One shipped config: its file, its display name, the HF repo id and extra aliases."""

    short_name: str  # file stem in model_configs/, the canonical CLI name
    display_name: str
    repo_id: str
    aliases: tuple[str, ...] = ()


#: The models whose config.json ships with layerlab (values copied from their HF repos).
SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel("llama-3.2-1b", "Llama-3.2-1B", "meta-llama/Llama-3.2-1B", ("llama-3.2-1b-instruct",)),
    ShippedModel("llama-3.2-3b", "Llama-3.2-3B", "meta-llama/Llama-3.2-3B", ("llama-3.2-3b-instruct",)),
    ShippedModel(
        "llama-3.1-8b",
        "Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B",
        ("llama-3.1-8b-instruct", "meta-llama-3.1-8b", "meta-llama-3.1-8b-instruct"),
    ),
    ShippedModel("gpt2", "GPT-2", "openai-community/gpt2", ("gpt-2", "gpt2-124m", "gpt-2-124m")),
    ShippedModel("opt-125m", "OPT-125m", "facebook/opt-125m"),
    ShippedModel("mixtral-8x7b", "Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1", ("mixtral-8x7b-v0.1",)),
)

_GATED_ACTIVATIONS = ("silu", "swish", "gelu_pytorch_tanh_gated")

#: HF ``model_type`` values whose layer structure analytical/ops.py models: Llama-style
#: (RMSNorm, RoPE, GQA, SwiGLU; Mistral is the same layer, Mixtral adds top-k experts), GPT-2 and
#: OPT (LayerNorm, learned positions, fc1/fc2). Anything else (mamba, qwen2's QKV bias, gemma's
#: extra norms...) would be estimated as one of these, wrongly, so it is refused.
SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "mixtral", "opt")


@dataclass(frozen=True)
class ModelConfig:
    """Normalised shape facts of one decoder-only LM.

    ``head_dim`` is explicit when the config gives it (Llama-3.2 does) and ``hidden/heads``
    otherwise. ``num_local_experts`` is 1 for dense models. ``norm`` is ``rmsnorm`` or
    ``layernorm``; ``gated_mlp`` says whether the MLP is gate/up/down (SwiGLU) or fc1/fc2.
    """

    name: str
    architecture: str  # HF class, e.g. LlamaForCausalLM
    family: str  # HF model_type: llama | mixtral | gpt2 | opt | ...
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    norm: str  # "rmsnorm" | "layernorm"
    activation: str  # HF activation name: silu, gelu_new, relu, ...
    gated_mlp: bool
    attention_bias: bool = False
    mlp_bias: bool = False
    learned_positions: bool = False  # GPT-2/OPT add a position-embedding table instead of RoPE
    num_local_experts: int = 1
    num_experts_per_tok: int = 1
    torch_dtype: str = "bfloat16"
    repo_id: str | None = None
    source: str = ""  # the file the facts came from
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 1

    @property
    def group_size(self) -> int:
        """Query heads per KV head (GQA factor G); 1 for plain multi-head attention."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def layer_params(self) -> int:
        """Parameters of one decoder layer (all experts for MoE), norms and biases included."""
        d, f = self.hidden_size, self.intermediate_size
        attn = d * (self.q_size + 2 * self.kv_size) + self.q_size * d
        if self.attention_bias:
            attn += self.q_size + 2 * self.kv_size + d
        mlp_mats = 3 if self.gated_mlp else 2
        mlp = mlp_mats * d * f
        if self.mlp_bias:
            mlp += (2 * f if self.gated_mlp else f) + d
        mlp *= self.num_local_experts
        router = d * self.num_local_experts if self.is_moe else 0
        norms = 2 * d * (2 if self.norm == "layernorm" else 1)
        return attn + mlp + router + norms

    def kv_bytes_per_token(self, bytes_per_element: float = 2) -> float:
        """K and V bytes one token adds to the cache of one layer."""
        return 2 * self.kv_size * bytes_per_element


def list_models() -> list[str]:
    """Canonical short names of the shipped model configs."""
    return [m.short_name for m in SHIPPED]


def _lookup_table() -> dict[str, ShippedModel]:
    table: dict[str, ShippedModel] = {}
    for model in SHIPPED:
        names = {model.short_name, model.display_name, model.repo_id, model.repo_id.split("/", 1)[1]}
        names.update(model.aliases)
        for name in names:
            table[name.lower()] = model
    return table


def _require(raw: dict[str, Any], key: str, source: str, *alternatives: str) -> Any:
    for name in (key, *alternatives):
        if raw.get(name) is not None:
            return raw[name]
    names = " or ".join(repr(n) for n in (key, *alternatives))
    raise InputError(f"{source}: missing field {names}")


def _positive_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value <= 0:
        raise InputError(f"{source}: field {key!r} must be a positive integer, got {value!r}")
    return int(value)


def config_from_dict(
    raw: dict[str, Any], source: str = "config.json", name: str | None = None, repo_id: str | None = None
) -> ModelConfig:
    """Normalise one HF ``config.json`` dict; ``source`` names the file in error messages."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(raw).__name__}")
    family = str(raw.get("model_type") or "").lower()
    if family not in SUPPORTED_MODEL_TYPES:
        what = f"model_type {family!r} is not supported" if family else "field 'model_type' is missing"
        raise InputError(
            f"{source}: {what}; layerlab models the layers of: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    arch_list = raw.get("architectures") or []
    architecture = str(arch_list[0]) if arch_list else (family or "unknown")

    def need(key: str, *alts: str) -> int:
        value = _require(raw, key, source, *alts)
        return _positive_int(value, key, source)

    def opt_int(key: str, default: int) -> int:
        value = raw.get(key)
        return default if value is None else _positive_int(value, key, source)

    dtype = str(raw.get("torch_dtype") or raw.get("dtype") or "float32")
    if family == "gpt2":
        hidden = need("n_embd", "hidden_size")
        heads = need("n_head", "num_attention_heads")
        inter = opt_int("n_inner", 4 * hidden)
        common = dict(
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=need("n_layer", "num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=_split_heads(hidden, heads, source),
            vocab_size=need("vocab_size"),
            max_position_embeddings=opt_int("n_positions", 1024),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
            norm="layernorm",
            activation=str(raw.get("activation_function") or "gelu_new"),
            gated_mlp=False,
            attention_bias=True,
            mlp_bias=True,
            learned_positions=True,
        )
    elif family == "opt":
        hidden = need("hidden_size")
        heads = need("num_attention_heads")
        proj = opt_int("word_embed_proj_dim", hidden)
        common = dict(
            hidden_size=hidden,
            intermediate_size=need("ffn_dim", "intermediate_size"),
            num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=heads,
            head_dim=_split_heads(hidden, heads, source),
            vocab_size=need("vocab_size"),
            max_position_embeddings=opt_int("max_position_embeddings", 2048),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
            norm="layernorm",
            activation=str(raw.get("activation_function") or "relu"),
            gated_mlp=False,
            attention_bias=bool(raw.get("enable_bias", True)),
            mlp_bias=bool(raw.get("enable_bias", True)),
            learned_positions=True,
        )
        if proj != hidden:
            common["extra"] = {"word_embed_proj_dim": proj}
    else:
        hidden = need("hidden_size")
        heads = need("num_attention_heads")
        kv_heads = opt_int("num_key_value_heads", heads)
        if heads % kv_heads:
            raise InputError(
                f"{source}: field 'num_key_value_heads' ({kv_heads}) must divide num_attention_heads ({heads})"
            )
        head_dim = opt_int("head_dim", 0) if raw.get("head_dim") is not None else 0
        experts = opt_int("num_local_experts", 0) or opt_int("num_experts", 1)
        inter_key = (
            "moe_intermediate_size"
            if experts > 1 and raw.get("moe_intermediate_size")
            else "intermediate_size"
        )
        activation = str(raw.get("hidden_act") or raw.get("hidden_activation") or "silu")
        common = dict(
            hidden_size=hidden,
            intermediate_size=need(inter_key),
            num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim or _split_heads(hidden, heads, source),
            vocab_size=need("vocab_size"),
            max_position_embeddings=opt_int("max_position_embeddings", 2048),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            norm="rmsnorm",
            activation=activation,
            gated_mlp=True,
            attention_bias=bool(raw.get("attention_bias", False)),
            mlp_bias=bool(raw.get("mlp_bias", False)),
            num_local_experts=experts,
            num_experts_per_tok=opt_int("num_experts_per_tok", 2 if experts > 1 else 1),
        )
    return ModelConfig(
        name=name or str(raw.get("_name_or_path") or Path(source).parent.name or architecture),
        architecture=architecture,
        family=family,
        torch_dtype=dtype,
        repo_id=repo_id,
        source=source,
        **common,
    )


def _split_heads(hidden: int, heads: int, source: str) -> int:
    if hidden % heads:
        raise InputError(
            f"{source}: hidden size {hidden} is not a multiple of num_attention_heads {heads}; give 'head_dim'"
        )
    return hidden // heads


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a model config is JSON)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from exc


def load_config_file(path: str | os.PathLike[str], name: str | None = None) -> ModelConfig:
    """Load a local ``config.json`` (or a directory holding one)."""
    target = Path(path)
    if target.is_dir():
        target = target / "config.json"
        if not target.is_file():
            raise InputError(f"{path}: directory has no config.json")
    return config_from_dict(_read_json(target), source=str(target), name=name or target.parent.name)


def _load_from_hub(repo_id: str) -> ModelConfig:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(f"model {repo_id!r}: loading from the hub needs huggingface_hub installed") from exc
    try:
        local = hf_hub_download(repo_id=repo_id, filename="config.json")
    except Exception as exc:  # network, auth, missing repo: all user-fixable
        raise InputError(f"model {repo_id!r}: could not fetch config.json from the hub ({exc})") from exc
    return config_from_dict(
        _read_json(Path(local)), source=local, name=repo_id.split("/")[-1], repo_id=repo_id
    )


def load_model_config(name_or_path: str | os.PathLike[str], *, allow_hub: bool = False) -> ModelConfig:
    """Resolve a model by shipped name, repo id, local config.json/dir, or (if allowed) the HF hub.

    Order: an existing path wins; then shipped names (case-insensitive, with or without the
    org prefix); then, only with ``allow_hub``, the hub by repo id. Anything else is an
    ``InputError`` listing close matches.
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise InputError("model name is empty; " + "choose one of: " + ", ".join(list_models()))
    path = Path(text).expanduser()
    if path.exists():
        return load_config_file(path)
    shipped = _lookup_table().get(text.strip().lower())
    if shipped is not None:
        source = CONFIG_DIR / f"{shipped.short_name}.json"
        return config_from_dict(
            _read_json(source), source=str(source), name=shipped.display_name, repo_id=shipped.repo_id
        )
    looks_like_path = text.endswith(".json") or text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_like_path:
        raise InputError(f"{text}: no such file or directory")
    if allow_hub and text.count("/") == 1:
        return _load_from_hub(text)
    raise unknown_name("model", text, [m.short_name for m in SHIPPED] + [m.repo_id for m in SHIPPED])
