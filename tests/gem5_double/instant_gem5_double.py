#!/usr/bin/env python3
"""An INSTANT gem5 TEST DOUBLE for orchestration benchmarks: replays recorded outputs. Not a simulator.

``benchmarks/bench_orchestrator.py`` times what the conductor itself costs per run, so the gem5
it starts must cost (almost) nothing. This stand-in takes gem5's command line like ``gem5.opt``
does, and instead of running the config script it replays the outputs that the real test double
(``gem5.opt`` here) wrote for a run of the same kind: the folder
``$LAYERLAB_INSTANT_GEM5_RECORDING/<kind>/`` holds them, ``<kind>`` being ``boot`` (for a run with
``--checkpoint-dir``), else the run directory's own name (``census``, ``step1-layer0``, ...).
Big files are hard-linked; the events side-file and the checkpoint's record get this run's
``run_id`` (from ``params.json`` in the working directory, the run directory), so the conductor
reads them as this render's outputs. Runs of one recording must share its guest and window.
Standard library only; exit status 0, or 1 with a message when the recording lacks the kind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

EVENTS = "layerlab_events.jsonl"
CHECKPOINT_RECORD = "layerlab_checkpoint.json"


def _option(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _place(source: Path, target: Path, run_id: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        dest = target / item.name
        if item.is_dir():
            continue
        dest.unlink(missing_ok=True)
        if item.name == EVENTS:
            lines = item.read_text(encoding="utf-8").splitlines(keepends=True)
            first = json.loads(lines[0])
            first["run_id"] = run_id
            dest.write_text(json.dumps(first, sort_keys=True) + "\n" + "".join(lines[1:]), encoding="utf-8")
        elif item.name == CHECKPOINT_RECORD:
            record = json.loads(item.read_text(encoding="utf-8"))
            dest.write_text(json.dumps({**record, "run_id": run_id}), encoding="utf-8")
        else:
            try:
                os.link(item, dest)
            except OSError:
                shutil.copyfile(item, dest)


def main(argv: list[str]) -> int:
    recording = Path(os.environ.get("LAYERLAB_INSTANT_GEM5_RECORDING", ""))
    run_dir = Path.cwd()
    checkpoint = _option(argv, "--checkpoint-dir")
    kind = "boot" if checkpoint else run_dir.name
    source = recording / kind
    if not recording.name or not (source / "m5out").is_dir():
        print(f"instant gem5 double: no recorded outputs for {kind!r} in {recording}", file=sys.stderr)
        return 1
    run_id = json.loads((run_dir / "params.json").read_text(encoding="utf-8"))["run_id"]
    _place(source / "m5out", run_dir / (_option(argv, "--outdir") or _option(argv, "-d") or "m5out"), run_id)
    if checkpoint:
        _place(source / "checkpoint", Path(checkpoint), run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
