"""The C kernel of the stats scanner (``stats_parsers.scan``): ``_scan.c``, built once with the
system C compiler and loaded with ctypes.

Why C and not numba first: the scan itself costs about the same, but importing numba and
loading its cached code took ~0.8 s per process, more than parsing a whole 100 MB file, and
users run ``layerlab stats`` once per file. A shared library loads in a millisecond.

Where the library lives: built next to the source (``stats_parsers/__pycache__``, as numba
keeps its cache; ``make setup`` builds it there), else, where that is read-only, in the user
cache (``$LAYERLAB_CACHE_DIR/native`` or ``~/.cache/layerlab/native``). The file name holds a
hash of the source, the flags and the machine, so an edited ``_scan.c`` or another CPU
architecture never loads a stale build; builds are atomic (temporary file + rename), so two
processes building at once both end with a whole library. No compiler, a failed build or a
library that does not load: ``library()`` returns None and the numba kernel takes over.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from stats_parsers import scan

SOURCE = Path(__file__).with_name("_scan.c")
FLAGS = ("-O2", "-shared", "-fPIC")
#: Must equal ABI in _scan.c.
ABI = 3
#: Bytes per read: small reads land in a buffer that stays in cache (measured 3x faster than
#: 16 MiB reads on the 2-core VMs); tests make it tiny to exercise the refills.
BLOCK = 1 << 16

# Status codes of ll_scan (see _scan.c).
OK, TABLE_FULL, NO_ROOM, CONTROL_BYTES, NOT_UTF8, READ_ERROR, SHRANK, NO_MEMORY = range(8)
_WHY = {
    CONTROL_BYTES: "NUL or separator bytes",
    NOT_UTF8: "not UTF-8",
    READ_ERROR: "read error",
    SHRANK: "the file shrank while it was read",
    NO_MEMORY: "out of memory",
}

_lib: ctypes.CDLL | None = None
_tried = False
_slots: dict[str, int] = {}


def library() -> ctypes.CDLL | None:
    """The loaded library (built first if need be), or None where it cannot be had."""
    global _lib, _tried
    if not _tried:
        _tried = True
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            _lib = _load()
    return _lib


def _tag() -> str:
    key = hashlib.sha256(SOURCE.read_bytes())
    key.update(repr((FLAGS, platform.machine(), sys.platform, ABI)).encode())
    return f"_scan.{key.hexdigest()[:16]}.{platform.machine() or 'cpu'}.so"


def _places() -> list[Path]:
    """Where a built library is looked for and built, in order."""
    if env := os.environ.get("LAYERLAB_CACHE_DIR"):
        user = Path(env) / "native"
    else:
        user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "layerlab" / "native"
    return [SOURCE.parent / "__pycache__", user]


def _load() -> ctypes.CDLL | None:
    if os.name != "posix" or not SOURCE.is_file():
        return None
    name = _tag()
    for place in _places():
        if (place / name).is_file() and (lib := _open(place / name)) is not None:
            return lib
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None
    for place in _places():
        if _build(compiler, place / name) and (lib := _open(place / name)) is not None:
            return lib
    return None


def _open(path: Path) -> ctypes.CDLL | None:
    try:
        return _bind(ctypes.CDLL(str(path)))
    except (OSError, AttributeError):  # not loadable here, or not our library
        return None


def build() -> Path | None:
    """Build the library now (``make setup``); its path, or None where it cannot be built."""
    library()
    return next((p / _tag() for p in _places() if (p / _tag()).is_file()), None) if _lib else None


def _build(compiler: str, path: Path) -> bool:
    """Compile into ``path`` atomically; False when the place is not writable or cc fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=path.parent)
    except OSError:
        return False
    os.close(fd)
    try:
        done = subprocess.run(
            [*shlex.split(compiler), *FLAGS, "-o", tmp, str(SOURCE)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            return False
        os.chmod(tmp, 0o755)  # mkstemp made it private: others using this install load it too
        os.replace(tmp, path)
        return True
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL | None:
    """Declare the signatures; None when the library is not the one this module speaks to."""
    lib.ll_abi.restype = ctypes.c_int64
    lib.ll_slots.restype = ctypes.c_char_p
    if lib.ll_abi() != ABI:
        return None
    names = lib.ll_slots().decode().rstrip(",").split(",")
    _slots.clear()
    _slots.update({name: i for i, name in enumerate(names)})
    lib.ll_scan.argtypes = [ctypes.c_void_p]
    lib.ll_scan.restype = None
    lib.ll_scatter.argtypes = [ctypes.c_int64] + [ctypes.c_void_p] * 6
    lib.ll_scatter.restype = None
    lib.ll_dumps.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [
        ctypes.c_void_p
    ] * 4
    lib.ll_dumps.restype = None
    return lib


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


# -- the per-thread workspace --------------------------------------------------------------------

_local = threading.local()

#: Rows a chunk is given room for at first: one per this many bytes (gem5 lines are 40-200
#: bytes; a chunk that needs more is scanned again with four times the room). Text buffers get
#: the chunk's size: untouched pages cost nothing.
_LINE_BYTES = 64


class _Space:
    """One thread's output arrays, reused across chunks (fresh pages cost a fault each), and
    the argument vector that hands their addresses to ``ll_scan``."""

    def __init__(self, chunk_bytes: int, room: int = 1) -> None:
        lines = room * (chunk_bytes // _LINE_BYTES + 1024)
        text = room * (chunk_bytes + (1 << 16))
        self.chunk_bytes, self.room, self.lines = chunk_bytes, room, lines
        self.irr_line = np.empty(lines, np.int64)
        self.irr_off = np.empty(lines + 1, np.int64)
        self.irr_buf = np.empty(text, np.uint8)
        self.flt_cap = 3 * lines + 6 * lines
        self.flt_buf = np.empty(text, np.uint8)
        self.flt_off = np.empty(self.flt_cap + 1, np.int32)
        self.flt_kind = np.empty(self.flt_cap, np.int8)
        self.flt_row = np.empty(self.flt_cap, np.int32)
        self.ft_buf = np.empty(text, np.uint8)
        self.buf = np.empty(2 * BLOCK + 16, np.uint8)  # the read buffer (16: _scan.c's PAD)
        self.args = np.zeros(len(_slots), np.int64)
        a, s = self.args, _slots
        a[s["BUF"]], a[s["BUF_CAP"]], a[s["BLOCK"]] = _ptr(self.buf), 2 * BLOCK, BLOCK
        self.rows: dict[str, np.ndarray] = {}
        a[s["IRR_LINE"]], a[s["IRR_OFF"]], a[s["IRR_CAP"]] = _ptr(self.irr_line), _ptr(self.irr_off), lines
        a[s["IRR_BUF"]], a[s["IRR_BYTES"]] = _ptr(self.irr_buf), len(self.irr_buf)
        a[s["FLT_BUF"]], a[s["FLT_BYTES"]] = _ptr(self.flt_buf), len(self.flt_buf)
        a[s["FLT_OFF"]], a[s["FLT_KIND"]], a[s["FLT_ROW"]] = (
            _ptr(self.flt_off),
            _ptr(self.flt_kind),
            _ptr(self.flt_row),
        )
        a[s["FLT_CAP"]] = self.flt_cap
        a[s["FT_BUF"]], a[s["FT_BYTES"]] = _ptr(self.ft_buf), len(self.ft_buf)
        self.table: scan._Table | None = None
        self.ft_off = np.empty(0, np.int64)

    def fresh_rows(self) -> None:
        """New row arrays for the next chunk: handed over as they are (views, no copy), so the
        kernel writes each row once, into memory that stays; pages past the rows used are never
        touched, so the room they leave costs nothing. One set of arrays for the three kinds of
        rows (regular, pdf/cdf, bucket cell): they come out in line order, with nothing to merge."""
        a, s = self.args, _slots
        cap = 3 * self.lines  # regular and pdf/cdf rows: one a line; bucket cells: up to two a line
        rows = {k: np.empty(cap, t) for k, t in scan.ROWS.items()}
        rows["bucket"] = np.empty(cap, np.int32)
        self.rows = rows
        slots = {
            "LINE": "line", "STAT": "stat", "BUCKET": "bucket", "VAL": "value", "INT": "int", "OK": "int_ok",
            "PDF": "pdf", "PDF_OK": "pdf_ok", "CDF": "cdf", "CDF_OK": "cdf_ok",
        }  # fmt: skip
        for slot, key in slots.items():
            a[s[f"ROW_{slot}"]] = _ptr(rows[key])
        a[s["ROW_CAP"]] = cap

    def bind(self, table: scan._Table) -> None:
        if table is self.table:
            return
        a, s = self.args, _slots
        self.ft_off = np.empty(table.capacity + 1, np.int64)  # one offset per name new in a chunk
        a[s["FT_OFF"]] = _ptr(self.ft_off)
        a[s["T_NAME_LEN"]], a[s["T_NAME_WORD"]] = _ptr(table.name_len), _ptr(table.name_word)
        a[s["T_NB"]], a[s["T_NB_CAP"]] = _ptr(table.nb), len(table.nb)
        a[s["T_FIRST_LNO"]], a[s["T_NEXT_PRED"]] = _ptr(table.first_lno), _ptr(table.next_pred)
        a[s["T_SLOTS"]], a[s["T_SLOT_CAP"]] = _ptr(table.slots), len(table.slots)
        a[s["T_CAP"]], a[s["T_STATE"]] = table.capacity, _ptr(table.state)
        self.table = table


def _space(chunk_bytes: int) -> _Space:
    space = getattr(_local, "space", None)
    if space is None or space.chunk_bytes < chunk_bytes:
        space = _local.space = _Space(chunk_bytes)
    return space


def chunks(fd: int, size: int, chunk_bytes: int):
    """(number of chunks, function scanning chunk k into a ``scan._Chunk``)."""
    return max(1, -(-size // chunk_bytes)), lambda k: _scan_chunk(fd, size, chunk_bytes, k)


def _scan_chunk(fd: int, size: int, chunk_bytes: int, k: int) -> scan._Chunk:
    """The lines that start in bytes ``[k*C, (k+1)*C)`` of the file, whole."""
    lib = library()
    lo = k * chunk_bytes
    space = _space(chunk_bytes)
    table = getattr(_local, "table", None) or scan._Table(scan._FIRST_CAPACITY)
    s = _slots
    while True:
        before = int(table.state[0])
        space.bind(table)
        space.fresh_rows()
        a = space.args
        a[s["FD"]], a[s["LO"]], a[s["HI"]], a[s["SIZE"]] = fd, lo, min(lo + chunk_bytes, size), size
        lib.ll_scan(_ptr(a))
        status = int(a[s["OUT_STATUS"]])
        if status == OK:
            break
        if status == TABLE_FULL:
            if table.capacity >= scan.MAX_STATS:
                raise scan.Unsupported("too many distinct stat names")
            table = scan._Table(table.capacity * 8)  # a new table: every name in the chunk is new to it
        elif status == NO_ROOM:
            # More room, and a fresh table: the stopped pass already added some of its names.
            space = _local.space = _Space(chunk_bytes, space.room * 4)
            table = scan._Table(table.capacity)
        else:
            raise scan.Unsupported(_WHY.get(status, f"scanner status {status}"))
    _local.table = table
    n_flt, n_bytes = int(a[s["OUT_FLT"]]), int(a[s["OUT_FLT_BYTES"]])
    rows = space.rows
    if n_flt:
        values = scan.float_values(space.flt_off, space.flt_buf[:n_bytes], n_flt)
        lib.ll_scatter(
            n_flt,
            _ptr(values),
            _ptr(space.flt_kind),
            _ptr(space.flt_row),
            *(_ptr(rows[k]) for k in ("value", "pdf", "cdf")),
        )
    n_rows = int(a[s["OUT_ROWS"]])  # every row, in line order
    out = {k: v[:n_rows] for k, v in rows.items()}
    bucket = out.pop("bucket")
    out["cell_pos"] = np.flatnonzero(bucket >= 0)
    out["cell_bucket"] = bucket[out["cell_pos"]]
    n_irr = int(a[s["OUT_IRR"]])
    offsets = space.irr_off[: n_irr + 1].tolist()
    raw = space.irr_buf[: offsets[-1]].tobytes()
    try:
        irregular = [
            (line, raw[offsets[i] : offsets[i + 1]].decode("utf-8"))
            for i, line in enumerate(space.irr_line[:n_irr].tolist())
        ]
    except UnicodeDecodeError:  # pragma: no cover - the scanner checks UTF-8 itself
        raise scan.Unsupported("not UTF-8") from None
    after = int(table.state[0])
    nb = table.nb.view(np.uint8)
    names = [
        nb[8 * w : 8 * w + n].tobytes().decode("utf-8", "replace")
        for w, n in zip(
            table.name_word[before:after].tolist(), table.name_len[before:after].tolist(), strict=True
        )
    ]
    ft = space.ft_off[: after - before + 1].tolist()
    text = space.ft_buf[: ft[-1]].tobytes()
    first_text = [
        text[ft[i] : ft[i + 1]].decode("utf-8", "replace").rstrip("\r\n") for i in range(after - before)
    ]
    return scan._Chunk(
        out,
        int(a[s["OUT_LINES"]]),
        irregular,
        table.key,
        before,
        names,
        table.first_lno[before:after].copy(),
        first_text,
        ordered=True,
    )


def dumps(
    lines: np.ndarray,
    n_first: int,
    begins: np.ndarray,
    ends: np.ndarray,
    dump: np.ndarray,
    inside: np.ndarray,
) -> None:
    """See ``scan.dumps``."""
    lines = np.ascontiguousarray(lines, np.uint32)
    begins = np.ascontiguousarray(begins, np.int64)
    ends = np.ascontiguousarray(ends, np.int64)
    assert dump.dtype == np.uint32 and inside.dtype == np.bool_ and dump.flags.c_contiguous
    library().ll_dumps(
        len(lines), _ptr(lines), n_first, len(begins), _ptr(begins), _ptr(ends), _ptr(dump), _ptr(inside)
    )
