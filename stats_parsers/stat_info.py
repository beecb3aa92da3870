"""What a stat's first line says about it: name, key, unit, description -- per distinct stat.

Pure Python on the reference grammar (``stats_lines``), imported by the native scan so that it
can work these out for each chunk's new names while the other chunks are still being scanned.
"""

from __future__ import annotations

import functools

from stats_parsers import stats_lines as sl

# Per-core copies of a stat share one description: split each distinct one once.
_split_unit = functools.lru_cache(maxsize=1 << 16)(sl.split_unit)
_name_ok = sl._NAME_RE.match
#: What ``sl._NAME_RE`` allows after the first character, for ASCII names (``\w`` is then
#: ``[A-Za-z0-9_]``): deleting these from a name leaves nothing.
_NAME_REST = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-+<>[]@/"
_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def stat_infos(names: list[str], texts: list[str]) -> list[tuple[str, str, str | None, str | None] | None]:
    """``_stat_info`` of every (name, first line), alike but cheaper per stat: the names are
    checked at once when all are ASCII (one ``bytes.translate``; a file has tens of thousands
    of distinct stats), and each distinct description is split once."""
    if not names:
        return []
    joined = "".join(names)
    if joined.isascii() and not joined.encode().translate(None, _NAME_REST):
        ok = [n[:1] in _NAME_FIRST for n in names]
    else:
        ok = [_name_ok(n) is not None for n in names]
    tails: dict[str, tuple[str, str | None]] = {}
    infos: list[tuple[str, str, str | None, str | None] | None] = []
    for stat, text, good in zip(names, texts, ok, strict=True):
        if not good:
            infos.append(None)
            continue
        name, _, key = stat.partition("::")
        _head, hash_, tail = text.partition(" # ")
        if hash_:
            split = tails.get(tail)
            if split is None:
                desc = tail.strip()
                split = tails[tail] = _split_unit(desc) if desc.endswith(")") else (desc, None)
            infos.append((name, key, split[1], split[0]))
        elif text.endswith(")"):
            infos.append((name, key, _split_unit(text.rstrip())[1], None))
        else:
            infos.append((name, key, None, None))
    return infos
