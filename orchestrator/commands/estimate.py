"""`layerlab estimate`: what one decoder layer should cost, op by op, on a machine.

Thin shell over ``analytical.pipeline.estimate_layer``: parse, resolve the model and machine
(case-insensitive names, gem5 overrides), print one tidy table, optionally draw the roofline.
"""

from __future__ import annotations

import argparse
import sys

from analytical.calibration import load_calibration
from analytical.catalog import get_hardware, list_hardware
from analytical.estimators import ESTIMATORS
from analytical.hardware import HardwareSpec
from analytical.notebook import NOTEBOOK_ESTIMATORS, notebook_chunk_shape, notebook_split
from analytical.ops import ATTENTION_IMPLS, DTYPES, ENGINES, PHASES, normalise_dtype, parse_layers
from analytical.pipeline import estimate_layer, gem5_caption
from analytical.plot import step_text
from foundation.errors import InputError
from orchestrator.commands import SUMMARIES
from orchestrator.knobs import add_gpu_knob_arguments, gpu_overrides
from orchestrator.output import add_format_options, emit, output_path
from workloads.models import ModelConfig, list_models, load_model_config

EPILOG = (
    """\
examples:
  # decode, batch 1, 1024 tokens of context, on the machine gem5's mi300.py simulates (40 CUs)
  layerlab estimate --model llama-3.2-1b --hardware gem5-mi300x --phase decode --batch 1 --context 1024

  # prefill of 512 tokens on a real MI300X, with a roofline chart
  layerlab estimate --model llama-3.2-1b --hardware mi300x --phase prefill --seq 512 --plot roofline.png

  # chunked prefill: a 256-token chunk over 1024 past tokens plus 8 decode requests, as vLLM runs it
  layerlab estimate --model llama-3.1-8b --hardware mi300x --phase chunked --seq 256 --context 1024 \\
      --decode-tokens 8 --engine vllm

  # the same gem5 machine with 8 CUs, a 1.8 GHz shader clock, 4 MiB of TCC and 8 HBM channels
  layerlab estimate --model llama-3.2-1b --hardware gem5-mi200 --phase decode --context 1024 \\
      --num-cus 8 --sys-clock 1.8GHz --tcc-size 4MiB --dram-channels 8 --gem5-version v25

  # the researchers' notebook, exactly (its op list, units, chunk split and estimators), with its bugs
  layerlab estimate --model llama-3.1-8b --hardware nvl-ax --notebook --notebook-bugs --estimator tiling \
      --phase chunked --seq 256 --notebook-chunk 8192:512

  # whole model (every layer, embeddings, LM head and a total row) as JSON for a script
  layerlab estimate --model gpt2 --hardware a100 --phase prefill --seq 128 --layers all --format json

estimators (every one is a column t_<name>_s; --estimator picks t_est_s):
  roofline  per-op max(FLOPs/peak, bytes/BW), summed over ops (default): every byte crosses DRAM once
  simple    the notebook's roofline (MACs vs weight+KV bytes, activations ignored) on layerlab's ops:
            with the default --engine hf-eager it includes HF eager's repeat_kv and cache-concat
            traffic (right for HF eager, not what the notebook modelled: decode C=8448 B=256 triples);
            the notebook's own fused decomposition is --notebook
  tiling    cache-sized tiles, traffic = tile reloads clamped between compulsory (each operand once)
            and no-reuse traffic; tokens share weights (folded into M), but attention K/V are per
            request and KV head (never folded across the batch); --notebook-bugs: older dims
  cache     weights from the LLC when the layer fits; waves: wave-quantised GEMM tiles over CUs
  full      waves + cache + per-kernel launch floor, with --calibration factors

--notebook (any --engine is ignored): the notebook's op list (fused QKV, QK, PV, O, FFN up/gate/down,
  KV read/store), MACs, its units and integer chunk split, and its two estimators: simple (sum of
  per-op max(MACs/rate, weight+KV bytes/BW)) and tiling (requests folded into M to square the output:
  right for weights shared across tokens, wrong for per-request K/V, which it adds as a KV read).
  --notebook-bugs keeps its defects (attention contracting over the hidden size, the GQA factor
  dropped, the chunked decode attention's width); without it the same decomposition, fixed.

machines: """
    + ", ".join(list_hardware())
    + """
models:   """
    + ", ".join(list_models())
    + """ (or a config.json path)
"""
)


def _notebook_chunk(text: str) -> tuple[int, int]:
    parts = text.replace(",", ":").split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected IN:OUT token counts, got {text!r}")
    return int(parts[0]), int(parts[1])


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate",
        help=SUMMARIES["estimate"],
        description="Estimate every op of one decoder layer (FLOPs, bytes by class, intensity, bound, "
        "time per estimator) for a model, phase and shape on a datasheet GPU or the machine gem5 simulates.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to run")
    what.add_argument("--model", required=True, help="shipped model name, HF repo id or config.json path")
    what.add_argument(
        "--from-hub",
        action="store_true",
        help="allow fetching config.json from the Hugging Face hub by repo id",
    )
    what.add_argument("--phase", required=True, type=str.lower, choices=PHASES)
    what.add_argument("--batch", type=int, default=1, help="requests (default 1)")
    what.add_argument(
        "--seq", type=int, help="prefill/chunked: new tokens per request (prompt or chunk); not for decode"
    )
    what.add_argument(
        "--context",
        type=int,
        help="past tokens per request in the KV cache (decode: required, >= 1; prefill/chunked: default 0)",
    )
    what.add_argument("--decode-tokens", type=int, help="chunked: decode requests riding along (default 0)")
    what.add_argument(
        "--decode-context", type=int, help="chunked: past tokens of each decode request (default --context)"
    )
    what.add_argument(
        "--notebook-chunk",
        type=_notebook_chunk,
        metavar="IN:OUT",
        help="chunked: split the --seq chunk the notebook's way for IN prompt / OUT output tokens "
        "(with --notebook: its own // and int(IN/1.73) arithmetic)",
    )
    what.add_argument(
        "--engine",
        type=str.lower,
        choices=ENGINES,
        default="hf-eager",
        help="kernel structure to model (default hf-eager)",
    )
    what.add_argument(
        "--attention",
        type=str.lower,
        choices=ATTENTION_IMPLS,
        help="hf-eager attention: eager (materialised scores, default) or sdpa (fused); vllm is always fused",
    )
    what.add_argument("--dtype", help="bf16, fp16, fp32 or fp8 (default: the model's torch_dtype)")
    what.add_argument(
        "--layers", default="0", help="layer index, A-B, list, or 'all' (+ non-layer ops and a total)"
    )

    how = parser.add_argument_group("machine and estimator")
    how.add_argument(
        "--hardware", required=True, help="machine name, or several separated by commas (case-insensitive)"
    )
    how.add_argument(
        "--estimator",
        type=str.lower,
        choices=ESTIMATORS,
        help="default roofline (with --notebook: tiling; --notebook has simple and tiling)",
    )
    how.add_argument(
        "--notebook",
        action="store_true",
        help="the researchers' notebook exactly: its decomposition, units, chunk split and estimators; "
        "independent of --engine",
    )
    how.add_argument("--calibration", metavar="YAML", help="per-op-class efficiency factors")
    how.add_argument(
        "--launch-floor", type=float, metavar="SECONDS", help="per-kernel floor (default: the machine's)"
    )
    how.add_argument(
        "--notebook-bugs",
        action="store_true",
        help="with --notebook: keep the notebook's defects; otherwise (--estimator tiling) layerlab's "
        "older reading of its attention dims",
    )

    gem5 = parser.add_argument_group(
        "gem5 machine knobs (gem5-mi200 / gem5-mi300x only: gem5's simulated machine, not the part)"
    )
    gem5.add_argument(
        "--gem5-version",
        default="v24.0",
        help="v24.0 | v24.1 | v25: selects the MFMA timing model (default v24.0)",
    )
    add_gpu_knob_arguments(gem5)

    out = parser.add_argument_group("output")
    add_format_options(out)
    out.add_argument(
        "--plot", metavar="PNG", type=output_path, help="write a log-log roofline chart, one point per op"
    )
    parser.set_defaults(func=run)


def _check_layers(spec: str, model: ModelConfig) -> None:
    """Refuse a reversed range by name (``3-1`` is empty, not 'layer ? outside'), then parse."""
    for part in str(spec).strip().lower().split(","):
        lo, dash, hi = part.partition("-")
        if dash and lo.strip().isdigit() and hi.strip().isdigit() and int(lo) > int(hi):
            raise InputError(
                f"--layers {spec!r}: range {lo.strip()}-{hi.strip()} is empty ({int(lo)} > {int(hi)}); "
                f"write it low-high, e.g. {hi.strip()}-{lo.strip()}"
            )
    parse_layers(spec, model.num_hidden_layers)


def _check_dtype(args: argparse.Namespace, model: ModelConfig, machines: list[HardwareSpec]) -> None:
    """The estimator's "no peak for this dtype" error, before the shape checks (same rule and
    words as analytical.estimators: a missing FP32 MMA falls back to the vector ALUs)."""
    compute_class = DTYPES[normalise_dtype(args.dtype or model.torch_dtype)][1]
    for machine in machines:
        peaks = machine.flops_per_clock_per_cu
        if compute_class not in peaks and not (compute_class == "fp32_matrix" and "fp32_vector" in peaks):
            raise InputError(
                f"hardware {machine.name!r} has no {compute_class} peak; pick another --dtype or machine"
            )


def _shape(args: argparse.Namespace) -> tuple[int | None, int, int, int | None]:
    """(seq, context, decode_tokens, decode_context) of the step, or an error for flags that
    would otherwise be ignored or mean nothing in this phase."""
    phase = args.phase
    if args.notebook_chunk:
        if phase != "chunked" or args.seq is None:
            raise InputError("--notebook-chunk needs --phase chunked and --seq CHUNK")
        given = [
            flag
            for flag, value in (
                ("--context", args.context),
                ("--decode-tokens", args.decode_tokens),
                ("--decode-context", args.decode_context),
            )
            if value is not None
        ]
        if given:
            raise InputError(
                f"--notebook-chunk sets {', '.join(given)} itself from IN:OUT; drop {' and '.join(given)}"
            )
        split = notebook_split if getattr(args, "notebook", False) else notebook_chunk_shape
        shape = split(args.seq, *args.notebook_chunk)
        return shape.seq, shape.context, shape.decode_tokens, shape.decode_context
    if phase != "chunked":
        for flag, value in (
            ("--decode-tokens", args.decode_tokens),
            ("--decode-context", args.decode_context),
        ):
            if value is not None:
                raise InputError(
                    f"{flag} is for --phase chunked (decode requests riding along a prefill chunk), "
                    f"not --phase {phase}"
                )
    if phase == "decode":
        if args.seq is not None:
            raise InputError(
                f"--seq {args.seq} with --phase decode: a decode step is one new token per request; "
                "use --batch for more requests, --context for the tokens already in the KV cache"
            )
        if args.context is None or args.context < 1:
            got = "" if args.context is None else f", got {args.context}"
            raise InputError(f"decode needs --context N (tokens already in the KV cache, N >= 1){got}")
    decode_tokens = args.decode_tokens or 0
    if args.decode_context is not None and not decode_tokens:
        raise InputError("--decode-context needs --decode-tokens N (the decode requests it describes)")
    return args.seq, args.context or 0, decode_tokens, args.decode_context


def _check_positions(
    model: ModelConfig,
    phase: str,
    seq: int | None,
    context: int,
    decode_tokens: int,
    decode_context: int | None,
) -> None:
    """Context plus new tokens must fit the model's position table (RoPE range / learned positions)."""
    limit = model.max_position_embeddings
    field = "n_positions" if model.family == "gpt2" else "max_position_embeddings"
    new = 1 if phase == "decode" else (seq or 0)
    spans = [("--context", context, new)]
    if decode_tokens:
        spans.append(("--decode-context", context if decode_context is None else decode_context, 1))
    for flag, past, fresh in spans:
        if past + fresh > limit:
            raise InputError(
                f"{flag} {past} + {fresh} new token{'s' if fresh != 1 else ''} = {past + fresh} positions, "
                f"beyond {model.name}'s {field}={limit} ({model.source})"
            )


def run(args: argparse.Namespace) -> int:
    model = load_model_config(args.model, allow_hub=args.from_hub)
    overrides = gpu_overrides(args)
    names = [n for n in args.hardware.split(",") if n.strip()]
    if not names:
        raise InputError("--hardware is empty; choose one of: " + ", ".join(list_hardware()))
    machines = [get_hardware(n, gem5_version=args.gem5_version, **overrides) for n in names]
    _check_layers(args.layers, model)
    _check_dtype(args, model, machines)
    seq, context, decode_tokens, decode_context = _shape(args)
    if context >= 0 and (seq or 0) >= 0:  # negatives get their own message from make_shapes
        _check_positions(model, args.phase, seq, context, decode_tokens, decode_context)
    if args.estimator is None:
        args.estimator = "tiling" if args.notebook else "roofline"
    if args.notebook and args.estimator not in NOTEBOOK_ESTIMATORS:
        raise InputError(
            f"--notebook has the notebook's estimators {' and '.join(NOTEBOOK_ESTIMATORS)}; "
            f"--estimator {args.estimator} is layerlab's (drop --notebook for it)"
        )
    if args.notebook_bugs and not args.notebook and args.estimator != "tiling":
        raise InputError(
            f"--notebook-bugs changes only the tiling estimator; add --estimator tiling or --notebook "
            f"(--estimator is {args.estimator})"
        )
    if args.attention is not None and args.engine == "vllm":
        print(
            "layerlab estimate: note: --attention applies to --engine hf-eager; vllm attention is always fused",
            file=sys.stderr,
        )
    calibration = load_calibration(args.calibration) if args.calibration else None
    if args.launch_floor is not None and args.launch_floor < 0:
        raise InputError(f"--launch-floor must be >= 0, got {args.launch_floor}")
    table = estimate_layer(
        model,
        machines,
        args.phase,
        batch=args.batch,
        seq=seq,
        context=context,
        decode_tokens=decode_tokens,
        decode_context=decode_context,
        engine=args.engine,
        attention=args.attention or "eager",
        dtype=args.dtype,
        layers=args.layers,
        estimator=args.estimator,
        calibration=calibration,
        launch_floor_s=args.launch_floor,
        notebook_bugs=args.notebook_bugs,
        notebook=args.notebook,
    )
    captions = [c for c in (gem5_caption(m, args.gem5_version) for m in machines) if c]
    if args.plot:
        from analytical.plot import roofline_plot

        first = table[table["hardware"] == machines[0].name]
        roofline_plot(
            first[first["op"] != "total"],
            machines[0],
            args.plot,
            caption=gem5_caption(machines[0], args.gem5_version),
        )
    if args.format == "table":
        compact = [
            "layer",
            "op",
            "module",
            "flops",
            "total_bytes",
            "intensity",
            "bound",
            "t_compute_s",
            "t_memory_s",
            "t_est_s",
            "est_cycles",
        ]
        if len(machines) > 1:
            compact.insert(0, "hardware")
        shown = table[compact]
        total = table[table["op"] != "total"]
        row = table.iloc[0]
        title = (
            f"{model.name} | {args.phase}, {step_text(row)} | {row['dtype']} | {'notebook' if args.notebook else args.engine} | {args.estimator} | "
            + ", ".join(
                f"{m.name}: {total.loc[total['hardware'] == m.name, 't_est_s'].sum() * 1e6:.4g} µs"
                for m in machines
            )
        )
        title = "\n".join([title, *(f"note: {c}" for c in captions)])
        emit(shown, "table", args.output, title=title)
    else:
        emit(table, args.format, args.output)
    if args.plot and args.format == "table" and not args.output:
        print(f"roofline chart: {args.plot}", file=sys.stderr)
    return 0
