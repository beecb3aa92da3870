"""The hardware catalog: datasheet parts, the notebook's two parts, and as-simulated gem5 machines.

Datasheet numbers come from analytical_anchors.md §3.1 (ROCm gpu-specs, CDNA whitepapers) and
NVIDIA's A100/H100 datasheets; each entry's ``notes`` says where a number is derived rather than
read. ``gem5-mi200`` / ``gem5-mi300`` are built on demand from ``Gem5GpuConfig`` so that CLI
overrides (CUs, clock, TCC, DRAM) change the roofline exactly as they change the simulation.

Launch floors (``kernel_launch_s``) for real GPUs are an assumption: 4 µs sits inside the 2-11 µs
Vidur measured for small element-wise kernels on A100 (analytical_anchors.md §6.3c); calibrate it.
"""

from __future__ import annotations

from typing import Any

from analytical.hardware import GiB, HardwareSpec, KiB, MiB, gem5_machine
from foundation.errors import InputError, unknown_name

_LAUNCH_S = 4e-6

_PARTS: tuple[HardwareSpec, ...] = (
    HardwareSpec(
        name="mi100",
        compute_units=120,
        clock_hz=1.502e9,
        flops_per_clock_per_cu={
            "fp32_vector": 128,
            "fp32_matrix": 256,
            "fp16_matrix": 1024,
            "bf16_matrix": 512,
        },
        dram_bandwidth_bytes_per_s=1.2288e12,
        l2_bytes=8 * MiB,
        notes="CDNA1 gfx908; 32 GB HBM2",
        kernel_launch_s=_LAUNCH_S,
        aliases=("gfx908", "instinct-mi100"),
    ),
    HardwareSpec(
        name="mi210",
        compute_units=104,
        clock_hz=1.7e9,
        flops_per_clock_per_cu={
            "fp32_vector": 128,
            "fp32_matrix": 256,
            "fp16_matrix": 1024,
            "bf16_matrix": 1024,
        },
        dram_bandwidth_bytes_per_s=1.6384e12,
        l2_bytes=8 * MiB,
        notes="CDNA2 gfx90a; 64 GB HBM2e",
        kernel_launch_s=_LAUNCH_S,
        aliases=("instinct-mi210",),
    ),
    HardwareSpec(
        name="mi250x-gcd",
        compute_units=110,
        clock_hz=1.7e9,
        flops_per_clock_per_cu={
            "fp32_vector": 128,
            "fp32_matrix": 256,
            "fp16_matrix": 1024,
            "bf16_matrix": 1024,
        },
        dram_bandwidth_bytes_per_s=1.6384e12,
        l2_bytes=8 * MiB,
        notes="one GCD of an MI250X (half the OAM): what one HIP device is",
        kernel_launch_s=_LAUNCH_S,
        aliases=("mi250x-1gcd", "gfx90a"),
    ),
    HardwareSpec(
        name="mi250x",
        compute_units=220,
        clock_hz=1.7e9,
        flops_per_clock_per_cu={
            "fp32_vector": 128,
            "fp32_matrix": 256,
            "fp16_matrix": 1024,
            "bf16_matrix": 1024,
        },
        dram_bandwidth_bytes_per_s=3.2768e12,
        l2_bytes=16 * MiB,
        l2_count=2,
        notes="whole OAM = 2 GCDs; a kernel runs on one GCD, so prefer mi250x-gcd for per-kernel work",
        kernel_launch_s=_LAUNCH_S,
        aliases=("instinct-mi250x",),
    ),
    HardwareSpec(
        name="mi300x",
        compute_units=304,
        clock_hz=2.1e9,
        flops_per_clock_per_cu={
            "fp32_vector": 256,
            "fp32_matrix": 256,
            "fp16_matrix": 2048,
            "bf16_matrix": 2048,
            "fp8_matrix": 4096,
        },
        dram_bandwidth_bytes_per_s=5.3e12,
        l2_bytes=32 * MiB,
        l2_count=8,
        llc_bytes=256 * MiB,
        llc_bandwidth_bytes_per_s=17e12,
        l1_bytes_per_cu=32 * KiB,
        notes="CDNA3 gfx942; 2.1 GHz peak (dense MFMA runs ~1.1-1.2 GHz, MAF ~54% of peak); "
        "256 MB Infinity Cache ~17 TB/s (AMD slide); L2 flushed between kernels",
        kernel_launch_s=_LAUNCH_S,
        aliases=("gfx942", "instinct-mi300x"),
    ),
    HardwareSpec(
        name="a100",
        compute_units=108,
        clock_hz=1.41e9,
        flops_per_clock_per_cu={"fp32_vector": 128, "fp16_matrix": 2048, "bf16_matrix": 2048},
        dram_bandwidth_bytes_per_s=2.039e12,
        l2_bytes=40 * MiB,
        lds_bytes_per_cu=164 * KiB,
        l1_bytes_per_cu=192 * KiB,
        vendor="NVIDIA",
        notes="A100 SXM4 80GB; 108 SMs x 2048 FP16 tensor FLOP/clk x 1.41 GHz = 312 TF dense; no FP32 MMA (TF32 not modelled)",
        kernel_launch_s=_LAUNCH_S,
        aliases=("a100-sxm4-80gb", "a100-80gb"),
    ),
    HardwareSpec(
        name="h100",
        compute_units=132,
        clock_hz=1.83e9,
        flops_per_clock_per_cu={
            "fp32_vector": 256,
            "fp16_matrix": 4096,
            "bf16_matrix": 4096,
            "fp8_matrix": 8192,
        },
        dram_bandwidth_bytes_per_s=3.35e12,
        l2_bytes=50 * MiB,
        lds_bytes_per_cu=228 * KiB,
        l1_bytes_per_cu=256 * KiB,
        vendor="NVIDIA",
        notes="H100 SXM5; clock 1.83 GHz derived from 989.4 TF dense FP16 / (132 SMs x 4096 FLOP/clk)",
        kernel_launch_s=_LAUNCH_S,
        aliases=("h100-sxm5", "h100-sxm"),
    ),
    HardwareSpec(
        name="nvl-ax",
        compute_units=32,
        clock_hz=2.5e9,
        flops_per_clock_per_cu={"fp16_matrix": 4096, "bf16_matrix": 4096, "fp32_vector": 4096},
        dram_bandwidth_bytes_per_s=342 * GiB,
        l2_bytes=0,
        llc_bytes=36 * MiB,
        vendor="notebook",
        source="notebook",
        notes="the notebook's part: 32 cores, 2048 FP16 MAC/cycle/core, 342 GiB/s, 36 MiB LLC; "
        "one MAC rate is given, so it is used for bf16 and element-wise work too",
        aliases=("nvlax", "nvl_ax"),
    ),
    HardwareSpec(
        name="jgs",
        compute_units=192,
        clock_hz=1.5e9,
        flops_per_clock_per_cu={
            "fp32_vector": 16384,
            "fp32_matrix": 16384,
            "fp16_matrix": 16384,
            "bf16_matrix": 16384,
        },
        dram_bandwidth_bytes_per_s=30 * 1024**4,
        l2_bytes=0,
        llc_bytes=120 * MiB,
        vendor="notebook",
        source="notebook",
        notes="the notebook's part: 192 cores, 8192 FP32 MAC/cycle/core, 30 TiB/s, 120 MiB LLC; "
        "one MAC rate is given, so it is used for every dtype",
    ),
)

#: gem5 machines (gem5's simulated machine, not the datasheet part); ``gem5-mi300`` is accepted too.
GEM5_MACHINES = ("gem5-mi200", "gem5-mi300x")


def _index() -> dict[str, HardwareSpec]:
    table: dict[str, HardwareSpec] = {}
    for part in _PARTS:
        for name in (part.name, *part.aliases):
            table[name.lower()] = part
    return table


def list_hardware() -> list[str]:
    """Canonical catalog names, datasheet parts first, then the gem5 machines."""
    return [p.name for p in _PARTS] + list(GEM5_MACHINES)


def get_hardware(name: str, gem5_version: str = "v24.0", **gem5_overrides: Any) -> HardwareSpec:
    """Look a machine up by name (case-insensitive, aliases allowed).

    ``gem5_overrides`` (``Gem5GpuConfig`` fields; ``None`` values ignored) apply only to gem5
    machines; giving one for a datasheet part is an error rather than silently ignored.
    """
    key = name.strip().lower()
    overrides = {k: v for k, v in gem5_overrides.items() if v is not None}
    if key.startswith(("gem5-", "gem5_")):
        return gem5_machine(key, gem5_version, **overrides)
    part = _index().get(key)
    if part is None:
        raise unknown_name("hardware", name, list_hardware())
    if overrides:
        opts = ", ".join(sorted(overrides))
        raise InputError(
            f"hardware {name!r} is a datasheet part; gem5 options ({opts}) apply only to the gem5 machines gem5-mi200/gem5-mi300x"
        )
    return part
