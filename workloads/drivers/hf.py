#!/usr/bin/env python3
"""Hugging Face causal LM from a local directory (guest driver ``hf``): prefill, then D greedy steps.

Llama, GPT-2 and OPT families, offline (``local_files_only``, ``HF_HUB_OFFLINE=1``), eager
attention, a prompt of exactly S random token ids (no tokenizer), then exactly D greedy decode
steps with no EOS stop. The next token stays on the device (argmax, no ``.item()``), so the host
never branches on GPU data and the kernel sequence depends only on the arguments.

``--layers N`` keeps only the first N decoder layers (the config is edited before loading, the
other weights are ignored), which cuts the simulated start-up work of a large model.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

try:
    from . import common
    from . import markers as mk
except ImportError:  # run as a script in the guest: sibling files
    import common  # type: ignore[no-redef]
    import markers as mk  # type: ignore[no-redef]

#: Where each family keeps its decoder layers and model-level modules (qualified names).
LAYER_LISTS = ("model.layers", "transformer.h", "model.decoder.layers")
MODEL_ROLES = {
    "model.embed_tokens": "embed",
    "model.rotary_emb": "rotary_emb",
    "model.norm": "final_norm",
    "transformer.wte": "embed",
    "transformer.wpe": "pos_embed",
    "transformer.ln_f": "final_norm",
    "model.decoder.embed_tokens": "embed",
    "model.decoder.embed_positions": "pos_embed",
    "model.decoder.final_layer_norm": "final_norm",
    "lm_head": "lm_head",
}
#: Module names inside one decoder layer → role (Llama, GPT-2, OPT).
LAYER_ROLES = {
    **mk.LLAMA_LAYER_ROLES,
    "ln_1": "input_norm",
    "attn": "attention",
    "attn.c_attn": "qkv_proj",
    "attn.c_proj": "o_proj",
    "ln_2": "post_attention_norm",
    "mlp.c_fc": "up_proj",
    "mlp.act": "act_fn",
    "mlp.c_proj": "down_proj",
    "self_attn_layer_norm": "input_norm",
    "self_attn.out_proj": "o_proj",
    "final_layer_norm": "post_attention_norm",
    "fc1": "up_proj",
    "activation_fn": "act_fn",
    "fc2": "down_proj",
    "block_sparse_moe": "mlp",  # Mixtral's MoE block in transformers 4.x (5.x names it ``mlp``)
}
LAYER_COUNT_FIELDS = ("num_hidden_layers", "n_layer")


def find_layers(model: Any) -> tuple[str, Any]:
    modules = dict(model.named_modules())
    for name in LAYER_LISTS:
        if name in modules:
            return name, modules[name]
    raise SystemExit(f"hf.py: no decoder layer list ({', '.join(LAYER_LISTS)}) in {type(model).__name__}")


def hook_targets(model: Any) -> list[tuple[Any, int, str, str]]:
    """Every decoder layer, every role-named module in it, and the model-level modules."""
    modules = dict(model.named_modules())
    targets = [(modules[name], -1, role, name) for name, role in MODEL_ROLES.items() if name in modules]
    list_name, layers = find_layers(model)
    for index, layer in enumerate(layers):
        targets.append((layer, index, "layer", f"{list_name}.{index}"))
        for name, module in layer.named_modules():
            if name in LAYER_ROLES:
                targets.append((module, index, LAYER_ROLES[name], f"{list_name}.{index}.{name}"))
    return targets


def load(model_dir: str, dtype: Any, device: str, keep_layers: int | None) -> Any:
    common.offline_environment()
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    if keep_layers is not None:
        field = next((f for f in LAYER_COUNT_FIELDS if hasattr(config, f)), None)
        if field is None:
            raise SystemExit(f"hf.py: {model_dir}: config has no layer count to truncate")
        total = getattr(config, field)
        if not 1 <= keep_layers <= total:
            raise SystemExit(f"hf.py: --layers {keep_layers} outside 1..{total} (the model's {field})")
        setattr(config, field, keep_layers)
    # transformers >= 4.56 calls the argument ``dtype``; the images' older releases ``torch_dtype``.
    dtype_arg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, config=config, local_files_only=True, attn_implementation="eager", **{dtype_arg: dtype}
    )
    return model.to(device).eval()


def _version(text: str) -> tuple[int, int]:
    major, minor, *_ = [*(int(p) if p.isdigit() else 0 for p in text.split(".")[:2]), 0, 0]
    return major, minor


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf.py", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="local directory with config.json and weights")
    p.add_argument("--layers", type=int, default=None, help="keep only the first N decoder layers")
    common.add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    common.check_common(args, p)
    model = load(args.model_dir, common.torch_dtype(args.dtype), args.device, args.layers)
    vocab = model.config.vocab_size
    prompt = common.prompt_ids(args.batch, args.prompt_len, vocab, args.seed, args.device)
    plan = common.plan_steps(args.warmup, args.prompt_len, args.decode_steps)
    markers = mk.Markers(args.markers, m5=args.m5, device=args.device)
    hooks = mk.HookSet(markers, hook_targets(model))
    state: dict[str, Any] = {}

    def run_step(entry: dict[str, Any]) -> None:
        # The cache is whatever the model returns (a Cache object or legacy tuples), so the
        # same code runs on the images' older transformers and on current ones.
        if entry["phase"] in ("warmup", "prefill"):
            out = model(input_ids=prompt, use_cache=True)
        else:
            out = model(input_ids=state["next"], past_key_values=state["cache"], use_cache=True)
        if entry["phase"] != "warmup":
            state["cache"] = out.past_key_values
        state["next"] = out.logits[:, -1:, :].argmax(dim=-1)  # greedy, stays on the device

    common.run_plan(plan, markers, hooks, run_step, args.profile)
    if args.marker_table:
        meta = {
            "driver": "hf",
            "argv": sys.argv[1:] if argv is None else list(argv),
            "model_type": model.config.model_type,
            "num_hidden_layers": len(find_layers(model)[1]),
            "decode_steps": args.decode_steps,
        }
        markers.write_table(args.marker_table, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
