"""Census: turn a skip-all gem5 run with markers into a kernel map, and a layer into a window.

A census run renders the gem5 config with ``skip_until = SKIP_ALL`` (every non-blit kernel is
skipped, so nothing is simulated in detail and the run is cheap) and ``exit_on_work_items``, and
runs a driver with ``--markers gem5``. The gem5 loop writes every skip, blit and marker to the
events side-file (``foundation.events``); a ``workbegin``/``workend`` record carries the marker id
in ``exit_code`` and the non-blit kernels finished so far in ``kernels_done``. So a marker
opened at ``kernels_done = k`` and closed at ``kernels_done = m`` brackets kernel indices
``k .. m-1``, and the innermost open marker names each kernel's step, layer and module.

Why the sliced run must use the same driver and the same arguments: the kernel index is a
position in the guest's launch order, counted from the first kernel of the process (library
initialisation and weight upload included). Anything that changes that order — another model,
dtype, prompt length, decode count, warm-up count, batch, layer truncation, a torch/ROCm
update in the image, even the markers' back end — shifts every later index, and the window
then silently lands on other kernels. Markers themselves launch no kernels (the synchronise
only waits), so a run with ``--markers gem5`` and one with ``--markers none`` number kernels
alike; the safest sliced run still uses the census' exact command line (``argv`` in the table).

Blit kernels are never counted or skipped (gem5_gpufs.md §2.1); the map records how many ran
inside each marker because they execute in detail in the sliced run too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation import atomic, events
from foundation.errors import InputError, unknown_name
from foundation.rundir import KERNEL_MAP_FILE, MARKER_TABLE_FILE, outdir_of
from foundation.vocabulary import SKIP_ALL, Window
from workloads.drivers import markers as mk

if TYPE_CHECKING:
    import pandas as pd

SCHEMA = "layerlab-kernel-map/1"
KERNEL_COLUMNS = ("kernel_index", "step", "phase", "layer", "module", "op_name", "marker_id")
#: Columns that are integers or NA (pandas' nullable Int64).
KERNEL_INTS = ("step", "layer", "marker_id")
REGION_INTS = ("layer",)
REGION_COLUMNS = (
    "marker_id",
    "step",
    "phase",
    "layer",
    "module",
    "op_name",
    "first_kernel",
    "last_kernel",
    "num_kernels",
    "blits",
)


class KernelMap:
    """Per-kernel labels (``kernels``), per-marker ranges (``regions``), and the run's facts.

    A map read from its file holds plain records and makes the pandas tables only when asked:
    a conductor renders every slice of an experiment from the census maps, and the window of a
    slice needs the records alone (pandas' filters on these tiny tables took ~10 ms a slice).
    """

    def __init__(
        self,
        kernels: pd.DataFrame | None = None,
        regions: pd.DataFrame | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self._kernels, self._regions = kernels, regions
        self.meta: dict[str, Any] = meta if meta is not None else {}
        self._kernel_records: list[dict[str, Any]] | None = None
        self._region_records: list[dict[str, Any]] | None = None

    @classmethod
    def from_records(
        cls, kernels: list[dict[str, Any]], regions: list[dict[str, Any]], meta: dict[str, Any]
    ) -> KernelMap:
        """A map from its saved records (NA as None; a missing field is NA)."""
        made = cls(meta=meta)
        made._kernel_records = [{c: row.get(c) for c in KERNEL_COLUMNS} for row in kernels]
        made._region_records = [{c: row.get(c) for c in REGION_COLUMNS} for row in regions]
        return made

    @property
    def kernels(self) -> pd.DataFrame:
        if self._kernels is None:
            self._kernels = _frame(self._kernel_records or [], KERNEL_COLUMNS, KERNEL_INTS)
        return self._kernels

    @property
    def regions(self) -> pd.DataFrame:
        if self._regions is None:
            self._regions = _frame(self._region_records or [], REGION_COLUMNS, REGION_INTS)
        return self._regions

    @property
    def steps(self) -> list[int]:
        return sorted(
            {r["step"] for r in self.region_records if r["layer"] is None and r["step"] is not None}
        )

    @property
    def region_records(self) -> list[dict[str, Any]]:
        """``regions`` as plain records (NA as None). Treat them as read-only."""
        if self._region_records is None:
            self._region_records = _plain_records(self.regions)
        return self._region_records

    @property
    def kernel_records(self) -> list[dict[str, Any]]:
        """``kernels`` as plain records (NA as None), in kernel order. Treat them as read-only."""
        if self._kernel_records is None:
            self._kernel_records = _plain_records(self.kernels)
        return self._kernel_records


def _frame(
    records: list[dict[str, Any]], columns: tuple[str, ...], nullable_ints: tuple[str, ...]
) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(records, columns=list(columns))
    for column in nullable_ints:
        frame[column] = frame[column].astype("Int64")
    return frame


def _plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: None if _is_na(v) else v for k, v in row.items()} for row in frame.to_dict("records")]


def _is_na(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and value != value)
        or type(value).__name__ == "NAType"  # pandas.NA, without importing pandas
    )


def _locate(run_dir: Path, name: str) -> Path | None:
    """``name`` in the directory itself, or in the gem5 outdir its run record names."""
    for candidate in (run_dir / name, outdir_of(run_dir) / name):
        if candidate.is_file():
            return candidate
    return None


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> InputError:
    """The error for a file that is not UTF-8 text, naming the line where decoding fails."""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except UnicodeDecodeError as found:
        line = data.count(b"\n", 0, found.start) + 1
        return InputError(f"{path}:{line}: not UTF-8 text (byte {found.start}: {found.reason})")
    except OSError:
        pass
    return InputError(f"{path}: not UTF-8 text ({exc.reason})")


def _read_json_file(path: Path, what: str) -> Any:
    """A JSON file's value; every way it can be unreadable is an ``InputError`` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable {what} ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not a readable {what} (not JSON: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: not a readable {what} (JSON nested too deeply)") from None


def read_marker_table(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    table = _read_json_file(path, "marker table")
    if not isinstance(table, dict) or table.get("schema") != "layerlab-markers/1":
        raise InputError(f"{path}: field 'schema' is not 'layerlab-markers/1'")
    for field_name, key in (("markers", "id"), ("steps", "step")):
        entries = table.get(field_name, [])
        if not isinstance(entries, list):
            raise InputError(f"{path}: field {field_name!r} is not a list")
        for number, entry in enumerate(entries):
            try:
                int(entry[key])
            except (TypeError, KeyError, ValueError):
                raise InputError(
                    f"{path}: {field_name}[{number}]: expected an object with an integer {key!r}"
                ) from None
    return table


def build_kernel_map(run_dir: str | Path, marker_table: str | Path | None = None) -> KernelMap:
    """Read a census run's events side-file (and marker table, if present) into a kernel map."""
    run_dir = Path(run_dir)
    events_path = run_dir if run_dir.is_file() else _locate(run_dir, events.FILENAME)
    if events_path is None:
        raise InputError(
            f"{run_dir}: no {events.FILENAME} here or in {outdir_of(run_dir).name}/ "
            "(is this a layerlab run directory, and has the run been run?)"
        )
    try:
        start, table, end = events.read_events(events_path)
    except UnicodeDecodeError as exc:
        raise _not_utf8(events_path, exc) from None
    table_path = Path(marker_table) if marker_table else _locate(events_path.parent, MARKER_TABLE_FILE)
    ids = read_marker_table(table_path) if table_path else None
    return _from_events(events_path, start, table, end, ids)


def _from_events(
    path: Path,
    start: dict[str, Any],
    table: pd.DataFrame,
    end: dict[str, Any] | None,
    ids: dict[str, Any] | None,
) -> KernelMap:
    import pandas as pd

    labels = {int(m["id"]): m.get("label", "") for m in (ids or {}).get("markers", [])}
    phases = {int(s["step"]): s.get("phase") for s in (ids or {}).get("steps", [])}
    stack: list[dict[str, Any]] = []
    regions: list[dict[str, Any]] = []
    kernels: list[dict[str, Any]] = []
    blits = 0
    expected_index = 0
    for row in table.itertuples(index=False):
        kind = row.kind
        if kind in ("skip", "kernel"):
            index = int(row.kernel_index) if pd.notna(row.kernel_index) else int(row.kernels_done) - 1
            if index != expected_index:
                raise InputError(
                    f"{path}: event seq {row.seq}: kernel index {index}, expected {expected_index}; "
                    "the side-file is missing kernel events"
                )
            expected_index += 1
            inner = stack[-1]["marker_id"] if stack else None
            kernels.append({"kernel_index": index, "marker_id": inner})
        elif kind == "blit":
            blits += 1
        elif kind == "workbegin":
            marker_id = int(row.exit_code)
            try:
                mk.decode(marker_id)
            except ValueError as exc:
                raise InputError(f"{path}: event seq {row.seq}: {exc}") from None
            stack.append(
                {"marker_id": marker_id, "first": int(row.kernels_done), "blits": blits, "seq": row.seq}
            )
        elif kind == "workend":
            marker_id = int(row.exit_code)
            if not stack or stack[-1]["marker_id"] != marker_id:
                open_id = stack[-1]["marker_id"] if stack else None
                raise InputError(
                    f"{path}: event seq {row.seq}: workend {marker_id} while "
                    f"{'marker ' + str(open_id) if open_id is not None else 'no marker'} is open; "
                    "the side-file has missing or unbalanced markers"
                )
            opened = stack.pop()
            regions.append(
                {
                    "marker_id": marker_id,
                    "first_kernel": opened["first"],
                    "end": int(row.kernels_done),
                    "blits": blits - opened["blits"],
                }
            )
    if stack:
        open_ids = ", ".join(str(s["marker_id"]) for s in stack)
        why = "the run ended early (no 'end' record)" if end is None else "workend missing"
        raise InputError(f"{path}: marker(s) {open_ids} never closed: {why}")
    if not regions:
        raise InputError(
            f"{path}: no workbegin/workend markers; run the driver with --markers gem5 in a config "
            "that sets exit_on_work_items"
        )
    if start.get("skip_until", SKIP_ALL) < expected_index:
        raise InputError(
            f"{path}: not a census run: skip_until={start['skip_until']} but {expected_index} kernels ran; "
            "render the census with every kernel skipped"
        )
    region_frame = _region_frame(regions, labels, phases)
    _check_against_table(path, region_frame, ids)
    kernel_frame = _kernel_frame(kernels, region_frame)
    meta = {k: v for k, v in (ids or {}).items() if k not in ("markers", "module_codes")}
    meta["run_id"] = start.get("run_id")
    meta.update({"events": str(path), "num_kernels": expected_index, "total_blits": blits})
    return KernelMap(kernel_frame, region_frame, meta)


def _region_frame(regions: list[dict], labels: dict[int, str], phases: dict[int, Any]) -> pd.DataFrame:

    rows = []
    for r in regions:
        step, layer, module = mk.decode(r["marker_id"])
        rows.append(
            {
                "marker_id": r["marker_id"],
                "step": step,
                "phase": phases.get(step),
                "layer": layer if layer >= 0 else None,
                "module": module,
                "op_name": labels.get(r["marker_id"], ""),
                "first_kernel": r["first_kernel"],
                "last_kernel": r["end"] - 1,
                "num_kernels": r["end"] - r["first_kernel"],
                "blits": r["blits"],
            }
        )
    frame = _frame(rows, REGION_COLUMNS, REGION_INTS)
    return frame.sort_values(
        ["first_kernel", "last_kernel"], ascending=[True, False], kind="stable"
    ).reset_index(drop=True)


def _check_against_table(path: Path, regions: pd.DataFrame, ids: dict[str, Any] | None) -> None:
    """Every marker the driver emitted must be in the side-file: a gap means lost events."""
    if not ids:
        return
    seen = set(regions["marker_id"].tolist())
    missing = [m for m in ids.get("markers", []) if int(m["id"]) not in seen]
    if missing:
        first = missing[0]
        raise InputError(
            f"{path}: side-file lacks {len(missing)} marker(s) the driver emitted, e.g. id {first['id']} "
            f"({first.get('label', '')}); was exit_on_work_items off or the run cut short?"
        )


def _kernel_frame(kernels: list[dict], regions: pd.DataFrame) -> pd.DataFrame:

    by_id = regions.drop_duplicates("marker_id").set_index("marker_id")
    rows = []
    for k in kernels:
        marker_id = k["marker_id"]
        if marker_id is None:
            rows.append(
                {
                    "kernel_index": k["kernel_index"],
                    "step": None,
                    "phase": None,
                    "layer": None,
                    "module": None,
                    "op_name": "",
                    "marker_id": None,
                }
            )
            continue
        region = by_id.loc[marker_id]
        step, layer, module = mk.decode(marker_id)
        rows.append(
            {
                "kernel_index": k["kernel_index"],
                "step": step,
                "phase": region["phase"],
                "layer": layer if layer >= 0 else None,
                "module": module if module else ("layer" if layer >= 0 else "step"),
                "op_name": region["op_name"],
                "marker_id": marker_id,
            }
        )
    return _frame(rows, KERNEL_COLUMNS, KERNEL_INTS)


# -- persistence --------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    import pandas as pd

    clean = frame.astype(object).where(pd.notna(frame), None)
    return [dict(zip(clean.columns, row, strict=True)) for row in clean.itertuples(index=False, name=None)]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_kernel_map(kernel_map: KernelMap, run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    target = (run_dir.parent if run_dir.is_file() else run_dir) / KERNEL_MAP_FILE
    payload = {
        "schema": SCHEMA,
        "meta": kernel_map.meta,
        "kernels": _records(kernel_map.kernels),
        "regions": _records(kernel_map.regions),
    }
    atomic.write_text(target, json.dumps(payload, indent=1, default=_jsonable) + "\n")
    return target


def load_kernel_map(run_dir: str | Path) -> KernelMap:
    """The saved kernel map of a run dir, or a fresh one built from its side-file."""
    run_dir = Path(run_dir)
    saved = _locate(run_dir, KERNEL_MAP_FILE) if run_dir.is_dir() else None
    if saved is None:
        return build_kernel_map(run_dir)
    try:
        stat = saved.stat()
        identity = (str(saved.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        identity = None
    if identity is not None and identity in _SAVED_MAPS:
        return _SAVED_MAPS[identity]
    kernel_map = _read_kernel_map(saved)
    if identity is not None:
        if len(_SAVED_MAPS) >= 64:  # the census maps of one experiment's recent slices
            _SAVED_MAPS.pop(next(iter(_SAVED_MAPS)))
        _SAVED_MAPS[identity] = kernel_map
    return kernel_map


#: Saved kernel maps read in this process, by (path, size, mtime): each census's map is read once
#: however many slices of it a conductor renders. Treat a returned map as read-only.
_SAVED_MAPS: dict[tuple[str, int, int], KernelMap] = {}


def _read_kernel_map(saved: Path) -> KernelMap:
    payload = _read_json_file(saved, "kernel map")
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        raise InputError(f"{saved}: field 'schema' is not {SCHEMA!r}")
    try:
        return KernelMap.from_records(payload["kernels"], payload["regions"], payload.get("meta", {}))
    except (KeyError, TypeError, AttributeError):
        raise InputError(f"{saved}: fields 'kernels' and 'regions' must be lists of objects") from None


# -- windows ------------------------------------------------------------------------------------


def window(
    kernel_map: KernelMap, step: int, layer: int, module: str | None = None, num_layers: int | None = None
) -> tuple[Window, pd.DataFrame]:
    """The gem5 window of (step, layer[, module]) and the kernels it will simulate.

    ``num_layers`` (e.g. from the model config) overrides the layer count recorded by the driver.
    """
    win = window_of(kernel_map, step, layer, module, num_layers)
    kernels = kernel_map.kernels
    index = kernels["kernel_index"].to_numpy()
    inside = ((index >= win.skip_until) & (index <= win.exit_after)).nonzero()[0]
    return win, kernels.iloc[inside].reset_index(drop=True)


def window_of(
    kernel_map: KernelMap, step: int, layer: int, module: str | None = None, num_layers: int | None = None
) -> Window:
    """The gem5 window of (step, layer[, module]) alone, from the map's records (no pandas)."""
    region = kernel_map.region_records[_region_index(kernel_map, step, layer, module, num_layers)]
    return Window(int(region["first_kernel"]), int(region["last_kernel"]))


def marker_region(
    kernel_map: KernelMap, step: int, layer: int, module: str | None = None, num_layers: int | None = None
) -> pd.Series:
    """The one marker region of (step, layer[, module]), with its kernel range and blit count."""
    return kernel_map.regions.iloc[_region_index(kernel_map, step, layer, module, num_layers)]


def _region_index(
    kernel_map: KernelMap, step: int, layer: int, module: str | None, num_layers: int | None
) -> int:
    """Which region record is the one marker of (step, layer[, module]); every way there is
    none (or several) is an ``InputError`` that says why."""
    steps = kernel_map.steps
    if not steps:
        raise InputError("kernel map has no step markers")
    if step not in steps:
        decode_steps = kernel_map.meta.get("decode_steps")
        extra = f" (the run had D={decode_steps} decode steps)" if decode_steps is not None else ""
        raise InputError(f"--step {step} not in this run: steps are {steps[0]}..{steps[-1]}{extra}")
    records = kernel_map.region_records
    layers_seen = [r["layer"] for r in records if r["layer"] is not None]
    if not layers_seen:
        driver = kernel_map.meta.get("driver", "this driver")
        raise InputError(
            f"this run has no layer markers ({driver} marks steps only); find layers inside a step "
            "with 'layerlab slice' on a kernel trace"
        )
    total = num_layers or kernel_map.meta.get("num_hidden_layers") or int(max(layers_seen)) + 1
    if not 0 <= layer < total:
        raise InputError(f"--layer {layer} beyond num_hidden_layers={total} (layers are 0..{total - 1})")
    ran = int(max(layers_seen)) + 1  # layer markers are 0..ran-1 (a truncated model runs fewer)
    if layer >= ran:
        raise InputError(
            f"--layer {layer}: the run has {ran} layer{'s' if ran != 1 else ''} (0..{ran - 1}), "
            f"fewer than num_hidden_layers={total} (a model truncated for the run?)"
        )
    in_layer = [i for i, r in enumerate(records) if r["step"] == step and r["layer"] == layer]
    if module is None:
        chosen = [i for i in in_layer if records[i]["module"] is None]
        what = f"step {step} layer {layer}"
    else:
        roles = sorted({records[i]["module"] for i in in_layer if records[i]["module"] is not None})
        if module not in roles:
            raise unknown_name(f"module in step {step} layer {layer}", module, roles or mk.MODULE_CODES)
        chosen = [i for i in in_layer if records[i]["module"] == module]
        what = f"step {step} layer {layer} module {module}"
    if not chosen:
        raise InputError(f"{what}: no marker in the kernel map (the layer ran without markers?)")
    spans = {(int(records[i]["first_kernel"]), int(records[i]["last_kernel"])) for i in chosen}
    if len(spans) > 1:
        raise InputError(
            f"{what}: the marker occurs {len(spans)} times with different kernels; pick the whole layer"
        )
    region = records[chosen[0]]
    if int(region["last_kernel"]) < int(region["first_kernel"]):
        raise InputError(f"{what}: the marker brackets no non-blit kernel, so there is nothing to simulate")
    return chosen[0]


# -- test double: what gem5 would record for a profiled run ---------------------------------------


def events_from_trace(
    trace: Any, gem5_profile: str = "v24.0", run_id: str | None = None
) -> list[dict[str, Any]]:
    """The events side-file a skip-all gem5 census would write for a profiled run (a test double).

    ``trace`` is a ``workloads.traces.KernelTrace`` recorded with ``--markers profiler``: its
    kernels (GPU kernels, or leaf-op stand-ins on the CPU) and its ``layerlab:<id>:`` spans in
    time order become ``skip`` and ``workbegin``/``workend`` records with gem5's counting: a
    marker's ``kernels_done`` is the number of kernels launched before it.
    """
    timeline: list[tuple[float, int, float, str, int]] = []
    for index, t in enumerate(trace.times):
        timeline.append((t, 1, 0.0, "skip", index))
    for span, (t0, t1) in zip(trace.spans, trace.span_times, strict=True):
        marker_id = mk.parse_profiler_name(span.name)
        if marker_id is None:
            continue
        timeline.append((t0, 2, -t1, "workbegin", marker_id))  # outer spans open first
        timeline.append((t1, 0, -t0, "workend", marker_id))  # ends before begins, inner first
    timeline.sort()
    records: list[dict[str, Any]] = [
        {
            "kind": "start",
            "schema": events.SCHEMA,
            "run_id": run_id,
            "skip_until": SKIP_ALL,
            "exit_after": -1,
            "exit_at_task": -1,
            "dump_per_kernel": False,
            "gem5_profile": gem5_profile,
            "tick": 0,
        }
    ]
    done = 0
    for seq, (_, _, _, kind, value) in enumerate(timeline):
        cause = {"skip": "Skipping GPU Kernel", "workbegin": "workbegin", "workend": "workend"}[kind]
        if kind == "skip":
            done += 1
        records.append(
            {
                "seq": seq,
                "kind": kind,
                "cause": cause,
                "exit_code": value if kind != "skip" else 0,
                "tick": 1000 * (seq + 1),
                "kernel_index": value if kind == "skip" else None,
                "kernels_done": done,
                "tasks_done": done,
                "dump": None,
                "dump_suppressed": False,
                "reset": False,
            }
        )
    records.append(
        {
            "kind": "end",
            "cause": "m5_exit instruction encountered",
            "exit_code": 0,
            "tick": 1000 * (len(timeline) + 1),
            "kernels_done": done,
            "tasks_done": done,
            "expected": True,
            "tail_dump": 0,
        }
    )
    return records


def write_events(path: str | Path, records: list[dict[str, Any]]) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / events.FILENAME
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return path
