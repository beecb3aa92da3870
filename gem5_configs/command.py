"""The gem5 command line of a rendered run: an argv list, on the host or inside a container.

The argv is meant to be run with the run directory as the working directory: the config and
guest scripts are named relative to it and gem5 writes to ``m5out/`` there, so the same inputs
give the same argv wherever the run directory lives (and the run's content hash stays stable).
User files (kernel, disks, gem5 tree, checkpoints) keep their absolute host paths; inside a
container each is bind-mounted at a fixed mount point and the argv names the mount point. The
command is the *instantiation* of a run on one host: the config script itself holds no host
path (gem5's own ``--path`` puts the tree's ``configs/`` on ``sys.path``; input paths are options).

Every option is checked against the version profile's option tables, so a command never asks
a gem5 release for an option it does not define.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from foundation.units import frequency_text
from gem5_configs.params import CPU_TYPES, OUTDIR, RenderParams
from gem5_configs.profiles import VersionProfile

CONFIG_SCRIPT = "gem5_config.py"
STDLIB_SCRIPT = "gem5_config_stdlib.py"
GUEST_SCRIPT = "guest_run.sh"
DEBUG_FILE = "debug.log"

#: Container mount points (fixed, so container argv are reproducible).
CONTAINER_RUN = "/layerlab/run"
CONTAINER_GEM5 = "/layerlab/gem5"
CONTAINER_INPUTS = "/layerlab/inputs"
CONTAINER_CHECKPOINT = "/layerlab/checkpoint"
CONTAINER_BINARY = "/layerlab/bin/gem5.opt"
#: Script options that name host paths: given on the command line, never baked into the script.
PATH_OPTIONS = ("--kernel", "--disk-image", "--second-disk", "--checkpoint-dir", "--restore-dir")


class OptionTableError(ValueError):
    """A built command used an option its gem5 version does not define (a bug in layerlab)."""


@dataclass(frozen=True)
class Mount:
    host: str
    container: str
    mode: str  # "ro" | "rw"


@dataclass(frozen=True)
class ContainerSpec:
    """What a Docker backend needs: image, argv, mounts, devices; no shell anywhere."""

    image: str
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...]
    working_dir: str = CONTAINER_RUN
    devices: tuple[str, ...] = ("/dev/kvm:/dev/kvm:rwm",)
    # perf_event_open is blocked by Docker's default seccomp profile; only needed with KVM perf on.
    security_opt: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "argv": list(self.argv),
            "mounts": [{"host": m.host, "container": m.container, "mode": m.mode} for m in self.mounts],
            "working_dir": self.working_dir,
            "devices": list(self.devices),
            "security_opt": list(self.security_opt),
        }


@dataclass(frozen=True)
class Gem5Command:
    """The command of one run. ``argv`` runs on the host with ``cwd`` = the run directory."""

    argv: tuple[str, ...]
    style: str
    outdir: str = OUTDIR
    container: ContainerSpec | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "argv": list(self.argv),
            "cwd": ".",
            "style": self.style,
            "outdir": self.outdir,
        }
        data["container"] = self.container.to_json() if self.container else None
        return data


class _PathMap:
    """Host path → the path gem5 sees (itself on the host; a mount point in a container)."""

    def __init__(self, in_container: bool) -> None:
        self.in_container = in_container
        self.mounts: list[Mount] = []

    def file(self, host: str, slot: str) -> str:
        if not self.in_container:
            return host
        name = PurePosixPath(host).name
        target = f"{CONTAINER_INPUTS}/{slot}/{name}"
        self.mounts.append(Mount(host, target, "ro"))
        return target

    def directory(self, host: str, target: str, mode: str) -> str:
        if not self.in_container:
            return host
        self.mounts.append(Mount(host, target, mode))
        return target


def gem5_configs_dir(params: RenderParams) -> str:
    """The gem5 ``configs/`` directory as gem5 sees it (host path, or its container mount)."""
    assert params.gem5_src is not None
    if params.docker_image:
        return f"{CONTAINER_GEM5}/configs"
    return f"{params.gem5_src}/configs"


def container_binary(params: RenderParams) -> str | None:
    """The host gem5 binary a container run mounts: gem5's gpu-fs image holds none.

    ``--gem5 PATH`` when it is a file, else the tree's ``build/VEGA_X86/gem5.opt``; None when
    neither exists on this host (the run cannot start here; render says so).
    """
    given = Path(params.gem5_binary).expanduser()
    if "/" in params.gem5_binary and given.is_file():
        return str(given.resolve())
    built = Path(params.gem5_src or "") / "build" / "VEGA_X86" / "gem5.opt"
    return str(built) if built.is_file() else None


def _size(version: VersionProfile, num_bytes: int) -> str:
    return version.size(num_bytes)


def clock_text(hz: float) -> str:
    return frequency_text(hz)


def script_options(params: RenderParams, paths: _PathMap | None = None) -> list[tuple[str, Any]]:
    """(option, value) pairs for the classic config script, in a stable order; value None = a flag.

    Every knob is given explicitly, gem5's default or not: the command line alone says what was
    simulated, and no stock hard-code can slip in.
    """
    version = params.version
    paths = paths or _PathMap(False)
    dev = version.device(params.device)
    gpu = params.gpu
    opts: list[tuple[str, Any]] = [
        ("--script", GUEST_SCRIPT),
        ("--kernel", paths.file(params.kernel, "kernel")),
        ("--disk-image", paths.file(params.disk, "disk")),
    ]
    if params.second_disk:
        opts.append(("--second-disk", paths.file(params.second_disk, "second_disk")))
    opts += [
        ("--root-partition", params.root_partition),
        ("--gpu-device", dev.gpu_device),
        ("--cpu-type", CPU_TYPES[params.cpu_type]),
        ("--num-cpus", params.num_cpus),
        ("--mem-size", _size(version, params.host_mem_bytes)),
        ("--dgpu-mem-size", _size(version, gpu.gpu_mem_bytes)),
        ("--num-compute-units", gpu.num_cus),
        ("--cu-per-sqc", gpu.cu_per_sqc),
        ("--cu-per-scalar-cache", gpu.cu_per_sqc),
        ("--simds-per-cu", gpu.simds_per_cu),
        ("--wfs-per-simd", gpu.wfs_per_simd),
        ("--wf-size", gpu.wf_size),
        ("--vreg-file-size", gpu.vreg_file_size),
        ("--sreg-file-size", gpu.sreg_file_size),
        ("--lds-size", gpu.lds_bytes),
        ("--issue-period", gpu.issue_period),
        ("--reg-alloc-policy", gpu.reg_alloc_policy),
        ("--sys-clock", clock_text(gpu.sys_clock_hz)),
        ("--gpu-clock", clock_text(gpu.gpu_clock_hz)),
        ("--tcp-size", _size(version, gpu.tcp_bytes)),
        ("--tcp-assoc", gpu.tcp_assoc),
        ("--sqc-size", _size(version, gpu.sqc_bytes)),
        ("--sqc-assoc", gpu.sqc_assoc),
        ("--tcc-size", _size(version, gpu.tcc_bytes)),
        ("--tcc-assoc", gpu.tcc_assoc),
        ("--num-tccs", gpu.num_tccs),
        ("--dgpu-mem-type", gpu.dram_type),
        ("--dgpu-num-dirs", gpu.dram_channels),
    ]
    if version.has_mfma_scale:  # the v25 line only: no v24.x release has the option or the table
        opts.append(("--mfma-scale", gpu.mfma_scale))
    opts.append(("--skip-until-gpu-kernel", params.skip_until))
    opts.append(("--exit-after-gpu-kernel", -1 if params.exit_after is None else params.exit_after))
    opts.append(("--exit-at-gpu-task", -1 if params.exit_at_task is None else params.exit_at_task))
    opts.append(("--debug-at-gpu-task", -1 if params.debug_at_gpu_task is None else params.debug_at_gpu_task))
    if params.tick_limit is not None:
        opts.append(("--abs-max-tick", params.tick_limit))
    # KVM perf: off unless asked (perf_event_paranoid panics, issue #1219); the flag's sense flipped in v24.1.
    # The flag is --no-kvm-perf where perf defaults on (v24.0) and --kvm-perf where it defaults off.
    if params.cpu_type == "kvm" and params.kvm_perf != version.kvm_perf_on_by_default:
        opts.append((version.kvm_perf_flag, None))
    if params.checkpointing and params.cpu_type == "kvm" and version.avx_breaks_checkpoints:
        opts.append(("--disable-avx", None))  # AVX/YMM state is not checkpointed (v24.0 help text)
    if params.checkpoint_dir:
        opts.append(("--checkpoint-dir", paths.directory(params.checkpoint_dir, CONTAINER_CHECKPOINT, "rw")))
    if params.restore_dir:
        opts.append(("--restore-dir", paths.directory(params.restore_dir, CONTAINER_CHECKPOINT, "ro")))
    return opts


def gem5_binary_options(params: RenderParams) -> list[tuple[str, Any]]:
    """Options for the gem5 binary itself (before the script)."""
    opts: list[tuple[str, Any]] = [
        ("--outdir", params.outdir),
        ("--path", gem5_configs_dir(params)),  # prepended to sys.path: the script imports configs/
        ("--redirect-stdout", None),  # m5out/simout.txt (renamed from simout in v23.1)
        ("--redirect-stderr", None),  # m5out/simerr.txt
    ]
    if params.debug_flags:
        opts.append(("--debug-flags", ",".join(params.debug_flags)))
        opts.append(("--debug-file", DEBUG_FILE))
        if params.debug_start is not None:
            opts.append(("--debug-start", params.debug_start))
    return opts


def _argv_items(options: list[tuple[str, Any]]) -> list[str]:
    out = []
    for flag, value in options:
        out.append(flag if value is None else f"{flag}={value}")
    return out


def check_options(
    version: VersionProfile, gem5_opts: list[tuple[str, Any]], script_opts: list[tuple[str, Any]]
) -> None:
    """Raise if any option is missing from the version's option tables."""
    for flag, _ in gem5_opts:
        if flag not in version.gem5_options:
            raise OptionTableError(f"gem5 {version.name} binary has no option {flag}")
    for flag, _ in script_opts:
        if flag not in version.script_options:
            raise OptionTableError(f"gem5 {version.name} GPU-FS configs define no option {flag}")


def build_command(params: RenderParams) -> Gem5Command:
    """The argv list for ``params`` (host binary, or a container spec when ``docker_image`` is set)."""
    version = params.version
    gem5_opts = gem5_binary_options(params)
    host_script_opts = _style_options(params, script_options(params))
    check_options(version, gem5_opts, host_script_opts)
    argv = (params.gem5_binary, *_argv_items(gem5_opts), _script(params), *_argv_items(host_script_opts))
    container = _container(params, gem5_opts) if params.docker_image else None
    return Gem5Command(argv=argv, style=params.script_style, outdir=params.outdir, container=container)


def _script(params: RenderParams) -> str:
    return STDLIB_SCRIPT if params.script_style == "stdlib" else CONFIG_SCRIPT


def _style_options(params: RenderParams, opts: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The stdlib script holds its machine inside and takes only the host paths as options."""
    if params.script_style == "stdlib":
        host_side = (*PATH_OPTIONS, "--kvm-perf")
        return [(flag, value) for flag, value in opts if flag in host_side]
    return opts


def _container(params: RenderParams, gem5_opts: list[tuple[str, Any]]) -> ContainerSpec:
    assert params.docker_image and params.gem5_src
    paths = _PathMap(True)
    paths.directory(params.gem5_src, CONTAINER_GEM5, "ro")
    opts = _style_options(params, script_options(params, paths))
    check_options(params.version, gem5_opts, opts)
    host_binary = container_binary(params)
    if host_binary is not None:
        paths.mounts.append(Mount(host_binary, CONTAINER_BINARY, "ro"))
    argv = (CONTAINER_BINARY, *_argv_items(gem5_opts), _script(params), *_argv_items(opts))
    mounts = [Mount(".", CONTAINER_RUN, "rw"), *paths.mounts]
    security = ("seccomp=unconfined",) if params.kvm_perf and params.cpu_type == "kvm" else ()
    devices = ("/dev/kvm:/dev/kvm:rwm",) if params.cpu_type == "kvm" else ()
    return ContainerSpec(
        image=params.docker_image,
        argv=argv,
        mounts=tuple(mounts),
        devices=devices,
        security_opt=security,
    )


def option_defaults(params: RenderParams, paths_in_container: bool = False) -> dict[str, Any]:
    """Script options as argparse ``dest`` → typed value, for the script's ``set_defaults``.

    The rendered script sets these as its defaults so running it with no options still builds
    the rendered machine; options on the command line (command.json) override as usual.
    """
    version = params.version
    paths = _PathMap(paths_in_container)
    if paths_in_container:
        paths.directory(params.gem5_src or "", CONTAINER_GEM5, "ro")
    out: dict[str, Any] = {}
    for flag, value in script_options(params, paths):
        if flag in PATH_OPTIONS:
            continue  # host paths come from the command line (the instantiation), never the script
        kind = version.script_options[flag]
        dest = flag.lstrip("-").replace("-", "_")
        if kind == "flag":
            # --no-kvm-perf → no_kvm_perf=True; --kvm-perf → kvm_perf=True; --disable-avx → True
            out[dest] = True
        elif kind == "int":
            out[dest] = int(value)
        elif kind == "float":
            out[dest] = float(value)
        else:
            out[dest] = str(value)
    return out
