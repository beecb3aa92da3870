"""Regenerate scenarios/selftest.json: the guest of experiments/selftest.yaml, for the gem5 TEST DOUBLE.

The real ``layer`` driver runs on the CPU with the shapes the selftest spec gives (2 layers, a
prefill of 4 tokens over 16 of context, 2 decode steps; see driver_scenario.py). Run it from the
repository root when the driver's kernel sequence changes:

    .venv/bin/python tests/gem5_double/make_selftest_scenario.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenarios" / "selftest.json"
#: The driver flags experiments/selftest.yaml gives (shapes), mirrored for the CPU run.
DRIVER_ARGV = ["--num-layers", "2", "--phases", "both", "-C", "16", "-S", "4", "-D", "2", "--batch", "1"]


def main() -> int:
    sys.path.insert(0, str(HERE))
    from driver_scenario import run_layer_driver, scenario_events, write_scenario

    with tempfile.TemporaryDirectory() as tmp:
        trace, table = run_layer_driver(Path(tmp), DRIVER_ARGV)
        events = scenario_events(
            trace, table, checkpoint=True, kernel_ticks=lambda i: 1_000_000 + 10_000 * (i % 17)
        )
    write_scenario(
        SCENARIO,
        events,
        "guest of experiments/selftest.yaml: boot, checkpoint, the layer driver (2 layers, prefill + 2 "
        "decode steps) with m5 markers, its marker table by m5 writefile, exit",
    )
    print(f"wrote {SCENARIO} ({len(events)} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
