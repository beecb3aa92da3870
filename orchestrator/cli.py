"""``layerlab``: one command, git-style subcommands, one module per subcommand.

Each module in ``orchestrator.commands`` exposes ``register(subparsers)``; it adds its parser
and sets ``func`` to a function taking the parsed namespace and returning an exit code. Only the
chosen command's module is imported (``layerlab --help`` lists the others from
``orchestrator.commands.SUMMARIES``), so starting the CLI costs no pandas, polars or numba.
Bad input (``InputError``) and argument errors become one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from foundation.errors import InputError
from orchestrator.commands import SUMMARIES

#: Subcommands in the order ``--help`` lists them (data-flow order).
COMMANDS = tuple(SUMMARIES)

EPILOG = """\
typical session (layer 3 of the first decode step, from estimate to simulated cycles):
  layerlab estimate --model llama-3.2-1b --hardware gem5-mi300x --phase decode --context 1024
  layerlab render --device mi300x --gem5-version v24.0 --out runs/census --skip-until 1000000000 \\
      --kernel vmlinux --disk disk.img --gem5-src ~/gem5 -- python3 /opt/layerlab/drivers/layer.py \\
      --config /opt/layerlab/model_configs/llama-3.2-1b.json --num-layers 16 --phases decode \\
      --context 1024 --decode-steps 2 --markers gem5
  layerlab preflight runs/census                    # check it against the gem5 tree's own Python
  runs/census/run.sh                                # gem5 runs the census (every kernel skipped)
  layerlab census runs/census                       # kernel map from the census run's markers
  layerlab render --from-census runs/census --step 1 --layer 3 --out runs/l3
  runs/l3/run.sh                                    # gem5 simulates exactly that layer
  layerlab stats runs/l3 --kernels                  # one row per simulated kernel

Run 'layerlab <command> --help' for the options of one command.
"""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming the problem, plus where help is (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the line (the first word that is one), if any."""
    for word in argv:
        if word in SUMMARIES:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command chosen in ``argv`` (all, when ``argv`` is None) is loaded."""
    parser = OneLineParser(
        prog="layerlab",
        description="Simulate one transformer layer on gem5's AMD GPU model and check it against a roofline.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="layerlab 0.1.0")
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", parser_class=OneLineParser)
    chosen = _chosen(argv) if argv is not None else None
    for name in COMMANDS:
        if argv is None or name == chosen:
            importlib.import_module(f"orchestrator.commands.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=SUMMARIES[name])
    return parser


def _join_dash_values(words: list[str]) -> list[str]:
    """``--window -3:5`` -> ``--window=-3:5``: argparse reads a value starting with '-' as an option
    and says "expected one argument"; joined, the value reaches its own check and error."""
    out: list[str] = []
    for word in words:
        if out and out[-1] in _VALUE_FLAGS and word.startswith("-") and word not in ("-", "--"):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


#: Options whose values may legitimately start with '-' in a mistake worth a clear message.
_VALUE_FLAGS = frozenset({"--window", "--skip-until", "--exit-after", "--layers", "--step", "--layer"})


def main(argv: Sequence[str] | None = None) -> int:
    words = _join_dash_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(words)
    args = parser.parse_args(words)
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
