"""What one GPU-FS run is, split the way gem5's stdlib splits board, workload and instantiation.

- ``Machine``: the simulated system -- device, gem5 version profile, the ``Gem5GpuConfig``
  knobs, the host-side CPU/memory gem5 builds around the GPU, and the config script style.
- ``Workload``: what runs on it -- guest command and environment, kernel window, per-kernel
  dumps, debug tracing, run kind (``plain`` | ``boot_checkpoint`` | ``restore``), and its inputs
  named by *identity*: kernel and disks by sha256, a checkpoint by the ``run_id`` that wrote it.
- ``Instantiation``: where it runs, made per host -- gem5 binary or container, gem5 source tree,
  host paths of the inputs, outdir, KVM perf counters (a host capability).

``run_id`` hashes machine + workload + gem5 identity (profile, binary or container digest, the
source tree's version) + the renderer's template digest, never a host path: the same simulation
rendered on two hosts, or from the same files at two paths, has the same ``run_id``.

``RenderParams`` composes the three for the renderer; each field notes gem5's own default and
where layerlab departs from it. Bad input raises ``InputError`` naming the field; nothing is
rendered or written.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from analytical.hardware import Gem5GpuConfig, GiB, check_gem5_config, gem5_config
from foundation.digests import file_digest, text_digest
from foundation.errors import InputError, unknown_name
from foundation.gem5_names import gem5_device
from foundation.vocabulary import Window
from gem5_configs.profiles import VersionProfile, get_profile

log = logging.getLogger("layerlab.gem5_configs")

CPU_TYPES = {"kvm": "X86KvmCPU", "atomic": "X86AtomicSimpleCPU"}  # the two GPUFS supports (gem5 doc)
SCRIPT_STYLES = ("classic", "stdlib")
RUN_KINDS = ("plain", "boot_checkpoint", "restore")
#: Directory (inside the run directory) gem5 writes its outputs to.
OUTDIR = "m5out"
#: Host memory of a stdlib ViperBoard run: X86Board refuses more than 3 GiB (the I/O hole).
STDLIB_HOST_MEM_BYTES = 3 * GiB
#: Knobs the stdlib ViperCU hard-codes (gem5.components.devices.gpus.viper_shader, v24.1+).
STDLIB_FIXED_KNOBS: dict[str, object] = {
    "simds_per_cu": 4,
    "wf_size": 64,
    "vreg_file_size": 2048,
    "sreg_file_size": 2048,
    "lds_bytes": 64 * 1024,
    "reg_alloc_policy": "dynamic",
}
#: Written by a boot-checkpoint run into its checkpoint directory: the run_id that made it.
CHECKPOINT_ID_FILE = "layerlab_checkpoint.json"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def default_gpu_config(device: str, profile: str = "v24.0") -> Gem5GpuConfig:
    """The knobs layerlab starts from for a device (before the user's overrides).

    The same machine ``layerlab estimate --hardware gem5-<device>`` draws its roofline for
    (``analytical.hardware.gem5_config``), so a report compares against what was simulated.
    """
    return gem5_config(device, get_profile(profile).name)


@dataclass(frozen=True)
class Machine:
    """The simulated system. Changing any field changes what gem5 computes."""

    profile: str  # gem5 version profile (v24.0 | v24.1 | v25)
    device: str  # mi200 | mi300x: gem5's machine for --gpu-device MI200 | MI300X (not the datasheet part)
    gpu: Gem5GpuConfig  # GPU knobs; see analytical.hardware for each one's gem5 default
    root_partition: str = "/dev/sda1"  # --root-partition (gem5 default /dev/sda1)
    host_mem_bytes: int = 8 * GiB  # --mem-size (gem5 default 512MB; mi200/mi300.py force 8GB)
    cpu_type: str = "kvm"  # --cpu-type X86KvmCPU (gem5 default X86AtomicSimpleCPU; mi*.py force KVM)
    num_cpus: int = 1  # -n/--num-cpus (gem5 default 1); >1 with KVM means several event queues
    script_style: str = "classic"  # classic configs/example/gpufs, or stdlib ViperBoard (v24.1+)

    @property
    def version(self) -> VersionProfile:
        return get_profile(self.profile)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # gpu too: asdict recurses into the nested dataclass


@dataclass(frozen=True)
class Workload:
    """What runs on the machine, its inputs named by content (never by path)."""

    guest_command: tuple[str, ...] = ()  # argv run in the guest (lives in the image)
    guest_env: tuple[tuple[str, str], ...] = ()  # extra exports for the workload
    kind: str = "plain"  # plain | boot_checkpoint | restore
    skip_until: int = 0  # --skip-until-gpu-kernel (gem5 default 0)
    exit_after: int | None = None  # --exit-after-gpu-kernel (gem5 default -1 = none)
    exit_at_task: int | None = None  # --exit-at-gpu-task (gem5 default -1 = none)
    per_kernel_dumps: bool = False  # dump+reset stats at every kernel/blit in the window (gem5: never)
    debug_flags: tuple[str, ...] = ()  # --debug-flags (gem5 default none)
    debug_at_gpu_task: int | None = None  # --debug-at-gpu-task (gem5 default -1): trace from this task on
    debug_start: int | None = None  # --debug-start tick (gem5 default 0)
    tick_limit: int | None = None  # --abs-max-tick (gem5 default MaxTick)
    kernel_digest: str = ""  # sha256 of the vmlinux
    disk_digest: str = ""  # sha256 of the boot disk (or of the image manifest that names it)
    second_disk_digest: str | None = None
    checkpoint_id: str | None = None  # restore: run_id of the boot run that wrote the checkpoint

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["guest_command"] = list(self.guest_command)
        data["guest_env"] = [list(kv) for kv in self.guest_env]
        data["debug_flags"] = list(self.debug_flags)
        return data


@dataclass(frozen=True)
class Instantiation:
    """Where one run executes: host paths and the gem5 build. Made per host, not hashed by path."""

    kernel: str = ""  # --kernel path on this host; vmlinux extracted from the same image
    disk: str = ""  # --disk-image path on this host; the boot disk /dev/sda
    second_disk: str | None = None  # --second-disk (gem5 default none; stock mi200.py reuses the boot disk)
    checkpoint_dir: str | None = None  # --checkpoint-dir: boot, load the driver, checkpoint, stop
    restore_dir: str | None = None  # --restore-dir: resume from that boot checkpoint
    gem5_src: str | None = None  # gem5 source tree; its configs/ goes on gem5's --path
    gem5_binary: str = "gem5.opt"  # host binary (build/VEGA_X86/gem5.opt); in a container, its mount
    docker_image: str | None = None  # run inside this container image (pin it: name@sha256:...)
    outdir: str = OUTDIR  # --outdir, relative to the run directory (gem5 default m5out)
    kvm_perf: bool = (
        False  # KVM perf counters (v24.0 default on, v24.1+ off); off avoids perf_event_paranoid panics
    )
    #: gem5 identity: sha256 of the binary (None when it is not on this host), the tree's version.
    gem5_binary_digest: str | None = None
    gem5_tree_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_PARTS = ("machine", "workload", "instantiation")


@dataclass(frozen=True)
class RenderParams:
    """One run: ``machine`` + ``workload`` (the simulation) + ``instantiation`` (this host).

    Fields of the three parts read through (``params.gpu``, ``params.skip_until``,
    ``params.kernel``), so the renderer need not know which part holds what.
    """

    machine: Machine
    workload: Workload
    instantiation: Instantiation = field(default_factory=Instantiation)

    def __getattr__(self, name: str) -> Any:
        for part in _PARTS:
            obj = object.__getattribute__(self, part)
            if name in type(obj).__dataclass_fields__:
                return getattr(obj, name)
        raise AttributeError(f"RenderParams has no field {name!r}")

    @property
    def version(self) -> VersionProfile:
        return get_profile(self.machine.profile)

    @property
    def window(self) -> Window | None:
        return None if self.exit_after is None else Window(self.skip_until, self.exit_after)

    @property
    def kernel_exit_events(self) -> bool:
        """gem5 only raises kernel-completion exits when asked; we ask for any window or dumps."""
        w = self.workload
        return bool(
            w.per_kernel_dumps
            or w.exit_after is not None
            or w.skip_until > 0
            or w.exit_at_task is not None
            or w.debug_at_gpu_task is not None
        )

    @property
    def checkpointing(self) -> bool:
        return self.workload.kind != "plain"

    def gem5_identity(self) -> dict[str, Any]:
        """Which gem5 runs it: profile, binary or container digest, source tree version."""
        inst = self.instantiation
        return {
            "profile": self.machine.profile,
            "binary": None if inst.docker_image else inst.gem5_binary_digest,
            "container": inst.docker_image,
            "tree_version": inst.gem5_tree_version,
        }

    def simulation_json(self) -> dict[str, Any]:
        """Everything that decides what gem5 computes (the content of params.json)."""
        return {
            "machine": self.machine.to_json(),
            "workload": self.workload.to_json(),
            "gem5": self.gem5_identity(),
        }

    def run_id(self, renderer: str = "") -> str:
        """16 hex digits naming the simulation: equal on every host for equal inputs."""
        canonical = json.dumps(self.simulation_json(), sort_keys=True, separators=(",", ":"))
        return text_digest(canonical, renderer).removeprefix("sha256:")[:16]

    def with_options(self, **changes: Any) -> RenderParams:
        """A copy with fields of any part replaced (by field name)."""
        parts = {p: object.__getattribute__(self, p) for p in _PARTS}
        for name, value in changes.items():
            for part, obj in parts.items():
                if name in type(obj).__dataclass_fields__:
                    parts[part] = replace(obj, **{name: value})
                    break
            else:
                raise unknown_name("render parameter", name, all_option_names())
        return RenderParams(**parts)


def all_option_names() -> list[str]:
    return sorted({f.name for cls in (Machine, Workload, Instantiation) for f in fields(cls)} - {"gpu"})


def _existing_file(field_name: str, value: str | Path | None, required: bool = True) -> str | None:
    if value is None or str(value) == "":
        if required:
            raise InputError(f"{field_name}: a path is required")
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InputError(f"{field_name}: file not found: {path}")
    return str(path.resolve())


def _split_options(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {p: {} for p in _PARTS}
    owners = {
        **{f.name: "machine" for f in fields(Machine)},
        **{f.name: "workload" for f in fields(Workload)},
        **{f.name: "instantiation" for f in fields(Instantiation)},
    }
    for name, value in options.items():
        if name not in owners or name in ("gpu", "profile", "device", "kind"):
            raise unknown_name("render parameter", name, all_option_names())
        out[owners[name]][name] = value
    return out


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
    """Validate everything and return one run instantiated on this host; one InputError per problem.

    Flat keyword options (``skip_until=``, ``gem5_src=``, ``kvm_perf=`` ...) go to the part that
    owns them. Input files are hashed (cached by path, size, mtime and inode).
    """
    version = get_profile(profile)
    device = gem5_device(device)
    if gpu is not None:
        if gem5_device(gpu.device) != device:
            raise InputError(f"gpu.device: hardware config is for {gpu.device!r} but device is {device!r}")
        base = gpu
        if gpu_overrides:
            base = _apply_overrides(base, gpu_overrides)
    else:
        base = gem5_config(device, version.name, **_checked_overrides(gpu_overrides or {}))
    base = check_gem5_config(base, version.name)

    options = dict(options)
    if options.get("script_style") == "stdlib":
        # X86Board's limit (the I/O hole); the classic scripts' 8 GiB does not fit there.
        options.setdefault("host_mem_bytes", STDLIB_HOST_MEM_BYTES)
    parts = _split_options(options)
    inst = Instantiation(
        kernel=_existing_file("kernel", kernel) or "",
        disk=_existing_file("disk", disk) or "",
        **parts["instantiation"],
    )
    machine = Machine(profile=version.name, device=device, gpu=base, **parts["machine"])
    if device == "mi200" and machine.script_style == "classic" and "second_disk" not in options:
        # Stock mi200.py attaches the boot image again as /dev/sdb (mi300.py does not); so do we,
        # so an mi200 run sees the disks gem5's own mi200 config gives it. --second-disk overrides.
        inst = replace(inst, second_disk=inst.disk)
    inst = replace(inst, second_disk=_existing_file("second_disk", inst.second_disk, required=False))
    checkpoint_dir, restore_dir = inst.checkpoint_dir, inst.restore_dir
    if checkpoint_dir and restore_dir:
        raise InputError(
            "checkpoint_dir and restore_dir: give one (boot+checkpoint, or restore+run), not both"
        )
    kind = "boot_checkpoint" if checkpoint_dir else "restore" if restore_dir else "plain"
    workload = Workload(kind=kind, **parts["workload"])
    params = RenderParams(machine, workload, inst)
    return _check_run(params, version)


def _checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    known = set(Gem5GpuConfig.__dataclass_fields__) - {"device"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise unknown_name("hardware knob", unknown[0], known)
    return overrides


def _apply_overrides(base: Gem5GpuConfig, overrides: dict[str, Any]) -> Gem5GpuConfig:
    return base.with_overrides(**{k: v for k, v in _checked_overrides(overrides).items() if v is not None})


def _check_machine(m: Machine, version: VersionProfile) -> None:
    if m.cpu_type not in CPU_TYPES:
        raise unknown_name("CPU type", m.cpu_type, CPU_TYPES)
    if m.num_cpus < 1:
        raise InputError(f"num_cpus: must be >= 1, got {m.num_cpus}")
    if m.num_cpus > 1 and m.cpu_type == "kvm":
        log.warning(
            "num_cpus=%d with KVM forces several event queues, which break GPU m5ops and kernel exits "
            "in gem5's GPU model (stdlib ViperBoard note); use 1 CPU",
            m.num_cpus,
        )
    if m.host_mem_bytes < 2 * GiB:
        raise InputError("host_mem_bytes: gem5 needs at least 2 GiB of host memory to load amdgpu")
    if not re.match(r"^/dev/[a-z]+[0-9]+$", m.root_partition):
        raise InputError(f"root_partition: expected a device like /dev/sda1, got {m.root_partition!r}")
    if m.script_style not in SCRIPT_STYLES:
        raise unknown_name("script style", m.script_style, SCRIPT_STYLES)
    if m.script_style == "stdlib":
        if not version.stdlib_gpu_board:
            raise InputError(
                f"script_style: gem5 {version.name} has no stdlib GPU board (ViperBoard arrived in v24.1); "
                "use the classic style"
            )
        if m.host_mem_bytes > 3 * GiB:
            raise InputError(
                f"host_mem_bytes: gem5's stdlib X86Board supports at most 3 GiB of host memory (the I/O "
                f"hole), got {m.host_mem_bytes / GiB:g} GiB; use --host-mem 3GiB or the classic style"
            )
        for knob, fixed in STDLIB_FIXED_KNOBS.items():
            if getattr(m.gpu, knob) != fixed:
                raise InputError(
                    f"gpu.{knob}: the stdlib ViperCU fixes it at {fixed!r} (got {getattr(m.gpu, knob)!r}); "
                    "use the classic style to simulate another value"
                )
    if m.device == "mi200" and m.gpu.num_cus == 4:
        log.warning(
            "mi200 with gem5's default of 4 CUs: a real MI210 has 104; large kernels will be CU-bound "
            "far beyond the real part (set --num-cus, a multiple of 4)"
        )
    if m.gpu.reg_alloc_policy == "simple":
        log.warning(
            "reg_alloc_policy=simple: gem5's SimplePoolManager lets only ONE workgroup run on a CU at a "
            "time, so kernels with many workgroups look far slower than on real hardware; "
            "'dynamic' (layerlab's default) allows several"
        )


def _check_workload(w: Workload) -> None:
    if w.skip_until < 0:
        raise InputError(f"skip_until: must be >= 0, got {w.skip_until}")
    if w.exit_after is not None:
        Window(w.skip_until, w.exit_after)  # raises the one window error
    for name in ("exit_at_task", "debug_at_gpu_task", "debug_start", "tick_limit"):
        value = getattr(w, name)
        if value is not None and value < 0:
            raise InputError(f"{name}: must be >= 0, got {value}")
    if w.tick_limit is not None and w.tick_limit == 0:
        raise InputError("tick_limit: must be > 0")
    if w.kind != "boot_checkpoint" and not w.guest_command:
        raise InputError("guest_command: give the command to run in the guest (after '--')")
    for name, _value in w.guest_env:
        if not _ENV_NAME.match(name):
            raise InputError(f"guest_env: {name!r} is not a valid environment variable name")
    for flag in w.debug_flags:
        if not _IDENT.match(flag.lstrip("-")):
            raise InputError(f"debug_flags: {flag!r} is not a gem5 debug flag name")


def checkpoint_identity(restore_dir: str | Path) -> str:
    """The identity of a boot checkpoint: the run_id that wrote it, else a digest of its m5.cpt."""
    folder = Path(restore_dir)
    marker = folder / CHECKPOINT_ID_FILE
    if marker.is_file():
        try:
            run_id = json.loads(marker.read_text(encoding="utf-8"))["run_id"]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{marker}: not a layerlab checkpoint record") from None
        return f"run:{run_id}"
    cpts = sorted(folder.rglob("m5.cpt"))
    if not cpts:
        raise InputError(
            f"restore_dir: {folder} holds no gem5 checkpoint (no m5.cpt, no {CHECKPOINT_ID_FILE})"
        )
    return text_digest(*(p.read_text(encoding="utf-8", errors="replace") for p in cpts))


def _check_run(p: RenderParams, version: VersionProfile) -> RenderParams:
    _check_machine(p.machine, version)
    _check_workload(p.workload)
    inst = p.instantiation
    if Path(inst.outdir).is_absolute() or ".." in Path(inst.outdir).parts or not inst.outdir.strip():
        raise InputError(f"outdir: must be a relative path inside the run directory, got {inst.outdir!r}")
    if inst.restore_dir is not None and not Path(inst.restore_dir).is_dir():
        raise InputError(f"restore_dir: directory not found: {inst.restore_dir}")
    if p.machine.script_style == "stdlib" and inst.second_disk:
        raise InputError(
            "second_disk: the stdlib ViperBoard attaches one disk; use the classic style for two"
        )
    if inst.docker_image is not None and not re.fullmatch(r"[\w./:@-]+", inst.docker_image):
        raise InputError(
            f"docker_image: {inst.docker_image!r} is not an image reference (name[:tag][@sha256:...])"
        )
    paths = {}
    for name in ("checkpoint_dir", "restore_dir"):
        value = getattr(inst, name)
        if value is not None:
            paths[name] = str(Path(value).expanduser().resolve())
    src = _resolve_gem5_src(inst)
    inst = replace(
        inst,
        gem5_src=src,
        gem5_tree_version=tree_version(src),
        gem5_binary_digest=None if inst.docker_image else _binary_digest(inst.gem5_binary),
        **paths,
    )
    workload = replace(
        p.workload,
        kernel_digest=file_digest(inst.kernel),
        disk_digest=file_digest(inst.disk),
        second_disk_digest=file_digest(inst.second_disk) if inst.second_disk else None,
        checkpoint_id=checkpoint_identity(inst.restore_dir) if inst.restore_dir else None,
    )
    return RenderParams(p.machine, workload, inst)


def tree_version(src: str | Path) -> str | None:
    """A gem5 tree's own version (``src/base/version.cc``: ``24.0.0.1``), or None if absent."""
    path = Path(src) / "src" / "base" / "version.cc"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r'gem5Version\s*=\s*"([^"]+)"', text)
    return match.group(1) if match else None


def _binary_digest(binary: str) -> str | None:
    found = shutil.which(binary) if "/" not in binary else binary
    if found and Path(found).expanduser().is_file():
        return file_digest(found)
    return None


def _resolve_gem5_src(inst: Instantiation) -> str:
    """The gem5 tree whose configs/ the script imports: given, or inferred from build/VEGA_X86/gem5.opt."""
    if inst.gem5_src is not None:
        src = Path(inst.gem5_src).expanduser().resolve()
    else:
        found = shutil.which(inst.gem5_binary) if "/" not in inst.gem5_binary else None
        binary = Path(found or inst.gem5_binary).expanduser().resolve()
        if binary.parent.name == "VEGA_X86" and binary.parent.parent.name == "build":
            src = binary.parents[2]
        else:
            raise InputError(
                "gem5_src: give the gem5 source tree (--gem5-src DIR); the rendered script imports its configs/"
            )
    if not (src / "configs" / "example" / "gpufs" / "runfs.py").is_file():
        raise InputError(f"gem5_src: {src} has no configs/example/gpufs/runfs.py (not a gem5 source tree?)")
    return str(src)


def params_from_json(data: dict[str, Any], instantiation: dict[str, Any] | None = None) -> RenderParams:
    """Rebuild a rendered run from params.json (and instantiation.json, when given).

    No file checks: the analysis machine need not have the kernel or disk.
    """
    try:
        machine = dict(data["machine"])
        machine["gpu"] = Gem5GpuConfig(**machine["gpu"])
        work = dict(data["workload"])
        for name in ("guest_command", "debug_flags"):
            work[name] = tuple(work[name])
        work["guest_env"] = tuple((k, v) for k, v in work["guest_env"])
        inst = Instantiation(**(instantiation or {}))
        return RenderParams(Machine(**machine), Workload(**work), inst)
    except (KeyError, TypeError) as exc:
        raise InputError(f"params.json: not a layerlab run parameter set ({exc})") from None
