"""Pieces every guest driver shares: common flags, dtype/device handling, the step loop.

Guest-side (stdlib + torch only). The step loop is where the kernel sequence is made
deterministic: a fixed order of passes (warm-up, prefill, decode), fixed shapes, and the next
token kept on the device (no ``.item()``, no EOS check), so the host never branches on GPU data.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from typing import Any

try:
    from . import markers as mk
except ImportError:  # run as a script in the guest: the sibling file
    import markers as mk  # type: ignore[no-redef]

DTYPES = ("bf16", "fp16", "fp32")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt-len", "-S", type=int, default=8, help="prompt tokens S (default: 8)")
    parser.add_argument(
        "--decode-steps", "-D", type=int, default=2, help="greedy decode steps D (default: 2)"
    )
    parser.add_argument(
        "--warmup", type=int, default=0, help="warm-up passes before the prefill (counted steps)"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="bf16", help="weights and activations (default: bf16)"
    )
    parser.add_argument(
        "--device", default="cuda", help="cuda (ROCm HIP in the guest) or cpu (default: cuda)"
    )
    parser.add_argument("--batch", type=int, default=1, help="sequences per step (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights and prompt ids")
    mk.add_marker_arguments(parser)
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="record the steps with torch.profiler and write a Chrome/Kineto trace here (implies --markers profiler)",
    )


def check_common(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.prompt_len < 1:
        parser.error("--prompt-len must be >= 1")
    if args.decode_steps < 0 or args.warmup < 0 or args.batch < 1:
        parser.error("--decode-steps and --warmup must be >= 0, --batch >= 1")
    if args.profile:
        if args.markers == "gem5":
            parser.error(
                "--profile records markers in the profiler; it cannot be combined with --markers gem5"
            )
        args.markers = "profiler"
    if args.warmup + 1 + args.decode_steps > mk.MAX_STEP:
        parser.error(f"too many steps for the marker id scheme (max {mk.MAX_STEP})")
    # Outputs are written after the whole run: a folder that is not there would lose them then.
    for flag, path in (("--profile", args.profile), ("--marker-table", getattr(args, "marker_table", None))):
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                parser.error(f"{flag} {path}: no such directory {folder} (it is written after the run)")
            if not os.access(folder, os.W_OK):
                parser.error(f"{flag} {path}: directory {folder} is not writable")


def torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def offline_environment() -> None:
    """The guest has no network: never let HF try to reach the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def prompt_ids(batch: int, length: int, vocab_size: int, seed: int, device: str) -> Any:
    """Exactly ``length`` token ids per sequence, from a fixed seed; no tokenizer needed."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, max(2, vocab_size - 1), (batch, length), generator=gen)
    return ids.to(device)


def plan_steps(
    warmup: int, prompt_len: int, decode_steps: int, context: int = 0, prefill: bool = True
) -> list[dict[str, Any]]:
    """The run order: warm-up passes (prefill shape), the prefill, then the decode steps.

    ``context`` is the number of tokens already in the KV cache before the prefill (the
    synthetic layer pre-fills it); without a prefill the decode steps start at ``context``.
    """
    plan = [
        {"phase": "warmup", "phase_index": w, "tokens": prompt_len, "context": context} for w in range(warmup)
    ]
    first_decode_context = context
    if prefill:
        plan.append({"phase": "prefill", "phase_index": 0, "tokens": prompt_len, "context": context})
        first_decode_context += prompt_len
    plan += [
        {"phase": "decode", "phase_index": d, "tokens": 1, "context": first_decode_context + d}
        for d in range(decode_steps)
    ]
    for step, entry in enumerate(plan):
        entry["step"] = step
    return plan


def run_plan(
    plan: list[dict[str, Any]],
    markers: mk.Markers,
    hooks: mk.HookSet | None,
    run_step: Callable[[dict[str, Any]], None],
    profile_path: str | None = None,
) -> None:
    """Run every step of the plan inside its step marker; the hooks learn the step number.

    With ``profile_path`` only the steps are profiled (not model loading), so the trace holds
    the same kernels the census numbers, give or take what happens before the first step.
    """
    import torch

    profiler = contextlib.nullcontext()
    if profile_path:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if markers.device.startswith("cuda") and torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        profiler = torch.profiler.profile(activities=activities)
    with profiler as prof, torch.inference_mode():
        for entry in plan:
            step = entry["step"]
            markers.add_step(step, entry["phase"], entry["phase_index"], entry["tokens"], entry["context"])
            if hooks is not None:
                hooks.step = step
            with markers.region(mk.encode(step), f"step{step}.{entry['phase']}{entry['phase_index']}"):
                run_step(entry)
    if profile_path:
        prof.export_chrome_trace(profile_path)
