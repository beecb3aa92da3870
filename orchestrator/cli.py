"""``layerlab``: one command, git-style subcommands, one module per subcommand.

Each module in ``orchestrator.commands`` exposes ``register(subparsers)``; it adds its parser
and sets ``func`` to a function taking the parsed namespace and returning an exit code.
Bad input (``InputError``) becomes one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from foundation.errors import InputError

#: Subcommands in the order ``--help`` lists them (data-flow order).
COMMANDS = ("estimate", "slice", "census", "window", "render", "preflight", "stats")

EPILOG = """\
typical session (one layer of one decode step, from estimate to simulated cycles):
  layerlab estimate --model llama-3.2-1b --hardware gem5-mi300 --phase decode --context 1024
  layerlab render --device mi300x --gem5-version v24.0 --out runs/census --skip-until 1000000000 \\
      --kernel vmlinux-gpu-ml --disk x86-ubuntu-gpu-ml -- python3 /opt/layerlab/drivers/layer.py \\
      --config /opt/layerlab/model_configs/llama-3.2-1b.json --phases decode -C 1024 -D 2 --markers gem5
  layerlab census runs/census                       # kernel map from the skip-all run's markers
  layerlab window runs/census --step 1 --layer 3    # -> --skip-until-gpu-kernel=K --exit-after-gpu-kernel=M
  layerlab render ... --window K:M --per-kernel-dumps --out runs/l3 -- <the same guest command>
  layerlab stats runs/l3/m5out --kernels            # one row per simulated kernel

Run 'layerlab <command> --help' for the options of one command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerlab",
        description="Simulate one transformer layer on gem5's AMD GPU model and check it against a roofline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="layerlab 0.1.0")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        module = importlib.import_module(f"orchestrator.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"layerlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `layerlab stats ... | head` is normal use
        return 0


if __name__ == "__main__":
    sys.exit(main())
