"""Kernel-trace readers: every supported trace becomes one launch-ordered list of kernel names.

The structural slicer and the census tests need the same thing from very different files: the
kernels in the order they were launched, plus (where the file has them) annotated spans such as
``nn.Module: X`` or layerlab's own ``layerlab:<id>:<label>`` markers. Formats:

``kineto`` (PyTorch profiler / Kineto JSON, plain or ``.gz``)
    GPU kernels are the events with ``cat == "kernel"``, ordered by their ``correlation`` id (the
    launch order of the runtime call; ``ts`` when there is none). A span annotation covers the
    kernels whose *launch* (the runtime event with the same correlation) lies inside it.
    A CPU-only trace has no kernels; then the stand-in for a kernel launch is a *top-level aten
    op* (one not inside another ``aten::`` op: ``aten::linear``, ``aten::softmax``, ...) that does
    real work somewhere in its subtree, i.e. is not made only of views, allocation and no-ops
    (``CPU_NO_KERNEL_OPS``: a contiguous ``reshape`` or a same-dtype ``to`` launch nothing, a
    non-contiguous one copies). It is a proxy, not a promise of the GPU kernel count, but it is
    deterministic and the census and the slicer see the same sequence, which is what their
    agreement tests need.
``rocprof`` CSV
    v1 ``results.csv`` (``Index``, ``KernelName``) and the newer kernel-trace CSV
    (``Kernel_Name`` with ``Dispatch_Id``/``Correlation_Id``/``Start_Timestamp``). rocprof v1
    lists AQL barrier packets as ``<barrier packet>`` rows; they are not kernels and are dropped.
    The ``--stats`` summaries (``Name,Calls,TotalDurationNs,...``) have no launch order and are
    refused with a clear error.
``gem5`` debug trace (``--debug-flags=GPUCommandProc,GPUKernelInfo``, gem5_gpufs.md §2.4)
    every dispatch prints ``kernel_object vaddr 0x...`` then ``Kernel name: Some kernel|Blit
    kernel``; non-blit dispatches in order are the kernel indices, and the kernel-object address
    is the kernel's identity. Without ``GPUKernelInfo`` a skip-all run still works: each
    ``Skipping non-blit kernel %i`` line confirms the preceding dispatch is non-blit.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InputError

#: Leaf aten ops that launch no GPU kernel (views, metadata, allocation, no-op conversions).
CPU_NO_KERNEL_OPS = frozenset(
    "aten::" + name
    for name in [
        "empty",
        "empty_strided",
        "empty_like",
        "empty_permuted",
        "view",
        "reshape",
        "_reshape_alias",
        "as_strided",
        "t",
        "transpose",
        "permute",
        "expand",
        "expand_as",
        "unsqueeze",
        "squeeze",
        "slice",
        "select",
        "detach",
        "detach_",
        "alias",
        "_unsafe_view",
        "lift_fresh",
        "resolve_conj",
        "resolve_neg",
        "result_type",
        "split",
        "unbind",
        "chunk",
        "narrow",
        "view_as",
        "size",
        "stride",
        "to",
        "contiguous",
        "numpy_T",
        "_has_compatible_shallow_copy_type",
        "is_nonzero",
        "item",
        "_local_scalar_dense",
        "unflatten",
        "flatten",
        "movedim",
        "dim",
        "resize_",
        "dropout",
    ]
)

FORMATS = ("kineto", "rocprof", "gem5")


@dataclass
class Span:
    """An annotated stretch of kernels ``first .. end-1`` (``end`` exclusive, may equal ``first``)."""

    name: str
    first: int
    end: int


@dataclass
class KernelTrace:
    path: str
    format: str  # kineto-gpu | kineto-cpu | rocprof-v1 | rocprof-trace | gem5-debug
    kernels: list[str]
    spans: list[Span] = field(default_factory=list)
    # For kineto: times of kernels and span edges, used to rebuild event order (census test double).
    times: list[float] = field(default_factory=list)
    span_times: list[tuple[float, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kernels)


def read_trace(path: str | Path) -> KernelTrace:
    """Read any supported trace, choosing the reader from the content, not only the suffix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trace file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    stripped = head.lstrip()
    if stripped.startswith(("{", "[")):
        return read_kineto(path)
    first_line = stripped.splitlines()[0] if stripped else ""
    header = {cell.strip().strip('"') for cell in first_line.split(",")}
    if header & {"KernelName", "Kernel_Name", "Name"}:
        return read_rocprof_csv(path)
    # Anything else is read as a gem5 debug trace (boot messages may precede the GPU lines);
    # that reader names the debug flags it needs if it finds no dispatches.
    return read_gem5_debug(path)


# -- Kineto ---------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError, EOFError) as exc:
        raise InputError(f"{path}: not a readable JSON trace ({exc})") from None


def _span_names(event: dict[str, Any]) -> bool:
    cat = event.get("cat")
    name = str(event.get("name", ""))
    return cat in ("user_annotation", "gpu_user_annotation") or (
        cat == "python_function" and name.startswith("nn.Module: ")
    )


def read_kineto(path: str | Path) -> KernelTrace:
    path = Path(path)
    data = _load_json(path)
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise InputError(f"{path}: no 'traceEvents' list (not a PyTorch profiler / Kineto trace)")
    events = [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "ts" in e]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    spans_src = [e for e in events if _span_names(e) and e.get("cat") != "gpu_user_annotation"]
    if kernels:
        return _kineto_gpu(path, events, kernels, spans_src)
    return _kineto_cpu(path, events, spans_src)


def _kineto_gpu(path: Path, events: list[dict], kernels: list[dict], spans_src: list[dict]) -> KernelTrace:
    def corr(e: dict) -> Any:
        return (e.get("args") or {}).get("correlation")

    have_corr = all(corr(k) is not None for k in kernels)
    kernels = sorted(kernels, key=(lambda k: (corr(k), k["ts"])) if have_corr else (lambda k: k["ts"]))
    launches = {corr(e): float(e["ts"]) for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver")}
    # A kernel's host-side time is its launch call; without one, its GPU start time.
    times = [launches.get(corr(k), float(k["ts"])) for k in kernels]
    return _with_spans(path, "kineto-gpu", [str(k["name"]) for k in kernels], times, spans_src)


def _kineto_cpu(path: Path, events: list[dict], spans_src: list[dict]) -> KernelTrace:
    ops = [e for e in events if e.get("cat") == "cpu_op"]
    if not ops:
        raise InputError(f"{path}: trace has neither GPU kernels (cat 'kernel') nor CPU ops (cat 'cpu_op')")
    launches: list[dict] = []
    by_thread: dict[Any, list[dict]] = {}
    for op in ops:
        by_thread.setdefault((op.get("pid"), op.get("tid")), []).append(op)
    for thread_ops in by_thread.values():
        thread_ops.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
        top: dict | None = None
        top_end = float("-inf")
        computes: dict[int, bool] = {}
        for op in thread_ops:
            name = str(op["name"])
            if not name.startswith("aten::"):
                continue
            start = float(op["ts"])
            if top is None or start >= top_end:  # a new top-level aten op
                top, top_end = op, start + float(op.get("dur", 0))
                computes[id(top)] = False
                launches.append(top)
            if name not in CPU_NO_KERNEL_OPS:
                computes[id(top)] = True
        launches = [op for op in launches if computes.get(id(op), True)]
    launches.sort(key=lambda e: float(e["ts"]))
    times = [float(e["ts"]) for e in launches]
    return _with_spans(path, "kineto-cpu", [str(e["name"]) for e in launches], times, spans_src)


def _with_spans(
    path: Path, fmt: str, names: list[str], times: list[float], spans_src: list[dict]
) -> KernelTrace:
    # Kernel launch times are sorted in launch order for one host thread; spans count the
    # kernels launched between their start and end.
    order_ok = all(a <= b for a, b in itertools.pairwise(times))
    spans, edges = [], []
    for e in sorted(spans_src, key=lambda e: (float(e["ts"]), -float(e.get("dur", 0)))):
        start, end = float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))
        if order_ok:
            first, stop = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        else:
            inside = [i for i, t in enumerate(times) if start <= t <= end]
            first, stop = (
                (inside[0], inside[-1] + 1) if inside else (bisect.bisect_left(sorted(times), start),) * 2
            )
        spans.append(Span(str(e["name"]), first, stop))
        edges.append((start, end))
    return KernelTrace(str(path), fmt, names, spans, times, edges)


# -- rocprof ----------------------------------------------------------------------------------

_STATS_COLUMNS = {"Name", "Calls", "TotalDurationNs"}


def read_rocprof_csv(path: str | Path) -> KernelTrace:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = list(reader)
    if columns >= _STATS_COLUMNS:
        raise InputError(
            f"{path}: a rocprof --stats summary (one row per kernel name with call counts), not a "
            "launch-ordered trace; slice rocprof's per-dispatch results.csv (v1) or kernel_trace.csv instead"
        )
    if "KernelName" in columns:
        fmt, name_col, order_cols = "rocprof-v1", "KernelName", ("Index", "DispatchNs", "BeginNs")
    elif "Kernel_Name" in columns:
        fmt, name_col = "rocprof-trace", "Kernel_Name"
        order_cols = ("Dispatch_Id", "Correlation_Id", "Start_Timestamp")
    else:
        raise InputError(
            f"{path}: CSV has no 'KernelName' (rocprof v1 results.csv) or 'Kernel_Name' (kernel trace) column"
        )
    order_col = next((c for c in order_cols if c in columns), None)
    parsed = []
    for lineno, row in enumerate(rows, start=2):
        name = (row.get(name_col) or "").strip()
        if not name or name == "<barrier packet>":
            continue
        key = 0
        if order_col:
            try:
                key = int(row[order_col])
            except (TypeError, ValueError):
                raise InputError(
                    f"{path}:{lineno}: field {order_col!r} is not an integer: {row[order_col]!r}"
                ) from None
        parsed.append((key, lineno, name))
    parsed.sort()
    return KernelTrace(str(path), fmt, [name for _, _, name in parsed])


# -- gem5 -------------------------------------------------------------------------------------

_VADDR = re.compile(r"kernel_object vaddr (0x[0-9a-fA-F]+|0)\b")
_NAME = re.compile(r"Kernel name: (Some kernel|Blit kernel)")
_SKIP = re.compile(r"Skipping non-blit kernel (\d+) \(Task ID: (\d+)\)")


def read_gem5_debug(path: str | Path) -> KernelTrace:
    """Non-blit dispatches in order, named by kernel-object address (gem5 has no kernel names)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    dispatches: list[dict[str, Any]] = []
    saw_names = saw_skips = False
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for lineno, line in enumerate(handle, start=1):
            if m := _VADDR.search(line):
                dispatches.append({"vaddr": m.group(1), "blit": None, "skip": None, "line": lineno})
            elif m := _NAME.search(line):
                saw_names = True
                if not dispatches:
                    raise InputError(f"{path}:{lineno}: 'Kernel name' before any 'kernel_object vaddr' line")
                dispatches[-1]["blit"] = m.group(1) == "Blit kernel"
            elif m := _SKIP.search(line):
                saw_skips = True
                if not dispatches:
                    raise InputError(f"{path}:{lineno}: 'Skipping non-blit kernel' before any dispatch")
                dispatches[-1]["skip"] = int(m.group(1))
    if not dispatches:
        raise InputError(
            f"{path}: no 'kernel_object vaddr' lines; run gem5 with --debug-flags=GPUCommandProc"
        )
    if not saw_names and not saw_skips:
        raise InputError(
            f"{path}: cannot tell blit from non-blit dispatches; add GPUKernelInfo to --debug-flags "
            "(or use a skip-all census run, whose 'Skipping non-blit kernel' lines mark non-blits)"
        )
    names = []
    for d in dispatches:
        non_blit = (d["blit"] is False) if saw_names else d["skip"] is not None
        if non_blit:
            if d["skip"] is not None and d["skip"] != len(names):
                raise InputError(
                    f"{path}:{d['line']}: gem5 says kernel index {d['skip']} but this is non-blit dispatch "
                    f"{len(names)}; is the trace truncated at the start?"
                )
            names.append(d["vaddr"])
    return KernelTrace(str(path), "gem5-debug", names)
