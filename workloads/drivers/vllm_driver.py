#!/usr/bin/env python3
"""vLLM offline engine (guest driver ``vllm``): one request of S prompt ids, exactly D tokens.

``LLM(model=<dir>, enforce_eager=True, ...)`` (no graph capture, so every kernel is a real
dispatch gem5 can count) and ``SamplingParams(max_tokens=D, ignore_eos=True, temperature=0)``.
The engine is stepped by hand (``llm_engine.step()``) so that each scheduler step — the
prefill, then one decode per step — sits inside its own step marker. The model runs inside the
engine, so there are no layer markers: layer boundaries inside a step come from the
structural slicer (``layerlab slice``).

vLLM is imported only in ``main`` so this file can be imported (and its argument handling
tested) where vLLM is not installed. ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` keeps the engine
in this process, so the marker's synchronise covers the engine's GPU work.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

try:
    from . import common
    from . import markers as mk
except ImportError:  # run as a script in the guest: sibling files
    import common  # type: ignore[no-redef]
    import markers as mk  # type: ignore[no-redef]

VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm_driver.py", description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, help="local directory with config.json, weights, tokenizer")
    p.add_argument("--max-model-len", type=int, default=None, help="default: S + D")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.8)
    common.add_common_arguments(p)
    return p


def llm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model_dir,
        "enforce_eager": True,
        "max_model_len": args.max_model_len or (args.prompt_len + args.decode_steps),
        "dtype": VLLM_DTYPES[args.dtype],
        "seed": args.seed,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "skip_tokenizer_init": True,
    }


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_tokens": args.decode_steps, "ignore_eos": True, "temperature": 0.0, "detokenize": False}


def prompt_token_ids(args: argparse.Namespace, vocab_size: int) -> list[int]:
    """Exactly S ids from the seed, the same ids the hf driver would use (batch row 0)."""
    import random

    rng = random.Random(args.seed)
    return [rng.randrange(1, max(2, vocab_size - 1)) for _ in range(args.prompt_len)]


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    common.check_common(args, p)
    if args.decode_steps < 1:
        p.error("--decode-steps must be >= 1 for vLLM (max_tokens >= 1)")
    common.offline_environment()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise SystemExit("vllm_driver.py: vLLM is not installed in this Python") from None

    llm = LLM(**llm_kwargs(args))
    engine = llm.llm_engine
    vocab = engine.model_config.get_vocab_size()
    params = SamplingParams(**sampling_kwargs(args))
    markers = mk.Markers(args.markers, m5=args.m5, device=args.device)
    ids = prompt_token_ids(args, vocab)
    # Warm-up requests run to completion first; their engine steps are numbered like any other.
    # vLLM samples the first token in the prefill step, so D tokens take 1 prefill + D-1 decodes.
    step = 0
    for request in range(args.warmup + args.batch):
        engine.add_request(f"req{request}", {"prompt_token_ids": ids}, params)
        if request < args.warmup:
            while engine.has_unfinished_requests():
                markers.add_step(step, "warmup", request, args.prompt_len, 0)
                with markers.region(mk.encode(step), f"step{step}.warmup{request}"):
                    engine.step()
                step += 1
    decode_index = 0
    while engine.has_unfinished_requests():
        phase = "prefill" if decode_index == 0 else "decode"
        phase_index = 0 if decode_index == 0 else decode_index - 1
        markers.add_step(step, phase, phase_index, args.prompt_len if decode_index == 0 else 1, 0)
        with markers.region(mk.encode(step), f"step{step}.{phase}{phase_index}"):
            engine.step()
        step += 1
        decode_index += 1
    if args.marker_table:
        meta = {
            "driver": "vllm",
            "argv": sys.argv[1:] if argv is None else list(argv),
            "num_hidden_layers": None,
            "decode_steps": args.decode_steps,
        }
        markers.write_table(args.marker_table, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
