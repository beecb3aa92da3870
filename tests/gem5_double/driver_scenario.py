"""Scenarios for the gem5 TEST DOUBLE from a real guest driver run on the CPU.

The real ``layer`` driver runs on a toy config with Llama's layer structure (the kernel and marker
sequence per layer is the real model's), with the profiler marker back end; its kernels and marker
spans become the double's events, the order and counting gem5 would see: boot, optionally the boot
checkpoint, weight-upload blits, the driver's kernels and m5 markers, optionally the guest's
``m5 writefile`` of its marker table, and ``m5 exit``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

TOY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 16, "vocab_size": 128,
}  # fmt: skip


def run_layer_driver(root: Path, driver_argv: list[str], config: dict | None = None) -> tuple[Path, Path]:
    """Run the real layer driver on the CPU; return (its Kineto trace, its marker table)."""
    from workloads.drivers import layer

    config_path = root / "config.json"
    config_path.write_text(json.dumps(config or TOY_LLAMA))
    trace, table = root / "trace.json", root / "layerlab_markers.json"
    argv = ["--config", str(config_path), *driver_argv, "--dtype", "fp32", "--device", "cpu"]
    argv += ["--profile", str(trace), "--marker-table", str(table)]
    if layer.main(argv) != 0:
        raise RuntimeError(f"layer driver failed: {argv}")
    return trace, table


def scenario_events(
    trace: Path,
    table: Path | None = None,
    checkpoint: bool = False,
    blits: int = 1,
    kernel_ticks: Callable[[int], int] = lambda index: 1_000_000 + 1000 * index,
) -> list[dict]:
    """The double's events for a driver run (see module doc)."""
    from workloads import census
    from workloads.traces import read_trace

    events: list[dict] = [{"type": "host", "ticks": 5_000_000_000, "note": "boot + amdgpu load"}]
    if checkpoint:
        events.append({"type": "checkpoint", "note": "guest_run.sh: m5 checkpoint (boot runs stop here)"})
    events += [{"type": "blit", "ticks": 2_000_000, "note": "weight upload"} for _ in range(blits)]
    for record in census.events_from_trace(read_trace(trace))[1:]:
        if record["kind"] == "skip":
            events.append({"type": "kernel", "ticks": kernel_ticks(record["kernel_index"])})
        elif record["kind"] in ("workbegin", "workend"):
            events.append({"type": "marker", "op": record["kind"], "id": record["exit_code"]})
    if table is not None:
        events.append({"type": "writefile", "name": "layerlab_markers.json", "text": table.read_text()})
    events.append({"type": "exit"})
    return events


def write_scenario(path: Path, events: list[dict], description: str = "") -> Path:
    payload = {"schema": "layerlab-gem5-double/1", "description": description, "events": events}
    path.write_text(json.dumps(payload, indent=0) + "\n", encoding="utf-8")
    return path
