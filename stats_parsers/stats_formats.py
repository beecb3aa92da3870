"""The other two stats outputs gem5 can write, into the same long table as ``stats.txt``.

HDF5 (``--stats-file=h5://stats.h5``): one dataset per stat, dimension 0 is the dump; no
distributions and no units (gem5 writes neither). JSON (``json://``): gem5 reopens the file on
every dump, so only the LAST dump survives, and formulas are never written; we warn about both.
Facts: ``orchestration_anchors.md`` §5.2-5.3.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from foundation.errors import InputError
from stats_parsers.stats_text import _SCHEMA, StatsDumps

_COLUMNS = ("dump", "name", "key", "value", "value_int", "unit", "pdf_pct", "cdf_pct")


def _frame(rows: list[tuple], descriptions: list[str | None] | None = None) -> pl.DataFrame:
    """The long table of ``stats.txt`` from (dump, name, key, value, ...) rows.

    ``line`` is null: neither format has lines (the CLI sorts by it; nulls keep row order).
    ``description`` is added only when ``descriptions`` (one per row) is given.
    """
    schema = {c: _SCHEMA.get(c, pl.UInt32()) for c in _COLUMNS}
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    extra = [pl.lit(None, dtype=_SCHEMA["line"]).alias("line")]
    if descriptions is not None:
        extra.append(pl.Series("description", descriptions, dtype=_SCHEMA["description"]))
    return frame.select(
        "dump",
        pl.lit(None, dtype=pl.String).cast(pl.Categorical).alias("dump_message"),
        pl.col("name").cast(pl.Categorical),
        pl.col("key").cast(pl.Categorical),
        "value",
        "value_int",
        pl.col("unit").cast(pl.Categorical),
        "pdf_pct",
        "cdf_pct",
        *extra,
    )


def _exact(value: float) -> int | None:
    return int(value) if float(value).is_integer() and abs(value) < 2**63 else None


def read_hdf5(path: str) -> StatsDumps:
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is an optional extra
        raise InputError("reading h5:// stats needs h5py (pip install layerlab[hdf5])") from None
    source = Path(path)
    if not source.is_file():
        raise InputError(f"{source}: HDF5 stats file not found")
    rows: list[tuple] = []
    n_dumps = 0
    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise InputError(f"{source}: not an HDF5 file ({exc})") from None
    with handle:

        def visit(name: str, obj: Any) -> None:
            nonlocal n_dumps
            if not isinstance(obj, h5py.Dataset):
                return
            stat = name.replace("/", ".")
            data = obj[()]
            n_dumps = max(n_dumps, data.shape[0])
            subnames = [s.decode() if isinstance(s, bytes) else str(s) for s in obj.attrs.get("subnames", [])]
            for dump in range(data.shape[0]):
                cell = data[dump]
                if cell.ndim == 0:
                    rows.append((dump, stat, "", float(cell), _exact(float(cell)), None, None, None))
                    continue
                for index, value in enumerate(cell.reshape(-1)):
                    key = subnames[index] if index < len(subnames) and subnames[index] else str(index)
                    rows.append((dump, stat, key, float(value), _exact(float(value)), None, None, None))

        handle.visititems(visit)
    if not rows:
        raise InputError(f"{source}: no stat datasets in this HDF5 file")
    return StatsDumps(
        frame=_frame(rows),
        path=source,
        messages=(None,) * n_dumps,
        source_format="hdf5",
        notes=("HDF5 stats carry no units and no distributions",),
    )


def read_json(path: Path, description: bool = False) -> StatsDumps:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: stats file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not JSON (not UTF-8 text at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: not a gem5 pystats JSON file (nested too deeply)") from None
    if not isinstance(data, dict) or "type" not in data:
        raise InputError(f"{path}: not a gem5 pystats JSON file (no top-level 'type')")
    rows: list[tuple] = []
    descriptions: list[str | None] = []

    def scalar(prefix: str, key: str, node: dict) -> None:
        value = node.get("value")
        try:
            value = float("nan") if value is None else float(value)
        except (TypeError, ValueError):
            where = f"{prefix}::{key}" if key else prefix
            raise InputError(f"{path}: {where}: value {value!r} is not a number") from None
        unit = node.get("unit")
        rows.append((0, prefix, key, value, _exact(value), None if unit is None else str(unit), None, None))
        text = node.get("description")
        descriptions.append(None if text is None else str(text))

    def visit(node: dict, prefix: str) -> None:
        for child_name, child in node.items():
            if not isinstance(child, dict) or "type" not in child:
                continue
            path_name = f"{prefix}.{child_name}" if prefix else child_name
            kind = child["type"]
            if kind == "Scalar":
                scalar(path_name, "", child)
            elif kind in ("Vector", "Vector2d", "SparseHist") and isinstance(child.get("value"), dict):
                for key, sub in child["value"].items():
                    if isinstance(sub, dict) and sub.get("type") == "Scalar":
                        scalar(path_name, str(key), sub)
            elif kind == "Distribution":
                for key in (
                    "min",
                    "max",
                    "num_bins",
                    "bin_size",
                    "sum",
                    "sum_squared",
                    "underflow",
                    "overflow",
                    "logs",
                ):
                    if isinstance(child.get(key), dict):
                        scalar(path_name, key, child[key])
                for key, sub in (child.get("value") or {}).items():
                    if isinstance(sub, dict):
                        scalar(path_name, str(key), sub)
            else:
                visit(child, path_name)

    try:
        visit(data, str(data.get("name") or ""))
    except RecursionError:
        raise InputError(f"{path}: not a gem5 pystats JSON file (nested too deeply)") from None
    warnings.warn(
        f"{path}: JSON stats hold only the last dump and no formula stats (gem5 rewrites the file per dump)",
        stacklevel=2,
    )
    if not rows:
        raise InputError(f"{path}: no stats in this JSON file")
    return StatsDumps(
        frame=_frame(rows, descriptions if description else None),
        path=path,
        messages=(None,),
        source_format="json",
        notes=("JSON stats: last dump only, no formulas",),
    )
