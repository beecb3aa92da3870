"""Hardware specs: what a machine can do, for the roofline, and what gem5 was told to build.

A ``HardwareSpec`` is either a datasheet part (MI300X, A100, ...) or an *as-simulated* gem5
machine. For the latter, ``gem5`` holds the exact knobs of gem5's GPU model
(``Gem5GpuConfig``); ``gem5_configs`` renders its command line from that same object, so the
roofline a report compares against is the machine that was actually simulated.

**Limitations** the peaks of a gem5 machine are derived from its knobs (CU count, shader clock,
MFMA timing model of the gem5 version, DRAM interface x channels); they are what the model can
reach at best, not what the silicon it imitates reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Compute classes a spec may give a peak for, in FLOP per clock per CU.
DTYPE_CLASSES = ("fp32_vector", "fp32_matrix", "fp16_matrix", "bf16_matrix", "fp8_matrix")


@dataclass(frozen=True)
class Gem5GpuConfig:
    """The knobs of gem5's AMD GPU model that shape kernel cycles.

    Defaults are gem5 v24.0's own defaults as mi300.py builds them (gem5_gpufs.md §1.4-1.7),
    except ``reg_alloc_policy``: gem5's default ``simple`` runs one workgroup per CU, which
    distorts every kernel's cycles, so layerlab defaults to ``dynamic`` and warns on ``simple``.
    Field names are the contract with ``gem5_configs``; each maps to one gem5 option.
    """

    device: str = "mi300x"  # --gpu-device MI200 | MI300X (mi200.py / mi300.py)
    num_cus: int = 40  # -u/--num-compute-units (gem5 default 4; mi300.py forces 40)
    sys_clock_hz: float = 1e9  # --sys-clock: shader and CU clock
    gpu_clock_hz: float = 1e9  # --gpu-clock: GPU Ruby caches (TCP/SQC/TCC) and GPU TLBs only
    simds_per_cu: int = 4  # --simds-per-cu
    wfs_per_simd: int = 10  # --wfs-per-simd
    wf_size: int = 64  # --wf-size
    vreg_file_size: int = 2048  # --vreg-file-size (per SIMD)
    sreg_file_size: int = 2048  # --sreg-file-size (per SIMD)
    lds_bytes: int = 64 * KiB  # --lds-size
    tcp_bytes: int = 16 * KiB  # --tcp-size (per CU)
    tcp_assoc: int = 16  # --tcp-assoc
    sqc_bytes: int = 32 * KiB  # --sqc-size (per cu_per_sqc CUs)
    sqc_assoc: int = 8  # --sqc-assoc
    cu_per_sqc: int = 4  # --cu-per-sqc
    tcc_bytes: int = 256 * KiB  # --tcc-size (aggregate, split across TCCs)
    tcc_assoc: int = 16  # --tcc-assoc
    num_tccs: int = 1  # --num-tccs
    dram_type: str = "HBM_1000_4H_1x128"  # --dgpu-mem-type
    dram_channels: int = 1  # --dgpu-num-dirs (one memory controller per directory)
    gpu_mem_bytes: int = 16 * GiB  # --dgpu-mem-size (must be 16 GiB in v24.x)
    reg_alloc_policy: str = "dynamic"  # --reg-alloc-policy (gem5 default: simple)
    issue_period: int = 4  # --issue-period: cycles per vector issue; MFMA cost before PR #1700
    mfma_scale: float = 1.0  # --mfma-scale (versions with the MFMA timing table only)

    def with_overrides(self, **overrides: Any) -> Gem5GpuConfig:
        return replace(self, **overrides)


@dataclass(frozen=True)
class HardwareSpec:
    """A machine for the roofline: peaks, memory hierarchy, and (for gem5) the knobs behind them."""

    name: str
    compute_units: int
    clock_hz: float
    #: FLOP per clock per CU by compute class (see DTYPE_CLASSES); missing = not supported.
    flops_per_clock_per_cu: dict[str, float]
    dram_bandwidth_bytes_per_s: float
    l2_bytes: int  # total over all L2 slices
    l2_count: int = 1
    llc_bytes: int = 0  # memory-side last-level cache (Infinity Cache / MALL); 0 if none
    lds_bytes_per_cu: int = 64 * KiB
    l1_bytes_per_cu: int = 16 * KiB
    vendor: str = "AMD"
    source: str = "datasheet"  # "datasheet" | "gem5" | "notebook"
    notes: str = ""
    gem5: Gem5GpuConfig | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def peak_flops(self, compute_class: str) -> float:
        """Peak FLOP/s of one compute class across the whole machine."""
        return self.flops_per_clock_per_cu[compute_class] * self.compute_units * self.clock_hz

    @property
    def last_level_cache_bytes(self) -> int:
        """The largest on-chip cache a tile can live in: the LLC if present, else L2."""
        return self.llc_bytes or self.l2_bytes
