"""Read any gem5 stats output into one long table, and the helpers users reach for first.

``read_stats`` is the entry point: a text ``stats.txt`` (any gem5 version), ``h5://file`` (HDF5)
or a ``.json`` pystats file; text results are cached as parquet (``stats_parsers.cache``).

The nozero/nonan policy: gem5 does not print a ``nozero`` stat whose value is 0 nor a ``nonan``
stat that is NaN, so "no row" means "not printed", not 0. ``stat_across_dumps`` and ``wide``
return NaN there; pass ``fill_missing=0`` only for stats you know are ``nozero`` counters.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import polars as pl

from foundation.errors import InputError, close_matches
from stats_parsers import cache as cache_mod
from stats_parsers.stats_text import StatsDumps, parse_stats_text, to_pandas

if TYPE_CHECKING:  # pandas loads only for the pandas helpers below, not for read_stats
    import pandas as pd

H5_PREFIX = "h5://"


def read_stats(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    description: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_in_background: bool = False,
) -> StatsDumps:
    """Parse a stats file (text, ``h5://``, ``.json``) into a ``StatsDumps``.

    strict: a bad line raises ``InputError`` naming file and line; lenient (False) skips bad
    lines and counts them in ``skipped_lines``. A truncated last block is kept (its complete
    lines) and flagged in ``truncated`` either way. ``cache_in_background``: write the cache
    entry in a thread (``stats_parsers.cache.wait()`` joins it; so does exit).
    """
    text = os.fspath(path)
    if text.startswith(H5_PREFIX) or text.endswith((".h5", ".hdf5")):
        from stats_parsers.stats_formats import read_hdf5

        return read_hdf5(text.removeprefix(H5_PREFIX))
    source = Path(text)
    if source.suffix == ".json":
        from stats_parsers.stats_formats import read_json

        return read_json(source, description=description)
    if source.is_dir():
        source = source / "stats.txt"
    if not source.is_file():
        raise InputError(f"{source}: stats file not found")
    if not cache or _small(source):
        return parse_stats_text(source, strict=strict, description=description)
    entry = cache_entry(source, strict=strict, description=description, cache_dir=cache_dir)
    hit = cache_mod.load(entry)
    if hit is not None:
        frame, meta = hit
        return StatsDumps(
            frame=frame,
            path=source,
            messages=tuple(meta["messages"]),
            truncated=meta["truncated"],
            skipped_lines=meta["skipped_lines"],
            source_format=meta["source_format"],
            notes=tuple(meta["notes"]),
        )
    parsed = parse_stats_text(source, strict=strict, description=description)
    cache_mod.store(entry, parsed.frame, parse_meta(parsed), background=cache_in_background)
    return parsed


def _small(source: Path) -> bool:
    """A file the reference parser reads faster than a cache entry loads (``stats_text``'s
    small-file route): not cached (a trivial run's stats; the conductor collects thousands)."""
    from stats_parsers import stats_text

    try:
        return source.stat().st_size < stats_text._PYTHON_MAX_BYTES
    except OSError:
        return False


def parse_meta(stats: StatsDumps) -> dict:
    """What a parse noticed, beside its table, as plain JSON data (the cache's and a parquet
    output's file metadata)."""
    return {
        "messages": list(stats.messages),
        "truncated": stats.truncated,
        "skipped_lines": stats.skipped_lines,
        "source_format": stats.source_format,
        "notes": list(stats.notes),
    }


def stats_to_parquet(
    path: str | os.PathLike[str],
    sink: str | os.PathLike[str] | BinaryIO,
    *,
    strict: bool = True,
    description: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Write the long table of any stats file (as ``read_stats`` reads it) to ``sink`` as
    parquet: rows in file order, ``FILE_COLUMNS``, the parse's ``parse_meta`` as the file's
    metadata, which is returned.

    Why not ``read_stats`` and a write: a text file already cached is copied out of the cache
    as it lies (the same layout: nothing decoded or encoded), and a fresh parse is encoded once,
    for ``sink``, then copied into the cache."""
    text = os.fspath(path)
    source = Path(text)
    if source.is_dir():
        source = source / "stats.txt"
    textual = not text.startswith(H5_PREFIX) and source.suffix not in (".h5", ".hdf5", ".json")
    if not (cache and textual and source.is_file()) or _small(source):
        stats = read_stats(path, strict=strict, description=description, cache=cache, cache_dir=cache_dir)
        meta = parse_meta(stats)
        cache_mod.write_table(stats.frame, sink, meta)
        return meta
    entry = cache_entry(source, strict=strict, description=description, cache_dir=cache_dir)
    meta = cache_mod.entry_meta(entry)
    if meta is not None:
        if isinstance(sink, (str, os.PathLike)):
            shutil.copyfile(entry, sink)
        else:
            with entry.open("rb") as cached:
                shutil.copyfileobj(cached, sink)
        return meta
    parsed = parse_stats_text(source, strict=strict, description=description)
    meta = parse_meta(parsed)
    cache_mod.write_table(parsed.frame, sink, meta)
    if isinstance(sink, (str, os.PathLike)):
        cache_mod.store_file(entry, sink)
    else:
        cache_mod.store(entry, parsed.frame, meta)
    return meta


def cache_entry(
    source: Path, *, strict: bool, description: bool, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Where ``read_stats`` caches the parse of the text file ``source`` with these options."""
    return cache_mod.entry_path(source, strict=strict, description=description, cache_dir=cache_dir)


def _frame(stats: StatsDumps | pl.DataFrame) -> pl.DataFrame:
    return stats.frame if isinstance(stats, StatsDumps) else stats


def full_name(name: str, key: str = "") -> str:
    """``name::key`` as gem5 prints it (just ``name`` for scalars)."""
    return f"{name}::{key}" if key else name


def _full_expr() -> pl.Expr:
    key = pl.col("key").cast(pl.String)
    return (
        pl.when(key == "")
        .then(pl.col("name").cast(pl.String))
        .otherwise(pl.concat_str([pl.col("name").cast(pl.String), pl.lit("::"), key]))
    )


def _n_dumps(stats: StatsDumps | pl.DataFrame) -> int:
    if isinstance(stats, StatsDumps):
        return stats.n_dumps
    return int(stats.get_column("dump").max() or 0) + 1 if stats.height else 0


def stat_across_dumps(
    stats: StatsDumps | pl.DataFrame, stat: str, *, fill_missing: float | None = None
) -> pd.Series:
    """One stat (``name`` or ``name::key``) over all dumps: a Series indexed by dump.

    Dumps where gem5 did not print it are NaN (see the nozero policy in the module doc).
    """
    import pandas as pd

    frame = _frame(stats)
    name, _, key = stat.partition("::")
    hits = frame.filter((pl.col("name") == name) & (pl.col("key") == key)).select("dump", "value")
    if hits.height == 0:
        names = frame.get_column("name").unique().cast(pl.String).to_list()
        if name not in names:
            raise InputError(f"stat {name!r} is not in this stats file; {close_matches(name, names)}")
    index = pd.RangeIndex(_n_dumps(stats), name="dump")
    series = pd.Series(dict(hits.iter_rows()), dtype="float64").reindex(index)
    series.name = stat
    return series.fillna(fill_missing) if fill_missing is not None else series


def wide(
    stats: StatsDumps | pl.DataFrame, pattern: str | None = None, *, fill_missing: float | None = None
) -> pd.DataFrame:
    """A dumps x stats table (columns ``name::key``), optionally only stats matching ``pattern``.

    Missing (not printed) values are NaN unless ``fill_missing`` is given.
    """
    import pandas as pd

    frame = _frame(stats).with_columns(stat=_full_expr())
    if pattern:
        frame = frame.filter(pl.col("stat").str.contains(pattern))
    table = frame.select("dump", "stat", "value").to_pandas()
    result = table.pivot_table(
        index="dump", columns="stat", values="value", aggfunc="first", dropna=False, sort=False
    )
    result = result.reindex(pd.RangeIndex(_n_dumps(stats), name="dump"))
    result.columns.name = None
    return result.fillna(fill_missing) if fill_missing is not None else result


def subtree(stats: StatsDumps | pl.DataFrame, prefix: str) -> pd.DataFrame:
    """Rows of every stat under an object path (``system.cpu1.CUs0`` matches its children, not
    ``system.cpu1.CUs01``)."""
    prefix = prefix.rstrip(".")
    name = pl.col("name").cast(pl.String)
    return to_pandas(_frame(stats).filter((name == prefix) | name.str.starts_with(prefix + ".")))


def grep(stats: StatsDumps | pl.DataFrame, pattern: str) -> pl.DataFrame:
    """Rows whose full ``name::key`` matches the regular expression ``pattern``."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InputError(f"--grep {pattern!r}: not a regular expression ({exc})") from None
    frame = _frame(stats)
    return frame.filter(_full_expr().str.contains(pattern))
