"""The shared foundation: input errors, atomic writes, the window type, the events schema, the CLI frame."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation import atomic, events
from foundation.errors import InputError, unknown_name
from foundation.vocabulary import SKIP_ALL, Window
from orchestrator.cli import COMMANDS, build_parser, main


def test_unknown_name_suggests_close_matches() -> None:
    err = unknown_name("hardware", "mi30x", ["MI300X", "MI210", "A100"])
    assert "did you mean 'MI300X'" in str(err)
    err = unknown_name("hardware", "zzz", ["b", "a"])
    assert "choose one of: a, b" in str(err)


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_atomic_write_with_callback(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.bin"
    atomic.write_with(target, lambda tmp: Path(tmp).write_bytes(b"abc"))
    assert target.read_bytes() == b"abc"


def test_window_semantics() -> None:
    window = Window(8, 9)
    assert window.num_kernels == 2
    assert window.contains(8) and window.contains(9) and not window.contains(10)
    assert window.gem5_options() == ["--skip-until-gpu-kernel=8", "--exit-after-gpu-kernel=9"]
    assert SKIP_ALL > 10**8


@pytest.mark.parametrize(("skip", "exit_after"), [(-1, 3), (5, 4)])
def test_window_rejects_bad_bounds(skip: int, exit_after: int) -> None:
    with pytest.raises(InputError, match="window"):
        Window(skip, exit_after)


def _write_events(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


START = {
    "kind": "start",
    "schema": events.SCHEMA,
    "run_id": "0123456789abcdef",
    "skip_until": 2,
    "exit_after": 2,
    "exit_at_task": -1,
    "dump_per_kernel": True,
    "gem5_profile": "v24.0",
    "tick": 0,
}


def _event(seq: int, cause: str, **fields: object) -> dict:
    base = {
        "seq": seq,
        "kind": events.kind_of(cause),
        "cause": cause,
        "exit_code": 0,
        "tick": 1000 * (seq + 1),
        "kernel_index": None,
        "kernels_done": 0,
        "tasks_done": 0,
        "dump": None,
        "dump_suppressed": False,
        "reset": False,
    }
    base.update(fields)
    return base


def test_read_events_roundtrip(tmp_path: Path) -> None:
    records = [
        START,
        _event(0, "Skipping GPU Kernel", kernel_index=0, kernels_done=1, tasks_done=1, reset=True),
        _event(1, "workbegin", exit_code=1001001),
        _event(2, "GPU Blit Kernel Completed", kernels_done=1, tasks_done=2, dump=0, reset=True),
        _event(3, "GPU Kernel Completed", kernel_index=1, kernels_done=2, tasks_done=3, dump=1, reset=True),
        {
            "kind": "end",
            "cause": "m5_exit instruction encountered",
            "exit_code": 0,
            "tick": 9000,
            "kernels_done": 2,
            "tasks_done": 3,
            "expected": True,
            "tail_dump": 2,
        },
    ]
    _write_events(tmp_path / events.FILENAME, records)
    start, table, end = events.read_events(tmp_path)
    assert start["skip_until"] == 2
    assert list(table["kind"]) == ["skip", "workbegin", "blit", "kernel"]
    assert table["dump"].isna().tolist() == [True, True, False, False]
    assert end is not None and end["tail_dump"] == 2


def test_read_events_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / events.FILENAME
    bad = dict(_event(0, "GPU Kernel Completed"))
    del bad["tick"]
    _write_events(path, [START, bad])
    with pytest.raises(InputError, match=r"layerlab_events.jsonl:2: kernel record lacks field\(s\) tick"):
        events.read_events(path)
    path.write_text(json.dumps(START) + "\n" + '{"kind": "kern')
    with pytest.raises(InputError, match=r":2: not a JSON record"):
        events.read_events(path)
    with pytest.raises(InputError, match="not found"):
        events.read_events(tmp_path / "missing")
    # A field of the wrong type is named with its line, not a traceback from pandas.
    for field, value in (("tick", None), ("seq", "seven"), ("dump", [1])):
        odd = {**_event(0, "GPU Kernel Completed"), field: value}
        _write_events(path, [START, _event(1, "Skipping GPU Kernel"), odd])
        with pytest.raises(InputError, match=rf"jsonl:3: field '{field}' is .*, not an integer"):
            events.read_events(path)


def test_cli_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for name in COMMANDS:
        assert name in help_text
    assert main([]) == 2


def test_cli_input_error_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.cli as cli

    parser = build_parser()

    def boom(args: object) -> int:
        raise InputError("config.json: missing field 'hidden_size'")

    monkeypatch.setattr(cli, "build_parser", lambda argv=None: parser)
    parser.set_defaults(func=boom, command="x")
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing field 'hidden_size'" in err
