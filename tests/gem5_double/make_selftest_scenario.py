"""Regenerate scenarios/selftest.json: the guest of experiments/selftest.yaml, for the gem5 TEST DOUBLE.

The real ``layer`` driver runs on the CPU (a toy config with Llama-3.2-1B's layer structure, so the
kernel and marker sequence per layer is the same as the real model's; 2 layers, a prefill of 4
tokens over 16 of context, 2 decode steps) with the profiler marker back end; its kernels and
markers become the scenario: boot, the boot checkpoint, weight-upload blits, the driver's kernels
and m5 markers, the guest's ``m5 writefile`` of its marker table, and ``m5 exit``. Run it from the
repository root when the driver's kernel sequence changes:

    .venv/bin/python tests/gem5_double/make_selftest_scenario.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenarios" / "selftest.json"
#: The driver flags experiments/selftest.yaml gives (shapes), mirrored for the CPU run.
DRIVER_ARGV = ["--num-layers", "2", "--phases", "both", "-C", "16", "-S", "4", "-D", "2", "--batch", "1"]


def main() -> int:
    from workloads import census
    from workloads.drivers import layer
    from workloads.traces import read_trace

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "config.json"
        config.write_text(json.dumps({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 16, "vocab_size": 128,
        }))  # fmt: skip
        trace_path, table = root / "trace.json", root / "layerlab_markers.json"
        argv = ["--config", str(config), *DRIVER_ARGV, "--dtype", "fp32", "--device", "cpu"]
        argv += ["--profile", str(trace_path), "--marker-table", str(table)]
        if layer.main(argv) != 0:
            return 1
        events: list[dict] = [
            {"type": "host", "ticks": 5_000_000_000, "note": "boot + amdgpu load"},
            {"type": "checkpoint", "note": "guest_run.sh: m5 checkpoint (boot runs stop here)"},
            {"type": "blit", "ticks": 2_000_000, "note": "weight upload"},
        ]
        for record in census.events_from_trace(read_trace(trace_path))[1:]:
            if record["kind"] == "skip":
                events.append({"type": "kernel", "ticks": 1_000_000 + 10_000 * (record["kernel_index"] % 17)})
            elif record["kind"] in ("workbegin", "workend"):
                events.append({"type": "marker", "op": record["kind"], "id": record["exit_code"]})
        events.append({"type": "writefile", "name": "layerlab_markers.json", "text": table.read_text()})
        events.append({"type": "exit"})
    payload = {
        "schema": "layerlab-gem5-double/1",
        "description": "guest of experiments/selftest.yaml: boot, checkpoint, the layer driver (2 layers, "
        "prefill + 2 decode steps) with m5 markers, its marker table by m5 writefile, exit",
        "events": events,
    }
    SCENARIO.write_text(json.dumps(payload, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {SCENARIO} ({len(events)} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
