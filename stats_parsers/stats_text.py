"""gem5 ``stats.txt`` → one tidy long table, exact, streamed, columnar.

Pipeline: the file is read in chunks of whole lines (256 MiB, so a 1 GB file never sits in
memory beside its table). Each chunk is split by polars string kernels (find/slice/cast, no
regex captures: those cost ~1 µs a row): a regular line ``name value [# desc] [(Unit)]`` yields
(line, stat, value, exact int). The rest keep their text: pdf/cdf lines and one-line bucket
lists go through vectorised second passes, markers and anything odd through the reference line
parser (``stats_lines``), which also decides what is a bad line. Name/key split, unit and
description are properties of a stat, not of a row, so they are read once per distinct stat
from its first line and joined on.

Files of 8 MiB and more go through the native scanner instead (``stats_parsers.scan``: C, else
numba; two 16 MiB chunks at a time, each read by its own thread): one compiled pass per chunk takes
the regular lines, the pdf/cdf lines and one-line bucket lists, with stat ids and exact
integers, and hands every other line to the same passes as above; the table is then built
from its arrays (``_assemble_native``) and is the same, row for row, as the polars path's
(tests hold both paths to that). Without a native kernel, or for binary/non-UTF-8 data, the
polars path runs.

Row order: file order (``line``, kept as a column, ascends), so that a table, its cache entry
and ``layerlab stats`` output all read in the file's order. The C scanner writes rows in line
order; the numba kernel's runs are merged by position in its threads; only rows of later passes
(odd lines, the polars path's separate passes) are merged in by a final sort.

Table columns (one row per printed value):

``dump`` (0-based block index) · ``dump_message`` (gem5 ≥ 2025 ``Begin ... : <message>``, else
null) · ``name`` (stat name before ``::``) · ``key`` (text after the first ``::``: vector
subname, bucket ``lo-hi``, ``total``, ``samples``...; empty for scalars) · ``value`` (float64;
``nan``/``-nan`` → NaN, ``inf``) · ``value_int`` (Int64: the exact integer when the printed value
is an integer that fits int64, else null; use it for ticks and counters beyond 2**53) ·
``unit`` (the last parenthesised group when it is a gem5 unit word or rate, e.g. ``Tick/Second``
without gem5's wrapping parentheses; null in files from before units, 2015-2020, and with
``desc=False``) · ``pdf_pct``/``cdf_pct`` (the percentage columns, as printed) · optionally
``description`` · ``line`` (line number in the file).

Missing is not zero: gem5 omits ``nozero`` stats that are 0 and ``nonan`` stats that are NaN, so
a stat absent from a dump has no row; the wide helpers give NaN there unless told to fill.
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from foundation.errors import InputError
from stats_parsers import scan as scan_mod
from stats_parsers import stat_info
from stats_parsers import stats_lines as sl

if TYPE_CHECKING:  # pandas loads only when a caller asks for a pandas table
    import pandas as pd

    from stats_parsers.scan import ScanResult

#: Bytes after the name in which the fast path looks for the value and pdf/cdf columns;
#: gem5 pads names to 40 columns and values to 12, so 96 leaves room for long numbers.
_WINDOW = 96
#: Text read per scan step; bounds the text held in memory while parsing.
_CHUNK_BYTES = 256 * 2**20
_UNIT_RE = r"\(([^()]*|\([^()]*\))\)$"
#: Use the native scanner (``stats_parsers.scan``: C, else numba); False forces the polars path
#: (tests).
_NATIVE = True
#: Text per native scan step: two such chunks are scanned at once, one per core.
_NATIVE_CHUNK_BYTES = scan_mod.NATIVE_CHUNK_BYTES
#: Smaller files take the polars path: starting the scan threads and Arrow's cast costs more
#: than they save there.
_NATIVE_MIN_BYTES = scan_mod.NATIVE_MIN_BYTES

#: Files smaller than this are read line by line by the reference parser (``stats_lines``): its
#: table is the same, and for a few hundred lines it takes ~4 ms where the polars passes' two
#: dozen small queries take ~30 ms (a trivial run's stats; the conductor reads one per run).
_PYTHON_MAX_BYTES = 64 * 1024

COLUMNS = ("dump", "dump_message", "name", "key", "value", "value_int", "unit", "pdf_pct", "cdf_pct", "line")
#: The same columns as a file holds them (``layerlab stats`` csv/parquet, the parquet cache):
#: what a reader looks at first, first.
FILE_COLUMNS = (
    "dump",
    "name",
    "value",
    "unit",
    "key",
    "value_int",
    "dump_message",
    "pdf_pct",
    "cdf_pct",
    "line",
)

_SCHEMA: dict[str, pl.DataType] = {
    "line": pl.UInt32(),
    "name": pl.Categorical(),
    "key": pl.Categorical(),
    "value": pl.Float64(),
    "value_int": pl.Int64(),
    "unit": pl.Categorical(),
    "pdf_pct": pl.Float64(),
    "cdf_pct": pl.Float64(),
    "description": pl.String(),
}


@dataclass(frozen=True)
class StatsDumps:
    """A parsed stats file: the long table plus what the parse noticed about the file."""

    frame: pl.DataFrame
    path: Path
    messages: tuple[str | None, ...]
    truncated: bool = False
    skipped_lines: int = 0
    source_format: str = "text"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_dumps(self) -> int:
        return len(self.messages)

    @property
    def table(self) -> pd.DataFrame:
        """The long table as pandas (categoricals kept, ``value_int`` as nullable Int64)."""
        return to_pandas(self.frame)


def to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    import pandas as pd

    arrow = frame.to_arrow()
    return arrow.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def parse_stats_text(
    path: str | os.PathLike[str], *, strict: bool = True, description: bool = False
) -> StatsDumps:
    """Parse a text stats file; see the module doc for the table and ``read_stats`` for caching."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: stats file not found")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (gem5 writes stats.txt only at the first dump)")
    with path.open("rb") as handle:
        head = handle.read(4096)
        handle.seek(max(0, size - 1))
        ends_with_newline = handle.read(1) == b"\n"
    if b"\0" in head:
        raise InputError(f"{path}: binary data, not a gem5 text stats file (NUL bytes in the first 4 KiB)")
    with _gc_paused():
        if size < _PYTHON_MAX_BYTES:
            return _assemble_python(path, strict, description, ends_with_newline)
        found = _native_scan(path) if _NATIVE and size >= _NATIVE_MIN_BYTES else None
        return _parse(path, found, strict, description, ends_with_newline)


@contextlib.contextmanager
def _gc_paused():
    """No cyclic garbage collection while a parse runs: it makes tens of thousands of names,
    lines and tuples that live on, and each collection walks them all again (5-10 % of a
    big parse). Reference counting still frees everything; the collector resumes after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _parse(
    path: Path, found: ScanResult | None, strict: bool, description: bool, ends_with_newline: bool
) -> StatsDumps:
    """The table from the native scan's result, else by the polars path (else line by line)."""
    try:
        if found is not None:
            return _assemble_native(path, found, strict, description, ends_with_newline)
        # The frame is handed over, not kept here, so _finish can free it as it goes.
        return _assemble(path, [*_fast_scan(path)], strict, description, ends_with_newline)
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError, pl.exceptions.SchemaError):
        # Bad UTF-8 or a stray separator byte: the reference parser names the exact line.
        return _assemble_python(path, strict, description, ends_with_newline)


def _native_scan(path: Path) -> ScanResult | None:
    """The native scan's result, or None where the polars path must do it (a platform without
    numba, no kernel that runs, binary bytes, bad UTF-8, an absurd number of distinct names):
    that path and its fallback decide."""
    if not scan_mod.HAVE_NUMBA:
        return None
    try:
        return scan_mod.scan_file(path, _NATIVE_CHUNK_BYTES)
    except scan_mod.Unsupported:
        return None


def _fast_scan(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Scan the file in chunks of whole lines (``_scan_chunk``); (regular rows, raw lines).

    Chunking bounds memory: polars' CSV source would otherwise load the whole file, so a 1 GB
    stats file would sit in memory beside its table. Only one chunk's text is alive at a time.
    """
    size = path.stat().st_size
    bounds = [0]
    with path.open("rb") as handle:
        while bounds[-1] + _CHUNK_BYTES < size:
            handle.seek(bounds[-1] + _CHUNK_BYTES)
            handle.readline()  # to the end of the line the chunk would cut
            bounds.append(handle.tell())
        bounds.append(size)
        regular, irregular = [], []
        line_offset = 1
        for start, end in itertools.pairwise(bounds):
            handle.seek(start)
            data = handle.read(end - start)
            if not data:
                continue
            frame = _scan_chunk(data, line_offset)
            if end < size:  # the next chunk's first line number (chunks end on a newline)
                line_offset += int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))
            del data
            # Copy the few raw lines (concat_str writes new buffers): polars string views would
            # otherwise keep every byte of the chunk's text alive as long as the table lives.
            irregular.append(
                frame.filter(pl.col("raw").is_not_null()).select(
                    "line", pl.concat_str([pl.col("raw"), pl.lit("")])
                )
            )
            regular.append(frame.filter(pl.col("raw").is_null()).drop("raw"))
            del frame
    if not regular:
        empty = _scan_chunk(b"\n", 1).clear()
        return empty.drop("raw"), empty.select("line", "raw")
    return pl.concat(regular, rechunk=False), pl.concat(irregular).rechunk()


def _scan_chunk(data: bytes, line_offset: int) -> pl.DataFrame:
    """Regular lines become (line, stat, value); the rest keep their text in ``raw``.

    Per row only the cheapest literal kernels run (find, slice, cast). Name, unit and
    description are properties of a stat, not of a row, so ``_stat_meta`` derives them once
    per distinct stat. Anything unusual (pdf/cdf columns, one-line buckets, markers, bad
    lines, values longer than the window) keeps its raw text for the later passes.
    (Reading gem5's fixed 12-wide value field instead was tried: more, shorter slices cost
    more than one window slice.)
    """
    text = pl.col("l")
    lf = pl.scan_csv(
        io.BytesIO(data),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["l"],
        schema={"l": pl.String},
        row_index_name="line",
        row_index_offset=line_offset,
        infer_schema=False,
    )
    lf = lf.filter(text.is_not_null()).with_columns(p1=text.str.find(" ", literal=True))
    lf = lf.with_columns(window=text.str.slice(pl.col("p1"), _WINDOW).str.strip_chars_start(" "))
    lf = lf.with_columns(p2=pl.col("window").str.find(" ", literal=True))
    lf = lf.with_columns(
        tok=pl.col("window").str.slice(0, pl.col("p2")),
    )
    lf = lf.with_columns(value=pl.col("tok").cast(pl.Float64, strict=False))
    regular = (
        (pl.col("p1") > 0)
        & pl.col("value").is_not_null()
        # after the value: nothing, a description ('#') or a unit only ('(')
        & pl.col("window").str.contains(r"^\S+ *(?:[#(]|$)")
        & (pl.col("p2").is_not_null() | (text.str.len_bytes() <= pl.col("p1") + _WINDOW))
    )
    return lf.select(
        "line",
        text.str.slice(0, pl.col("p1")).cast(pl.Categorical).alias("stat"),
        "value",
        pl.col("tok").cast(pl.Int64, strict=False).alias("value_int"),
        pl.when(regular).then(pl.lit(None, dtype=pl.String)).otherwise(text).alias("raw"),
    ).collect(engine="streaming")


def _window_pass(irregular: pl.DataFrame) -> pl.DataFrame:
    """Stat lines the fixed-field scan passed on (``spaces=False``, long values, odd spacing):
    split by whitespace within a window after the name. Other lines are left out."""
    text = pl.col("raw")
    work = irregular.lazy().with_columns(p1=text.str.find(" ", literal=True))
    work = work.with_columns(window=text.str.slice(pl.col("p1"), _WINDOW))
    tok, rest = _split_token(pl.col("window"))
    work = work.with_columns(tok=tok, rest1=rest)
    pdf_tok, rest = _split_token(pl.col("rest1"))
    work = work.with_columns(pdf_tok=pdf_tok, rest2=rest)
    cdf_tok, rest = _split_token(pl.col("rest2"))
    work = work.with_columns(
        cdf_tok=cdf_tok,
        n1=pl.col("rest1").str.strip_chars_start(" ").str.head(1),
        n3=rest.str.strip_chars_start(" ").str.head(1),
        value=pl.col("tok").cast(pl.Float64, strict=False),
    )
    work = work.with_columns(pdf_pct=_pct(pl.col("pdf_tok")), cdf_pct=_pct(pl.col("cdf_tok")))
    pct = pl.col("pdf_tok").str.ends_with("%")
    ends = ["", "#", "("]
    ok = (
        (pl.col("p1") > 0)
        & pl.col("value").is_not_null()
        & ((text.str.len_bytes() <= pl.col("p1") + _WINDOW) | (pl.col("rest1") != ""))
        & (
            (~pct & pl.col("n1").is_in(ends))
            | (
                pct
                & pl.col("pdf_pct").is_not_null()
                & pl.col("cdf_pct").is_not_null()
                & pl.col("n3").is_in(ends)
            )
        )
    )
    return (
        work.filter(ok)
        .select(
            "line",
            text.str.slice(0, pl.col("p1")).cast(pl.Categorical).alias("stat"),
            "value",
            pl.col("tok").cast(pl.Int64, strict=False).alias("value_int"),
            pl.when(pct).then(pl.col("pdf_pct")).alias("pdf_pct"),
            pl.when(pct).then(pl.col("cdf_pct")).alias("cdf_pct"),
        )
        .collect()
    )


def _stat_meta(
    path: Path, rows: pl.LazyFrame, description: bool
) -> tuple[pl.DataFrame, set[str], dict[str, str]]:
    """name, key, unit (and description) once per distinct stat, from its first line.

    A stat's unit and description are fixed when gem5 builds it, so the first line that
    prints it says them for every dump. That line also goes through the reference parser,
    which validates the name. Returns (mapping, bad stats, why).
    """
    firsts = rows.group_by("stat").agg(pl.col("line").min()).sort("line").collect()
    wanted = dict(
        zip(
            firsts.get_column("line").to_list(),
            firsts.get_column("stat").cast(pl.String).to_list(),
            strict=True,
        )
    )
    texts: dict[int, str] = {}
    if wanted:
        last = max(wanted)
        with path.open("rb") as handle:
            for line_no, data in enumerate(handle, start=1):
                if line_no in wanted:
                    texts[line_no] = data.decode("utf-8", errors="replace").rstrip("\r\n")
                    if line_no >= last:
                        break
    stats, names_, keys, units, descs, bad, why = _meta_lists(
        [(stat, texts.get(line_no, "")) for line_no, stat in wanted.items()]
    )
    data = {"stat": stats, "name": names_, "key": keys, "unit": units}
    if description:
        data["description"] = descs
    meta = pl.DataFrame(data, schema={c: pl.String for c in data}).with_columns(
        pl.col("stat").cast(pl.Categorical),
        pl.col("name").cast(pl.Categorical),
        pl.col("key").cast(pl.Categorical),
        pl.col("unit").cast(pl.Categorical),
    )
    return meta, bad, why


def _meta_lists(firsts: list[tuple[str, str]]):
    """(stats, names, keys, units, descriptions, bad stats, why) from (stat, its first line)."""
    stats, names_, keys, units, descs = [], [], [], [], []
    bad: set[str] = set()
    why: dict[str, str] = {}
    _split_unit.cache_clear()
    for stat, text in firsts:
        info = _stat_info(stat, text)
        if info is None:
            bad.add(stat)
            why[stat] = f"{stat[:60]!r} is not a stat name"
            continue
        stats.append(stat)
        names_.append(info[0])
        keys.append(info[1])
        units.append(info[2])
        descs.append(info[3])
    return stats, names_, keys, units, descs, bad, why


def _stat_info(stat: str, text: str) -> tuple[str, str, str | None, str | None] | None:
    """(name, key, unit, description) of a stat from its first line; None for a bad name."""
    if not _name_ok(stat):
        return None
    name, sep, key = stat.partition("::")
    if not sep:
        name = stat
    unit = desc = None
    _head, hash_, tail = text.partition(" # ")
    if hash_:
        desc = tail.strip()
        if desc.endswith(")"):  # split_unit's pattern ends in ")": skip the regex otherwise
            desc, unit = _split_unit(desc)
    elif text.endswith(")"):
        _, unit = _split_unit(text.rstrip())
    return name, key, unit, desc


_split_unit = stat_info._split_unit
_name_ok = stat_info._name_ok
_stat_infos = stat_info.stat_infos


def _row_exprs(text: pl.Expr, p1: pl.Expr, tok: pl.Expr, description: bool) -> list[pl.Expr]:
    """name, key, value, value_int, unit[, description] from a line, its first-space offset and
    its value token. Offsets from ``str.find`` are bytes and ``str.slice`` counts characters;
    they agree because names and values are ASCII (checked later per distinct name)."""
    k = text.str.find("::", literal=True)
    has_key = k.is_not_null() & (k < p1)
    name_len = pl.when(has_key).then(k).otherwise(p1)
    unit_raw = text.str.extract(_UNIT_RE, 1)
    unit_ok = unit_raw.str.contains(sl.UNIT_RE)
    columns = [
        text.str.slice(0, name_len).cast(pl.Categorical).alias("name"),
        pl.when(has_key).then(text.str.slice(k + 2, p1 - k - 2)).otherwise(pl.lit("")).alias("key"),
        tok.cast(pl.Float64, strict=False).alias("value"),
        tok.cast(pl.Int64, strict=False).alias("value_int"),
        pl.when(unit_ok).then(unit_raw.str.strip_chars("()")).alias("unit"),
    ]
    if description:
        hash_at = text.str.find(" # ", literal=True)
        # Drop " (Unit)" from the end when it is a real unit (head() counts characters).
        desc_full = text.str.slice(hash_at + 3)
        cut = -(unit_raw.str.len_chars().cast(pl.Int64) + 3)  # a u32 length cannot be negated
        desc = pl.when(unit_ok).then(desc_full.str.head(cut)).otherwise(desc_full)
        columns.append(
            pl.when(hash_at.is_not_null()).then(desc.str.strip_chars_end(" ")).alias("description")
        )
    return columns


def _split_token(expr: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(first whitespace-separated token, the rest) with literal kernels only: polars' regex
    captures cost about a microsecond a row, ten times a literal find/slice."""
    stripped = expr.str.strip_chars_start(" ")
    at = stripped.str.find(" ", literal=True)
    return stripped.str.slice(0, at), stripped.str.slice(at).fill_null("")


def _pct(token: pl.Expr) -> pl.Expr:
    return pl.when(token.str.ends_with("%")).then(token.str.strip_suffix("%").cast(pl.Float64, strict=False))


def _oneline_pass(irregular: pl.DataFrame, description: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Vectorised pass over one-line bucket lists (``name |v pdf% cdf% |v ...``).

    Returns (bucket rows keyed by position in ``bucket``, leftovers for the line parser).
    """
    text = pl.col("raw")
    hash_at = text.str.find(" # ", literal=True)
    head = (
        pl.when(hash_at.is_not_null())
        .then(text.str.slice(0, hash_at))
        .otherwise(text)
        .str.strip_chars_end(" ")
    )
    one = irregular.lazy().filter(~text.str.starts_with("----------")).with_columns(head=head)
    one = one.filter(pl.col("head").str.contains(" |", literal=True)).with_columns(
        cells=pl.col("head").str.split(" |")
    )
    one = one.with_columns(
        full=pl.col("cells").list.first().str.strip_chars(" "), cells=pl.col("cells").list.slice(1)
    ).with_columns(n=pl.col("cells").list.len())
    one = one.filter(pl.col("n") > 0).with_columns(bucket=pl.int_ranges(0, pl.col("n"), dtype=pl.Int32))
    one = one.explode("cells", "bucket")
    value_tok, rest = _split_token(pl.col("cells"))
    one = one.with_columns(tok=value_tok, rest=rest)
    pdf_tok, rest = _split_token(pl.col("rest"))
    one = one.with_columns(pdf_tok=pdf_tok, rest=rest)
    cdf_tok, rest = _split_token(pl.col("rest"))
    one = one.with_columns(cdf_tok=cdf_tok, rest=rest)
    # A stand-in line "name <desc and unit>" lets the shared expressions find name and unit.
    fake_line = pl.concat_str([pl.col("full"), pl.lit(" "), text.str.slice(pl.col("head").str.len_chars())])
    pdf, cdf = _pct(pl.col("pdf_tok")), _pct(pl.col("cdf_tok"))
    one_rows = (
        one.with_columns(fake=fake_line)
        .select(
            "line",
            "bucket",
            *_row_exprs(pl.col("fake"), pl.col("full").str.len_bytes(), pl.col("tok"), description),
            pl.when(pl.col("pdf_tok") != "").then(pdf).alias("pdf_pct"),
            pl.when(pl.col("cdf_tok") != "").then(cdf).alias("cdf_pct"),
            (
                ((pl.col("pdf_tok") != "") & pdf.is_null())
                | ((pl.col("cdf_tok") != "") & cdf.is_null())
                | (pl.col("rest") != "")
            ).alias("junk"),
        )
        .collect()
    )
    bad_lines = one_rows.filter(
        pl.col("value").is_null() | (pl.col("key") != "") | pl.col("junk")
    ).get_column("line")
    one_rows = one_rows.filter(~pl.col("line").is_in(bad_lines.implode())).drop("junk")
    leftovers = irregular.filter(~pl.col("line").is_in(one_rows.get_column("line").implode()))
    return one_rows, leftovers


@dataclass
class _Markers:
    begins: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    messages: list[str | None] = field(default_factory=list)


def _bad(path: Path, line: int, why: str) -> InputError:
    return InputError(f"{path}:{line}: {why}")


def _schema(description: bool) -> dict[str, pl.DataType]:
    schema = dict(_SCHEMA)
    schema["bucket"] = pl.Int32()
    if not description:
        del schema["description"]
    return schema


def _assemble(
    path: Path, holder: list[pl.DataFrame], strict: bool, description: bool, ends_nl: bool
) -> StatsDumps:
    """Route the raw lines (pdf/cdf, one-line buckets, markers, bad lines), attach per-stat
    name/key/unit/description, then let ``_finish`` apply the block structure and policy."""
    frame, irregular = holder
    holder.clear()
    pct_rows = _window_pass(irregular)
    rest = irregular.filter(~pl.col("line").is_in(pct_rows.get_column("line").implode()))
    one_rows, leftovers = _oneline_pass(rest, description) if rest.height else (None, rest)
    markers = _Markers()
    extra_rows: list[tuple[int, int | None, sl.StatRow]] = []
    bad: list[tuple[int, str]] = []
    for line, raw in leftovers.iter_rows():
        _python_line(line, raw, markers, extra_rows, bad)
    schema = _schema(description)

    # Stat-bearing rows (regular and pdf/cdf lines) get name/key/unit/description by stat.
    firsts = pl.concat([frame.lazy().select("line", "stat"), pct_rows.lazy().select("line", "stat")])
    meta, bad_stats, why = _stat_meta(path, firsts, description)
    if bad_stats:
        for part in (frame, pct_rows):
            hits = part.filter(pl.col("stat").cast(pl.String).is_in(sorted(bad_stats)))
            for line, stat in hits.select("line", pl.col("stat").cast(pl.String)).iter_rows():
                bad.append((line, f"{why[stat]}: not a stats line"))
    side_rows = _side_rows(one_rows, extra_rows, description, schema, bad)
    last_line = max((int(f.get_column("line").max()) for f in (frame, irregular) if f.height), default=-1)
    stat_frames = [frame, pct_rows]
    del frame, pct_rows, irregular, rest, leftovers
    return _finish(path, stat_frames, meta, side_rows, markers, bad, strict, ends_nl, schema, last_line)


def _settle_bad_lines(
    path: Path, bad: list[tuple[int, str]], notes: list[str], cut_mid_line: bool, last_line: int, strict: bool
) -> np.ndarray:
    """Drop a last line cut by truncation (noted, not an error); strict mode raises on the first
    bad line, lenient mode returns the sorted bad line numbers to skip."""
    if cut_mid_line and last_line > 0:
        notes.append(f"line {last_line}: dropped (the file ends mid-line inside the truncated last block)")
        bad[:] = [(line, why) for line, why in bad if line != last_line]
    if bad:
        bad.sort()
        if strict:
            line, why = bad[0]
            more = f" (and {len(bad) - 1} more bad lines; lenient mode skips them)" if len(bad) > 1 else ""
            raise _bad(path, line, why + more)
    return np.asarray(sorted({line for line, _ in bad}), dtype=np.int64)


def _side_rows(one_rows, extra_rows, description: bool, schema: dict, bad: list) -> pl.DataFrame | None:
    """One-line bucket rows and reference-parser rows in the table's schema; bad names join ``bad``."""
    side = [p for p in (one_rows, _rows_frame(extra_rows, description)) if p is not None and p.height]
    side = [
        p.select(
            [
                pl.col(c).cast(t) if c in p.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in schema.items()
            ]
        )
        for p in side
    ]
    side_rows = pl.concat(side) if side else None
    if side_rows is not None:
        bad.extend(_bad_names(side_rows))
    return side_rows


def _assemble_native(
    path: Path, found: ScanResult, strict: bool, description: bool, ends_nl: bool
) -> StatsDumps:
    """``_assemble`` + ``_finish`` for the native scan: the same passes for the lines it handed
    back, and the big table built column by column from its arrays (stat ids → categoricals by
    one gather each) instead of joins."""
    irregular = pl.DataFrame(
        {
            "line": pl.Series(found.irregular_lines, dtype=pl.UInt32),
            "raw": pl.Series(found.irregular_text, dtype=pl.String),
        }
    )
    win = _window_pass(irregular) if irregular.height else None
    rest = irregular
    if win is not None and win.height:
        rest = irregular.filter(~pl.col("line").is_in(win.get_column("line").implode()))
    one_rows, leftovers = _oneline_pass(rest, description) if rest.height else (None, rest)
    markers = _Markers()
    extra_rows: list[tuple[int, int | None, sl.StatRow]] = []
    bad: list[tuple[int, str]] = []
    for line, raw in leftovers.iter_rows():
        _python_line(line, raw, markers, extra_rows, bad)
    schema = _schema(description)

    names = list(found.stat_names)
    first_line = list(found.first_line)
    first_text = list(found.first_text)
    rows = found.rows  # file order, chunk by chunk
    extra = None
    moved: set[int] = set()  # stats whose first line the window pass found before the scan's
    if win is not None and win.height:
        # Lines the window pass read (pdf/cdf lines the scan handed back): a second sorted run.
        ids = {name: i for i, name in enumerate(names)}
        raw_of = dict(zip(found.irregular_lines, found.irregular_text, strict=True))
        w_lines = win.get_column("line").to_list()
        w_ids = []
        for line, stat in zip(w_lines, win.get_column("stat").cast(pl.String).to_list(), strict=True):
            sid = ids.get(stat)
            if sid is None:
                sid = ids[stat] = len(names)
                names.append(stat)
                first_line.append(line)
                first_text.append(raw_of[line])
            elif line < first_line[sid]:
                first_line[sid], first_text[sid] = line, raw_of[line]
                moved.add(sid)
            w_ids.append(sid)
        extra = {
            "line": win.get_column("line").to_numpy().astype(np.uint32),
            "stat": np.asarray(w_ids, np.int32),
            "value": win.get_column("value").to_numpy(),
            "int": win.get_column("value_int").fill_null(0).to_numpy(),
            "int_ok": win.get_column("value_int").is_not_null().to_numpy(),
            "pdf": win.get_column("pdf_pct").fill_null(0.0).to_numpy(),
            "pdf_ok": win.get_column("pdf_pct").is_not_null().to_numpy(),
            "cdf": win.get_column("cdf_pct").fill_null(0.0).to_numpy(),
            "cdf_ok": win.get_column("cdf_pct").is_not_null().to_numpy(),
        }
        order = np.argsort(extra["line"], kind="stable")
        extra = {k: v[order] for k, v in extra.items()}
    cells, cell_bucket = found.cell_pos, found.cell_bucket  # where the one-line bucket cells are
    if extra is None:

        def joined(key: str) -> np.ndarray:
            part = rows[key]
            if not part:
                return np.empty(0, scan_mod.ROWS[key])
            return part[0] if len(part) == 1 else np.concatenate(part)

    else:
        where = scan_mod.merge_positions(rows["line"], extra["line"], np.empty(0, np.uint32))
        cells = where.reg[cells]

        def joined(key: str) -> np.ndarray:
            return where.scatter(rows[key], extra[key], None)

    lines = joined("line")
    stat = joined("stat")
    n_rows = len(lines)

    # The scan worked out each stat's name/key/unit/description as its chunks came in; the
    # window pass's new stats, and stats whose first line it found earlier, are done here.
    infos = list(found.infos)
    redo = sorted(sid for sid in moved if sid < len(infos))
    for sid, info in zip(
        redo, _stat_infos([names[i] for i in redo], [first_text[i] for i in redo]), strict=True
    ):
        infos[sid] = info
    infos.extend(_stat_infos(names[len(infos) :], first_text[len(infos) :]))
    bad_ids = [i for i, info in enumerate(infos) if info is None]
    if bad_ids:
        hit = np.flatnonzero(np.isin(stat, np.asarray(bad_ids, np.int32)))
        bad.extend(
            (int(lines[i]), f"{names[stat[i]][:60]!r} is not a stat name: not a stats line") for i in hit
        )

    # Lines the scan handed back and a later pass read (one-line buckets, odd lines): few or none.
    side_rows = _side_rows(one_rows, extra_rows, description, schema, bad)
    last_line = found.last_line

    if not markers.begins:
        if not len(lines) and side_rows is None and not bad:
            raise InputError(f"{path}: no stats in the file (only blank lines)")
        raise InputError(f"{path}: no 'Begin Simulation Statistics' marker; not a gem5 stats.txt file")
    begins, ends, messages, truncated = _pair_markers(markers, bad)
    notes: list[str] = []
    dump, inside = _dump_sorted(lines, n_rows, begins, ends)
    outside = np.flatnonzero(~inside)
    if outside.size:
        bad.extend(
            (int(x), "stat line outside a Begin/End Simulation Statistics block")
            for x in lines[outside[:1000]]
        )
    side_parts = None
    if side_rows is not None:
        s_lines = side_rows.get_column("line").to_numpy()
        s_dump, s_inside = _dump_of(s_lines, begins, ends)
        if (~s_inside).any():
            bad.extend(
                (int(x), "stat line outside a Begin/End Simulation Statistics block")
                for x in s_lines[~s_inside][:1000]
            )
        side_parts = (s_lines, s_dump, s_inside)
    bad_lines = _settle_bad_lines(path, bad, notes, truncated and not ends_nl, last_line, strict)

    keep = inside
    if truncated and not ends_nl:
        keep &= lines != last_line
    if bad_lines.size:
        keep &= ~np.isin(lines, bad_lines)
    idx = None if keep.all() else np.flatnonzero(keep)

    def column(key: str) -> np.ndarray:
        full = joined(key)
        return full if idx is None else full[idx]

    def values(key: str, ok: str | None = None) -> pl.Series:
        """A value column as polars: chunk by chunk, zero copy, where the scan's own arrays
        are the rows as they are (no copy of the whole column: fresh memory costs a page
        fault per 4 KiB), else from the joined array."""
        parts = rows[key]
        if extra is None and idx is None and len(parts) > 1:
            pieces = [
                _nullable(v, o) if ok else pl.Series(v)
                for v, o in zip(parts, rows[ok] if ok else parts, strict=True)
            ]
            return pl.concat(pieces, rechunk=False)
        return _nullable(column(key), column(ok)) if ok else pl.Series(column(key))

    if idx is not None:
        lines, stat, dump = lines[idx], stat[idx], dump[idx]
        kept = keep[cells]
        cells, cell_bucket = (np.cumsum(keep) - 1)[cells[kept]], cell_bucket[kept]

    good = [info if info is not None else ("", "", None, None) for info in infos]
    stat_idx = pl.Series("i", stat.view(np.uint32))  # ids >= 0; polars' index type: no copy

    # Per-stat columns, one row per distinct stat, gathered to the rows in one select so polars
    # runs the gathers side by side.
    per_stat = {
        "name": (0, pl.Categorical()),
        "key": (1, pl.Categorical()),
        "unit": (2, pl.Categorical()),
    }
    if description:
        per_stat["description"] = (3, pl.String())
    spread = pl.DataFrame(
        [pl.Series(c, [g[i] for g in good], dtype=pl.String).cast(t) for c, (i, t) in per_stat.items()]
    ).select(pl.all().gather(stat_idx))
    data = {
        "line": pl.Series(lines),  # uint32 already: no dtype, so no copy
        "name": spread.get_column("name"),
        "key": spread.get_column("key"),
        "value": values("value"),
        "value_int": values("int", "int_ok"),
        "unit": spread.get_column("unit"),
        "pdf_pct": values("pdf", "pdf_ok"),
        "cdf_pct": values("cdf", "cdf_ok"),
    }
    if description:
        data["description"] = spread.get_column("description")
    data["dump"] = pl.Series(dump)
    table = pl.DataFrame([s.alias(k) for k, s in data.items()])
    # Only the bucket_size/min_bucket/max_bucket rows can name buckets: pick them by stat id.
    sizes = np.asarray(
        [i for i, g in enumerate(good) if g[1] in ("bucket_size", "min_bucket", "max_bucket")], np.int32
    )
    plain = table.select("dump", "name", "key", "value").filter(pl.Series(np.isin(stat, sizes)))
    if cells.size:
        # One-line bucket cells: gem5's bucket names (``lo-hi``) as their keys, put in place.
        cell_rows = table[pl.Series(cells)].with_columns(bucket=pl.Series(cell_bucket, dtype=pl.Int32))
        named = _name_buckets(cell_rows, [plain]).get_column("key")
        table = table.with_columns(table.get_column("key").scatter(cells, named))
    frames = [table]
    if side_parts is not None:
        s_lines, s_dump, s_keep = side_parts
        if truncated and not ends_nl:
            s_keep &= s_lines != last_line
        if bad_lines.size:
            s_keep &= ~np.isin(s_lines, bad_lines)
        columns = [pl.col(c).cast(t) for c, t in schema.items()] + ["dump"]
        side_frame = (
            side_rows.lazy()
            .with_columns(dump=pl.Series("dump", s_dump, dtype=pl.UInt32))
            .filter(pl.Series(s_keep))
            .select(columns)
            .collect()
        )
        frames.append(_name_buckets(side_frame, [plain]).drop("bucket"))
    return _result(path, frames, messages, truncated, len(bad_lines), notes)


def _nullable(values: np.ndarray, ok: np.ndarray) -> pl.Series:
    """``values`` with nulls where ``ok`` is False (no copy through Python objects), built from
    Arrow buffers: ``pa.array(numpy, mask=...)`` would import pandas to check its input type."""
    values = np.ascontiguousarray(values)
    kind = {np.dtype(np.int64): pa.int64(), np.dtype(np.float64): pa.float64()}[values.dtype]
    n = len(values)
    if n == 0 or ok.all():
        return pl.Series(_ArrowArray(pa.Array.from_buffers(kind, n, [None, pa.py_buffer(values)])))
    validity = pa.py_buffer(np.packbits(ok, bitorder="little"))
    return pl.Series(_ArrowArray(pa.Array.from_buffers(kind, n, [validity, pa.py_buffer(values)])))


class _ArrowArray:
    """An Arrow array seen only through the Arrow PyCapsule protocol: polars imports it that
    way, zero copy, where its pyarrow path (``pl.from_arrow``) would import ``pyarrow.compute``
    first (~0.1 s of a CLI run, for nothing)."""

    __slots__ = ("array",)

    def __init__(self, array: pa.Array) -> None:
        self.array = array

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        return self.array.__arrow_c_array__(requested_schema)


def _rows_frame(extra_rows: list[tuple[int, int | None, sl.StatRow]], description: bool) -> pl.DataFrame:
    data: dict[str, list] = {
        "line": [line for line, _, _ in extra_rows],
        "bucket": [bucket for _, bucket, _ in extra_rows],
        "name": [r.name for _, _, r in extra_rows],
        "key": [r.key for _, _, r in extra_rows],
        "value": [r.value for _, _, r in extra_rows],
        "value_int": [r.value_int for _, _, r in extra_rows],
        "unit": [r.unit for _, _, r in extra_rows],
        "pdf_pct": [r.pdf_pct for _, _, r in extra_rows],
        "cdf_pct": [r.cdf_pct for _, _, r in extra_rows],
    }
    if description:
        data["description"] = [r.description for _, _, r in extra_rows]
    schema = _schema(description)
    return pl.DataFrame(data, schema={c: schema[c] for c in data})


def _bad_names(rows: pl.DataFrame) -> list[tuple[int, str]]:
    names = rows.get_column("name").unique().drop_nulls().to_list()
    wrong = [n for n in names if not sl._NAME_RE.match(n) or "::" in n]
    if not wrong:
        return []
    hits = rows.filter(pl.col("name").cast(pl.String).is_in(wrong)).select("line", "name")
    return [(line, f"{name[:60]!r} is not a stat name: not a stats line") for line, name in hits.iter_rows()]


def _python_line(line: int, raw: str, markers: _Markers, extra: list, bad: list) -> None:
    stripped = raw.strip()
    if not stripped:
        return
    try:
        marker = sl.parse_marker(stripped)
        if marker is not None:
            kind, message = marker
            if kind == "begin":
                markers.begins.append(line)
                markers.messages.append(message)
            else:
                markers.ends.append(line)
            return
        rows = sl.parse_stat_line(raw)
        oneline = " |" in raw.partition("#")[0]
        for index, row in enumerate(rows):
            extra.append((line, index if oneline else None, row))
    except sl.LineError as exc:
        bad.append((line, str(exc)))


def _pair_markers(markers: _Markers, bad: list) -> tuple[list[int], list[int], list[str | None], bool]:
    """Pair Begin/End markers: begin lines, end lines (2**32 for an open last block), messages, truncated."""
    message_of = dict(zip(markers.begins, markers.messages, strict=True))
    events = sorted([(b, "begin") for b in markers.begins] + [(e, "end") for e in markers.ends])
    begins: list[int] = []
    ends: list[int] = []
    open_block = False
    for line, kind in events:
        if kind == "begin":
            if open_block:
                bad.append((line, "Begin marker inside an open block (the previous block has no End marker)"))
                ends.append(line)
            begins.append(line)
            open_block = True
        elif not open_block:
            bad.append((line, "End marker without a Begin marker"))
        else:
            ends.append(line)
            open_block = False
    if open_block:
        ends.append(2**32)
    return begins, ends, [message_of[b] for b in begins], open_block


def _dump_of(lines: np.ndarray, begins: list[int], ends: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Dump index of each line (by its Begin marker) and whether it lies inside that block."""
    dump = np.searchsorted(np.asarray(begins, dtype=lines.dtype), lines, side="right").astype(np.int64) - 1
    clipped = np.maximum(dump, 0)
    inside = (dump >= 0) & (lines < np.asarray(ends, dtype=np.int64)[clipped])
    return clipped, inside


def _dump_sorted(
    lines: np.ndarray, n_first: int, begins: list[int], ends: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """``_dump_of`` for two runs of sorted lines (``[:n_first]``, ``[n_first:]``), natively."""
    dump = np.empty(len(lines), np.uint32)
    inside = np.empty(len(lines), np.bool_)
    scan_mod.dumps(lines, n_first, np.asarray(begins, np.int64), np.asarray(ends, np.int64), dump, inside)
    return dump, inside


def _finish(
    path: Path,
    stat_frames: list[pl.DataFrame],
    meta: pl.DataFrame | None,
    side: pl.DataFrame | None,
    markers: _Markers,
    bad: list,
    strict: bool,
    ends_nl: bool,
    schema: dict[str, pl.DataType],
    last_line: int,
) -> StatsDumps:
    """Pair markers, give every row its dump, apply the strict/lenient policy, build the table.

    ``stat_frames`` carry ``stat`` (joined with ``meta`` here, lazily, so the big frame is
    materialised once) and, for the streamed frame, ``raw`` (non-null = handled elsewhere).
    """
    if not markers.begins:
        has_rows = any(
            (f.filter(pl.col("raw").is_null()).height if "raw" in f.columns else f.height)
            for f in stat_frames
        )
        if not has_rows and (side is None or not side.height) and not bad:
            raise InputError(f"{path}: no stats in the file (only blank lines)")
        raise InputError(f"{path}: no 'Begin Simulation Statistics' marker; not a gem5 stats.txt file")
    begins, ends, messages, truncated = _pair_markers(markers, bad)
    notes: list[str] = []
    parts = []
    while stat_frames or side is not None:
        frame = stat_frames.pop(0) if stat_frames else side
        if frame is side:
            side = None
        if frame is None:
            continue
        lines = frame.get_column("line").to_numpy()
        dump, inside = _dump_of(lines, begins, ends)
        keep = (
            frame.get_column("raw").is_null().to_numpy()
            if "raw" in frame.columns
            else np.ones(len(lines), bool)
        )
        outside = keep & ~inside
        if outside.any():
            bad.extend(
                (int(x), "stat line outside a Begin/End Simulation Statistics block")
                for x in lines[outside][:1000]
            )
        parts.append((frame, lines, dump, keep & inside))
    bad_lines = _settle_bad_lines(path, bad, notes, truncated and not ends_nl, last_line, strict)
    frames = []
    columns = [pl.col(c).cast(t) for c, t in schema.items()] + ["dump"]
    has_side = parts and "stat" not in parts[-1][0].columns
    while parts:
        frame, lines, dump, keep = parts.pop(0)
        if truncated and not ends_nl:
            # The last line of a cut file may hold a cut number: drop it rather than report it.
            keep &= lines != last_line
        if bad_lines.size:
            keep &= ~np.isin(lines, bad_lines)
        lf = frame.lazy().with_columns(dump=pl.Series("dump", dump, dtype=pl.UInt32))
        if not keep.all():
            lf = lf.filter(pl.Series(keep))
        if "stat" in frame.columns:
            lf = lf.join(meta.lazy(), on="stat", how="left", maintain_order="left").with_columns(
                bucket=pl.lit(None, dtype=pl.Int32)
            )
        for col in ("pdf_pct", "cdf_pct"):
            if col not in frame.columns:
                lf = lf.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
        del frame, lines, dump, keep
        frames.append(lf.select(columns).collect())
        del lf
    if has_side:
        frames[-1] = _name_buckets(frames[-1], frames[:-1] or [frames[-1]])
    return _result(path, frames, messages, truncated, len(bad_lines), notes)


def _result(
    path: Path,
    frames: list[pl.DataFrame],
    messages: list[str | None],
    truncated: bool,
    skipped: int,
    notes: list[str],
) -> StatsDumps:
    """The parts (stat rows, then side rows) as one table with what the parse noticed."""
    main = pl.concat(frames) if len(frames) > 1 else frames[0]
    if not main.get_column("line").is_sorted():
        main = main.sort("line", maintain_order=True)
    if truncated:
        notes.append(f"dump {len(messages) - 1} has no End marker (truncated file); kept its complete lines")
    return StatsDumps(
        frame=_final_columns(main, tuple(messages)),
        path=path,
        messages=tuple(messages),
        truncated=truncated,
        skipped_lines=skipped,
        notes=tuple(notes),
    )


def _name_buckets(buckets: pl.DataFrame, plain: list[pl.DataFrame]) -> pl.DataFrame:
    """Give one-line buckets gem5's own bucket names (``lo-hi``), from the stat's bucket lines.

    gem5 prints ``::bucket_size``/``::min_bucket``/``::max_bucket`` before a one-line
    distribution; without them (one-line vectors) the key stays the element index. Rows that
    are not one-line buckets (``bucket`` null) pass through.
    """
    is_bucket = pl.col("bucket").is_not_null()
    wanted = buckets.filter(is_bucket).select("dump", "name").unique()
    if wanted.height == 0:
        return buckets
    bucket_keys = pl.col("key").is_in(["bucket_size", "min_bucket", "max_bucket"])
    info = (
        pl.concat([frame.filter(bucket_keys) for frame in plain])
        .join(wanted, on=["dump", "name"], how="semi")
        .select("dump", "name", pl.col("key").cast(pl.String), "value")
        .pivot(on="key", index=["dump", "name"], values="value", aggregate_function="first")
    )
    for col in ("bucket_size", "min_bucket", "max_bucket"):
        if col not in info.columns:
            info = info.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    named = buckets.join(info, on=["dump", "name"], how="left", maintain_order="left")
    low = pl.col("min_bucket").fill_null(0.0) + pl.col("bucket") * pl.col("bucket_size")
    high = pl.min_horizontal(low + pl.col("bucket_size") - 1.0, pl.col("max_bucket").fill_null(float("inf")))

    def as_text(expr: pl.Expr) -> pl.Expr:  # gem5 prints bucket bounds as integer Counters
        return expr.cast(pl.Int64, strict=False).cast(pl.String)

    key = (
        pl.when(~is_bucket)
        .then(pl.col("key"))
        .when(pl.col("bucket_size").is_null())
        .then(pl.col("bucket").cast(pl.String))
        .when(low < high)
        .then(pl.concat_str([as_text(low), pl.lit("-"), as_text(high)]))
        .otherwise(as_text(low))
    )
    return named.with_columns(key=key.cast(pl.Categorical)).select(buckets.columns)


def _final_columns(rows: pl.DataFrame, messages: tuple[str | None, ...]) -> pl.DataFrame:
    if any(m is not None for m in messages):
        message = pl.col("dump").replace_strict(
            list(range(len(messages))), list(messages), return_dtype=pl.String, default=None
        )
    else:
        message = pl.lit(None, dtype=pl.String)
    cols = [
        pl.col("dump"),
        message.cast(pl.Categorical).alias("dump_message"),
        pl.col("name").cast(pl.Categorical),
        pl.col("key").cast(pl.Categorical),
        pl.col("value"),
        pl.col("value_int"),
        pl.col("unit").cast(pl.Categorical),
        pl.col("pdf_pct"),
        pl.col("cdf_pct"),
        pl.col("line"),
    ]
    if "description" in rows.columns:
        cols.append(pl.col("description"))
    return rows.select(cols)


def _assemble_python(path: Path, strict: bool, description: bool, ends_nl: bool) -> StatsDumps:
    """The whole-file reference path, for files the native reader refuses (bad UTF-8...)."""
    markers = _Markers()
    extra_rows: list[tuple[int, int | None, sl.StatRow]] = []
    bad: list[tuple[int, str]] = []
    line_no = -1
    with path.open("rb") as handle:
        for line_no, data in enumerate(handle, start=1):
            try:
                text = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                bad.append((line_no, "not UTF-8 text (binary data in a stats file?)"))
                continue
            if "\x1f" in text or "\0" in text:
                bad.append((line_no, "control characters in a stats line (binary data?)"))
                continue
            _python_line(line_no, text, markers, extra_rows, bad)
    rows = _rows_frame(extra_rows, description)
    bad.extend(_bad_names(rows))
    return _finish(path, [], None, rows, markers, bad, strict, ends_nl, _schema(description), line_no)
