"""The numba kernel of the stats scanner (``stats_parsers.scan``): where no C compiler builds
``_scan.c`` (``scan_c``), the same one-pass grammar compiled by numba at first use and loaded
from numba's cache after that (~0.8 s per process, which is why the C kernel comes first).

What a line must look like to be taken, and what happens to the others, is said in
``stats_parsers.scan``; this module and ``_scan.c`` implement it alike (tests hold both to the
polars path, row for row). Each worker thread reads its own chunk (``pread``), so reading,
surveying and scanning all run beside each other; the functions are compiled without numba's
reference counting and with the helpers inlined by LLVM (see ``_jit``), which is what makes
the pass cheap per line.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from stats_parsers import scan as shared
from stats_parsers.scan import (
    KIND_CDF,
    KIND_ONE_CDF,
    KIND_ONE_PDF,
    KIND_ONE_VALUE,
    KIND_PCT_VALUE,
    KIND_PDF,
    KIND_REG,
    WINDOW,
    Unsupported,
)

# Result codes in ``counts``.
N_REG, N_PCT, N_IRR, N_FLT, FLT_BYTES, STATUS, N_ONE = range(7)


def _numba_options() -> set[str]:
    """The njit options this numba knows (``_nrt`` and ``forceinline`` are numba's own but
    little documented: a numba without them still compiles the scanner, only slower)."""
    try:
        from numba.core.cpu import CPUTargetOptions
        from numba.core.options import TargetOptions

        return {
            k
            for k in dir(CPUTargetOptions)
            if isinstance(getattr(CPUTargetOptions, k), TargetOptions.Mapping)
        }
    except (ImportError, AttributeError):  # pragma: no cover - a numba with another layout
        return {"nogil"}


def _jit(func, inline: bool = False):
    """njit without numba's reference counting (``_nrt=False``: nothing here allocates, and
    the atomic incref/decref of every array handed to a helper was a third of the scan), small
    helpers marked for LLVM inlining (``forceinline``: as fast as numba's IR-level inlining, at
    half its compile time), with an on-disk cache when a cache directory is writable."""
    options = {"nogil": True, "_nrt": False}
    if inline:
        options["forceinline"] = True
    options = {k: v for k, v in options.items() if k in _KNOWN_OPTIONS}
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError:  # no cache locator (read-only install, no home): compile per process
        return numba.njit(cache=False, **options)(func)


def _token_kind(data, s, e):
    """0: not a number for us; 1: integer; 2: other number (nan/inf/decimal/exponent)."""
    i = s
    if i < e and data[i] == 45:  # '-'
        i += 1
    if i >= e:
        return 0
    n = e - i
    if n == 3:
        c0, c1, c2 = data[i], data[i + 1], data[i + 2]
        if (c0 == 110 and c1 == 97 and c2 == 110) or (c0 == 105 and c1 == 110 and c2 == 102):
            return 2  # nan / inf
    digits = 0
    while i < e and 48 <= data[i] <= 57:
        i += 1
        digits += 1
    if digits == 0:
        return 0
    if i == e:
        return 1
    kind = 2
    if data[i] == 46:  # '.'
        i += 1
        frac = 0
        while i < e and 48 <= data[i] <= 57:
            i += 1
            frac += 1
        if frac == 0:
            return 0
    if i < e and (data[i] == 101 or data[i] == 69):  # e / E
        i += 1
        if i < e and (data[i] == 43 or data[i] == 45):
            i += 1
        exp = 0
        while i < e and 48 <= data[i] <= 57:
            i += 1
            exp += 1
        if exp == 0:
            return 0
    if i != e:
        return 0
    return kind


def _parse_int(data, s, e, out_val, out_int, out_ok, row):
    """Exact int64 of an integer token; False when it does not fit (then Arrow casts it)."""
    neg = data[s] == 45
    i = s + 1 if neg else s
    while i < e - 1 and data[i] == 48:  # leading zeros do not count towards overflow
        i += 1
    if e - i > 19:
        return False
    mag = np.uint64(0)
    while i < e:
        mag = mag * np.uint64(10) + np.uint64(data[i] - 48)
        i += 1
    if neg:
        if mag > np.uint64(9223372036854775808):
            return False
        if mag == np.uint64(9223372036854775808):
            out_int[row] = np.int64(-9223372036854775807) - np.int64(1)
        else:
            out_int[row] = -np.int64(mag)
        out_val[row] = -float(mag)
    else:
        if mag > np.uint64(9223372036854775807):
            return False
        out_int[row] = np.int64(mag)
        out_val[row] = float(mag)
    out_ok[row] = True
    return True


def _load(u64, i):
    """Bytes ``i..i+7`` as one little-endian word (buffers carry 16 zero bytes of padding)."""
    a = i >> 3
    off = np.uint64((i & 7) * 8)
    # Two shifts (63 - off, then 1) so that off == 0 needs no branch (a shift by 64 is undefined).
    return (u64[a] >> off) | ((u64[a + 1] << (np.uint64(63) - off)) << np.uint64(1))


def _find(u64, i, end, pattern):
    """First index in ``[i, end)`` holding the byte repeated in ``pattern``, else ``end``;
    eight bytes a step (has-zero-byte trick: the lowest flagged byte is always exact)."""
    while i < end:
        w = _load(u64, i) ^ pattern
        t = (w - np.uint64(0x0101010101010101)) & ~w & np.uint64(0x8080808080808080)
        if t != 0:
            j = i + (np.int64(trailing_zeros(t)) >> 3)
            return j if j < end else end
        i += 8
    return end


def _token_end(u64, i, ce):
    return _find(u64, i, ce, np.uint64(0x2020202020202020))


def _skip_spaces(u64, i, ce):
    """First index in ``[i, ce)`` that is not a space, else ``ce``; eight bytes a step."""
    while i < ce:
        t = _load(u64, i) ^ np.uint64(0x2020202020202020)
        if t != 0:
            j = i + (np.int64(trailing_zeros(t)) >> 3)
            return j if j < ce else ce
        i += 8
    return ce


def _ends_ok(data, j, ce, limit):
    """True when position ``j`` (after spaces) is a valid terminator inside the window."""
    if j == ce:
        return ce <= limit
    c = data[j]
    return (c == 35 or c == 40) and j < limit  # '#' or '('


def _same(u64, a, nb, w, n):
    """``n`` bytes at ``a`` equal the name stored from word ``w`` of ``nb``."""
    k = 0
    while k + 8 <= n:
        if _load(u64, a + k) != nb[w]:
            return False
        k += 8
        w += 1
    if k < n:
        mask = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)
        if (_load(u64, a + k) & mask) != nb[w]:
            return False
    return True


def _name_id(u64, ls, p1, prev, name_pos, name_len, name_word, nb, next_pred, slots, counts, stat_state):
    """Chunk-local stat id of ``data[ls:p1]``: first the stat that followed ``prev`` last time
    (gem5 prints stats in the same order every dump), else the hash table. Names are compared
    with a compact copy (``nb``, word aligned): the first occurrence in the chunk would be a
    cache miss on every line."""
    n = p1 - ls
    if prev >= 0:
        cand = next_pred[prev]
        if cand >= 0 and name_len[cand] == n and _same(u64, ls, nb, name_word[cand], n):
            return cand
    h = np.uint64(n)
    k = 0
    while k + 8 <= n:
        h = (h ^ _load(u64, ls + k)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        k += 8
    if k < n:
        mask = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)
        h = (h ^ (_load(u64, ls + k) & mask)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
    smask = np.uint64(slots.shape[0] - 1)
    slot = h & smask
    while True:
        sid = slots[slot]
        if sid < 0:
            break
        if name_len[sid] == n and _same(u64, ls, nb, name_word[sid], n):
            if prev >= 0:
                next_pred[prev] = sid
            return sid
        slot = (slot + np.uint64(1)) & smask
    nstats = stat_state[0]
    w = stat_state[1]
    words = (n + 7) // 8
    if nstats >= name_pos.shape[0] or 2 * (nstats + 1) >= slots.shape[0] or w + words > nb.shape[0]:
        counts[STATUS] = 1  # table full: the caller retries with a bigger one
        return -1
    name_word[nstats] = w
    k = 0
    while k + 8 <= n:
        nb[w] = _load(u64, ls + k)
        k += 8
        w += 1
    if k < n:
        mask = (np.uint64(1) << np.uint64(8 * (n - k))) - np.uint64(1)
        nb[w] = _load(u64, ls + k) & mask
        w += 1
    stat_state[1] = w
    name_pos[nstats] = ls
    name_len[nstats] = n
    slots[slot] = nstats
    stat_state[0] = nstats + 1
    if prev >= 0:
        next_pred[prev] = nstats
    return nstats


def _push(data, s, e, kind, row, flt_buf, flt_off, flt_kind, flt_row, n_flt, fb):
    """Queue token ``data[s:e]`` for Arrow's float cast; returns the new (n_flt, fb)."""
    for k in range(s, e):
        flt_buf[fb] = data[k]
        fb += 1
    flt_kind[n_flt] = kind
    flt_row[n_flt] = row
    n_flt += 1
    flt_off[n_flt] = fb
    return n_flt, fb


def _pct_ok(data, s, e):
    """``number%`` (the pdf/cdf columns)."""
    return e - s > 1 and data[e - 1] == 37 and _token_kind(data, s, e - 1) != 0


def _oneline(
    data, u64, ls, p1, ce, line, n_one, n_flt, fb,
    one_line, one_bucket, one_val, one_int, one_ok, one_pdf_ok, one_cdf_ok,
    flt_buf, flt_off, flt_kind, flt_row,
):  # fmt: skip
    """Rows of a one-line bucket list ``name |v [pdf% [cdf%]] |v ... [ # desc]``, one per
    cell, written from row ``n_one``; returns (ok, n_one, n_flt, fb). Mirrors the polars pass
    (``stats_text._oneline_pass``): anything it would not take (a ``::`` key, an empty or odd
    cell, a ``#`` that is not `` # ``, too many cells for the arrays) is refused whole and the
    line goes back as irregular, so the two paths give the same rows."""
    fail = (False, n_one, n_flt, fb)
    for k in range(ls, p1 - 1):
        if data[k] == 58 and data[k + 1] == 58:  # '::'
            return fail
    hend = _find(u64, p1, ce, np.uint64(0x2323232323232323))  # first '#'
    if hend < ce and not (data[hend - 1] == 32 and hend + 1 < ce and data[hend + 1] == 32):
        return fail
    while hend > p1 and data[hend - 1] == 32:
        hend -= 1
    j = _skip_spaces(u64, p1, hend)
    if j >= hend or data[j] != 124:  # '|'
        return fail
    cap = one_line.shape[0]
    row = n_one
    bucket = 0
    pos = j + 1
    while True:
        ntok = 0
        vs = ve = ps = pe = cs = cend = 0
        s = hend
        while True:
            s = _skip_spaces(u64, pos, hend)
            if s >= hend or (data[s] == 124 and data[s - 1] == 32):
                break
            e = _token_end(u64, s, hend)
            ntok += 1
            if ntok == 1:
                vs, ve = s, e
            elif ntok == 2:
                ps, pe = s, e
            elif ntok == 3:
                cs, cend = s, e
            else:
                return fail
            pos = e
        kind = _token_kind(data, vs, ve) if ntok else 0
        if kind == 0 or row >= cap:
            return fail
        if (ntok >= 2 and not _pct_ok(data, ps, pe)) or (ntok == 3 and not _pct_ok(data, cs, cend)):
            return fail
        one_line[row] = line
        one_bucket[row] = bucket
        one_ok[row] = False
        if not (kind == 1 and _parse_int(data, vs, ve, one_val, one_int, one_ok, row)):
            n_flt, fb = _push(
                data, vs, ve, KIND_ONE_VALUE, row, flt_buf, flt_off, flt_kind, flt_row, n_flt, fb
            )
        one_pdf_ok[row] = ntok >= 2
        if ntok >= 2:
            n_flt, fb = _push(
                data, ps, pe - 1, KIND_ONE_PDF, row, flt_buf, flt_off, flt_kind, flt_row, n_flt, fb
            )
        one_cdf_ok[row] = ntok == 3
        if ntok == 3:
            n_flt, fb = _push(
                data, cs, cend - 1, KIND_ONE_CDF, row, flt_buf, flt_off, flt_kind, flt_row, n_flt, fb
            )
        row += 1
        bucket += 1
        if s >= hend:
            return (True, row, n_flt, fb)
        pos = s + 1


def _survey(u64, start, end):
    """(newlines, NUL or 0x1f bytes, any byte >= 0x80) in ``[start, end)``: sizes the outputs,
    spots binary data. Eight bytes a step: the exact zero-byte test ``((w & 0x7f..) + 0x7f..
    | w) & 0x80..`` has no false positives, so a popcount counts the hits."""
    low7 = np.uint64(0x7F7F7F7F7F7F7F7F)
    high = np.uint64(0x8080808080808080)
    nl_pat = np.uint64(0x0A0A0A0A0A0A0A0A)
    us_pat = np.uint64(0x1F1F1F1F1F1F1F1F)
    nl = 0
    ctrl = 0
    acc = np.uint64(0)
    i = start
    while i < end:
        w = _load(u64, i)
        n = end - i
        if n < 8:  # the last partial word: mark the bytes past the end as non-matching
            keep = (np.uint64(1) << np.uint64(8 * n)) - np.uint64(1)
            w = (w & keep) | (np.uint64(0x4141414141414141) & ~keep)
        acc |= w
        x = w ^ nl_pat
        nl += _popcount(~(((x & low7) + low7) | x) & high)
        ctrl += _popcount(~(((w & low7) + low7) | w) & high)
        x = w ^ us_pat
        ctrl += _popcount(~(((x & low7) + low7) | x) & high)
        i += 8
    return nl, ctrl, (acc & high) != np.uint64(0)


def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


def _scan(
    data,
    u64,
    start,
    size,
    reg_line,
    reg_stat,
    reg_val,
    reg_int,
    reg_ok,
    pct_line,
    pct_stat,
    pct_val,
    pct_int,
    pct_ok,
    pct_pdf,
    pct_cdf,
    irr_line,
    irr_start,
    irr_end,
    one_line,
    one_stat,
    one_bucket,
    one_val,
    one_int,
    one_ok,
    one_pdf,
    one_pdf_ok,
    one_cdf,
    one_cdf_ok,
    flt_buf,
    flt_off,
    flt_kind,
    flt_row,
    name_pos,
    name_len,
    name_word,
    nb,
    first_end,
    first_lno,
    next_pred,
    slots,
    stat_state,
    counts,
):
    """Lines of ``data[start:size]``, numbered from 0; positions are offsets in ``data``. See
    the module doc for what is accepted."""
    newline = np.uint64(0x0A0A0A0A0A0A0A0A)
    space = np.uint64(0x2020202020202020)
    ls = start
    line = 0
    prev = -1
    n_reg = 0
    n_pct = 0
    n_irr = 0
    n_flt = 0
    n_one = 0
    fb = 0
    flt_off[0] = 0
    while ls < size:
        le = _find(u64, ls, size, newline)
        p1 = _find(u64, ls, le, space)
        ce = le
        if ce > ls and data[ce - 1] == 13:
            ce -= 1
        if p1 > ce:
            p1 = ce
        if ce > ls:
            ok = False
            if p1 > ls and p1 < ce:
                limit = p1 + WINDOW
                vs = _skip_spaces(u64, p1, ce)
                ve = _token_end(u64, vs, ce)
                kind = _token_kind(data, vs, ve)
                if kind != 0:
                    j = _skip_spaces(u64, ve, ce)
                    pct = False
                    ps = pe = cs = cend = 0
                    if _ends_ok(data, j, ce, limit):
                        ok = True
                    elif j < ce:
                        ps = j
                        pe = _token_end(u64, ps, ce)
                        if pe - ps > 1 and data[pe - 1] == 37 and _token_kind(data, ps, pe - 1) != 0:
                            cs = _skip_spaces(u64, pe, ce)
                            cend = _token_end(u64, cs, ce)
                            if (
                                cend - cs > 1
                                and data[cend - 1] == 37
                                and _token_kind(data, cs, cend - 1) != 0
                            ):
                                j = _skip_spaces(u64, cend, ce)
                                if _ends_ok(data, j, ce, limit):
                                    ok = True
                                    pct = True
                    if ok:
                        nstats = stat_state[0]
                        sid = _name_id(
                            u64,
                            ls,
                            p1,
                            prev,
                            name_pos,
                            name_len,
                            name_word,
                            nb,
                            next_pred,
                            slots,
                            counts,
                            stat_state,
                        )
                        if sid < 0:
                            return
                        if sid == nstats:
                            first_end[sid] = ce
                            first_lno[sid] = line
                        prev = sid
                        if pct:
                            row = n_pct
                            n_pct += 1
                            pct_line[row] = line
                            pct_stat[row] = sid
                            pct_ok[row] = False
                            vk = KIND_PCT_VALUE
                            val_arr = pct_val
                            int_arr = pct_int
                            ok_arr = pct_ok
                        else:
                            row = n_reg
                            n_reg += 1
                            reg_line[row] = line
                            reg_stat[row] = sid
                            reg_ok[row] = False
                            vk = KIND_REG
                            val_arr = reg_val
                            int_arr = reg_int
                            ok_arr = reg_ok
                        flt = (flt_buf, flt_off, flt_kind, flt_row)
                        if not (kind == 1 and _parse_int(data, vs, ve, val_arr, int_arr, ok_arr, row)):
                            n_flt, fb = _push(data, vs, ve, vk, row, *flt, n_flt, fb)
                        if pct:
                            n_flt, fb = _push(data, ps, pe - 1, KIND_PDF, row, *flt, n_flt, fb)
                            n_flt, fb = _push(data, cs, cend - 1, KIND_CDF, row, *flt, n_flt, fb)
            if not ok and p1 > ls and p1 < ce:
                first = n_one
                ok, n_one, n_flt, fb = _oneline(
                    data, u64, ls, p1, ce, line, n_one, n_flt, fb,
                    one_line, one_bucket, one_val, one_int, one_ok, one_pdf_ok, one_cdf_ok,
                    flt_buf, flt_off, flt_kind, flt_row,
                )  # fmt: skip
                if ok:
                    nstats = stat_state[0]
                    sid = _name_id(
                        u64, ls, p1, prev, name_pos, name_len, name_word, nb, next_pred, slots,
                        counts, stat_state,
                    )  # fmt: skip
                    if sid < 0:
                        return
                    if sid == nstats:
                        first_end[sid] = ce
                        first_lno[sid] = line
                    prev = sid
                    for r in range(first, n_one):
                        one_stat[r] = sid
            if not ok:
                irr_line[n_irr] = line
                irr_start[n_irr] = ls
                irr_end[n_irr] = ce
                n_irr += 1
                prev = -1
        ls = le + 1
        line += 1
    counts[N_REG] = n_reg
    counts[N_PCT] = n_pct
    counts[N_IRR] = n_irr
    counts[N_FLT] = n_flt
    counts[FLT_BYTES] = fb
    counts[N_ONE] = n_one


def _scatter(values, kinds, rows, reg_val, pct_val, pct_pdf, pct_cdf, one_val, one_pdf, one_cdf):
    """Put Arrow-cast numbers back in their rows; every NaN becomes the one canonical NaN."""
    for i in range(values.shape[0]):
        v = values[i]
        if v != v:
            v = np.nan
        k = kinds[i]
        r = rows[i]
        if k == 0:
            reg_val[r] = v
        elif k == 1:
            pct_val[r] = v
        elif k == 2:
            pct_pdf[r] = v
        elif k == 3:
            pct_cdf[r] = v
        elif k == 4:
            one_val[r] = v
        elif k == 5:
            one_pdf[r] = v
        else:
            one_cdf[r] = v


def _dumps(lines, n_first, begins, ends, dump, inside):
    """Dump index (by Begin line) and inside-the-block flag for two sorted runs of rows,
    one merge each: no temporaries (fresh memory is what costs most here)."""
    nb = begins.shape[0]
    lo = 0
    for hi in (n_first, lines.shape[0]):
        b = 0
        for i in range(lo, hi):
            ln = lines[i]
            while b < nb and begins[b] <= ln:
                b += 1
            d = b - 1
            if d < 0:
                dump[i] = 0
                inside[i] = False
            else:
                dump[i] = d
                inside[i] = ln < ends[d]
        lo = hi


_KNOWN_OPTIONS = _numba_options()
_token_kind = _jit(_token_kind, inline=True)
_parse_int = _jit(_parse_int, inline=True)
_load = _jit(_load, inline=True)
_find = _jit(_find, inline=True)
_same = _jit(_same, inline=True)
_token_end = _jit(_token_end, inline=True)
_skip_spaces = _jit(_skip_spaces, inline=True)
_ends_ok = _jit(_ends_ok, inline=True)
_name_id = _jit(_name_id, inline=True)
_popcount = _jit(_popcount, inline=True)
_push = _jit(_push, inline=True)
_pct_ok = _jit(_pct_ok, inline=True)
_oneline = _jit(_oneline, inline=True)
dumps = _jit(_dumps)
survey = _jit(_survey)
scan = _jit(_scan)
scatter = _jit(_scatter)


class _Reader:
    """Reads chunk ``k`` of a file into this thread's buffer: the lines that *start* in bytes
    ``[k*C, (k+1)*C)``, whole. Each worker reads its own chunk (``pread`` releases the GIL), so
    the main thread only merges: the scan threads never wait on it for text or for the GIL."""

    def __init__(self, fd: int, size: int, chunk_bytes: int) -> None:
        self.fd, self.size, self.chunk_bytes = fd, size, chunk_bytes

    def count(self) -> int:
        return max(1, -(-self.size // self.chunk_bytes))

    def read(self, k: int) -> tuple[np.ndarray, int, int]:
        """(buffer, start, end): the chunk's lines are ``buffer[start:end]``; the buffer stays
        addressable ``shared._PAD`` bytes past ``end`` for the scanner's word loads."""
        lo = k * self.chunk_bytes
        hi = min(lo + self.chunk_bytes, self.size)
        origin = max(lo - 1, 0)  # the byte before the chunk says whether a line starts at lo
        tail = shared._TAIL  # looked up here: tests make it small
        while True:
            stop = min(hi + tail, self.size)
            buf = _buffer(stop - origin + shared._PAD)
            self._fill(buf, origin, stop)
            if k == 0:
                start = 0
            else:
                first = _find_byte(buf, 0, hi - origin - 1, 10)
                if first < 0:  # a line that started in an earlier chunk covers this one
                    return buf, 0, 0
                start = first + 1
            last = _find_byte(buf, hi - origin - 1, stop - origin, 10)
            if last >= 0:
                return buf, start, last + 1
            if stop == self.size:  # the last line has no newline
                return buf, start, stop - origin
            tail *= 2  # a line longer than the tail (a long one-line bucket list)

    def _fill(self, buf: np.ndarray, origin: int, stop: int) -> None:
        view = memoryview(buf)[: stop - origin]
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], origin + done)
            if got == 0:
                raise Unsupported("the file shrank while it was read")
            done += got


def _buffer(n: int) -> np.ndarray:
    """This thread's read buffer, grown as needed and reused: fresh pages cost a fault each."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.shape[0] < n:
        buf = _local.buf = np.empty(max(n, int(n * 1.25)) // 8 * 8 + 8, np.uint8)
    return buf


def _find_byte(buf: np.ndarray, lo: int, hi: int, byte: int) -> int:
    """First index of ``byte`` in ``buf[lo:hi]`` (absolute), or -1; 64 KiB at a time."""
    step = 1 << 16
    while lo < hi:
        top = min(hi, lo + step)
        hits = np.flatnonzero(buf[lo:top] == byte)
        if hits.size:
            return lo + int(hits[0])
        lo = top
    return -1


_local = threading.local()


def _workspace(n: int, size: int) -> dict[str, np.ndarray]:
    """This thread's scratch arrays, reused across chunks: fresh pages cost a fault each, which
    in a VM was a third of the scan."""
    space = getattr(_local, "space", None)
    if space is None or space["irr_line"].shape[0] < n or space["flt_buf"].shape[0] < size:
        n, size = int(n * 1.25) + 1024, int(size * 1.25) + 1024
        space = {k: np.empty(n, t) for k, t in shared._ROW_FIELDS.items()}
        space.update(
            irr_line=np.empty(n, np.int64),
            irr_start=np.empty(n, np.int64),
            irr_end=np.empty(n, np.int64),
            flt_buf=np.empty(size, np.uint8),
            flt_off=np.empty(6 * n + 1, np.int32),  # 3 per line, 3 per one-line cell
            flt_kind=np.empty(6 * n, np.int8),
            flt_row=np.empty(6 * n, np.int32),
        )
        _local.space = space
    return space


def _scan_chunk(reader: _Reader, k: int) -> shared._Chunk:
    buf, start, end = reader.read(k)
    u64 = buf.view(np.uint64)
    newlines, ctrl, high = survey(u64, start, end)
    if ctrl:
        raise Unsupported("NUL or separator bytes")
    raw = buf.data
    if high:
        try:
            str(raw[start:end], "utf-8")
        except UnicodeDecodeError:
            raise Unsupported("not UTF-8") from None
    n = int(newlines) + 1
    space = _workspace(n, end - start)
    out = {k: space[k] for k in shared._ROW_FIELDS if k[:3] != "one"}
    one = {k: space[k] for k in shared._ROW_FIELDS if k[:3] == "one"}
    irr_line, irr_start, irr_end = space["irr_line"], space["irr_start"], space["irr_end"]
    flt_buf, flt_off, flt_kind, flt_row = (
        space["flt_buf"],
        space["flt_off"],
        space["flt_kind"],
        space["flt_row"],
    )
    table = getattr(_local, "table", None) or shared._Table(shared._FIRST_CAPACITY)
    while True:
        before = int(table.state[0])
        counts = np.zeros(7, np.int64)
        scan(
            buf, u64, start, end, *out.values(), irr_line, irr_start, irr_end, *one.values(), flt_buf, flt_off,
            flt_kind, flt_row, table.name_pos, table.name_len, table.name_word, table.nb,
            table.first_end, table.first_lno, table.next_pred, table.slots, table.state, counts,
        )  # fmt: skip
        if not counts[STATUS]:
            break
        if table.capacity >= shared.MAX_STATS:
            raise Unsupported("too many distinct stat names")
        table = shared._Table(table.capacity * 8)  # a new table: every name in the chunk is new to it
    _local.table = table
    n_flt, n_bytes = int(counts[N_FLT]), int(counts[FLT_BYTES])
    if n_flt:
        values = shared.float_values(flt_off, flt_buf[:n_bytes], n_flt)
        scatter(
            values,
            flt_kind[:n_flt],
            flt_row[:n_flt],
            out["reg_val"],
            out["pct_val"],
            out["pct_pdf"],
            out["pct_cdf"],
            one["one_val"],
            one["one_pdf"],
            one["one_cdf"],
        )
    n_irr = int(counts[N_IRR])
    used = {"reg": int(counts[N_REG]), "pct": int(counts[N_PCT]), "one": int(counts[N_ONE])}
    rows = {k: v[: used[k[:3]]].copy() for k, v in {**out, **one}.items()}
    irregular = [
        (line, str(raw[s:e], "utf-8"))
        for line, s, e in zip(
            irr_line[:n_irr].tolist(), irr_start[:n_irr].tolist(), irr_end[:n_irr].tolist(), strict=True
        )
    ]
    after = int(table.state[0])
    starts = table.name_pos[before:after].tolist()
    names = [
        str(raw[p : p + ln], "utf-8", "replace")
        for p, ln in zip(starts, table.name_len[before:after].tolist(), strict=True)
    ]
    first_text = [
        str(raw[p:e], "utf-8", "replace").rstrip("\r\n")
        for p, e in zip(starts, table.first_end[before:after].tolist(), strict=True)
    ]
    return shared._Chunk(
        rows,
        int(newlines),
        irregular,
        table.key,
        before,
        names,
        table.first_lno[before:after].copy(),
        first_text,
    )


def chunks(fd: int, size: int, chunk_bytes: int):
    """(number of chunks, function scanning chunk k into a ``shared._Chunk``)."""
    reader = _Reader(fd, size, chunk_bytes)
    return reader.count(), lambda k: _scan_chunk(reader, k)
