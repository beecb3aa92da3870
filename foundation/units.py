"""The one parser for memory sizes and clock frequencies, as every command and spec spells them.

gem5 itself reads ``kB``/``MB``/``GB`` as binary units (``m5.util.convert.toMemorySize``), so
``256kB``, ``256KiB`` and ``256K`` are all 262,144 bytes here too; a user copying a size from a
gem5 config gets what gem5 would build. Frequencies are decimal (``1.8GHz`` = 1.8e9 Hz).
"""

from __future__ import annotations

import re

from foundation.errors import InputError

_SIZE_SCALE = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tb": 1 << 40,
    "tib": 1 << 40,
}
_FREQ_SCALE = {"": 1.0, "hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_NUMBER = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes of a size such as ``256KiB``, ``4MiB``, ``16GB``, ``1.5MiB`` or a plain byte count.

    A size that is not a whole number of bytes is refused rather than rounded.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InputError(f"{what}: must be >= 0, got {text}")
        return text
    match = _NUMBER.fullmatch(str(text))
    if not match or match.group(2).lower() not in _SIZE_SCALE:
        raise InputError(f"{what}: not a size: {text!r} (e.g. 256KiB, 4MiB, 16GiB)")
    value = float(match.group(1)) * _SIZE_SCALE[match.group(2).lower()]
    if not value.is_integer():
        raise InputError(f"{what}: {text!r} is not a whole number of bytes")
    return int(value)


def parse_frequency(text: str | float, what: str = "frequency") -> float:
    """Hz of a clock such as ``1GHz``, ``1801MHz``, ``1.8GHz`` or a plain number of Hz."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _NUMBER.fullmatch(str(text))
        if not match or match.group(2).lower() not in _FREQ_SCALE:
            raise InputError(f"{what}: not a frequency: {text!r} (e.g. 1GHz, 1801MHz)")
        value = float(match.group(1)) * _FREQ_SCALE[match.group(2).lower()]
    if value <= 0:
        raise InputError(f"{what}: must be > 0, got {text!r}")
    return value


def size_text(num_bytes: int) -> str:
    """The shortest exact binary spelling (``256KiB``, ``16GiB``, ``1536B``) for messages."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if num_bytes and num_bytes % scale == 0:
            return f"{num_bytes // scale}{unit}"
    return f"{num_bytes}B"


def frequency_text(hz: float) -> str:
    """``1GHz``, ``1801MHz``: the largest unit that keeps the value whole (gem5 clock strings)."""
    for unit, scale in (("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3)):
        if hz >= scale and float(hz / scale).is_integer():
            return f"{int(hz // scale)}{unit}"
    return f"{hz:g}Hz"
