"""``-o FILE`` never replaces what is not a regular file, and never creates directories.

Run as root these matter most: a rename over ``/dev/null`` turns the device into a regular
file for the whole machine. Every special file here is real (``os.mkfifo``, ``os.mknod``) and
made in the test's temp dir; ``/dev/null`` itself is only written, and checked afterwards.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest

from foundation import atomic
from foundation.errors import InputError
from orchestrator.cli import main
from orchestrator.output import emit, write_output

ESTIMATE = [
    "estimate",
    "--model",
    "llama-3.2-1b",
    "--hardware",
    "mi300x",
    "--phase",
    "decode",
    "--context",
    "16",
]
FRAME = pd.DataFrame({"op": ["q_proj", "o_proj"], "flops": [1.0, 2.0]})
CSV = FRAME.to_csv(index=False)


def cli(argv: list[str]) -> int:
    """The exit status of ``layerlab ARGV`` (an -o refused while parsing exits via SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


class FifoReader(threading.Thread):
    """Reads a FIFO to its end (a writer's open blocks until a reader opens it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = b""

    def run(self) -> None:
        with open(self.path, "rb") as handle:
            self.data = handle.read()


def _null_device(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("os.mknod of a character device needs root")
    null = os.stat("/dev/null")
    path = tmp_path / "null"
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(os.major(null.st_rdev), os.minor(null.st_rdev)))
    return path


# -- character devices --------------------------------------------------------------------------


def test_estimate_to_dev_null_keeps_the_device(capsys: pytest.CaptureFixture[str]) -> None:
    before = os.stat("/dev/null")
    assert cli([*ESTIMATE, "--format", "csv", "-o", "/dev/null"]) == 0
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert capsys.readouterr().out == ""
    assert not [n for n in os.listdir("/dev") if n.startswith(".null.")]  # no temp file left in /dev


@pytest.mark.parametrize("fmt", ["csv", "json", "table", "parquet"])
def test_char_device_is_written_in_place(fmt: str, tmp_path: Path) -> None:
    device = _null_device(tmp_path)
    rdev = device.stat().st_rdev
    assert cli([*ESTIMATE, "--format", fmt, "-o", str(device)]) == 0
    assert stat.S_ISCHR(device.stat().st_mode) and device.stat().st_rdev == rdev
    assert _listing(tmp_path) == ["null"]


def test_atomic_writers_keep_a_char_device(tmp_path: Path) -> None:
    device = _null_device(tmp_path)
    atomic.write_text(device, "text")
    atomic.write_bytes(device, b"bytes")
    atomic.write_with(device, lambda tmp: Path(tmp).write_bytes(b"by path"))
    assert stat.S_ISCHR(device.stat().st_mode)
    assert _listing(tmp_path) == ["null"]


# -- FIFOs --------------------------------------------------------------------------------------


def test_fifo_is_written_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(fifo)]) == 0
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert reader.data.decode().startswith("hardware,model,")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert _listing(tmp_path) == ["pipe"]


def test_fifo_gets_parquet_bytes(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    emit(FRAME, "parquet", str(fifo))
    reader.join(timeout=30)
    assert pd.read_parquet(io.BytesIO(reader.data)).equals(FRAME)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and _listing(tmp_path) == ["pipe"]


def test_write_with_streams_into_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    atomic.write_with(fifo, lambda tmp: Path(tmp).write_bytes(b"made by path"))
    reader.join(timeout=30)
    assert reader.data == b"made by path" and stat.S_ISFIFO(fifo.lstat().st_mode)


# -- symlinks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True])
def test_symlink_writes_its_target_in_the_target_directory(tmp_path: Path, relative: bool) -> None:
    links, data = tmp_path / "links", tmp_path / "data"
    links.mkdir()
    data.mkdir()
    real = data / "real.csv"
    real.write_text("old\n")
    link = links / "link.csv"
    link.symlink_to(Path("..", "data", "real.csv") if relative else real)
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(
        Path("..", "data", "real.csv") if relative else real
    )
    assert real.read_text().startswith("hardware,model,")
    assert _listing(links) == ["link.csv"] and _listing(data) == ["real.csv"]  # no temp files


def test_symlink_target_is_replaced_atomically(tmp_path: Path) -> None:
    real = tmp_path / "d" / "real.txt"
    real.parent.mkdir()
    real.write_text("old")
    inode = real.stat().st_ino
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(RuntimeError), atomic.atomic_open(link) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert real.read_text() == "old" and _listing(real.parent) == ["real.txt"]
    atomic.write_text(link, "new")
    assert real.read_text() == "new" and real.stat().st_ino != inode and link.is_symlink()


def test_dangling_symlink_writes_the_target_path(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "d" / "new.csv")
    write_output(str(link), CSV)
    assert link.is_symlink() and (tmp_path / "d" / "new.csv").read_text() == CSV


def test_dangling_symlink_into_a_missing_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "nodir" / "new.csv")
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(link)]) == 2
    line = _one_error_line(capsys)
    assert str(link) in line and "no such directory" in line
    assert _listing(tmp_path) == ["link.csv"] and link.is_symlink()


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(InputError, match="loop"):
        atomic.write_text(a, "x")


# -- missing directories, directories, stdout ---------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [*ESTIMATE, "--format", "csv"],
        [*ESTIMATE, "--format", "parquet"],
        ["stats", "STATS", "--format", "json"],
    ],
    ids=["estimate-csv", "estimate-parquet", "stats-json"],
)
def test_missing_parent_directory_is_refused(
    argv: list[str], tmp_path: Path, fixtures_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = fixtures_dir / "gem5_cpu_stats" / "gem5-2023_x86_bfs_units_stats.txt"
    target = tmp_path / "no" / "such" / "out.file"
    words = [str(stats) if w == "STATS" else w for w in argv]
    assert cli([*words, "-o", str(target)]) == 2
    line = _one_error_line(capsys)
    assert str(target) in line and "no such directory" in line
    assert _listing(tmp_path) == []


def test_window_json_refuses_missing_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_bad_input_corpus import census_run

    run = census_run(tmp_path)
    target = tmp_path / "nodir" / "w.json"
    assert cli(["window", str(run), "--step", "0", "--layer", "0", "--json", "-o", str(target)]) == 2
    assert "no such directory" in _one_error_line(capsys)
    assert not (tmp_path / "nodir").exists()
    assert (
        cli(["window", str(run), "--step", "0", "--layer", "0", "--json", "-o", str(tmp_path / "w.json")])
        == 0
    )
    assert '"skip_until": 0' in (tmp_path / "w.json").read_text()


def test_emit_refuses_missing_parent_after_parsing(tmp_path: Path) -> None:
    """The write itself refuses too (the -o check at parse time is not the only guard)."""
    target = tmp_path / "gone" / "out.csv"
    for fmt in ("csv", "parquet"):
        with pytest.raises(InputError, match="no such directory"):
            emit(FRAME, fmt, str(target))
    with pytest.raises(InputError, match="no such directory"):
        atomic.write_text(target, "x", make_parents=False)
    with pytest.raises(InputError, match="no such directory"):
        atomic.write_with(target, lambda tmp: None, make_parents=False)
    assert _listing(tmp_path) == []


def test_internal_writers_may_still_create_directories(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "deep" / "x.txt"
    atomic.write_text(target, "x", make_parents=True)
    atomic.write_with(tmp_path / "a" / "b.bin", lambda tmp: Path(tmp).write_bytes(b"b"))  # default
    assert target.read_text() == "x" and (tmp_path / "a" / "b.bin").read_bytes() == b"b"


def test_directory_as_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert str(tmp_path) in line and "is a directory" in line
    with pytest.raises(InputError, match="is a directory"):
        emit(FRAME, "csv", str(tmp_path))
    assert _listing(tmp_path) == []


def test_dash_is_stdout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli([*ESTIMATE, "--format", "csv", "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("hardware,model,")
    emit(FRAME, "json", "-")
    assert '"op": "q_proj"' in capsys.readouterr().out
    assert _listing(tmp_path) == []  # no file named '-'


def test_dash_takes_parquet_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfdbinary) -> None:
    monkeypatch.chdir(tmp_path)
    emit(FRAME, "parquet", "-")
    out = capfdbinary.readouterr().out
    assert out[:4] == b"PAR1" and pd.read_parquet(io.BytesIO(out)).equals(FRAME)
    assert _listing(tmp_path) == []


# -- regular files stay atomic ------------------------------------------------------------------


def test_regular_file_is_replaced_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    inode = target.stat().st_ino
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(target)]) == 0
    assert target.read_text().startswith("hardware,model,") and target.stat().st_ino != inode
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert _listing(tmp_path) == ["out.csv"]


def test_failed_write_leaves_a_regular_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, broken)
    assert target.read_bytes() == b"old" and _listing(tmp_path) == ["out.bin"]


def test_unwritable_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory we may not write into (here: a file in the way) is an InputError, not OSError."""
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out.csv"
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(target)]) == 2
    assert "not a directory" in _one_error_line(capsys)


def test_estimate_plot_refuses_missing_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nodir" / "roofline.png"
    # refused while the arguments are parsed, before any work
    assert cli([*ESTIMATE, "--format", "csv", "-o", "/dev/null", "--plot", str(target)]) == 2
    assert "no such directory" in _one_error_line(capsys)
    assert not (tmp_path / "nodir").exists()


def test_estimate_plot_keeps_a_char_device(tmp_path: Path) -> None:
    device = _null_device(tmp_path)
    assert cli([*ESTIMATE, "--format", "csv", "-o", str(device), "--plot", str(device)]) == 0
    assert stat.S_ISCHR(device.stat().st_mode) and _listing(tmp_path) == ["null"]
