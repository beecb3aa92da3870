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
    #: Bandwidth of the LLC / L2 when data is served from there; 0 = unknown (the cache-hierarchy
    #: estimator then keeps DRAM bandwidth for that level).
    llc_bandwidth_bytes_per_s: float = 0.0
    l2_bandwidth_bytes_per_s: float = 0.0
    #: Smallest time one kernel takes end to end (launch + drain); the launch-floor estimator.
    kernel_launch_s: float = 0.0
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


# --------------------------------------------------------------------------------------------
# gem5 DRAM interfaces: per-channel peak bandwidth.
#
# Source: gem5 ``src/python/gem5/components/memory/dram_interfaces/{hbm,ddr3,ddr4}.py`` (the same
# classes ``src/mem/DRAMInterface.py`` exposes to ``--mem-type`` / ``--dgpu-mem-type``). One burst
# moves ``device_bus_width * devices_per_rank * burst_length / 8`` bytes and the data bus is busy
# ``tBURST`` per burst, so the peak of one channel is bytes_per_burst / tBURST. Checked values:
#   HBM_1000_4H_1x128: 128 bit x BL4 = 64 B per tBURST 4 ns  -> 16.0 GB/s
#   HBM_1000_4H_1x64:   64 bit x BL4 = 32 B per tBURST 4 ns  ->  8.0 GB/s (inherits tBURST)
#   HBM_2000_4H_1x64:   64 bit x BL4 = 32 B per tBURST 2 ns  -> 16.0 GB/s
#   DDR3_1600_8x8:   8 x 8 bit x BL8 = 64 B per tBURST 5 ns  -> 12.8 GB/s
#   DDR4_2400_{16x4,8x8,4x16}: 64 bit x BL8 = 64 B per tBURST 3.332 ns -> 19.2 GB/s
# Refresh, turnarounds and row misses make achieved bandwidth lower; this is the ceiling.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DramInterface:
    """Timing facts of one gem5 DRAM interface class that set its peak bandwidth."""

    name: str
    device_bus_width_bits: int
    devices_per_rank: int
    burst_length: int
    t_burst_s: float
    source: str

    @property
    def bytes_per_burst(self) -> int:
        return self.device_bus_width_bits * self.devices_per_rank * self.burst_length // 8

    @property
    def peak_bytes_per_s(self) -> float:
        """Peak bandwidth of ONE channel (one memory controller)."""
        return self.bytes_per_burst / self.t_burst_s


_HBM = "src/python/gem5/components/memory/dram_interfaces/hbm.py"
_DDR3 = "src/python/gem5/components/memory/dram_interfaces/ddr3.py"
_DDR4 = "src/python/gem5/components/memory/dram_interfaces/ddr4.py"

#: gem5 DRAM interface classes a GPU-FS run may name with ``--dgpu-mem-type``; key = class name.
GEM5_DRAM_TYPES: dict[str, DramInterface] = {
    d.name: d
    for d in (
        DramInterface("HBM_1000_4H_1x128", 128, 1, 4, 4e-9, _HBM),
        DramInterface("HBM_1000_4H_1x64", 64, 1, 4, 4e-9, _HBM),
        DramInterface("HBM_2000_4H_1x64", 64, 1, 4, 2e-9, _HBM),
        DramInterface("DDR3_1600_8x8", 8, 8, 8, 5e-9, _DDR3),
        DramInterface("DDR4_2400_16x4", 4, 16, 8, 3.332e-9, _DDR4),
        DramInterface("DDR4_2400_8x8", 8, 8, 8, 3.332e-9, _DDR4),
        DramInterface("DDR4_2400_4x16", 16, 4, 8, 3.332e-9, _DDR4),
    )
}


def dram_peak_bytes_per_s(dram_type: str, channels: int) -> float:
    """Peak DRAM bandwidth of ``channels`` controllers of a gem5 DRAM class."""
    from foundation.errors import unknown_name

    key = {k.lower(): k for k in GEM5_DRAM_TYPES}.get(dram_type.lower())
    if key is None:
        raise unknown_name("gem5 DRAM type", dram_type, GEM5_DRAM_TYPES)
    if channels < 1:
        from foundation.errors import InputError

        raise InputError(f"DRAM channels must be >= 1, got {channels}")
    return GEM5_DRAM_TYPES[key].peak_bytes_per_s * channels


# --------------------------------------------------------------------------------------------
# MFMA timing by gem5 version.
#
# v24.0 (and develop before PR #1700, Oct 2024): an MFMA is an ordinary VALU instruction that
# holds its SIMD for ``issue_period`` cycles, whatever its shape (analytical_anchors.md §0.3).
# From v24.1 (PR #1700) a per-opcode table of matrix-core cycles holds the SIMD for
# ``cycles * mfma_scale``; PR #2039 made a missing entry a panic; PR #2802 added CDNA4.
# --------------------------------------------------------------------------------------------

#: The MFMA each dtype class is assumed to run as (what hipBLASLt/Tensile kernels on gfx90a/gfx942
#: use: kernel names carry ``MI16x16x1``), with the FLOPs one wavefront-instruction does.
MFMA_INSTRUCTION_BY_CLASS: dict[str, tuple[str, int]] = {
    "fp16_matrix": ("v_mfma_f32_16x16x16_f16", 2 * 16 * 16 * 16),
    "bf16_matrix": ("v_mfma_f32_16x16x16_bf16", 2 * 16 * 16 * 16),
    "fp8_matrix": ("v_mfma_f32_16x16x32_fp8_fp8", 2 * 16 * 16 * 32),
    "fp32_matrix": ("v_mfma_f32_16x16x4_f32", 2 * 16 * 16 * 4),
}

#: Matrix-core cycles per MFMA (per SIMD) in gem5's table (PR #1700 values; fp32 16x16x4 is
#: derived from the datasheet 256 FLOP/clk/CU of both CDNA2 and CDNA3). gfx90a has no fp8 MFMA.
MFMA_CYCLES: dict[str, dict[str, int]] = {
    "gfx90a": {"fp16_matrix": 32, "bf16_matrix": 32, "fp32_matrix": 32},
    "gfx942": {"fp16_matrix": 16, "bf16_matrix": 16, "fp8_matrix": 16, "fp32_matrix": 32},
}

_GFX = {"mi200": "gfx90a", "mi300x": "gfx942"}


def mfma_timing(gem5_version: str) -> str:
    """The MFMA timing model of a gem5 version: ``issue_period`` or ``cycle_table``."""
    from foundation.gem5_names import version_facts

    return version_facts(gem5_version).mfma_timing


def gem5_flops_per_clock_per_cu(config: Gem5GpuConfig, gfx: str, gem5_version: str) -> dict[str, float]:
    """FLOP/clk/CU gem5 can reach for each compute class, given its MFMA timing model.

    ``issue_period`` model: one MFMA per SIMD every ``issue_period`` cycles, so a 16x16x16 f16
    MFMA (8192 FLOP) gives 4 SIMDs x 8192 / 4 = 8192 FLOP/clk/CU: 4x CDNA3 and 8x CDNA2 silicon.
    ``cycle_table`` model: 4 SIMDs x FLOP/inst / (cycles x mfma_scale) = 1024 (CDNA2) / 2048
    (CDNA3) FP16 FLOP/clk/CU at scale 1. FP32 vector: 4 SIMDs x wf_size lanes x 2 (FMA) per
    ``issue_period`` cycles.
    """
    model = mfma_timing(gem5_version)
    simds = config.simds_per_cu
    peaks: dict[str, float] = {"fp32_vector": simds * config.wf_size * 2 / config.issue_period}
    for cls, cycles in MFMA_CYCLES[gfx].items():
        flops_per_inst = MFMA_INSTRUCTION_BY_CLASS[cls][1]
        if model == "issue_period":
            if cls == "fp8_matrix":
                continue  # fp8 MFMAs arrive with the cycle table; not modelled before it
            peaks[cls] = simds * flops_per_inst / config.issue_period
        else:
            peaks[cls] = simds * flops_per_inst / (cycles * config.mfma_scale)
    return peaks


def _power_of_two(name: str, value: int, why: str) -> None:
    from foundation.errors import InputError

    if value < 1 or value & (value - 1):
        raise InputError(f"{name}: must be a power of two ({why}), got {value}")


def check_gem5_config(config: Gem5GpuConfig, gem5_version: str) -> Gem5GpuConfig:
    """The one validator of gem5 GPU knobs: what gem5 ``gem5_version`` can build, or an error.

    ``layerlab estimate``, ``layerlab render`` and experiment specs all come through here, so a
    machine one accepts the others accept too. Returns the config with the DRAM class spelled
    as gem5 spells it. Raises ``InputError`` naming the knob.
    """
    from foundation.errors import InputError, unknown_name
    from foundation.gem5_names import gem5_device, version_facts
    from foundation.units import size_text

    facts = version_facts(gem5_version)
    device = gem5_device(config.device)
    for name in Gem5GpuConfig.__dataclass_fields__:
        value = getattr(config, name)
        if isinstance(value, bool) or (
            name not in ("device", "dram_type", "reg_alloc_policy") and not isinstance(value, int | float)
        ):
            raise InputError(f"gpu.{name}: expected a number, got {value!r}")
    for name in (
        "num_cus",
        "simds_per_cu",
        "wfs_per_simd",
        "wf_size",
        "vreg_file_size",
        "sreg_file_size",
        "tcp_assoc",
        "sqc_assoc",
        "cu_per_sqc",
        "tcc_assoc",
        "num_tccs",
        "dram_channels",
        "issue_period",
    ):
        value = getattr(config, name)
        if not float(value).is_integer() or value < 1:
            raise InputError(f"gpu.{name}: must be a whole number >= 1, got {value}")
    if config.num_cus % config.cu_per_sqc:
        raise InputError(
            f"gpu.num_cus: {config.num_cus} is not a multiple of cu_per_sqc={config.cu_per_sqc} (gem5 shares "
            "one SQC and scalar cache per cu_per_sqc CUs; mi300.py rounds 38 up to 40 for this)"
        )
    for name in ("sys_clock_hz", "gpu_clock_hz"):
        if getattr(config, name) <= 0:
            raise InputError(f"gpu.{name}: must be > 0, got {getattr(config, name)}")
    _power_of_two("gpu.num_tccs", config.num_tccs, "gem5 interleaves TCC banks by address bits")
    _power_of_two(
        "gpu.dram_channels", config.dram_channels, "gem5 interleaves GPU directories by address bits"
    )
    for name in ("tcp_bytes", "sqc_bytes", "tcc_bytes", "lds_bytes"):
        value = getattr(config, name)
        if not float(value).is_integer() or value <= 0 or value % 1024:
            raise InputError(f"gpu.{name}: must be a positive whole number of KiB, got {value} bytes")
    if (config.tcc_bytes // config.num_tccs) % 1024 or config.tcc_bytes % config.num_tccs:
        raise InputError(
            f"gpu.tcc_bytes: {size_text(int(config.tcc_bytes))} does not split into {config.num_tccs} whole-KiB TCC banks"
        )
    if config.reg_alloc_policy not in REG_ALLOC_POLICIES:
        raise unknown_name("register allocation policy", str(config.reg_alloc_policy), REG_ALLOC_POLICIES)
    canonical = {k.lower(): k for k in GEM5_DRAM_TYPES}.get(str(config.dram_type).lower())
    if canonical is None:
        raise unknown_name("GPU DRAM type", str(config.dram_type), GEM5_DRAM_TYPES)
    if config.mfma_scale <= 0:
        raise InputError(f"gpu.mfma_scale: must be > 0, got {config.mfma_scale}")
    if config.mfma_scale != 1.0 and not facts.has_mfma_scale:
        raise InputError(
            f"gpu.mfma_scale: gem5 {facts.profile} has no --mfma-scale (no MFMA timing table: it arrived "
            "with PR #1700 on develop and ships from v25); MFMAs there cost --issue-period cycles"
        )
    if facts.gpu_memory_must_be_16gib and config.gpu_mem_bytes != 16 * GiB:
        raise InputError(
            f"gpu.gpu_mem_bytes: gem5 {facts.profile} requires exactly 16 GiB of GPU memory "
            f"(amdgpu_device.cc fatals otherwise), got {size_text(int(config.gpu_mem_bytes))}"
        )
    return replace(config, device=device, dram_type=canonical)


#: gem5 --reg-alloc-policy values (gem5's Python turns any other string into empty pools, silently).
REG_ALLOC_POLICIES = ("dynamic", "simple")
#: CUs of the machine gem5's stock config builds per device (gem5 -u default 4; mi300.py forces 40).
GEM5_DEFAULT_CUS = {"mi200": 4, "mi300x": 40}


def gem5_config(device: str = "mi300x", gem5_version: str = "v24.0", **overrides: Any) -> Gem5GpuConfig:
    """The validated knobs of gem5's machine for ``device`` with ``overrides`` applied."""
    from foundation.errors import unknown_name
    from foundation.gem5_names import gem5_device

    key = gem5_device(device)
    known = set(Gem5GpuConfig.__dataclass_fields__) - {"device"}
    bad = sorted(set(overrides) - known)
    if bad:
        raise unknown_name("gem5 GPU knob", bad[0], known)
    clean = {k: v for k, v in overrides.items() if v is not None}
    config = Gem5GpuConfig(device=key, num_cus=GEM5_DEFAULT_CUS[key]).with_overrides(**clean)
    return check_gem5_config(config, gem5_version)


def gem5_machine(device: str = "mi300x", gem5_version: str = "v24.0", **overrides: Any) -> HardwareSpec:
    """The machine gem5 simulates for ``mi200.py``/``mi300.py`` with ``overrides`` applied.

    ``overrides`` are ``Gem5GpuConfig`` fields (``num_cus``, ``sys_clock_hz``, ``tcc_bytes``,
    ``num_tccs``, ``dram_type``, ``dram_channels``, ``mfma_scale``...), validated by
    ``check_gem5_config`` -- the same rules ``layerlab render`` applies. mi200 defaults to gem5's
    4 CUs; mi300x to the 40 CUs stock mi300.py forces.
    """
    config = gem5_config(device, gem5_version, **overrides)
    return machine_of(config, gem5_version)


def machine_of(config: Gem5GpuConfig, gem5_version: str) -> HardwareSpec:
    """The roofline machine of validated knobs (what ``estimate`` and reports compare against)."""
    from foundation.gem5_names import gem5_hardware_name, gem5_profile

    config = check_gem5_config(config, gem5_version)
    version = gem5_profile(gem5_version)
    gfx = _GFX[config.device]
    bandwidth = dram_peak_bytes_per_s(config.dram_type, config.dram_channels)
    name = gem5_hardware_name(config.device)
    return HardwareSpec(
        name=name,
        compute_units=config.num_cus,
        clock_hz=config.sys_clock_hz,
        flops_per_clock_per_cu=gem5_flops_per_clock_per_cu(config, gfx, version),
        dram_bandwidth_bytes_per_s=bandwidth,
        l2_bytes=config.tcc_bytes,
        l2_count=config.num_tccs,
        llc_bytes=0,
        lds_bytes_per_cu=config.lds_bytes,
        l1_bytes_per_cu=config.tcp_bytes,
        source="gem5",
        notes=(
            f"gem5's simulated {config.device} machine (not the datasheet part), gem5 {version} "
            f"({mfma_timing(version)} MFMA model), {gfx}, {config.num_cus} CUs @ "
            f"{config.sys_clock_hz / 1e9:g} GHz, {config.dram_channels}x {config.dram_type}"
        ),
        gem5=config,
        aliases=(name, name.removesuffix("x")),
    )
