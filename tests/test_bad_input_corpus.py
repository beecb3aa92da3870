"""Every subcommand against a corpus of bad input files: one clear line, exit 2, nothing written.

Each case runs ``layerlab <command> ... PATH`` in-process where PATH is one of: an empty file,
binary garbage, non-UTF-8 text, truncated JSON, truncated stats text, a file of the wrong
format (CSV where JSON is expected, JSON where text is), valid JSON of the wrong shape, a path
that does not exist, or a directory instead of a file. It must exit 2 with exactly one line on
stderr that names PATH, never a traceback, and write nothing: the temp tree (stats cache
included) is the same before and after, and the ``-o`` file does not exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gem5_configs_support import FAKE_SRC

from foundation import events
from orchestrator.cli import main
from orchestrator.commands import SUMMARIES

REAL_STATS = "gem5_cpu_stats/gem5-2023_x86_bfs_units_stats.txt"

# -- the corpus ---------------------------------------------------------------------------------

CORPUS: dict[str, bytes | None] = {
    "empty": b"",
    "binary": bytes(range(256)) * 8 + b"\x00\x00\xff\xfe\x89PNG\r\n\x1a\n",
    "non_utf8": "caf\u00e9 na\u00efve r\u00e9sum\u00e9, \u00a9 1999\nline two \u00ff\n".encode("latin-1") * 4,
    "truncated_json": b'{"schema": "layerlab-markers/1", "markers": [{"id": 1, "lab',
    "truncated_stats": b"\n---------- Begin Simulation Stat",
    "csv": b"kernel,start_ns,duration_ns\nfoo,1,2\nbar,3,4\n",
    "json_text": b'{"simSeconds": 0.001, "note": "JSON where text is expected"}\n',
    "wrong_json": b"[1, 2, 3]\n",
    "missing": None,  # a path that does not exist
    "directory": None,  # an empty directory where a file is expected
}


def make_input(root: Path, kind: str, name: str) -> Path:
    folder = root / "in"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if kind == "directory":
        path.mkdir()
    elif kind != "missing":
        data = CORPUS[kind]
        assert data is not None
        path.write_bytes(data)
    return path


# -- a valid census run (for `census RUN --markers PATH`) ---------------------------------------


def census_run(root: Path) -> Path:
    """The smallest census run the census accepts: one step, one layer, one kernel each."""
    run = root / "census_run"
    run.mkdir()
    start = {
        "kind": "start",
        "schema": events.SCHEMA,
        "run_id": "00000000census00",
        "skip_until": 10**9,
        "exit_after": -1,
        "exit_at_task": 10**8,
        "dump_per_kernel": False,
        "gem5_profile": "v24.0",
        "tick": 0,
    }
    from workloads.drivers import markers as mk

    items = [("b", mk.encode(0)), ("b", mk.encode(0, 0)), ("k",), ("e", mk.encode(0, 0)), ("e", mk.encode(0))]
    records = [start]
    kernels = 0
    for seq, item in enumerate(items):
        kind = {"k": "skip", "b": "workbegin", "e": "workend"}[item[0]]
        index = None
        if kind == "skip":
            index, kernels = kernels, kernels + 1
        records.append(
            {
                "seq": seq,
                "kind": kind,
                "cause": "Skipping GPU Kernel" if kind == "skip" else kind,
                "exit_code": item[1] if len(item) > 1 else 0,
                "tick": 1000 * seq,
                "kernel_index": index,
                "kernels_done": kernels,
                "tasks_done": kernels,
                "dump": None,
                "dump_suppressed": False,
                "reset": False,
            }
        )
    (run / events.FILENAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


# -- the commands -------------------------------------------------------------------------------

Argv = Callable[[Path, Path, Path], list[str]]  # (input path, tmp root, -o file) -> argv


def _render(path: Path, root: Path, out: Path) -> list[str]:
    disk = root / "disk.img"
    disk.write_bytes(b"")
    return [
        "render",
        "--device",
        "mi300x",
        "--gem5-version",
        "v24.0",
        "--out",
        str(root / "run"),
        "--kernel",
        str(path),
        "--disk",
        str(disk),
        "--gem5-src",
        str(FAKE_SRC),
        "--",
        "python3",
        "/opt/layerlab/drivers/layer.py",
    ]


#: name -> (input file name, argv). The file name carries the suffix the command expects.
COMMANDS: dict[str, tuple[str, Argv]] = {
    "estimate --model": (
        "config.json",
        lambda p, r, o: [
            "estimate",
            "--model",
            str(p),
            "--hardware",
            "mi300x",
            "--phase",
            "decode",
            "--context",
            "16",
            "-o",
            str(o),
        ],
    ),
    "slice (json)": ("trace.json", lambda p, r, o: ["slice", str(p), "--layers", "2", "-o", str(o)]),
    "slice (csv)": ("results.csv", lambda p, r, o: ["slice", str(p), "--layers", "2", "-o", str(o)]),
    "slice (log)": ("debug.log", lambda p, r, o: ["slice", str(p), "--layers", "2", "-o", str(o)]),
    "census": (events.FILENAME, lambda p, r, o: ["census", str(p), "-o", str(o)]),
    "census --markers": (
        "layerlab_markers.json",
        lambda p, r, o: ["census", str(census_run(r)), "--markers", str(p), "-o", str(o)],
    ),
    "window": (
        events.FILENAME,
        lambda p, r, o: ["window", str(p), "--step", "0", "--layer", "0", "-o", str(o)],
    ),
    # a census run whose saved kernel map is the bad file (window reads it before the side-file)
    "window (kernel map)": (
        "layerlab_kernel_map.json",
        lambda p, r, o: ["window", str(p.parent), "--step", "0", "--layer", "0", "-o", str(o)],
    ),
    "stats (txt)": ("stats.txt", lambda p, r, o: ["stats", str(p), "-o", str(o)]),
    "stats (json)": ("stats.json", lambda p, r, o: ["stats", str(p), "-o", str(o)]),
    "stats --kernels": ("stats.txt", lambda p, r, o: ["stats", str(p), "--kernels", "-o", str(o)]),
    "preflight": ("run", lambda p, r, o: ["preflight", str(p)]),
    "run": ("spec.yaml", lambda p, r, o: ["run", str(p), "--workspace", str(r / "ws"), "--quiet"]),
    "status": ("spec.yaml", lambda p, r, o: ["status", str(p), "--workspace", str(r / "ws")]),
    "doctor --spec": ("spec.yaml", lambda p, r, o: ["doctor", "--spec", str(p)]),
    "cancel": ("spec.yaml", lambda p, r, o: ["cancel", str(p), "--workspace", str(r / "ws")]),
    "collect": ("spec.yaml", lambda p, r, o: ["collect", str(p), "--workspace", str(r / "ws"), "-o", str(o)]),
    # a spec (a file) or a run directory (a directory): either way nothing may be written to --out
    "report": ("spec.yaml", lambda p, r, o: ["report", str(p), "--out", str(o)]),
    # a trace alone (no runs): the trace is read and checked before anything is written
    "report --measured": ("trace.json", lambda p, r, o: ["report", "--measured", str(p), "--out", str(o)]),
    "calibrate": ("ops.csv", lambda p, r, o: ["calibrate", str(p), "-o", str(o)]),
    "render --kernel": ("vmlinux", _render),
    "image inspect": ("disk.img", lambda p, r, o: ["image", "inspect", str(p)]),
    "image build": ("recipe.yaml", lambda p, r, o: ["image", "build", str(p), "--out", str(r / "images")]),
    # the demo's only input is its output folder: a file in its place is refused before anything runs
    "demo": ("demo-out", lambda p, r, o: ["demo", "--out", str(p)]),
}

#: Inputs that are not bad input for a command, so they are not in its corpus.
ACCEPTED: dict[str, set[str]] = {
    # no saved kernel map (missing, or a directory in its place) is fine: the side-file is read
    "window (kernel map)": {"missing", "directory"},
    # a missing folder is made, an existing one is written into: both are what --out means
    "demo": {"missing", "directory"},
    # gem5 reads the kernel, not layerlab: any regular file is a kernel to render (the tests'
    # own kernels are empty files); only a missing path or a directory is bad input.
    "render --kernel": {
        "empty",
        "binary",
        "non_utf8",
        "truncated_json",
        "truncated_stats",
        "csv",
        "json_text",
        "wrong_json",
    },
}

#: (command, kind) -> why it still fails; the fix lies in a file this change may not edit.
XFAIL: dict[tuple[str, str], str] = {}


def _cases() -> list:
    out = []
    for command in COMMANDS:
        for kind in CORPUS:
            if kind in ACCEPTED.get(command, set()):
                continue
            marks = []
            name = command.split()[0]
            if name not in SUMMARIES or importlib.util.find_spec(f"orchestrator.commands.{name}") is None:
                marks.append(pytest.mark.skip(reason=f"no `{name}` subcommand here"))
            if (command, kind) in XFAIL:
                marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[(command, kind)]))
            out.append(pytest.param(command, kind, id=f"{command}-{kind}", marks=marks))
    return out


def test_every_subcommand_is_in_the_corpus() -> None:
    assert set(SUMMARIES) <= {command.split()[0] for command in COMMANDS}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime (a directory's size is 0)."""
    tree = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            tree[str(path.relative_to(root))] = (0 if path.is_dir() else info.st_size, info.st_mtime_ns)
    return tree


@pytest.mark.parametrize(("command", "kind"), _cases())
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(
    command: str,
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LAYERLAB_CACHE_DIR", str(tmp_path / "cache"))
    name, argv = COMMANDS[command]
    path = make_input(tmp_path, kind, name)
    out = tmp_path / "result.out"
    words = argv(path, tmp_path, out)
    before = snapshot(tmp_path)
    code = main(words)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert code == 2, f"exit {code}; stderr: {captured.err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert str(path) in lines[0] or path.name in lines[0], f"the error does not name {path}: {lines[0]!r}"
    assert not out.exists()
    assert snapshot(tmp_path) == before, "a failed command wrote or changed files"


def test_real_gem5_json_stats_parse(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stats stats.json` (pystats) is listed as supported: it prints the long table."""
    source = fixtures_dir / "gem5_stats_json"
    path = tmp_path / "stats.json"
    path.write_bytes(next(source.glob("*.json")).read_bytes())
    assert main(["stats", str(path), "--format", "csv", "--description"]) == 0
    captured = capsys.readouterr()
    header, first = captured.out.splitlines()[:2]
    assert header.split(",")[:4] == ["dump", "name", "value", "unit"] and "description" in header
    assert first.startswith("0,generator.totalUpdates,1000,Count,")
    assert captured.err.splitlines() == ["layerlab stats: note: JSON stats: last dump only, no formulas"]


def test_census_markers_non_utf8_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = census_run(tmp_path)
    table = tmp_path / "markers.json"
    table.write_bytes(b'{"schema": "layerlab-markers/1", "markers": [{"id": 1, "label": "caf\xe9"}]}')
    assert main(["census", str(run), "--markers", str(table)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(table) in err and "UTF-8" in err


@pytest.mark.parametrize(
    "table",
    [
        {"schema": "layerlab-markers/1", "markers": "m"},
        {"schema": "layerlab-markers/1", "markers": [7]},
        {"schema": "layerlab-markers/1", "markers": [{"label": "no id"}]},
        {"schema": "layerlab-markers/1", "steps": [{"step": "first"}]},
    ],
)
def test_census_markers_wrong_shape_is_one_line(
    table: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = census_run(tmp_path)
    path = tmp_path / "markers.json"
    path.write_text(json.dumps(table))
    assert main(["census", str(run), "--markers", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err


def test_truncated_real_stats_text_still_parses(
    fixtures_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stats.txt cut inside its last block is not bad input: its complete lines are kept."""
    data = (fixtures_dir / REAL_STATS).read_bytes()
    path = tmp_path / "stats.txt"
    path.write_bytes(data[: len(data) // 2])
    assert main(["stats", str(path), "--format", "csv", "--no-cache"]) == 0
    assert "simSeconds" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("stats (json)", "non_utf8"),
        ("census --markers", "non_utf8"),
        ("slice (json)", "binary"),
        ("window", "binary"),
    ],
)
def test_bad_input_in_a_real_process(command: str, kind: str, tmp_path: Path) -> None:
    """The installed CLI as a process: exit 2, one stderr line naming the file (no warnings either)."""
    name, argv = COMMANDS[command]
    path = make_input(tmp_path, kind, name)
    out = tmp_path / "result.out"
    env = {**os.environ, "LAYERLAB_CACHE_DIR": str(tmp_path / "cache")}
    words = argv(path, tmp_path, out)
    before = snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *words],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and str(path) in lines[0], lines
    assert not out.exists() and snapshot(tmp_path) == before
