"""Kernels sliced per second: the structural slicer on a large synthetic decode trace.

The trace mimics a 32-layer model over 1 prefill + 40 decode steps (≈ 40k kernels, the
size of a real rocprof trace of a short generation), built from the real Switch Transformer
block names so kernel names are as long as real ones. The baseline is the cost of reading
the same sequence once with a plain Python equality scan at the true period (what a hand-
written per-model slicer would do); the slicer searches every period, so the ratio is the
price of not knowing the layer length. Target: >= 100k kernels/s.
"""

from __future__ import annotations

import time
from pathlib import Path

from workloads.slicer import slice_kernels
from workloads.traces import read_trace

TARGET = 1e5
FIXTURE = (
    Path(__file__).resolve().parents[1].parent
    / "shared/fixtures/kernel_traces/switchtransformer_a100_torchprofiler/trace.json"
)


def main() -> None:
    switch = read_trace(FIXTURE).kernels
    block, head, tail = switch[1:50], switch[:1], switch[491:]
    layers, steps = 32, 41
    kernels = []
    for step in range(steps):
        kernels += [f"{head[0]}#{step % 2}", *block * layers, *tail]

    start = time.perf_counter()
    result = slice_kernels(kernels, layers)
    slicer_s = time.perf_counter() - start
    assert len(result.steps) == steps

    start = time.perf_counter()
    period = len(block)
    _ = sum(kernels[i] == kernels[i + period] for i in range(len(kernels) - period))
    baseline_s = time.perf_counter() - start

    rate = len(kernels) / slicer_s
    print(f"kernels: {len(kernels)}  layers: {layers}  steps: {steps}")
    print(f"slicer:   {slicer_s:8.3f} s  {rate:12.0f} kernels/s  (target >= {TARGET:.0f})")
    print(f"baseline: {baseline_s:8.3f} s  {len(kernels) / baseline_s:12.0f} kernels/s  (one known period)")
    print("PASS" if rate >= TARGET else "BELOW TARGET")


if __name__ == "__main__":
    main()
