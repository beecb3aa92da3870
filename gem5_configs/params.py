"""Validated render parameters: everything one GPU-FS run depends on, checked before rendering.

Each field notes gem5's own default beside it, and where layerlab departs from it and why. The
hardware knobs are one ``analytical.hardware.Gem5GpuConfig`` (not copied here), so the roofline a
report draws is built from the very object the command line was rendered from.

Bad input raises ``InputError`` naming the field; nothing is rendered or written.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from analytical.hardware import Gem5GpuConfig, GiB
from gem5_configs.profiles import DEVICES, VersionProfile, get_profile
from workloads.errors import InputError, unknown_name
from workloads.vocabulary import Window

log = logging.getLogger("layerlab.gem5_configs")

CPU_TYPES = {"kvm": "X86KvmCPU", "atomic": "X86AtomicSimpleCPU"}  # the two GPUFS supports (gem5 doc)
REG_ALLOC_POLICIES = ("dynamic", "simple")
SCRIPT_STYLES = ("classic", "stdlib")
#: Directory (inside the run directory) gem5 writes its outputs to.
OUTDIR = "m5out"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _optional_hardware_tables() -> tuple[Any, Any]:
    """The DRAM-type catalog and gem5 machine builder, if ``analytical.hardware`` has them yet."""
    from analytical import hardware

    return getattr(hardware, "GEM5_DRAM_TYPES", None), getattr(hardware, "gem5_machine", None)


def default_gpu_config(device: str, profile: str = "v24.0") -> Gem5GpuConfig:
    """The knobs layerlab starts from for a device (before the user's overrides).

    Taken from ``analytical.hardware.gem5_machine`` -- the same machine ``layerlab estimate
    --hardware gem5-<device>`` draws its roofline for -- so a report compares against what was
    simulated. Without that builder: ``Gem5GpuConfig``'s defaults (mi300.py's machine).
    """
    if device not in DEVICES:
        raise unknown_name("device", device, DEVICES)
    _, machine = _optional_hardware_tables()
    if machine is not None:
        spec = machine(device, get_profile(profile).gem5_ref)
        if getattr(spec, "gem5", None) is not None:
            return replace(spec.gem5, device=device)
    if device == "mi200":
        return Gem5GpuConfig(device="mi200", num_cus=4)  # gem5's -u default
    return Gem5GpuConfig(device="mi300x")


@dataclass(frozen=True)
class RenderParams:
    """One GPU-FS run, fully specified. Build with ``make_params`` (which validates)."""

    profile: str  # gem5 version profile (v24.0 | v24.1 | v25)
    device: str  # mi200 | mi300x  (gem5 --gpu-device default: Vega10)
    gpu: Gem5GpuConfig  # hardware knobs; see analytical.hardware for each one's gem5 default
    kernel: str  # --kernel (gem5 default: none); vmlinux extracted from the same image
    disk: str  # --disk-image (gem5 default: ""); the boot disk /dev/sda
    guest_command: tuple[str, ...] = ()  # argv run in the guest (lives in the image)
    guest_env: tuple[tuple[str, str], ...] = ()  # extra exports for the workload
    second_disk: str | None = None  # --second-disk (gem5 default: none; mi200.py reuses the boot disk)
    root_partition: str = "/dev/sda1"  # --root-partition (gem5 default /dev/sda1)
    host_mem_bytes: int = 8 * GiB  # --mem-size (gem5 default 512MB; mi200/mi300.py force 8GB)
    cpu_type: str = "kvm"  # --cpu-type X86KvmCPU (gem5 default X86AtomicSimpleCPU; mi*.py force KVM)
    num_cpus: int = 1  # -n/--num-cpus (gem5 default 1); >1 with KVM means several event queues
    kvm_perf: bool = (
        False  # KVM perf counters (v24.0 default on, v24.1+ off); off avoids perf_event_paranoid panics
    )
    skip_until: int = 0  # --skip-until-gpu-kernel (gem5 default 0)
    exit_after: int | None = None  # --exit-after-gpu-kernel (gem5 default -1 = none)
    exit_at_task: int | None = None  # --exit-at-gpu-task (gem5 default -1 = none)
    per_kernel_dumps: bool = False  # dump+reset stats at every kernel/blit in the window (gem5: never)
    debug_flags: tuple[str, ...] = ()  # --debug-flags (gem5 default none)
    debug_at_gpu_task: int | None = None  # --debug-at-gpu-task (gem5 default -1): trace from this task on
    debug_start: int | None = None  # --debug-start tick (gem5 default 0)
    tick_limit: int | None = None  # --abs-max-tick (gem5 default MaxTick)
    checkpoint_dir: str | None = None  # --checkpoint-dir: boot, load the driver, checkpoint, stop
    restore_dir: str | None = None  # --restore-dir: resume from that boot checkpoint
    gem5_src: str | None = None  # gem5 source tree; its configs/ goes on the script's sys.path
    gem5_binary: str = "gem5.opt"  # host binary (build/VEGA_X86/gem5.opt, or the bootcamp's gem5-vega)
    docker_image: str | None = None  # run inside this container image instead of on the host
    script_style: str = "classic"  # classic configs/example/gpufs, or stdlib ViperBoard (v24.1+)
    outdir: str = OUTDIR  # --outdir, relative to the run directory (gem5 default m5out)

    @property
    def version(self) -> VersionProfile:
        return get_profile(self.profile)

    @property
    def window(self) -> Window | None:
        return None if self.exit_after is None else Window(self.skip_until, self.exit_after)

    @property
    def kernel_exit_events(self) -> bool:
        """gem5 only raises kernel-completion exits when asked; we ask for any window or dumps."""
        return bool(
            self.per_kernel_dumps
            or self.exit_after is not None
            or self.skip_until > 0
            or self.exit_at_task is not None
            or self.debug_at_gpu_task is not None
        )

    @property
    def checkpointing(self) -> bool:
        return self.checkpoint_dir is not None or self.restore_dir is not None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for params.json: sorted by the writer, stable across runs."""
        data = asdict(self)
        data["gpu"] = asdict(self.gpu)
        data["guest_command"] = list(self.guest_command)
        data["guest_env"] = [list(kv) for kv in self.guest_env]
        data["debug_flags"] = list(self.debug_flags)
        return data


def _existing_file(field_name: str, value: str | Path | None, required: bool = True) -> str | None:
    if value is None or str(value) == "":
        if required:
            raise InputError(f"{field_name}: a path is required")
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(f"{field_name}: file not found: {path}")
    return str(path.resolve())


def _power_of_two(field_name: str, value: int, why: str) -> None:
    if value < 1 or value & (value - 1):
        raise InputError(f"{field_name}: must be a power of two ({why}), got {value}")


def _check_gpu(gpu: Gem5GpuConfig, profile: VersionProfile) -> None:
    if gpu.num_cus < 1:
        raise InputError(f"gpu.num_cus: must be >= 1, got {gpu.num_cus}")
    if gpu.num_cus % gpu.cu_per_sqc:
        raise InputError(
            f"gpu.num_cus: {gpu.num_cus} is not a multiple of cu_per_sqc={gpu.cu_per_sqc} "
            "(gem5 shares one SQC and scalar cache per cu_per_sqc CUs; mi300.py rounds 38 up to 40 for this)"
        )
    for name in ("sys_clock_hz", "gpu_clock_hz"):
        if getattr(gpu, name) <= 0:
            raise InputError(f"gpu.{name}: must be > 0")
    _power_of_two("gpu.num_tccs", gpu.num_tccs, "gem5 interleaves TCC banks by address bits")
    _power_of_two("gpu.dram_channels", gpu.dram_channels, "gem5 interleaves GPU directories by address bits")
    for name in ("tcp_bytes", "sqc_bytes", "tcc_bytes", "lds_bytes"):
        value = getattr(gpu, name)
        if value <= 0 or value % 1024:
            raise InputError(f"gpu.{name}: must be a positive whole number of KiB, got {value}")
    if gpu.tcc_bytes % gpu.num_tccs:
        raise InputError(f"gpu.tcc_bytes: {gpu.tcc_bytes} does not split evenly over {gpu.num_tccs} TCCs")
    if gpu.reg_alloc_policy not in REG_ALLOC_POLICIES:
        raise unknown_name("register allocation policy", gpu.reg_alloc_policy, REG_ALLOC_POLICIES)
    dram_types, _ = _optional_hardware_tables()
    if dram_types:
        if gpu.dram_type not in dram_types:
            raise unknown_name("GPU DRAM type", gpu.dram_type, dram_types)
    elif not _IDENT.match(gpu.dram_type):
        # No catalog yet: gem5's --dgpu-mem-type choices are memory class names; check the shape only.
        raise InputError(f"gpu.dram_type: {gpu.dram_type!r} is not a gem5 memory class name")
    if gpu.mfma_scale <= 0:
        raise InputError(f"gpu.mfma_scale: must be > 0, got {gpu.mfma_scale}")
    if gpu.mfma_scale != 1.0 and not profile.mfma_timing_table:
        raise InputError(
            f"gpu.mfma_scale: gem5 {profile.name} has no MFMA timing table (--mfma-scale arrived with "
            "PR #1700, v24.1); MFMAs there cost --issue-period cycles"
        )
    if profile.gpu_memory_must_be_16gib and gpu.gpu_mem_bytes != 16 * GiB:
        raise InputError(
            f"gpu.gpu_mem_bytes: gem5 {profile.name} requires exactly 16 GiB of GPU memory "
            f"(amdgpu_device.cc fatals otherwise), got {gpu.gpu_mem_bytes / GiB:g} GiB"
        )


def make_params(
    *,
    profile: str,
    device: str,
    kernel: str | Path,
    disk: str | Path,
    gpu: Gem5GpuConfig | None = None,
    gpu_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> RenderParams:
    """Validate everything and return the parameters of one run; one InputError per problem."""
    version = get_profile(profile)
    if device not in DEVICES:
        raise unknown_name("device", device, DEVICES)
    base = gpu if gpu is not None else default_gpu_config(device, version.name)
    if base.device != device:
        if gpu is not None:
            raise InputError(f"gpu.device: hardware config is for {base.device!r} but device is {device!r}")
        base = replace(base, device=device)
    if gpu_overrides:
        unknown = sorted(set(gpu_overrides) - set(Gem5GpuConfig.__dataclass_fields__))
        if unknown:
            raise unknown_name("hardware knob", unknown[0], Gem5GpuConfig.__dataclass_fields__)
        base = base.with_overrides(**gpu_overrides)
    _check_gpu(base, version)

    unknown = sorted(set(options) - set(RenderParams.__dataclass_fields__))
    if unknown:
        raise unknown_name("render parameter", unknown[0], RenderParams.__dataclass_fields__)
    params = RenderParams(
        profile=version.name,
        device=device,
        gpu=base,
        kernel=_existing_file("kernel", kernel) or "",
        disk=_existing_file("disk", disk) or "",
        **options,
    )
    params = replace(params, second_disk=_existing_file("second_disk", params.second_disk, required=False))
    return _check_run(params, version)


def _check_run(p: RenderParams, version: VersionProfile) -> RenderParams:
    if p.skip_until < 0:
        raise InputError(f"skip_until: must be >= 0, got {p.skip_until}")
    if p.exit_after is not None:
        Window(p.skip_until, p.exit_after)  # raises the one window error
    for name in ("exit_at_task", "debug_at_gpu_task", "debug_start", "tick_limit"):
        value = getattr(p, name)
        if value is not None and value < 0:
            raise InputError(f"{name}: must be >= 0, got {value}")
    if p.tick_limit is not None and p.tick_limit == 0:
        raise InputError("tick_limit: must be > 0")
    if p.cpu_type not in CPU_TYPES:
        raise unknown_name("CPU type", p.cpu_type, CPU_TYPES)
    if p.num_cpus < 1:
        raise InputError(f"num_cpus: must be >= 1, got {p.num_cpus}")
    if p.num_cpus > 1 and p.cpu_type == "kvm":
        log.warning(
            "num_cpus=%d with KVM forces several event queues, which break GPU m5ops and kernel exits "
            "in gem5's GPU model (stdlib ViperBoard note); use 1 CPU",
            p.num_cpus,
        )
    if p.host_mem_bytes < 2 * GiB:
        raise InputError("host_mem_bytes: gem5 needs at least 2 GiB of host memory to load amdgpu")
    if not re.match(r"^/dev/[a-z]+[0-9]+$", p.root_partition):
        raise InputError(f"root_partition: expected a device like /dev/sda1, got {p.root_partition!r}")
    if p.checkpoint_dir and p.restore_dir:
        raise InputError(
            "checkpoint_dir and restore_dir: give one (boot+checkpoint, or restore+run), not both"
        )
    if p.restore_dir is not None and not Path(p.restore_dir).is_dir():
        raise InputError(f"restore_dir: directory not found: {p.restore_dir}")
    if p.checkpoint_dir is None and not p.guest_command:
        raise InputError("guest_command: give the command to run in the guest (after '--')")
    for name, _value in p.guest_env:
        if not _ENV_NAME.match(name):
            raise InputError(f"guest_env: {name!r} is not a valid environment variable name")
    for flag in p.debug_flags:
        if not _IDENT.match(flag.lstrip("-")):
            raise InputError(f"debug_flags: {flag!r} is not a gem5 debug flag name")
    if Path(p.outdir).is_absolute() or ".." in Path(p.outdir).parts or not p.outdir.strip():
        raise InputError(f"outdir: must be a relative path inside the run directory, got {p.outdir!r}")
    if p.script_style not in SCRIPT_STYLES:
        raise unknown_name("script style", p.script_style, SCRIPT_STYLES)
    if p.script_style == "stdlib" and not version.stdlib_gpu_board:
        raise InputError(
            f"script_style: gem5 {version.name} has no stdlib GPU board (ViperBoard arrived in v24.1); "
            "use the classic style"
        )
    if p.device == "mi200" and p.gpu.num_cus == 4:
        log.warning(
            "mi200 with gem5's default of 4 CUs: a real MI210 has 104; large kernels will be CU-bound "
            "far beyond the real part (set --num-cus, a multiple of 4)"
        )
    if p.gpu.reg_alloc_policy == "simple":
        log.warning(
            "reg_alloc_policy=simple: gem5's SimplePoolManager lets only ONE workgroup run on a CU at a "
            "time, so kernels with many workgroups look far slower than on real hardware; "
            "'dynamic' (layerlab's default) allows several"
        )
    paths = {}
    for name in ("checkpoint_dir", "restore_dir"):
        value = getattr(p, name)
        if value is not None:
            paths[name] = str(Path(value).expanduser().resolve())
    src = _resolve_gem5_src(p)
    return replace(p, gem5_src=src, **paths)


def _resolve_gem5_src(p: RenderParams) -> str:
    """The gem5 tree whose configs/ the script imports: given, or inferred from build/VEGA_X86/gem5.opt."""
    if p.gem5_src is not None:
        src = Path(p.gem5_src).expanduser().resolve()
    else:
        found = shutil.which(p.gem5_binary) if "/" not in p.gem5_binary else None
        binary = Path(found or p.gem5_binary).expanduser().resolve()
        if binary.parent.name == "VEGA_X86" and binary.parent.parent.name == "build":
            src = binary.parents[2]
        else:
            raise InputError(
                "gem5_src: give the gem5 source tree (--gem5-src DIR); the rendered script imports its configs/"
            )
    if not (src / "configs" / "example" / "gpufs" / "runfs.py").is_file():
        raise InputError(f"gem5_src: {src} has no configs/example/gpufs/runfs.py (not a gem5 source tree?)")
    return str(src)


def params_from_json(data: dict[str, Any]) -> RenderParams:
    """Rebuild the parameters of a rendered run from params.json's ``params`` (no file checks:
    the analysis machine need not have the kernel or disk)."""
    try:
        fields = dict(data)
        fields["gpu"] = Gem5GpuConfig(**fields["gpu"])
        for name in ("guest_command", "debug_flags"):
            fields[name] = tuple(fields[name])
        fields["guest_env"] = tuple((k, v) for k, v in fields["guest_env"])
        return RenderParams(**fields)
    except (KeyError, TypeError) as exc:
        raise InputError(f"params.json: not a layerlab render parameter set ({exc})") from None
