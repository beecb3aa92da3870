"""One stats.txt line → rows, in plain Python: the reference semantics of the text format.

The columnar parser (``stats_text``) handles the regular 99.9 % of lines with native string
kernels and sends the rest here: one-line bucket lists (`` |``), values too long for its
fixed window, and whole files its native reader refuses (bad UTF-8, stray separators). The
same function is the oracle the property tests compare the fast path against, so there is one
definition of what a line means (``gem5_gpufs.md`` §3.3, gem5 ``src/base/stats/text.cc``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: gem5's unit strings (``src/base/stats/units.hh``); a rate prints as ``(A/B)``.
UNIT_WORDS = frozenset(
    {
        "Cycle",
        "Tick",
        "Second",
        "Bit",
        "Byte",
        "Watt",
        "Joule",
        "Volt",
        "Celsius",
        "Count",
        "Ratio",
        "Unspecified",
    }
)

BEGIN_PREFIX = "---------- Begin Simulation Statistics"
END_PREFIX = "---------- End Simulation Statistics"
_BEGIN_RE = re.compile(r"^-+ Begin Simulation Statistics(?: : (?P<msg>.*?))? -+\s*$")
_END_RE = re.compile(r"^-+ End Simulation Statistics\s+-+\s*$")
#: Stat names: gem5 object paths, ``::`` keys, bucket ranges like ``::-10-19`` or ``::1e+06``.
_NAME_RE = re.compile(r"^[A-Za-z_][\w.:\-+<>\[\]@/]*$")
_UNIT_TAIL_RE = re.compile(r" ?\(([^()]*|\([^()]*\))\)$")


class LineError(ValueError):
    """A line that is not a stat; the caller adds file and line number."""


@dataclass(frozen=True, slots=True)
class StatRow:
    name: str
    key: str
    value: float
    value_int: int | None
    pdf_pct: float | None
    cdf_pct: float | None
    unit: str | None
    description: str | None


_WORDS = "|".join(sorted(UNIT_WORDS))
#: The unit grammar as one regex, shared with the columnar path so both agree exactly.
UNIT_RE = rf"^(?:(?:{_WORDS})|\((?:{_WORDS})/(?:{_WORDS})\))$"
_UNIT_FULL = re.compile(UNIT_RE)


def is_unit(text: str) -> bool:
    """True for a gem5 unit string: a unit word or ``(A/B)`` of unit words (rates)."""
    return _UNIT_FULL.match(text) is not None


def split_unit(text: str) -> tuple[str, str | None]:
    """Split ``desc (Unit)`` into desc and unit; pre-2021 files end descriptions with ``(inst/s)``.

    Only a real gem5 unit counts, so an old description's own last parenthesis is kept in it.
    """
    match = _UNIT_TAIL_RE.search(text)
    if match and is_unit(match.group(1)):
        return text[: match.start()].rstrip(), match.group(1).strip("()")
    return text, None


def parse_value(token: str) -> tuple[float, int | None]:
    """gem5 value text → (float, exact int or None). ``-nan`` is NaN; ints keep every digit."""
    try:
        value = float(token)
    except ValueError:
        raise LineError(f"value {token!r} is not a number") from None
    exact: int | None = None
    if token.lstrip("-").isdigit():
        as_int = int(token)
        if -(2**63) <= as_int < 2**63:
            exact = as_int
    if math.isnan(value):
        value = math.nan
    return value, exact


def _pct(token: str) -> float:
    if not token.endswith("%"):
        raise LineError(f"expected a percentage, got {token!r}")
    try:
        return float(token[:-1])
    except ValueError:
        raise LineError(f"bad percentage {token!r}") from None


def split_name(full: str) -> tuple[str, str]:
    name, sep, key = full.partition("::")
    return (name, key) if sep else (full, "")


def check_name(full: str) -> None:
    if not _NAME_RE.match(full):
        raise LineError(f"{full[:60]!r} is not a stat name")


def parse_stat_line(line: str, bucket_keys: list[str] | None = None) -> list[StatRow]:
    """Parse one stat line (not a marker, not blank) into one row, or one per one-line bucket.

    ``bucket_keys`` names the buckets of a one-line distribution (from its ``::bucket_size``
    lines); without it buckets are keyed by position, as gem5 does for one-line vectors.
    """
    head, hash_, tail = line.partition("#")
    if not hash_:
        # desc=False, or an empty description followed by a unit only.
        head, unit = split_unit(line.rstrip())
        desc = None
    else:
        desc, unit = split_unit(tail.strip())
    if " |" in head:
        return _parse_oneline(head, desc, unit, bucket_keys)
    tokens = head.split()
    if len(tokens) < 2:
        raise LineError("no value after the stat name")
    check_name(tokens[0])
    value, exact = parse_value(tokens[1])
    pdf = cdf = None
    extra = tokens[2:]
    if len(extra) == 2:
        pdf, cdf = _pct(extra[0]), _pct(extra[1])
    elif len(extra) == 1:
        pdf = _pct(extra[0])
    elif extra:
        raise LineError(f"unexpected text {' '.join(extra)[:40]!r} after the value")
    name, key = split_name(tokens[0])
    return [StatRow(name, key, value, exact, pdf, cdf, unit, desc)]


def _parse_oneline(
    head: str, desc: str | None, unit: str | None, bucket_keys: list[str] | None
) -> list[StatRow]:
    first, *cells = head.split(" |")
    full = first.strip()
    check_name(full)
    rows: list[StatRow] = []
    name, key_prefix = split_name(full)
    if not cells:
        raise LineError("one-line distribution without buckets")
    if bucket_keys is not None and len(bucket_keys) != len(cells):
        bucket_keys = None
    for index, cell in enumerate(cells):
        tokens = cell.split()
        if not tokens:
            raise LineError("empty bucket in a one-line distribution")
        value, exact = parse_value(tokens[0])
        pdf = _pct(tokens[1]) if len(tokens) > 1 else None
        cdf = _pct(tokens[2]) if len(tokens) > 2 else None
        if len(tokens) > 3:
            raise LineError(f"unexpected text in bucket {index}")
        key = bucket_keys[index] if bucket_keys is not None else str(index)
        rows.append(
            StatRow(name, key_prefix + key if key_prefix else key, value, exact, pdf, cdf, unit, desc)
        )
    return rows


def bucket_keys(
    bucket_size: float, count: int, min_bucket: float = 0.0, max_bucket: float | None = None
) -> list[str]:
    """gem5's bucket names ``low-high`` (or ``low`` for size-1 buckets), as DistPrint builds them."""
    keys = []
    for i in range(count):
        low = i * bucket_size + min_bucket
        high = low + bucket_size - 1.0
        if max_bucket is not None:
            high = min(high, max_bucket)
        low_text = _counter_text(low)
        keys.append(f"{low_text}-{_counter_text(high)}" if low < high else low_text)
    return keys


def _counter_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def parse_marker(line: str) -> tuple[str, str | None] | None:
    """('begin', message|None) or ('end', None) for a block marker line, else None."""
    if line.startswith(BEGIN_PREFIX):
        match = _BEGIN_RE.match(line)
        if not match:
            raise LineError("malformed Begin Simulation Statistics marker")
        return "begin", match.group("msg")
    if line.startswith(END_PREFIX):
        if not _END_RE.match(line):
            raise LineError("malformed End Simulation Statistics marker")
        return "end", None
    return None
