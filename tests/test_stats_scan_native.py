"""The C scan kernel (``stats_parsers/_scan.c``) against the numba kernel and the polars path.

All three must give the same table (or the same error) on every real fixture and on files made
to hit each edge of the grammar, of the C kernel's own reader (refills, lines longer than its
buffer, chunks that own no line), of its tables (regrowth) and of its byte checks (control
bytes, UTF-8). Also: how the library is built and found, and that ``layerlab stats`` on a big
file imports neither numba nor pandas. No timings here (see benchmarks/bench_stats.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from foundation.errors import InputError
from stats_parsers import scan, scan_c
from stats_parsers import stats_text as text_mod

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = ("gem5_cpu_stats", "gem5_gpu_stats")
BEGIN = "---------- Begin Simulation Statistics ----------"
END = "---------- End Simulation Statistics   ----------"


def _fixtures(fixtures_dir: Path) -> list[Path]:
    found = sorted(p for d in FIXTURE_DIRS for p in (fixtures_dir / d).glob("*.txt"))
    assert len(found) >= 7, found
    return found


@pytest.fixture(autouse=True)
def _c_library():
    if scan_c.library() is None:
        pytest.fail("the C scanner did not build: is a C compiler (cc) installed?", pytrace=False)


def _outcome(monkeypatch, path: Path, kernel: str | None, **kwargs):
    """(table, what the parse noticed) or ("error", message), by one kernel or the polars path
    (``kernel=None``); asserts a native parse really was native."""
    monkeypatch.setattr(text_mod, "_NATIVE", kernel is not None)
    monkeypatch.setattr(text_mod, "_NATIVE_MIN_BYTES", 0)
    monkeypatch.setattr(text_mod, "_PYTHON_MAX_BYTES", 0)  # small files: still the path asked for
    monkeypatch.setattr(scan, "KERNEL", kernel)
    used = []
    if kernel is not None:
        real = scan.scan_file
        monkeypatch.setattr(scan, "scan_file", lambda *a: used.append(scan.kernel().__name__) or real(*a))
    try:
        parsed = text_mod.parse_stats_text(path, **kwargs)
    except InputError as exc:
        result = "error", str(exc)
    else:
        result = parsed.frame, (parsed.messages, parsed.truncated, parsed.skipped_lines, parsed.notes)
    if kernel is not None:
        assert used == [f"stats_parsers.scan_{kernel}"], used
    return result


def _canon(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("line", "key", maintain_order=True).select(pl.all().cast(pl.String))


def _same(a, b, exact: bool = True) -> None:
    assert a[1] == b[1]
    if not isinstance(a[0], str):
        assert a[0].schema == b[0].schema
        assert a[0].equals(b[0]) if exact else _canon(a[0]).equals(_canon(b[0]))


@pytest.mark.parametrize("description", [False, True])
def test_c_numba_and_polars_agree_on_every_real_fixture(fixtures_dir: Path, monkeypatch, description) -> None:
    for path in _fixtures(fixtures_dir):
        c = _outcome(monkeypatch, path, "c", description=description)
        numba = _outcome(monkeypatch, path, "numba", description=description)
        polars = _outcome(monkeypatch, path, None, description=description)
        assert not isinstance(c[0], str), (path, c)
        _same(c, numba)  # the two kernels take the same lines: same rows in the same order
        _same(c, polars)  # bit for bit, row for row


_IRREGULAR = [
    "this is not a stat line",
    "system.a.plus +5 # plus sign",
    "system.a.dot 1. # trailing dot",
    "system.a.exp 1E5 # capital E",
    "system.a.tab\t5",
    "system.a.big 123456789012345678901234 # beyond int64",
    "system.a.max 9223372036854775807",
    "system.a.over 9223372036854775808",
    "system.a.min -9223372036854775808",
    "system.a.under -9223372036854775809",
    "system.a.zeros 0000000000000000000000012",
    "system.a.negzero -0 # (Count)",
    "system.a.far " + " " * 120 + "7 # value past the window",
    "system.a.edge " + " " * 81 + "7",  # the value ends right at the window's edge
    "system.a.dist::1 3 nan% inf% # odd percentages",
    "system.a.dist::2 3 50.0% # one percentage",
    "system.a.dist::3 3 25% 75% (Count)",
    "system.a.paren 4 (not a unit) trailing",
    "system.a.micro 5 # time in µs (Second)",
    "system.a.nan -nan",
    "system.a.inf -inf (Tick)",
    "  system.a.indented 1",
    "system.a.cr 5 # carriage return\r",
    "system.a.one |1 50.00% 50.00% |1 50.00% 100.00% # one-line (Count)",
    "system.a.one2 |1 |2|3 |x # odd cells",
    "system.a.one3::k |1 |2 # a key",
    "",
    "   ",
]


@pytest.mark.parametrize("strict", [True, False])
def test_irregular_lines_agree(fixtures_dir: Path, tmp_path: Path, monkeypatch, strict) -> None:
    """A real file with every odd line kind inserted at once: the same lines are taken and the
    same handed back, so both kernels give the same rows and the polars path the same table."""
    lines = (fixtures_dir / FIXTURE_DIRS[0] / "gem5-2023_x86_bfs_units_stats.txt").read_text().split("\n")
    for i, odd in enumerate(_IRREGULAR):
        lines.insert(30 + 7 * i, odd)
    path = tmp_path / "stats.txt"
    path.write_text("\n".join(lines))
    c = _outcome(monkeypatch, path, "c", strict=strict, description=True)
    numba = _outcome(monkeypatch, path, "numba", strict=strict, description=True)
    polars = _outcome(monkeypatch, path, None, strict=strict, description=True)
    _same(c, numba)
    _same(c, polars, exact=False)  # lines the scan hands back may move to the pdf/cdf section
    if strict:
        assert c[0] == "error" and ":31: " in c[1]


@pytest.mark.parametrize(("block", "chunk"), [(7, 997), (64, 4096), (4096, 64), (1 << 16, 50_000)])
def test_reader_refills_and_long_lines(tmp_path: Path, monkeypatch, block: int, chunk: int) -> None:
    """Reads smaller than a line, a one-line list longer than the read buffer, chunks that own
    no line, CRLF and no final newline: every line read once, by the chunk where it starts."""
    buckets = " ".join(f"|{i} 0.{i % 10}% {min(i, 99)}.0%" for i in range(600))
    text = (
        f"\n{BEGIN}\n"
        "simTicks                 1000   # Number of ticks simulated (Tick)\n"
        "system.dist::bucket_size    1   # d (Count)\n"
        f"system.dist     {buckets}   # one-line distribution (Count)\n"
        "system.cpu.ipc       0.5   # IPC ((Count/Cycle))\r\n"
        f"{END}\n"
    ) * 4
    path = tmp_path / "stats.txt"
    path.write_text(text.rstrip("\n"))
    monkeypatch.setattr(scan_c, "BLOCK", block)
    monkeypatch.setattr(text_mod, "_NATIVE_CHUNK_BYTES", chunk)
    c = _outcome(monkeypatch, path, "c", description=True)
    polars = _outcome(monkeypatch, path, None, description=True)
    _same(c, polars)
    assert c[0].height == 4 * (1 + 1 + 600 + 1)


def test_table_and_room_regrow(fixtures_dir: Path, monkeypatch) -> None:
    """A name table of 16 and row room for a tenth of the lines: the kernel asks again with
    more, from a fresh table, and the result does not change."""
    path = fixtures_dir / FIXTURE_DIRS[0] / "gem5-2017_dram-lowp-openpage_28dumps_stats.txt"
    polars = _outcome(monkeypatch, path, None, description=True)
    monkeypatch.setattr(text_mod, "_NATIVE_CHUNK_BYTES", 100_000)
    monkeypatch.setattr(scan, "_FIRST_CAPACITY", 16)
    monkeypatch.setattr(scan_c, "_LINE_BYTES", 2000)
    _same(_outcome(monkeypatch, path, "c", description=True), polars)


@pytest.mark.parametrize(
    "junk",
    [
        "time in µs, 你好, 🙂 (Second)".encode(),  # valid 2-, 3- and 4-byte sequences
        b"\xc0\xaf overlong",
        b"\xe0\x80\xaf overlong",
        b"\xed\xa0\x80 surrogate",
        b"\xf4\x90\x80\x80 beyond U+10FFFF",
        b"\xf5\x80\x80\x80 bad lead",
        b"\x80 lone continuation",
        b"\xe2\x82 cut short",
        b"\xe2\x82",  # cut at the end of the line
        b"nul \x00 byte",
        b"unit separator \x1f byte",
    ],
)
def test_control_bytes_and_utf8(fixtures_dir: Path, tmp_path: Path, monkeypatch, junk: bytes) -> None:
    """The C kernel takes exactly the files Python decodes as UTF-8 without NUL or 0x1f (the
    others go to the polars path), and the parse outcome is the same either way."""
    lines = (fixtures_dir / FIXTURE_DIRS[1] / "gem5-2016_04gpu_GPU_VIPER_stats.txt").read_bytes().split(b"\n")
    lines[2000] = lines[2000] + b" " + junk  # late in the file: past the parser's 4 KiB head check
    data = b"\n".join(lines)
    path = tmp_path / "stats.txt"
    path.write_bytes(data)
    monkeypatch.setattr(scan, "KERNEL", "c")
    try:
        data.decode("utf-8")
        text_ok = b"\x00" not in data and b"\x1f" not in data
    except UnicodeDecodeError:
        text_ok = False
    if text_ok:
        assert scan.scan_file(path, 1 << 16).stat_names
    else:
        with pytest.raises(scan.Unsupported):
            scan.scan_file(path, 1 << 16)
    for strict in (True, False):
        _same(
            _outcome(monkeypatch, path, None if not text_ok else "c", strict=strict),
            _outcome(monkeypatch, path, None, strict=strict),
        )


def test_dumps_kernel_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    begins = np.sort(rng.choice(np.arange(5, 10_000), 40, replace=False)).astype(np.int64)
    ends = begins + rng.integers(1, 400, 40)
    ends[-1] = 2**32
    first = np.sort(rng.integers(0, 11_000, 5000)).astype(np.uint32)
    second = np.sort(rng.integers(0, 11_000, 3000)).astype(np.uint32)
    lines = np.concatenate([first, second])
    dump = np.empty(len(lines), np.uint32)
    inside = np.empty(len(lines), np.bool_)
    scan_c.dumps(lines, len(first), begins, ends, dump, inside)
    want_dump, want_inside = text_mod._dump_of(lines, begins.tolist(), ends.tolist())
    assert (dump == want_dump).all() and (inside == want_inside).all()


def _fresh_loader(monkeypatch, places: list[Path]) -> None:
    monkeypatch.setattr(scan_c, "_lib", None)
    monkeypatch.setattr(scan_c, "_tried", False)
    monkeypatch.setattr(scan_c, "_places", lambda: places)


def test_build_goes_to_the_first_writable_place_atomically(tmp_path: Path, monkeypatch) -> None:
    """A package directory that cannot be written (here: under a regular file, which stops root
    too) sends the build to the user cache; no temporary file stays; an edited source builds
    another library, never loads the stale one."""
    (tmp_path / "file").touch()
    blocked, user = tmp_path / "file" / "__pycache__", tmp_path / "user"
    source = tmp_path / "_scan.c"
    source.write_bytes(scan_c.SOURCE.read_bytes() + b"\n/* edited */\n")
    monkeypatch.setattr(scan_c, "SOURCE", source)
    _fresh_loader(monkeypatch, [blocked, user])
    built = scan_c.build()
    assert built is not None and built.parent == user
    assert [p.name for p in user.iterdir()] == [built.name]
    source.write_bytes(source.read_bytes() + b"/* again */\n")
    _fresh_loader(monkeypatch, [blocked, user])
    again = scan_c.build()
    assert again is not None and again != built and sorted(user.iterdir()) == sorted([built, again])


def test_without_a_compiler_numba_scans_and_tables_agree(
    fixtures_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    source = tmp_path / "_scan.c"
    source.write_bytes(scan_c.SOURCE.read_bytes() + b"\n/* never built */\n")
    monkeypatch.setattr(scan_c, "SOURCE", source)
    _fresh_loader(monkeypatch, [tmp_path / "a", tmp_path / "b"])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert scan_c.library() is None
    monkeypatch.setattr(scan, "KERNEL", None)
    assert scan.kernel().__name__ == "stats_parsers.scan_numba"
    path = fixtures_dir / FIXTURE_DIRS[1] / "gem5-2016_04gpu_GPU_RfO_stats.txt"
    monkeypatch.setattr(text_mod, "_NATIVE_MIN_BYTES", 0)
    fallback = text_mod.parse_stats_text(path)
    monkeypatch.setattr(text_mod, "_NATIVE", False)
    assert fallback.frame.equals(text_mod.parse_stats_text(path).frame)
    monkeypatch.setattr(scan, "KERNEL", "c")
    with pytest.raises(scan.Unsupported):
        scan.kernel()


def _big_file(fixtures_dir: Path, tmp_path: Path) -> Path:
    """>= 8 MiB of whole real files (so the CLI takes the native path)."""
    pieces = [p.read_bytes() for p in _fixtures(fixtures_dir)]
    path = tmp_path / "big" / "stats.txt"
    path.parent.mkdir()
    with path.open("wb") as out:
        written = i = 0
        while written < scan.NATIVE_MIN_BYTES + 2**20:
            written += out.write(pieces[i % len(pieces)])
            i += 1
    return path


def _cli_imports(args: list[str], cache: Path) -> set[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), LAYERLAB_CACHE_DIR=str(cache))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", "stats", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        row.rsplit("|", 1)[1].strip().split(".")[0]
        for row in done.stderr.splitlines()
        if row.startswith("import time:") and "|" in row
    }


def test_cli_on_a_big_file_uses_the_c_kernel_and_lean_imports(fixtures_dir: Path, tmp_path: Path) -> None:
    """End to end on a file the native scanner reads: the parquet file is the library's table in
    file order, and the process imported neither numba nor pandas nor analytical (the C kernel
    ran); a second run reads the cache."""
    path = _big_file(fixtures_dir, tmp_path)
    out = tmp_path / "out.parquet"
    found = _cli_imports([str(path), "--format", "parquet", "-o", str(out)], tmp_path / "cache")
    assert not {"numba", "pandas", "analytical"} & found, found & {"numba", "pandas", "analytical"}
    assert {"polars", "pyarrow"} <= found
    want = text_mod.parse_stats_text(path).frame
    order = ["dump", "name", "value", "unit", "key", "value_int", "dump_message", "pdf_pct", "cdf_pct"]
    order.append("line")
    want = want.select(order).sort("line", maintain_order=True)
    got = pl.read_parquet(out)
    assert got.columns == order
    assert got.select(pl.all().cast(pl.String)).equals(want.select(pl.all().cast(pl.String)))
    assert list((tmp_path / "cache" / "stats").glob("stats.txt.*.parquet"))  # the cache was written
    out.unlink()
    again = _cli_imports([str(path), "--format", "parquet", "-o", str(out)], tmp_path / "cache")
    assert "numba" not in again and pl.read_parquet(out).equals(got)
