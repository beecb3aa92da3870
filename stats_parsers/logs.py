"""gem5 stdout (simout), debug traces and the guest console.

The formats are facts from gem5 v24.0.0.1 (``gem5_gpufs.md`` §2.2 for what ``runfs.py``
prints, §2.4 for the DPRINTF strings). A debug trace line is ``%7d: `` (tick), the flag name
when ``FmtFlag`` is on, the SimObject name, then the message. The kernel timeline is rebuilt
from the GPUCommandProc/GPUKernelInfo/GPUDisp/GPUWgLatency lines; it is the cheapest per-kernel
timing there is (no stats dumps needed).
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd

from foundation.errors import InputError

# -- stdout -------------------------------------------------------------------------------

_STDOUT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("exit", re.compile(r"^Exiting @ tick (?P<tick>\d+) because (?P<cause>.*)$")),
    ("skip", re.compile(r"^Skipping GPU kernel (?P<kernel_index>\d+)\s*$")),
    ("exit_after_kernel", re.compile(r"^Exiting after GPU kernel (?P<kernel_index>\d+)\s*$")),
    ("exit_at_task", re.compile(r"^Exiting @ GPU task (?P<task_id>\d+)\s*$")),
    ("debug_enabled", re.compile(r"^Enabling debug flags @ GPU task (?P<task_id>\d+)\s*$")),
    ("unknown_exit", re.compile(r"^Unknown exit event: (?P<cause>.*?)\.? Continuing\.\.\.\s*$")),
    ("panic", re.compile(r"^(?:\S+:\d+: )?panic: (?P<message>.*)$")),
    ("fatal", re.compile(r"^(?:\S+:\d+: )?fatal: (?P<message>.*)$")),
    ("warn", re.compile(r"^(?:\S+:\d+: )?warn: (?P<message>.*)$")),
)

STDOUT_COLUMNS = ("line", "kind", "tick", "kernel_index", "task_id", "cause", "message")


def read_stdout(path: str | os.PathLike[str]) -> pd.DataFrame:
    """gem5 stdout/simout(.txt) → one row per recognised line (``kind`` says which).

    ``simout`` was renamed ``simout.txt`` in gem5 v23.1; a run directory finds either.
    """
    source = _find(Path(path), ("simout.txt", "simout", "stdout.txt", "gem5.log"))
    rows = []
    with _open_text(source) as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            for kind, pattern in _STDOUT_PATTERNS:
                match = pattern.match(line)
                if match:
                    fields = match.groupdict()
                    rows.append(
                        {
                            "line": line_no,
                            "kind": kind,
                            "tick": int(fields["tick"]) if fields.get("tick") else None,
                            "kernel_index": int(fields["kernel_index"])
                            if fields.get("kernel_index")
                            else None,
                            "task_id": int(fields["task_id"]) if fields.get("task_id") else None,
                            "cause": fields.get("cause"),
                            "message": fields.get("message"),
                        }
                    )
                    break
    table = pd.DataFrame(rows, columns=list(STDOUT_COLUMNS))
    for col in ("tick", "kernel_index", "task_id"):
        table[col] = table[col].astype("Int64")
    return table


def _find(path: Path, names: tuple[str, ...]) -> Path:
    if path.is_dir():
        for name in names:
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: none of {', '.join(names)} in this directory")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path


def _open_text(path: Path) -> IO[str]:
    """Plain or gzip (by magic bytes, not by name: users rename files)."""
    with path.open("rb") as probe:
        magic = probe.read(2)
    # The caller closes the wrapper, which closes the raw handle.
    raw = gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


# -- debug traces ---------------------------------------------------------------------------

_TRACE = re.compile(r"^\s*(?P<tick>\d+): (?:(?P<flag>[A-Za-z]\w*): )?(?P<obj>[\w.\[\]-]+): (?P<msg>.*)$")
_KOBJ = re.compile(
    r"^kernel_object vaddr (?P<vaddr>0x[0-9a-fA-F]+|0) paddr (?P<paddr>0x[0-9a-fA-F]+|0) size (?P<size>\d+)"
)
_NAME = re.compile(r"^Kernel name: (?P<name>.*?)\s*$")
_SKIP = re.compile(r"^Skipping non-blit kernel (?P<kernel>\d+) \(Task ID: (?P<task>\d+)\)")
_AQL = re.compile(
    r"^Task ID: (?P<task>\d+) Got AQL: wg size \((?P<wx>\d+)x(?P<wy>\d+)x(?P<wz>\d+)\), "
    r"grid size \((?P<gx>\d+)x(?P<gy>\d+)x(?P<gz>\d+)\) kernarg addr: (?P<kernarg>0x[0-9a-fA-F]+|0), "
    r"completion signal addr:(?P<signal>0x[0-9a-fA-F]+|0)"
)
_LAUNCH = re.compile(r"^launching kernel: (?P<name>.*), dispatch ID: (?P<task>\d+)")
_COMPLETE_WG = re.compile(r"^Kernel Complete ticks:(?P<ticks>\d+) kernel:(?P<task>\d+)")
_COMPLETE_INFO = re.compile(r"^Completed kernel (?P<task>\d+)")

TIMELINE_COLUMNS = (
    "dispatch", "task_id", "kernel_index", "blit", "skipped", "kernel_name", "kernel_object",
    "wg_x", "wg_y", "wg_z", "grid_x", "grid_y", "grid_z", "completion_signal",
    "launch_tick", "complete_tick", "duration_ticks",
)  # fmt: skip


def iter_trace(path: str | os.PathLike[str]) -> Iterator[tuple[int, int, str | None, str, str]]:
    """Yield (line, tick, flag or None, object name, message) for each trace line."""
    source = _find(Path(path), ("trace.out", "trace.out.gz", "debug.log"))
    with _open_text(source) as handle:
        for line_no, raw in enumerate(handle, start=1):
            match = _TRACE.match(raw.rstrip("\n"))
            if match:
                yield line_no, int(match["tick"]), match["flag"], match["obj"], match["msg"]


def kernel_timeline(path: str | os.PathLike[str], first_kernel_index: int = 0) -> pd.DataFrame:
    """One row per AQL dispatch seen in a GPU debug trace (see module doc for the flags).

    ``kernel_index`` counts non-blit dispatches from ``first_kernel_index`` (0 when the trace
    starts with the run); every ``Skipping non-blit kernel N`` line re-anchors it, so a trace
    started late is right from its first skipped kernel on.
    """
    dispatches: list[dict] = []
    current: dict | None = None
    next_index: int | None = first_kernel_index
    launch: dict[int, int] = {}
    complete: dict[int, int] = {}

    def new_dispatch() -> dict:
        record = dict.fromkeys(TIMELINE_COLUMNS)
        record.update(dispatch=len(dispatches), skipped=False)
        dispatches.append(record)
        return record

    for _line, tick, _flag, _obj, msg in iter_trace(path):
        if m := _KOBJ.match(msg):
            current = new_dispatch()
            current["kernel_object"] = int(m["vaddr"], 16)
        elif m := _NAME.match(msg):
            if current is None or current["kernel_name"] is not None:
                current = new_dispatch()
            current["kernel_name"] = m["name"]
            current["blit"] = m["name"] == "Blit kernel"
        elif m := _SKIP.match(msg):
            if current is None or current["task_id"] is not None:
                current = new_dispatch()
            current.update(task_id=int(m["task"]), kernel_index=int(m["kernel"]), skipped=True, blit=False)
            next_index = int(m["kernel"]) + 1
        elif m := _AQL.match(msg):
            if current is None or current["task_id"] is not None:
                current = new_dispatch()
            signal = int(m["signal"], 16)
            current.update(
                task_id=int(m["task"]),
                wg_x=int(m["wx"]), wg_y=int(m["wy"]), wg_z=int(m["wz"]),
                grid_x=int(m["gx"]), grid_y=int(m["gy"]), grid_z=int(m["gz"]),
                completion_signal=signal,
            )  # fmt: skip
            if current["blit"] is None:
                current["blit"] = signal != 0  # gem5's own test (gem5_gpufs.md §0.3)
            if not current["blit"]:
                current["kernel_index"] = next_index
                next_index = None if next_index is None else next_index + 1
        elif m := _LAUNCH.match(msg):
            launch.setdefault(int(m["task"]), tick)
        elif (m := _COMPLETE_WG.match(msg)) or (m := _COMPLETE_INFO.match(msg)):
            complete.setdefault(int(m["task"]), tick)
    table = pd.DataFrame(dispatches, columns=list(TIMELINE_COLUMNS))
    table["launch_tick"] = table["task_id"].map(launch)
    table["complete_tick"] = table["task_id"].map(complete)
    for col in (
        "task_id",
        "kernel_index",
        "kernel_object",
        "wg_x",
        "wg_y",
        "wg_z",
        "grid_x",
        "grid_y",
        "grid_z",
        "completion_signal",
        "launch_tick",
        "complete_tick",
    ):
        table[col] = table[col].astype("Int64")
    table["duration_ticks"] = table["complete_tick"] - table["launch_tick"]
    table["blit"] = table["blit"].astype("boolean")
    table["skipped"] = table["skipped"].astype(bool)
    return table


# -- guest console ----------------------------------------------------------------------------


def find_console(run_dir: str | os.PathLike[str]) -> Path | None:
    """The guest serial console file: ``system.pc.com_1.device`` (GPU-FS), ``board.pc.com_1.device``
    (stdlib boards) or a ``*.terminal``; globbed, because the prefix depends on the config."""
    base = Path(run_dir)
    for pattern in ("*.com_1.device", "*.terminal"):
        hits = sorted(base.glob(pattern))
        if hits:
            return hits[0]
    return None
