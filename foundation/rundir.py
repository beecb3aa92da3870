"""The run directory contract: which file says what, and how later stages find a run's outputs.

``layerlab render`` writes a run directory; census, window, stats, preflight, reports and the
orchestrator read it. They all find things through here, from the run's own record, never by
guessing: the gem5 outdir is the one ``command.json`` names, and outputs belong to the render
whose ``run_id`` their events side-file carries.

- ``params.json``        the simulation: machine, workload, gem5 identity, ``run_id`` (host-independent)
- ``command.json``       this host's gem5 argv (cwd = the run directory) or container spec, outdir
- ``instantiation.json`` this host's paths, gem5 binary and container
- ``run.sh``             one command that runs the instantiation from the run directory
- ``slice.json``         for a run sliced from a census: census ``run_id``, step, layer, module
- ``<outdir>/``          gem5's outputs (default ``m5out``), with ``layerlab_events.jsonl``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foundation.errors import InputError

RUN_SCHEMA = "layerlab-run/2"
PARAMS_FILE = "params.json"
COMMAND_FILE = "command.json"
INSTANTIATION_FILE = "instantiation.json"
RUN_SCRIPT = "run.sh"
SLICE_FILE = "slice.json"
DEFAULT_OUTDIR = "m5out"
EVENTS_FILENAME = "layerlab_events.jsonl"
#: The guest driver's marker id table (exported by `m5 writefile` into the outdir).
MARKER_TABLE_FILE = "layerlab_markers.json"
#: The census's kernel map (kernel index -> step, layer, module), beside the events file's run.
KERNEL_MAP_FILE = "layerlab_kernel_map.json"


def read_json_record(path: str | Path, hint: str = "") -> dict[str, Any]:
    """A JSON object from a run file; a missing or broken file is one InputError naming it."""
    target = Path(path)
    if not target.is_file():
        raise InputError(f"{target}: not found" + (f" ({hint})" if hint else ""))
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{target}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{target}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise InputError(f"{target}: expected a JSON object")
    return data


def is_run_dir(path: str | Path) -> bool:
    """A directory ``layerlab render`` wrote (it has params.json or command.json)."""
    folder = Path(path)
    return folder.is_dir() and ((folder / PARAMS_FILE).is_file() or (folder / COMMAND_FILE).is_file())


def outdir_of(run_dir: str | Path) -> Path:
    """The gem5 outdir of a run directory, as its ``command.json`` names it."""
    folder = Path(run_dir)
    command = folder / COMMAND_FILE
    if command.is_file():
        name = read_json_record(command).get("outdir") or DEFAULT_OUTDIR
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{command}: outdir {name!r} is not inside the run directory")
        return folder / name
    return folder / DEFAULT_OUTDIR


def run_id_of(run_dir: str | Path) -> str | None:
    """The ``run_id`` the run directory's render recorded (None for a pre-contract render)."""
    params = Path(run_dir) / PARAMS_FILE
    if not params.is_file():
        return None
    value = read_json_record(params).get("run_id")
    return str(value) if value else None


def outputs_dir(path: str | Path) -> Path:
    """Where gem5's outputs are for a path a user typed: a run directory, or an outdir itself."""
    target = Path(path)
    if is_run_dir(target):
        return outdir_of(target)
    return target


def events_run_id(outdir: str | Path) -> str | None:
    """The ``run_id`` in an outdir's events start record (None if absent or unreadable)."""
    events = Path(outdir) / EVENTS_FILENAME
    try:
        with events.open(encoding="utf-8") as handle:
            first = json.loads(handle.readline() or "{}")
    except (OSError, ValueError):
        return None
    return first.get("run_id") if isinstance(first, dict) else None


def stale_outputs(run_dir: str | Path, run_id: str, outdir: str | None = None) -> list[Path]:
    """Files in the run's outdir that another render (or no known render) wrote.

    Empty when the outdir is absent or empty, or when its events side-file names ``run_id``.
    """
    folder = Path(run_dir) / (outdir or DEFAULT_OUTDIR) if outdir else outdir_of(run_dir)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files or events_run_id(folder) == run_id:
        return []
    return files


def move_aside(folder: str | Path) -> Path:
    """Rename a run's old outputs to ``<name>.stale-N`` (never deleted: they may still be wanted)."""
    source = Path(folder)
    n = 1
    while (target := source.with_name(f"{source.name}.stale-{n}")).exists():
        n += 1
    source.rename(target)
    return target
