#!/usr/bin/env python3
"""Synthetic decoder layer(s) from a model's config.json, random weights (guest driver ``layer``).

Isolates one Llama-style layer by construction: no weights in the image, no embedding or LM
head, a KV cache pre-filled to context C. The op order follows Hugging Face's eager
``LlamaDecoderLayer`` (RMSNorm, q/k/v projections, RoPE, cache update, GQA repeat, matmul,
softmax in fp32, matmul, o_proj, residual add, RMSNorm, gate/up, SiLU, down, residual add), so a
window over this layer simulates the same kernels a real model would run.

The cache is allocated once at its final size and written by slice assignment at host-known
positions, so no kernel reads an index produced by another kernel: with gem5 skipping kernels
before the window, nothing in the window depends on skipped outputs for its addresses.

Usage (guest): ``layer.py --config /opt/layerlab/model_configs/llama-3.2-1b.json --context 1024
-S 1 -D 1 --markers gem5``. MoE configs are run as their dense SwiGLU equivalent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

try:
    from . import common
    from . import markers as mk
except ImportError:  # run as a script in the guest: sibling files
    import common  # type: ignore[no-redef]
    import markers as mk  # type: ignore[no-redef]


def read_config(path: str) -> dict[str, Any]:
    """The handful of shape fields this layer needs, with HF's defaults; exits on a bad file."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"layer.py: cannot read config {path}: {exc}") from None
    missing = [k for k in ("hidden_size", "num_attention_heads", "intermediate_size") if k not in raw]
    if missing:
        raise SystemExit(
            f"layer.py: {path}: missing field(s) {', '.join(missing)} (a Llama-style config.json)"
        )
    heads = int(raw["num_attention_heads"])
    return {
        "hidden_size": int(raw["hidden_size"]),
        "num_attention_heads": heads,
        "num_key_value_heads": int(raw.get("num_key_value_heads") or heads),
        "head_dim": int(raw.get("head_dim") or raw["hidden_size"] // heads),
        "intermediate_size": int(raw["intermediate_size"]),
        "rms_norm_eps": float(raw.get("rms_norm_eps", 1e-5)),
        "rope_theta": float(raw.get("rope_theta", 10000.0)),
        "attention_bias": bool(raw.get("attention_bias", False)),
        "mlp_bias": bool(raw.get("mlp_bias", False)),
        "num_hidden_layers": int(raw.get("num_hidden_layers", 1)),
        "model_type": raw.get("model_type", "llama"),
    }


def build(cfg: dict[str, Any], num_layers: int, dtype: Any, device: str, seed: int) -> Any:
    import torch
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, size: int, eps: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(size))
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            in_dtype = x.dtype
            x = x.to(torch.float32)
            variance = x.pow(2).mean(-1, keepdim=True)
            x = x * torch.rsqrt(variance + self.eps)
            return self.weight * x.to(in_dtype)

    class RotaryEmbedding(nn.Module):
        def __init__(self, head_dim: int, theta: float) -> None:
            super().__init__()
            inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
            self.register_buffer("inv_freq", inv, persistent=False)

        def forward(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            freqs = positions[:, None].float() * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, hd = cfg["hidden_size"], cfg["head_dim"]
            self.heads, self.kv_heads, self.head_dim = (
                cfg["num_attention_heads"],
                cfg["num_key_value_heads"],
                hd,
            )
            bias = cfg["attention_bias"]
            self.q_proj = nn.Linear(d, self.heads * hd, bias=bias)
            self.k_proj = nn.Linear(d, self.kv_heads * hd, bias=bias)
            self.v_proj = nn.Linear(d, self.kv_heads * hd, bias=bias)
            self.o_proj = nn.Linear(self.heads * hd, d, bias=bias)
            self.scaling = hd**-0.5
            self.k_cache: torch.Tensor | None = None
            self.v_cache: torch.Tensor | None = None

        def forward(
            self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start: int, mask: Any
        ) -> Any:
            b, s, _ = x.shape
            q = self.q_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
            k = self.k_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
            v = self.v_proj(x).view(b, s, -1, self.head_dim).transpose(1, 2)
            q = (q * cos) + (rotate_half(q) * sin)
            k = (k * cos) + (rotate_half(k) * sin)
            assert self.k_cache is not None and self.v_cache is not None
            self.k_cache[:, :, start : start + s] = k
            self.v_cache[:, :, start : start + s] = v
            keys = self.k_cache[:, :, : start + s]
            values = self.v_cache[:, :, : start + s]
            groups = self.heads // self.kv_heads
            if groups > 1:  # HF repeat_kv: expand + reshape
                keys = keys[:, :, None].expand(b, self.kv_heads, groups, start + s, self.head_dim)
                keys = keys.reshape(b, self.heads, start + s, self.head_dim)
                values = values[:, :, None].expand(b, self.kv_heads, groups, start + s, self.head_dim)
                values = values.reshape(b, self.heads, start + s, self.head_dim)
            weights = torch.matmul(q, keys.transpose(2, 3)) * self.scaling
            if mask is not None:
                weights = weights + mask
            weights = nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(weights, values).transpose(1, 2).contiguous().reshape(b, s, -1)
            return self.o_proj(out)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d, f, bias = cfg["hidden_size"], cfg["intermediate_size"], cfg["mlp_bias"]
            self.gate_proj = nn.Linear(d, f, bias=bias)
            self.up_proj = nn.Linear(d, f, bias=bias)
            self.down_proj = nn.Linear(f, d, bias=bias)
            self.act_fn = nn.SiLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    class DecoderLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
            self.mlp = MLP()

        def forward(self, x: torch.Tensor, cos: Any, sin: Any, start: int, mask: Any) -> torch.Tensor:
            residual = x
            x = self.input_layernorm(x)
            x = residual + self.self_attn(x, cos, sin, start, mask)
            residual = x
            x = self.post_attention_layernorm(x)
            return residual + self.mlp(x)

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rotary_emb = RotaryEmbedding(cfg["head_dim"], cfg["rope_theta"])
            self.layers = nn.ModuleList(DecoderLayer() for _ in range(num_layers))

        def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
            s = x.shape[1]
            positions = torch.arange(start, start + s, device=x.device)
            cos, sin = self.rotary_emb(x, positions)
            mask = None
            if s > 1:  # causal among the new tokens; the cached context is fully visible
                mask = torch.full((s, start + s), float("-inf"), device=x.device, dtype=x.dtype)
                mask = torch.triu(mask, diagonal=start + 1)
            for layer in self.layers:
                x = layer(x, cos, sin, start, mask)
            return x

    torch.manual_seed(seed)
    stack = Stack()
    for param in stack.parameters():  # small random weights keep bf16/fp16 activations finite
        with torch.no_grad():
            param.normal_(0.0, 1.0 / math.sqrt(param.shape[-1]))
    return stack.to(device=device, dtype=dtype).eval()


def hook_targets(stack: Any) -> list[tuple[Any, int, str, str]]:
    targets: list[tuple[Any, int, str, str]] = []
    roles = mk.LLAMA_LAYER_ROLES
    targets.append((stack.rotary_emb, -1, "rotary_emb", "rotary_emb"))
    for index, layer in enumerate(stack.layers):
        targets.append((layer, index, "layer", f"layers.{index}"))
        for name, module in layer.named_modules():
            if name in roles:
                targets.append((module, index, roles[name], f"layers.{index}.{name}"))
    return targets


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="layer.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="HF config.json of the model whose layer is built")
    p.add_argument("--context", "-C", type=int, default=0, help="tokens already in the KV cache (default: 0)")
    p.add_argument("--num-layers", type=int, default=1, help="identical random layers to stack (default: 1)")
    p.add_argument(
        "--phases", choices=("prefill", "decode", "both"), default="both", help="what to run (default: both)"
    )
    common.add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    common.check_common(args, p)
    if args.context < 0 or args.num_layers < 1:
        p.error("--context must be >= 0 and --num-layers >= 1")
    import torch

    cfg = read_config(args.config)
    dtype = common.torch_dtype(args.dtype)
    stack = build(cfg, args.num_layers, dtype, args.device, args.seed)
    prefill = args.phases in ("prefill", "both")
    decode_steps = args.decode_steps if args.phases in ("decode", "both") else 0
    plan = common.plan_steps(args.warmup, args.prompt_len, decode_steps, args.context, prefill=prefill)
    capacity = args.context + (args.prompt_len if prefill else 0) + decode_steps + args.prompt_len
    shape = (args.batch, cfg["num_key_value_heads"], capacity, cfg["head_dim"])
    gen = torch.Generator().manual_seed(args.seed + 1)
    for layer in stack.layers:  # the pre-filled context: random keys/values, made once
        layer.self_attn.k_cache = torch.randn(shape, generator=gen).to(device=args.device, dtype=dtype)
        layer.self_attn.v_cache = torch.randn(shape, generator=gen).to(device=args.device, dtype=dtype)
    inputs = {
        n: torch.randn((args.batch, n, cfg["hidden_size"]), generator=gen).to(device=args.device, dtype=dtype)
        for n in {args.prompt_len, 1}
    }
    markers = mk.Markers(args.markers, m5=args.m5, device=args.device)
    hooks = mk.HookSet(markers, hook_targets(stack))

    def run_step(entry: dict[str, Any]) -> None:
        stack(inputs[entry["tokens"]], entry["context"])

    common.run_plan(plan, markers, hooks, run_step, args.profile)
    if args.marker_table:
        meta = {
            "driver": "layer",
            "argv": sys.argv[1:] if argv is None else list(argv),
            "model_type": cfg["model_type"],
            "num_hidden_layers": args.num_layers,
            "config_num_hidden_layers": cfg["num_hidden_layers"],
            "decode_steps": decode_steps,
        }
        markers.write_table(args.marker_table, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
