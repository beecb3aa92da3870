"""The CLI frame: lazy command loading, one-line argument errors, --json everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.cli import COMMANDS, main
from orchestrator.commands import SUMMARIES


def test_help_lists_every_command_without_loading_any() -> None:
    code = (
        "import sys, orchestrator.cli as c\n"
        "c.build_parser(['--help'])\n"
        "heavy = [m for m in ('pandas', 'polars', 'numba', 'numpy', 'analytical', 'stats_parsers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    text = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in text and SUMMARIES[name].split()[0] in text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["render", "--window", "-3:5", "--out", "x"], "not a window: '-3:5'"),
        (["estimate", "--model"], "argument --model: expected one argument"),
        (["stats"], "the following arguments are required: path"),
        (["window", "run", "--step", "x", "--layer", "1"], "invalid int value: 'x'"),
    ],
)
def test_argument_errors_are_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "--help" in err and "usage:" not in err


@pytest.mark.parametrize("name", ["estimate", "census", "window", "stats", "slice", "render", "preflight"])
def test_json_flag_wherever_format_json_works(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert "--json" in capsys.readouterr().out
