"""`layerlab demo`: the main job on the embedded default (what `make demo` runs)."""

from __future__ import annotations

import argparse

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab demo                         # writes into demo-out/
  LAYERLAB_GEM5=~/gem5/build/VEGA_X86/gem5.opt LAYERLAB_GEM5_SRC=~/gem5 \\
  LAYERLAB_IMAGE=~/.cache/layerlab/images/layerlab-default.manifest.json layerlab demo

Parts: 1. the analytical estimate of one Llama-3.2-1B decode layer on gem5's MI300X machine;
2. the quick-start experiment's plan, rendered and preflighted against a real gem5 tree;
3. with gem5 and an image configured (`layerlab doctor` passes), that experiment end to end and
its report; else the pipeline SELF-TEST on the gem5 test double (its cycles are a stand-in's,
and every page says so) and its report, then what a real run still needs."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help=SUMMARIES["demo"], description=SUMMARIES["demo"], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--out", metavar="DIR", default="demo-out", help="output folder (default demo-out)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.demo import main

    return main(Path(args.out), lambda line: print(line, flush=True))
