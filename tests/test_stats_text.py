"""stats.txt parsing on the real fixtures, broken variants made from them, and the fast path
checked against the reference line parser."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import InputError
from stats_parsers import read_stats, stat_across_dumps, subtree, wide
from stats_parsers import stats_lines as sl
from stats_parsers.stats_text import _assemble_python, parse_stats_text

STATS = [
    "gem5_cpu_stats/gem5-2017_arm_realview64-o3-dual_linuxboot_stats.txt",
    "gem5_cpu_stats/gem5-2017_dram-lowp-openpage_28dumps_stats.txt",
    "gem5_cpu_stats/gem5-2023_x86_bfs_units_stats.txt",
    "gem5_cpu_stats/gem5-v24_bootcamp2024_simpoint0-run_2dumps_stats.txt",
    "gem5_gpu_stats/gem5-2016_04gpu_GPU_RfO_stats.txt",
    "gem5_gpu_stats/gem5-2016_04gpu_GPU_VIPER_stats.txt",
    "gem5_gpu_stats/gem5-2017_04gpu_GPU_RfO_stats_nodesc.txt",
]


@pytest.fixture(autouse=True)
def _fast_paths_even_for_small_files(monkeypatch):
    """This module holds the polars and native paths to the reference parser; small files would
    otherwise take the reference parser itself (``_PYTHON_MAX_BYTES``)."""
    import stats_parsers.stats_text as module

    monkeypatch.setattr(module, "_PYTHON_MAX_BYTES", 0)


@pytest.mark.parametrize("rel", STATS)
def test_small_file_route_gives_the_fast_paths_table_exactly(
    fixtures_dir: Path, rel: str, monkeypatch
) -> None:
    """Below ``_PYTHON_MAX_BYTES`` the reference parser reads the file: the same table, row for
    row and type for type, and the same notes, as the polars/native path gives."""
    import stats_parsers.stats_text as module

    path = fixtures_dir / rel
    fast = parse_stats_text(path)
    monkeypatch.setattr(module, "_PYTHON_MAX_BYTES", path.stat().st_size + 1)
    small = parse_stats_text(path)
    assert small.frame.schema == fast.frame.schema
    assert small.frame.equals(fast.frame)
    assert (small.messages, small.truncated, small.skipped_lines, small.notes) == (
        fast.messages,
        fast.truncated,
        fast.skipped_lines,
        fast.notes,
    )


def _canon(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in file order (the fast path appends pdf/cdf and bucket rows), all as text."""
    return frame.sort("line", "key", maintain_order=True).select(pl.all().cast(pl.String))


def value(frame: pl.DataFrame, name: str, key: str = "", dump: int = 0) -> pl.DataFrame:
    return frame.filter((pl.col("name") == name) & (pl.col("key") == key) & (pl.col("dump") == dump))


def one(frame: pl.DataFrame, name: str, key: str = "", dump: int = 0) -> dict:
    rows = value(frame, name, key, dump)
    assert rows.height == 1, (name, key, dump, rows)
    return rows.row(0, named=True)


@pytest.mark.parametrize("rel", STATS)
def test_every_fixture_parses_and_fast_path_matches_reference(fixtures_dir: Path, rel: str) -> None:
    path = fixtures_dir / rel
    fast = parse_stats_text(path, description=True)
    ref = _assemble_python(path, True, True, True)
    assert fast.n_dumps == ref.n_dumps >= 1
    assert not fast.truncated and fast.skipped_lines == 0
    text_lines = [
        ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("----------")
    ]
    assert fast.frame.height >= len(text_lines)  # one-line buckets expand
    assert _canon(fast.frame).equals(_canon(ref.frame))


def test_spot_values_units_and_descriptions(fixtures_dir: Path) -> None:
    frame = parse_stats_text(fixtures_dir / STATS[2], description=True).frame
    row = one(frame, "simFreq")
    assert row["value_int"] == 10**12 and row["unit"] == "Tick/Second"
    row = one(frame, "hostTickRate")
    # description with its own parentheses, unit is the last (doubled) group
    assert row["description"] == "The number of ticks simulated per host second (ticks/s)"
    assert row["unit"] == "Tick/Second"
    row = one(frame, "finalTick")
    assert row["value_int"] == 45697535000 and row["unit"] == "Tick"
    assert row["description"].endswith("(restored from checkpoints and never reset)")


def test_old_files_have_no_units_but_keep_description_parentheses(fixtures_dir: Path) -> None:
    frame = parse_stats_text(fixtures_dir / STATS[5], description=True).frame
    row = one(frame, "host_inst_rate")
    assert row["unit"] is None and row["description"] == "Simulator instruction rate (inst/s)"
    assert one(frame, "sim_ticks")["value_int"] == 314399500
    assert math.isnan(one(frame, "system.mem_ctrls.writeRowHitRate")["value"])
    assert frame.get_column("unit").null_count() == frame.height


def test_inf_pdf_cdf_and_oneline_buckets(fixtures_dir: Path) -> None:
    frame = parse_stats_text(fixtures_dir / STATS[0]).frame
    assert one(frame, "system.cpu0.dcache.StoreCondFailReq_avg_miss_latency", "total")["value"] == math.inf
    viper = parse_stats_text(fixtures_dir / STATS[5]).frame
    buckets = viper.filter(pl.col("name") == "system.ruby.latency_hist")
    first = buckets.filter(pl.col("key") == "0-127").row(0, named=True)
    assert first["value_int"] == 112668 and first["pdf_pct"] == 98.66 and first["cdf_pct"] == 98.66
    assert "1152-1279" in buckets.get_column("key").cast(pl.String).to_list()


def test_multi_dump_helpers_and_nozero_policy(fixtures_dir: Path) -> None:
    stats = parse_stats_text(fixtures_dir / STATS[1])
    assert stats.n_dumps == 28
    ticks = stat_across_dumps(stats, "sim_ticks")
    assert len(ticks) == 28 and ticks.iloc[0] == 250000000
    table = wide(stats, r"^system\.mem_ctrls\.bytes_read::")
    assert table.shape[0] == 28 and "system.mem_ctrls.bytes_read::total" in table.columns
    assert subtree(stats, "system.mem_ctrls")["name"].astype(str).str.startswith("system.mem_ctrls").all()
    with pytest.raises(InputError, match="did you mean"):
        stat_across_dumps(stats, "sim_tick")


def test_missing_is_not_zero(tmp_path: Path) -> None:
    body = "a.x   1   # d (Count)\na.y   2   # d (Count)\n"
    text = "\n---------- Begin Simulation Statistics ----------\n" + body
    text += "\n---------- End Simulation Statistics   ----------\n"
    text += "\n---------- Begin Simulation Statistics ----------\na.x   3   # d (Count)\n"
    text += "\n---------- End Simulation Statistics   ----------\n"
    path = tmp_path / "stats.txt"
    path.write_text(text)
    stats = parse_stats_text(path)
    assert math.isnan(stat_across_dumps(stats, "a.y").iloc[1])
    assert stat_across_dumps(stats, "a.y", fill_missing=0).iloc[1] == 0
    assert math.isnan(wide(stats).loc[1, "a.y"])


def _write(tmp_path: Path, text: str | bytes, name: str = "stats.txt") -> Path:
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_begin_message_desc_false_spaces_false_big_ints(tmp_path: Path) -> None:
    big = 2**53 + 1
    text = (
        "\n---------- Begin Simulation Statistics : after kernel 7 ----------\n"
        f"simTicks {big}\nsystem.v::a 1 25.00% 25.00%\nsystem.v::b 3 75.00% 100.00%\nsystem.f -nan\n"
        "system.g -inf\n\n---------- End Simulation Statistics   ----------\n"
    )
    stats = parse_stats_text(_write(tmp_path, text))
    frame = stats.frame
    assert stats.messages == ("after kernel 7",)
    assert one(frame, "simTicks")["value_int"] == big  # exact beyond 2**53
    assert one(frame, "system.v", "b")["pdf_pct"] == 75.0
    assert math.isnan(one(frame, "system.f")["value"]) and one(frame, "system.g")["value"] == -math.inf
    assert frame.get_column("dump_message").cast(pl.String).to_list()[0] == "after kernel 7"


def test_truncated_last_block_is_flagged_and_kept(fixtures_dir: Path, tmp_path: Path) -> None:
    source = (fixtures_dir / STATS[3]).read_text()
    cut = source[: source.rindex("End Simulation") - 5000]
    cut = cut[: cut.rindex("\n") + 20]  # ends mid-line
    stats = parse_stats_text(_write(tmp_path, cut))
    assert stats.truncated and stats.n_dumps == 2
    full = parse_stats_text(fixtures_dir / STATS[3]).frame
    kept = stats.frame.filter(pl.col("dump") == 1)
    assert 0 < kept.height < full.filter(pl.col("dump") == 1).height
    # the half line is dropped, every kept value equals the original
    last = kept.row(kept.height - 1, named=True)
    assert one(full, last["name"], last["key"], 1)["value"] == last["value"]
    assert any("mid-line" in n for n in stats.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n  \n", "only blank lines"),
        ("hello world\n", "no 'Begin Simulation Statistics'"),
        (b"\x00\x01\x02binary\xff\xfe" * 100, "binary"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, text: str | bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_stats_text(_write(tmp_path, text))


def _broken_variant(fixtures_dir: Path, tmp_path: Path, junk: str | bytes) -> tuple[Path, int]:
    lines = (fixtures_dir / STATS[2]).read_bytes().split(b"\n")
    at = 40
    lines.insert(at, junk if isinstance(junk, bytes) else junk.encode())
    return _write(tmp_path, b"\n".join(lines)), at + 1


@pytest.mark.parametrize(
    "junk",
    [
        "this is not a stat line",
        "system.cpu.ipc 0.5 rubbish here",
        "system.x notanumber # d",
        b"\xff\xfe\x00garbage 1",
    ],
)
def test_bad_line_strict_names_file_and_line_lenient_skips(fixtures_dir: Path, tmp_path: Path, junk) -> None:
    path, line = _broken_variant(fixtures_dir, tmp_path, junk)
    with pytest.raises(InputError, match=rf"stats\.txt:{line}: "):
        parse_stats_text(path)
    lenient = parse_stats_text(path, strict=False)
    assert lenient.skipped_lines == 1
    clean = parse_stats_text(fixtures_dir / STATS[2]).frame
    shifted = lenient.frame.with_columns(line=pl.col("line") - (pl.col("line") > line).cast(pl.UInt32))
    assert _canon(shifted).equals(_canon(clean))


def test_stat_outside_block_is_an_error(tmp_path: Path) -> None:
    text = "\n---------- Begin Simulation Statistics ----------\na 1\n\n---------- End Simulation Statistics   ----------\nb 2\n"
    with pytest.raises(InputError, match=r":6: stat line outside"):
        parse_stats_text(_write(tmp_path, text))


def test_cache_roundtrip_and_invalidation(fixtures_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "stats.txt"
    shutil.copy(fixtures_dir / STATS[3], path)
    cache_dir = tmp_path / "cache"
    first = read_stats(path, cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.parquet"))) == 1
    second = read_stats(path, cache_dir=cache_dir)
    assert second.messages == first.messages and second.frame.equals(first.frame)
    path.write_text(
        path.read_text().replace(
            "simTicks                                        72927",
            "simTicks                                        72928",
            1,
        )
    )
    third = read_stats(path, cache_dir=cache_dir)
    assert third.frame.filter(pl.col("name") == "simTicks").get_column("value_int")[0] == 72928


def test_pandas_table_keeps_exact_ints(fixtures_dir: Path) -> None:
    table = parse_stats_text(fixtures_dir / STATS[0]).table
    assert str(table["value_int"].dtype) == "Int64"
    assert table.loc[table["name"] == "sim_ticks", "value_int"].iloc[0] == 47384940455000


_names = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,12}(\.[a-zA-Z_][a-zA-Z0-9_]{0,8}){0,3}", fullmatch=True)
_values = st.one_of(
    st.integers(min_value=-(2**62), max_value=2**62).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda v: f"{v:.6f}"),
    st.sampled_from(["nan", "-nan", "inf", "-inf"]),
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            _names,
            st.sampled_from(["", "::total", "::0-9", "::cpu0.data"]),
            _values,
            st.sampled_from(["", " # a desc (with parens)", " # d (Count)", " # r ((Tick/Second))"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
        unique_by=lambda row: row[0] + row[1],  # gem5 prints a stat once per block
    ),
)
def test_fast_path_equals_reference_on_generated_lines(tmp_path_factory, rows) -> None:
    lines = []
    for name, key, val, tail, padded in rows:
        full = name + key
        lines.append((f"{full:<40} {val:>12} {'':>10} {'':>10}" if padded else f"{full} {val}") + tail)
    text = "\n---------- Begin Simulation Statistics ----------\n" + "\n".join(lines)
    text += "\n\n---------- End Simulation Statistics   ----------\n"
    path = tmp_path_factory.mktemp("h") / "stats.txt"
    path.write_text(text)
    fast = _canon(parse_stats_text(path, description=True).frame)
    ref = _canon(_assemble_python(path, True, True, True).frame)
    assert fast.equals(ref)
    assert fast.height == len(rows)


def test_unit_grammar() -> None:
    assert sl.is_unit("Count") and sl.is_unit("(Tick/Second)") and not sl.is_unit("inst/s")
    assert sl.split_unit("Simulator op rate (op/s) ((Count/Second))") == (
        "Simulator op rate (op/s)",
        "Count/Second",
    )
    assert sl.split_unit("Number of bytes (bytes)") == ("Number of bytes (bytes)", None)


def test_chunked_scan_matches_single_chunk(fixtures_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Files bigger than one chunk: line numbers, dumps and errors stay exact across chunks."""
    import stats_parsers.stats_text as text_mod

    path = fixtures_dir / STATS[1]
    whole = parse_stats_text(path).frame
    monkeypatch.setattr(text_mod, "_CHUNK_BYTES", 100_000)
    chunked = parse_stats_text(path).frame
    assert _canon(chunked).equals(_canon(whole))
    bad, line = _broken_variant(fixtures_dir, tmp_path, "not a stat")
    with pytest.raises(InputError, match=rf":{line}: "):
        parse_stats_text(bad)


# --- the native (numba) scanner against the polars path -------------------------------------


def _outcome(text_mod, monkeypatch, path: Path, native: bool, **kwargs):
    """What a parse gives (table, metadata) or the error it raises, by one path or the other."""
    monkeypatch.setattr(text_mod, "_NATIVE", native)
    monkeypatch.setattr(text_mod, "_NATIVE_MIN_BYTES", 0)
    monkeypatch.setattr(text_mod, "_PYTHON_MAX_BYTES", 0)
    try:
        parsed = text_mod.parse_stats_text(path, **kwargs)
    except InputError as exc:
        return "error", str(exc)
    return parsed.frame, (parsed.messages, parsed.truncated, parsed.skipped_lines, parsed.notes)


@pytest.fixture
def text_mod(monkeypatch):
    pytest.importorskip("numba")
    import stats_parsers.scan as scan_mod
    import stats_parsers.stats_text as module

    calls = []
    real = scan_mod.scan_file
    monkeypatch.setattr(scan_mod, "scan_file", lambda *a: calls.append(1) or real(*a))
    module.native_calls = calls
    return module


@pytest.mark.parametrize("description", [False, True])
@pytest.mark.parametrize("rel", STATS)
def test_native_scan_equals_polars_path_on_every_fixture(
    fixtures_dir: Path, rel: str, description: bool, text_mod, monkeypatch
) -> None:
    path = fixtures_dir / rel
    native = _outcome(text_mod, monkeypatch, path, True, description=description)
    assert text_mod.native_calls, "the native scanner was not used"
    polars = _outcome(text_mod, monkeypatch, path, False, description=description)
    assert native[1] == polars[1]
    assert native[0].schema == polars[0].schema
    assert native[0].equals(polars[0])  # same rows in the same order, bit for bit


_ODD_LINES = [
    "system.a.plus +5 # plus sign",
    "system.a.dot 1. # trailing dot",
    "system.a.lead .5",
    "system.a.exp 1E5 # capital E",
    "system.a.tab\t5",
    "system.a.tab2 5\t# tab before desc",
    "system.a.neg --5",
    "system.a.big 123456789012345678901234 # beyond int64",
    "system.a.max 9223372036854775807",
    "system.a.over 9223372036854775808",
    "system.a.min -9223372036854775808",
    "system.a.under -9223372036854775809",
    "system.a.zeros 0000000000000000000000012",
    "system.a.negzero -0 # (Count)",
    "system.a.far " + " " * 120 + "7 # value past the window",
    "system.a.dist::1 3 nan% inf% # odd percentages",
    "system.a.dist::2 3 50.0% # one percentage",
    "system.a.dist::3 3 25% 75% (Count)",
    "system.a.unit 4 (Count)",
    "system.a.paren 4 (not a unit) trailing",
    "system.a.micro 5 # time in µs (Second)",
    "system.a.hex 0x10",
    "system.a.nan -nan",
    "system.a.inf -inf (Tick)",
    "  system.a.indented 1",
    "system.a.cr 5 # carriage return\r",
    "system.a.one |1 50.00% 50.00% |1 50.00% 100.00% # one-line (Count)",
]


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("odd", _ODD_LINES)
def test_native_scan_equals_polars_path_on_odd_lines(
    fixtures_dir: Path, tmp_path: Path, odd: str, strict: bool, text_mod, monkeypatch
) -> None:
    path, _ = _broken_variant(fixtures_dir, tmp_path, odd)
    native = _outcome(text_mod, monkeypatch, path, True, strict=strict, description=True)
    polars = _outcome(text_mod, monkeypatch, path, False, strict=strict, description=True)
    assert native[1] == polars[1]
    if not isinstance(native[0], str):
        # Lines the native grammar leaves to the slower passes may move to the pdf/cdf section.
        assert _canon(native[0]).equals(_canon(polars[0]))


@pytest.mark.parametrize("variant", ["crlf", "no_final_newline", "cut_mid_line", "blank_lines", "bad_utf8"])
def test_native_scan_equals_polars_path_on_file_variants(
    fixtures_dir: Path, tmp_path: Path, variant: str, text_mod, monkeypatch
) -> None:
    data = (fixtures_dir / STATS[3]).read_bytes()
    if variant == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif variant == "no_final_newline":
        data = data.rstrip(b"\n")
    elif variant == "cut_mid_line":
        data = data[: data.rindex(b"End Simulation") - 5000]
        data = data[: data.rindex(b"\n") + 20]
    elif variant == "blank_lines":
        data = data.replace(b"\n", b"\n\n   \n")
    else:
        data = data.replace(b"simTicks", b"sim\xffTicks", 1)
    path = _write(tmp_path, data)
    for strict in (True, False):
        native = _outcome(text_mod, monkeypatch, path, True, strict=strict)
        polars = _outcome(text_mod, monkeypatch, path, False, strict=strict)
        assert native[1] == polars[1]
        if not isinstance(native[0], str):
            assert native[0].equals(polars[0])


def test_native_scan_small_chunks_and_threads_match(fixtures_dir: Path, text_mod, monkeypatch) -> None:
    """Many chunks scanned two at a time: stat ids, line numbers and first lines stay file-wide."""
    import stats_parsers.scan as scan_mod

    path = fixtures_dir / STATS[1]
    whole = _outcome(text_mod, monkeypatch, path, False, description=True)
    monkeypatch.setattr(text_mod, "_NATIVE_CHUNK_BYTES", 50_000)
    monkeypatch.setattr(scan_mod, "_FIRST_CAPACITY", 16)  # forces the table to grow mid-file
    chunked = _outcome(text_mod, monkeypatch, path, True, description=True)
    assert chunked[1] == whole[1] and chunked[0].equals(whole[0])


@pytest.mark.parametrize("chunk", [64, 997, 4096])
def test_native_chunks_cut_anywhere_read_whole_lines(
    tmp_path: Path, text_mod, monkeypatch, chunk: int
) -> None:
    """Chunks smaller than a line (a chunk owning no line at all), cuts on and beside newlines,
    a long one-line bucket list past the read-ahead tail, CRLF and no final newline: every
    line is still read exactly once, by the chunk where it starts."""
    import stats_parsers.scan as scan_mod

    buckets = " ".join(f"|{i} 0.{i % 10}% {min(i, 99)}.0%" for i in range(400))
    text = (
        "\n---------- Begin Simulation Statistics ----------\n"
        "simTicks                 1000   # Number of ticks simulated (Tick)\n"
        f"system.dist::bucket_size    1   # d (Count)\n"
        f"system.dist     {buckets}   # one-line distribution (Count)\n"
        "system.cpu.ipc       0.5   # IPC ((Count/Cycle))\r\n"
        "---------- End Simulation Statistics   ----------\n"
    ) * 3
    path = _write(tmp_path, text.rstrip("\n"))
    whole = _outcome(text_mod, monkeypatch, path, False, description=True)
    monkeypatch.setattr(text_mod, "_NATIVE_CHUNK_BYTES", chunk)
    monkeypatch.setattr(scan_mod, "_TAIL", 8)  # forces the read-ahead to grow
    chunked = _outcome(text_mod, monkeypatch, path, True, description=True)
    assert text_mod._native_scan(path) is not None  # the scanner took it, no fallback
    assert chunked[1] == whole[1] and chunked[0].equals(whole[0])
    assert whole[0].height == 3 * (1 + 1 + 400 + 1)


_cells = st.lists(
    st.one_of(
        st.tuples(_values, st.sampled_from(["", " 12.50%", " 12.50% 99.00%", " 1.0% 2.0% 3.0%", " x%"])).map(
            lambda c: c[0] + c[1]
        ),
        st.sampled_from(["", "1|2", "|3", "5 # 7", "nan%"]),
    ),
    min_size=0,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(
        st.tuples(
            _names,
            st.sampled_from(["", "::total"]),
            _cells,
            st.sampled_from(["", "   ", "   # d (Count)", " # d ((Count/Cycle))", "# x", " #"]),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda line: line[0],  # gem5 prints a stat once per block
    ),
    strict=st.booleans(),
)
def test_native_oneline_buckets_match_polars(tmp_path_factory, text_mod, lines, strict) -> None:
    """One-line bucket lists, well and badly formed: the scanner takes exactly what the polars
    pass takes (same rows, same errors, same bad-line count)."""
    import _pytest.monkeypatch

    body = [
        f"{name}{key}   " + " ".join(f"|{cell}" for cell in cells) + tail for name, key, cells, tail in lines
    ]
    text = "\n---------- Begin Simulation Statistics ----------\n" + "\n".join(body)
    text += "\n---------- End Simulation Statistics   ----------\n"
    path = tmp_path_factory.mktemp("one") / "stats.txt"
    path.write_text(text)
    with _pytest.monkeypatch.MonkeyPatch.context() as patch:
        native = _outcome(text_mod, patch, path, True, strict=strict, description=True)
        polars = _outcome(text_mod, patch, path, False, strict=strict, description=True)
    assert native[1] == polars[1]
    if not isinstance(native[0], str):
        assert native[0].equals(polars[0])


def test_without_numba_the_polars_path_is_used(fixtures_dir: Path, text_mod, monkeypatch) -> None:
    import stats_parsers.scan as scan_mod

    monkeypatch.setattr(scan_mod, "HAVE_NUMBA", False)
    path = fixtures_dir / STATS[2]
    fallback = _outcome(text_mod, monkeypatch, path, True)
    assert not text_mod.native_calls
    assert fallback[0].equals(_outcome(text_mod, monkeypatch, path, False)[0])
