"""One-pass native scanner for gem5 ``stats.txt`` chunks, used by ``stats_text``.

Why: polars string kernels cost about as much CPU per line as a plain Python split loop, so a
columnar split cannot beat the naive parser by much. One compiled pass over the bytes finds,
per line, the stat name, the value token and (for distributions) the pdf/cdf tokens, maps the
name to a stat id through a prediction (gem5 prints stats in the same order every dump) backed
by a hash table, and converts integer values exactly. Non-integer numbers are *not* parsed
here: their tokens are gathered and cast by Arrow (correctly rounded, bit-identical to
Python's ``float``). Every line the strict grammar below does not accept is handed back as
"irregular" for the existing slower passes, so the native pass only ever narrows their work.

Accepted lines (the same rule as the polars fast path, ``stats_text._scan_chunk``)::

    name SP+ value [SP+ pdf% SP+ cdf%] SP* ( end | '#' ... | '(' ... )

with the terminator inside the 96-byte window after the name. ``value`` is ``-?`` then
``nan``/``inf`` or ``digits[.digits][e[+-]digits]``. One-line bucket lists (Ruby's
histograms print this way) are accepted as the polars pass ``stats_text._oneline_pass``
accepts them: ``name SP+ ('|' SP* value [SP+ pdf% [SP+ cdf%]] SP*)+ [' # ' ...]``, a name
without ``::``.

Two kernels implement that pass alike: ``_scan.c``, compiled once with the system C compiler
and loaded with ctypes (``scan_c``: a millisecond per process), and, where no compiler
builds it, the numba one (``scan_numba``: ~0.8 s per process to import numba and load its
cached code, more than a whole 100 MB parse). This module holds what both share: the chunking
(two chunks scanned at once, each by its own thread, the GIL released inside the kernels and
Arrow's cast) and the merge of the chunks' rows and stat tables, in file order. Neither numba
nor pyarrow is imported before a file is scanned.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stats_parsers import stat_info

#: numba can be imported here (looked up, not imported: that alone costs ~0.3 s). numba is a
#: declared dependency, so its absence marks a platform we build no native code for: there
#: ``stats_text`` reads with its polars path (tests switch the native path off with this).
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
#: Which kernel scans: None, the C one when it builds and loads, else numba; "c" or "numba"
#: forces one (tests; ``LAYERLAB_STATS_KERNEL`` for a process, as the benchmark compares them).
#: A forced kernel that cannot run raises ``Unsupported`` (then the polars path reads).
KERNEL: str | None = os.environ.get("LAYERLAB_STATS_KERNEL") or None

#: Files this big and more are scanned natively (``stats_text._NATIVE_MIN_BYTES``); smaller ones
#: take the polars path, which costs less than starting two scan threads and Arrow.
NATIVE_MIN_BYTES = 8 * 2**20
#: Text per native scan step (``stats_text._NATIVE_CHUNK_BYTES``): two such chunks are scanned
#: at once, one per core.
NATIVE_CHUNK_BYTES = 16 * 2**20
#: Must equal ``stats_text._WINDOW``: bytes after the name where the terminator must lie.
WINDOW = 96
#: Distinct stat names the table holds before the scan asks for a fallback (gem5 runs have
#: tens of thousands at most).
MAX_STATS = 1 << 22
#: Distinct names a chunk's table starts with; a chunk with more is scanned again with more.
_FIRST_CAPACITY = 1 << 17
#: Chunks scanned at once (the GIL is released inside the scan and the Arrow cast).
THREADS = min(2, os.cpu_count() or 1)
#: Bytes the numba kernel reads past a chunk's end to find where its last line ends (doubled
#: while too few); the C kernel reads whole lines by itself.
_TAIL = 1 << 16

# What a float token in the shared buffer belongs to (see the kernels' scatter).
KIND_REG, KIND_PCT_VALUE, KIND_PDF, KIND_CDF, KIND_ONE_VALUE, KIND_ONE_PDF, KIND_ONE_CDF = range(7)


class Unsupported(Exception):
    """The native scan cannot take this file (binary bytes, bad UTF-8, huge name table)."""


@dataclass
class ScanResult:
    """Rows of the accepted lines in file order, one array per chunk and column (``ROWS``;
    joined once when the table is built), where the one-line bucket cells among them are
    (``cell_pos``, row numbers in the file's rows, and ``cell_bucket``, the cell's index), the
    other lines' text, and the stat table: names by id, first line number and text of each."""

    rows: dict[str, list[np.ndarray]]
    cell_pos: np.ndarray
    cell_bucket: np.ndarray
    irregular_lines: list[int]
    irregular_text: list[str]
    stat_names: list[str]
    first_line: list[int]
    first_text: list[str]
    #: ``stat_info.stat_infos`` of each stat (name, key, unit, description; None: a bad name).
    infos: list
    last_line: int


#: A scan's row columns, in file order (``_in_file_order``): line number, stat id, value, the
#: exact integer and whether there is one, and the pdf/cdf percentages where printed.
ROWS = {
    "line": np.uint32,
    "stat": np.int32,
    "value": np.float64,
    "int": np.int64,
    "int_ok": np.bool_,
    "pdf": np.float64,
    "pdf_ok": np.bool_,
    "cdf": np.float64,
    "cdf_ok": np.bool_,
}


_ROW_FIELDS = {
    "reg_line": np.uint32,
    "reg_stat": np.int32,
    "reg_val": np.float64,
    "reg_int": np.int64,
    "reg_ok": np.bool_,
    "pct_line": np.uint32,
    "pct_stat": np.int32,
    "pct_val": np.float64,
    "pct_int": np.int64,
    "pct_ok": np.bool_,
    "pct_pdf": np.float64,
    "pct_cdf": np.float64,
    # In ``_scan``'s argument order, after the irregular-line arrays.
    "one_line": np.uint32,
    "one_stat": np.int32,
    "one_bucket": np.int32,
    "one_val": np.float64,
    "one_int": np.int64,
    "one_ok": np.bool_,
    "one_pdf": np.float64,
    "one_pdf_ok": np.bool_,
    "one_cdf": np.float64,
    "one_cdf_ok": np.bool_,
}
_PAD = 16


@dataclass
class _Chunk:
    """One chunk's rows (lines local to the chunk, stat ids local to its thread's table) and
    the names that chunk added to the table (ids from ``first_id``)."""

    rows: dict[str, np.ndarray]
    newlines: int
    irregular: list[tuple[int, str]]
    table: int
    first_id: int
    names: list[str]
    first_line: np.ndarray
    first_text: list[str]
    #: rows already in line order (``ROWS`` + ``cell_pos``/``cell_bucket``: the C kernel's
    #: one row layout), else the three runs that ``_in_file_order`` merges (numba).
    ordered: bool = False


class _Table:
    """A thread's stat-name table, kept across its chunks so each name is decoded and merged
    once per thread, not once per chunk."""

    _keys = iter(range(1 << 62))

    def __init__(self, capacity: int) -> None:
        self.key = next(self._keys)
        self.capacity = capacity
        self.name_pos = np.empty(capacity, np.int64)
        self.name_len = np.empty(capacity, np.int64)
        self.name_word = np.empty(capacity, np.int64)
        self.nb = np.empty(16 * capacity, np.uint64)
        self.first_end = np.empty(capacity, np.int64)
        self.first_lno = np.empty(capacity, np.int64)
        self.next_pred = np.full(capacity, -1, np.int32)
        self.slots = np.full(4 * capacity, -1, np.int32)
        self.state = np.zeros(2, np.int64)


@dataclass(frozen=True)
class Merge:
    """Where the rows of three sorted runs go in their merged (file) order: ``reg`` for the
    first run's rows (given in pieces), ``pct`` and ``one`` for the other two."""

    reg: np.ndarray
    pct: np.ndarray
    one: np.ndarray

    def scatter(self, reg: list[np.ndarray] | None, pct: np.ndarray, one: np.ndarray | None) -> np.ndarray:
        """One column in file order from its three runs' parts (None: zeros there)."""
        dtype = pct.dtype
        n = len(self.reg) + len(self.pct) + len(self.one)
        if not len(self.pct) and not len(self.one):
            if reg is None:
                return np.zeros(n, dtype)
            return reg[0] if len(reg) == 1 else np.concatenate(reg)
        out = np.zeros(n, dtype) if reg is None else np.empty(n, dtype)
        if reg is not None:
            lo = 0
            for part in reg:
                out[self.reg[lo : lo + len(part)]] = part
                lo += len(part)
        out[self.pct] = pct
        if one is not None and len(self.one):
            out[self.one] = one
        return out


def merge_positions(reg: list[np.ndarray], pct: np.ndarray, one: np.ndarray) -> Merge:
    """Merge positions of three sorted runs of line numbers (a line is in one run only; the
    one-line run repeats a line once per bucket cell). Searches, no sort: the two small runs are
    merged first, then placed among the regular rows."""
    n_pct, n_one = len(pct), len(one)
    n_small = n_pct + n_one
    one_in_small = np.searchsorted(pct, one) + np.arange(n_one)
    mask = np.ones(n_small, bool)
    mask[one_in_small] = False
    pct_in_small = np.flatnonzero(mask)
    small = np.empty(n_small, np.uint32)
    small[pct_in_small] = pct
    small[one_in_small] = one
    reg_lines = reg[0] if len(reg) == 1 else np.concatenate(reg) if reg else np.empty(0, np.uint32)
    n = len(reg_lines) + n_small
    small_pos = np.searchsorted(reg_lines, small) + np.arange(n_small)
    mask = np.ones(n, bool)
    mask[small_pos] = False
    return Merge(reg=np.flatnonzero(mask), pct=small_pos[pct_in_small], one=small_pos[one_in_small])


def _in_file_order(chunk: _Chunk) -> _Chunk:
    """A chunk's three runs of rows (regular, pdf/cdf, one-line bucket cells) as one set of
    ``ROWS`` in line order, plus where its cells are. Run in the scan thread, right after the
    kernel (numpy drops the GIL here): per chunk the arrays are small and still in cache, and
    the whole table is then a concatenation, not a merge."""
    r = chunk.rows
    n_pct = len(r["pct_line"])
    where = merge_positions([r["reg_line"]], r["pct_line"], r["one_line"])
    pct_ok = np.ones(n_pct, bool)
    chunk.rows = {
        "line": where.scatter([r["reg_line"]], r["pct_line"], r["one_line"]),
        "stat": where.scatter([r["reg_stat"]], r["pct_stat"], r["one_stat"]),
        "value": where.scatter([r["reg_val"]], r["pct_val"], r["one_val"]),
        "int": where.scatter([r["reg_int"]], r["pct_int"], r["one_int"]),
        "int_ok": where.scatter([r["reg_ok"]], r["pct_ok"], r["one_ok"]),
        "pdf": where.scatter(None, r["pct_pdf"], r["one_pdf"]),
        "pdf_ok": where.scatter(None, pct_ok, r["one_pdf_ok"]),
        "cdf": where.scatter(None, r["pct_cdf"], r["one_cdf"]),
        "cdf_ok": where.scatter(None, pct_ok, r["one_cdf_ok"]),
        "cell_pos": where.one,
        "cell_bucket": r["one_bucket"],
    }
    return chunk


def float_values(offsets: np.ndarray, data: np.ndarray, n: int) -> np.ndarray:
    """Arrow's cast of ``n`` number tokens (a string array's int32 ``offsets`` and ``data``) to
    float64, as numpy, zero copy: correctly rounded, so bit-identical to Python's ``float``.

    Through ``pyarrow._compute``, the Cython layer under ``pyarrow.compute``: importing the
    latter builds a Python wrapper for every kernel (~0.1 s, a tenth of a 100 MB CLI run).
    (``to_numpy(zero_copy_only=False)`` would import pandas through pyarrow's compatibility
    layer: ~0.3 s.)"""
    import pyarrow as pa

    tokens = pa.StringArray.from_buffers(n, pa.py_buffer(offsets[: n + 1]), pa.py_buffer(data))
    try:
        try:
            from pyarrow._compute import CastOptions, call_function
        except ImportError:  # pragma: no cover - a pyarrow without that layer
            from pyarrow.compute import CastOptions, call_function
        array = call_function("cast", [tokens], CastOptions.safe(pa.float64()))
    except pa.ArrowInvalid:  # pragma: no cover - the grammar only takes numbers Arrow reads
        raise Unsupported("a number token Arrow does not read") from None
    return np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array), offset=array.offset * 8)


_kernel_lock = threading.Lock()


def kernel():
    """The kernel module to scan with (``scan_c`` or ``scan_numba``, see ``KERNEL``); raises
    ``Unsupported`` when none can run here."""
    if KERNEL not in (None, "c", "numba"):
        from foundation.errors import InputError

        raise InputError(f"LAYERLAB_STATS_KERNEL={KERNEL!r}: expected c or numba (or unset: c, else numba)")
    with _kernel_lock:  # one build of the C library, one numba import, however many callers
        if KERNEL in (None, "c"):
            from stats_parsers import scan_c

            if scan_c.library() is not None:
                return scan_c
            if KERNEL == "c":
                raise Unsupported("the C scanner cannot be built or loaded here")
        if KERNEL in (None, "numba") and HAVE_NUMBA:
            try:
                from stats_parsers import scan_numba
            except ImportError as exc:  # pragma: no cover - numba present but broken (LLVM)
                raise Unsupported(f"numba does not load: {exc}") from None
            return scan_numba
        raise Unsupported(f"no native kernel ({KERNEL or 'C or numba'}) runs here")


def dumps(
    lines: np.ndarray,
    n_first: int,
    begins: np.ndarray,
    ends: np.ndarray,
    dump: np.ndarray,
    inside: np.ndarray,
) -> None:
    """Dump index (by Begin line) and inside-the-block flag for two sorted runs of rows
    (``lines[:n_first]``, ``lines[n_first:]``), one merge each, into ``dump`` and ``inside``."""
    kernel().dumps(lines, n_first, begins, ends, dump, inside)


_prefetched: dict[tuple, Future] = {}


def _identity(path: Path, chunk_bytes: int) -> tuple:
    stat = path.stat()
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, chunk_bytes, KERNEL)


def prefetch(path: Path, chunk_bytes: int = NATIVE_CHUNK_BYTES) -> None:
    """Start scanning ``path`` in the background; the ``scan_file`` call for the same file
    (same size and mtime) and chunk size then takes that result instead of scanning again.

    Why: ``layerlab stats`` knows its file before it imports polars and pyarrow (~0.3 s); the
    kernels hold no GIL, so the scan runs while those imports do."""
    try:
        key = _identity(path, chunk_bytes)
    except OSError:
        return
    future: Future = Future()

    def work() -> None:
        try:
            future.set_result(_scan_file(path, chunk_bytes))
        except BaseException as exc:  # handed to the caller, which decides what it means
            future.set_exception(exc)

    _prefetched[key] = future
    threading.Thread(target=work, name="layerlab-stats-prefetch", daemon=True).start()


def scan_file(path: Path, chunk_bytes: int) -> ScanResult:
    """Scan ``path`` chunk by chunk (``THREADS`` at once); raises ``Unsupported`` where the
    polars path must take over. Stat ids and line numbers become file-wide as chunks merge,
    in file order."""
    if _prefetched:
        try:
            future = _prefetched.pop(_identity(path, chunk_bytes), None)
        except OSError:
            future = None
        if future is not None:
            return future.result()
    return _scan_file(path, chunk_bytes)


def _scan_file(path: Path, chunk_bytes: int) -> ScanResult:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ROWS}
    cell_pos: list[np.ndarray] = []
    cell_bucket: list[np.ndarray] = []
    ids: dict[str, int] = {}
    first_line: list[int] = []
    first_text: list[str] = []
    infos: list = []
    stat_info._split_unit.cache_clear()  # per scan: a benchmark's repeat gets no head start
    irr_lines: list[int] = []
    irr_text: list[str] = []
    line0 = 1
    row0 = 0
    last_line = -1

    to_global: dict[int, list[int]] = {}
    as_array: dict[int, np.ndarray] = {}

    def merge(chunk: _Chunk) -> None:
        nonlocal line0, row0, last_line
        known = to_global.setdefault(chunk.table, [])
        assert len(known) == chunk.first_id
        lines = chunk.first_line.tolist()
        fresh: list[str] = []
        for local, name in enumerate(chunk.names):
            gid = ids.get(name)
            if gid is None:
                gid = ids[name] = len(ids)
                first_line.append(lines[local] + line0)
                first_text.append(chunk.first_text[local])
                fresh.append(name)
            known.append(gid)
        if fresh:  # worked out while the next chunks are scanned (this is not the main thread)
            infos.extend(stat_info.stat_infos(fresh, first_text[len(first_text) - len(fresh) :]))
        if chunk.names or chunk.table not in as_array:  # the id map as an array, rebuilt when it grows
            as_array[chunk.table] = np.asarray(known, np.int32)
        rows = chunk.rows
        # In place (mode="clip" reads each index before it writes that slot: no buffer).
        np.take(as_array[chunk.table], rows["stat"], out=rows["stat"], mode="clip")
        rows["line"] += np.uint32(line0)
        if len(rows["line"]):
            last_line = max(last_line, int(rows["line"][-1]))
        for key in ROWS:
            parts[key].append(rows[key])
        if len(rows["cell_pos"]):
            cell_pos.append(rows["cell_pos"] + row0)
            cell_bucket.append(rows["cell_bucket"])
        row0 += len(rows["line"])
        for line, raw in chunk.irregular:
            irr_lines.append(line + line0)
            irr_text.append(raw)
        if chunk.irregular:
            last_line = max(last_line, irr_lines[-1])
        line0 += chunk.newlines

    if not hasattr(os, "preadv"):  # pragma: no cover - Windows: the polars path reads it
        raise Unsupported("no os.preadv on this platform")
    fd = os.open(path, os.O_RDONLY)
    try:
        count, scan_chunk = kernel().chunks(fd, os.fstat(fd).st_size, chunk_bytes)

        def scan_ordered(k: int) -> _Chunk:
            chunk = scan_chunk(k)
            return chunk if chunk.ordered else _in_file_order(chunk)

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            # A few chunks ahead of the merge, not all: a huge file's rows stay bounded.
            ahead = 2 * THREADS
            pending = [pool.submit(scan_ordered, k) for k in range(min(ahead, count))]
            for k in range(count):
                chunk = pending.pop(0).result()
                if k + ahead < count:
                    pending.append(pool.submit(scan_ordered, k + ahead))
                merge(chunk)
                del chunk
    finally:
        os.close(fd)
    return ScanResult(
        rows=parts,
        cell_pos=np.concatenate(cell_pos) if cell_pos else np.empty(0, np.int64),
        cell_bucket=np.concatenate(cell_bucket) if cell_bucket else np.empty(0, np.int32),
        irregular_lines=irr_lines,
        irregular_text=irr_text,
        stat_names=list(ids),
        first_line=first_line,
        first_text=first_text,
        infos=infos,
        last_line=last_line,
    )


def warm(every: bool = False) -> None:
    """Build (or load) the kernel that ``KERNEL`` picks and run it on a tiny input; ``every``:
    both kernels, the C library and numba's cached code (``make setup``: so that neither a
    numba fallback nor a test that compares the kernels compiles at first use)."""
    global KERNEL
    import tempfile

    text = b"---------- Begin\na.b   1   # d (Count)\na.c 1.5 2.0% 3.0% # d\nbad\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stats.txt"
        path.write_bytes(text)
        if not every:
            scan_file(path, 1 << 20)
            return
        chosen = KERNEL
        try:
            for name in ("c", "numba"):
                KERNEL = name
                with contextlib.suppress(Unsupported):  # no compiler, or no numba: the other serves
                    _scan_file(path, 1 << 20)
        finally:
            KERNEL = chosen
