"""`layerlab render`: write a gem5 GPU-FS run directory (config, guest script, params, command)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from foundation.errors import InputError
from orchestrator.commands import SUMMARIES
from orchestrator.knobs import add_gpu_knob_arguments, gpu_overrides, size_arg

DESCRIPTION = """\
Render one gem5 GPU full-system run into a directory.

The simulation (the same files on every host; its run_id names it):
  gem5_config.py         classic config (gem5's configs/example/gpufs pieces + layerlab's loop)
  gem5_config_stdlib.py  instead, with --script-style stdlib: the stdlib ViperBoard (v24.1+)
  guest_run.sh           the guest script gem5 hands over via `m5 readfile`
  params.json            machine, workload (inputs by sha256), gem5 identity, run_id
This host's instantiation of it:
  command.json           the gem5 argv (cwd = the run directory) or a container spec
  run.sh                 runs it: `runs/l3/run.sh`
  instantiation.json     host paths of kernel, disks, gem5 binary and tree

--device names gem5's machine (mi300x = stock mi300.py's 40 CUs, 1 HBM channel, 256 KiB TCC),
not the datasheet part. The run_id hashes machine + workload + gem5 identity + input digests,
never host paths. The guest command after `--` must already be in the disk image."""

EPILOG = """\
examples:
  # one non-blit kernel window (kernels 120..131) on a 40-CU MI300X, per-kernel stats dumps
  layerlab render --device mi300x --gem5-version v24.0 --out runs/l3 --window 120:131 \\
      --per-kernel-dumps --kernel vmlinux-gpu-ml --disk x86-ubuntu-gpu-ml \\
      --gem5 ~/gem5/build/VEGA_X86/gem5.opt -- python3 /opt/layerlab/drivers/layer.py --layer 3

  # census run: skip every kernel (fast), record markers and skips
  layerlab render --device mi200 --gem5-version v24.1 --out runs/census --skip-until 1000000000 \\
      --kernel vmlinux-gpu-ml --disk disk.img --gem5-src ~/gem5 -- python3 /opt/layerlab/drivers/layer.py

  # boot once and checkpoint, then many runs from that checkpoint
  layerlab render ... --out runs/boot --checkpoint-dir ckpt/boot
  layerlab render ... --out runs/l3 --restore-dir ckpt/boot --window 120:131 -- python3 ...

  # slice layer 3 of step 1 out of a census run: same machine, same guest command, the window
  # from the census kernel map, per-kernel dumps on; writes slice.json
  layerlab render --from-census runs/census --step 1 --layer 3 --out runs/l3

  # inside gem5's GPU container (it holds no gem5: the binary built in that image is mounted)
  layerlab render ... --gem5 ~/gem5/build/VEGA_X86/gem5.opt --docker-image ghcr.io/gem5/gpu-fs@sha256:<digest> -- ...

then:  layerlab preflight runs/l3    # check it against the gem5 source tree's own Python
       runs/l3/run.sh                # or the argv of command.json, from runs/l3"""


def _window(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a window: {text!r} (K:M, e.g. 120:131)")
    return int(match.group(1)), int(match.group(2))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help=SUMMARIES["render"],
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--device", help="gem5 machine: mi200 | mi300x (any case; gem5-mi300 too)")
    run.add_argument(
        "--gem5-version", metavar="V", help="gem5 profile: v24.0 | v24.1 | v25 (or a release tag)"
    )
    run.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    run.add_argument(
        "--skip-until", type=int, default=None, metavar="K", help="skip non-blit kernels 0..K-1 (default 0)"
    )
    run.add_argument("--exit-after", type=int, default=None, metavar="M", help="stop after non-blit kernel M")
    run.add_argument(
        "--window", type=_window, default=None, metavar="K:M", help="same as --skip-until K --exit-after M"
    )
    run.add_argument(
        "--exit-at-task", type=int, default=None, metavar="N", help="stop after N GPU tasks (blits too)"
    )
    run.add_argument(
        "--per-kernel-dumps",
        action="store_true",
        default=None,
        help="dump+reset stats at every kernel/blit in the window",
    )
    run.add_argument(
        "--tick-limit", type=int, default=None, metavar="TICKS", help="--abs-max-tick (default: none)"
    )
    run.add_argument(
        "--outdir", default=None, help="gem5 output dir inside the run directory (default m5out)"
    )
    run.add_argument(
        "--script-style",
        choices=("classic", "stdlib"),
        default=None,
        help="classic (default) configs/example/gpufs, or the stdlib ViperBoard (v24.1+)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="render over outputs of another render (they are moved aside to <outdir>.stale-N)",
    )

    census = parser.add_argument_group("slice from a census run (instead of retyping the command)")
    census.add_argument("--from-census", metavar="DIR", help="census run directory (with its kernel map)")
    census.add_argument(
        "--step", type=int, metavar="T", help="step in run order (0-based), as `layerlab window`"
    )
    census.add_argument("--layer", type=int, metavar="L", help="decoder layer (0-based)")
    census.add_argument("--module", metavar="M", help="one module of the layer (q_proj, attention, ...)")

    hw = parser.add_argument_group("GPU knobs (default: layerlab's machine for the device)")
    add_gpu_knob_arguments(hw)

    sysg = parser.add_argument_group("system")
    sysg.add_argument(
        "--image",
        metavar="MANIFEST",
        help="an image manifest from `make image`: disk, kernel, root partition",
    )
    sysg.add_argument("--kernel", metavar="PATH", help="vmlinux extracted from the same disk image")
    sysg.add_argument("--disk", metavar="PATH", help="boot disk image (/dev/sda)")
    sysg.add_argument(
        "--second-disk", metavar="PATH", help="second disk (/dev/sdb; stock mi200.py reuses --disk)"
    )
    sysg.add_argument("--root-partition", default=None, help="root= partition (default /dev/sda1)")
    sysg.add_argument(
        "--host-mem",
        type=size_arg,
        default=None,
        help="host memory (default 8GiB as mi300.py; 3GiB for stdlib)",
    )
    sysg.add_argument("--cpu", choices=("kvm", "atomic"), default=None, help="host CPU model (default kvm)")
    sysg.add_argument(
        "--kvm-perf",
        action="store_true",
        default=None,
        help="use KVM perf counters (needs perf_event_paranoid <= 1)",
    )
    sysg.add_argument(
        "--guest-env", action="append", default=None, metavar="NAME=VALUE", help="export in the guest"
    )
    sysg.add_argument(
        "--checkpoint-dir", metavar="DIR", help="boot, load the driver, checkpoint to DIR, stop"
    )
    sysg.add_argument("--restore-dir", metavar="DIR", help="resume from a boot checkpoint in DIR")

    g5 = parser.add_argument_group("gem5")
    g5.add_argument("--gem5-src", metavar="DIR", help="gem5 source tree (its configs/ is imported)")
    g5.add_argument(
        "--gem5",
        metavar="BIN",
        default=None,
        help="gem5 binary (default gem5.opt on PATH; with a container, mounted in)",
    )
    g5.add_argument(
        "--docker-image",
        metavar="IMG",
        help="run inside this container (pin it: ghcr.io/gem5/gpu-fs@sha256:...)",
    )
    g5.add_argument(
        "--debug-flags",
        default=None,
        metavar="F1,F2",
        help="gem5 debug flags, e.g. GPUKernelInfo,GPUWgLatency",
    )
    g5.add_argument(
        "--debug-at-gpu-task", type=int, default=None, metavar="N", help="trace only from GPU task N on"
    )
    g5.add_argument("--debug-start", type=int, default=None, metavar="TICK", help="trace only from TICK on")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )
    parser.add_argument("guest_command", nargs=argparse.REMAINDER, help="-- then the guest argv")
    parser.set_defaults(func=run_render)


#: CLI flag (dest) -> render parameter, for the options that are not GPU knobs.
_OPTIONS = {
    "second_disk": "second_disk",
    "root_partition": "root_partition",
    "host_mem": "host_mem_bytes",
    "cpu": "cpu_type",
    "kvm_perf": "kvm_perf",
    "exit_at_task": "exit_at_task",
    "per_kernel_dumps": "per_kernel_dumps",
    "debug_at_gpu_task": "debug_at_gpu_task",
    "debug_start": "debug_start",
    "tick_limit": "tick_limit",
    "checkpoint_dir": "checkpoint_dir",
    "restore_dir": "restore_dir",
    "gem5_src": "gem5_src",
    "gem5": "gem5_binary",
    "docker_image": "docker_image",
    "script_style": "script_style",
    "outdir": "outdir",
}


def _guest_command(args: argparse.Namespace) -> tuple[str, ...]:
    command = list(args.guest_command)
    if command and command[0] == "--":
        command = command[1:]
    return tuple(command)


def params_from_args(args: argparse.Namespace):  # -> RenderParams
    from gem5_configs.params import make_params

    options = {
        dest: getattr(args, flag) for flag, dest in _OPTIONS.items() if getattr(args, flag) is not None
    }
    skip_until, exit_after = args.skip_until, args.exit_after
    if args.window is not None:
        if skip_until is not None or exit_after is not None:
            raise InputError("--window: give either --window K:M or --skip-until/--exit-after, not both")
        skip_until, exit_after = args.window
    if skip_until is not None:
        options["skip_until"] = skip_until
    if exit_after is not None:
        options["exit_after"] = exit_after
    command = _guest_command(args)
    if command:
        options["guest_command"] = command
    if args.guest_env is not None:
        env = []
        for item in args.guest_env:
            name, sep, value = item.partition("=")
            if not sep:
                raise InputError(f"--guest-env: expected NAME=VALUE, got {item!r}")
            env.append((name, value))
        options["guest_env"] = tuple(env)
    if args.debug_flags is not None:
        options["debug_flags"] = tuple(f for f in args.debug_flags.split(",") if f)
    overrides = gpu_overrides(args)
    if args.image:
        _from_image(args, options)
    if args.from_census:
        return _from_census(args, options, overrides)
    for flag in ("device", "gem5_version", "kernel", "disk"):
        if getattr(args, flag) is None:
            raise InputError(f"--{flag.replace('_', '-')}: required (or render --from-census DIR)")
    for flag in ("step", "layer", "module"):
        if getattr(args, flag) is not None:
            raise InputError(f"--{flag}: only with --from-census DIR")
    return make_params(
        profile=args.gem5_version,
        device=args.device,
        kernel=args.kernel,
        disk=args.disk,
        gpu_overrides=overrides,
        **options,
    )


def _from_image(args: argparse.Namespace, options: dict) -> None:
    """Disk, kernel and root partition from a `make image` manifest, checked against the profile."""
    from disk_images.manifest import check_profile, read_manifest

    for flag in ("kernel", "disk"):
        if getattr(args, flag) is not None:
            raise InputError(f"--image: the manifest names the {flag}; do not give --{flag} too")
    manifest = read_manifest(args.image)
    if args.gem5_version:
        check_profile(manifest, args.gem5_version)
    args.kernel, args.disk = str(manifest.kernel), str(manifest.disk)
    options.setdefault("root_partition", manifest.root_partition)


def _from_census(args: argparse.Namespace, options: dict, overrides: dict):  # -> (RenderParams, slice)
    from gem5_configs.slicing import params_from_census

    if args.step is None or args.layer is None:
        raise InputError("--from-census: give --step T and --layer L (and optionally --module M)")
    for name in ("skip_until", "exit_after", "guest_command", "guest_env"):
        if name in options:
            flag = {"guest_command": "the guest command after --", "guest_env": "--guest-env"}.get(
                name, "--" + name.replace("_", "-") + " / --window"
            )
            raise InputError(f"--from-census: {flag} comes from the census run; do not give it")
    return params_from_census(
        args.from_census,
        args.step,
        args.layer,
        args.module,
        kernel=args.kernel,
        disk=args.disk,
        gpu_overrides=overrides,
        **options,
    )


def run_render(args: argparse.Namespace) -> int:
    import logging

    from foundation import atomic
    from foundation.rundir import SLICE_FILE, move_aside, stale_outputs
    from gem5_configs.render import render_run
    from orchestrator.output import dumps_json

    logging.basicConfig(format="layerlab render: warning: %(message)s", level=logging.WARNING)
    built = params_from_args(args)
    params, slice_record = built if isinstance(built, tuple) else (built, None)
    rendered = render_run(params)
    out = Path(args.out)
    stale = stale_outputs(out, rendered.run_id, params.outdir)
    moved = None
    if stale:
        if not args.force:
            shown = ", ".join(str(p.relative_to(out)) for p in stale[:4]) + (" ..." if len(stale) > 4 else "")
            raise InputError(
                f"--out: {out / params.outdir} holds outputs of another render ({len(stale)} files: {shown}); "
                "they would be read as this run's. Use another --out, or --force to move them aside"
            )
        moved = move_aside(out / params.outdir)
    written = rendered.write(out)
    if slice_record is not None:
        slice_record = {"run_id": rendered.run_id, **slice_record}
        atomic.write_text(out / SLICE_FILE, dumps_json(slice_record))
        written.append(out / SLICE_FILE)
    else:
        (out / SLICE_FILE).unlink(missing_ok=True)
    if args.format == "json":
        sys.stdout.write(
            dumps_json(
                {
                    "out": str(out),
                    "run_id": rendered.run_id,
                    "hash": rendered.content_hash,
                    "files": [p.name for p in written],
                    "argv": list(rendered.command.argv),
                    "moved_aside": str(moved) if moved else None,
                    "slice": slice_record,
                }
            )
        )
    else:
        if moved:
            print(f"moved outputs of another render aside to {moved}")
        print(f"rendered run {rendered.run_id} into {out}  ({len(written)} files)")
        for path in written:
            print(f"  {path.name}")
        if slice_record is not None:
            print(
                f"window {slice_record['skip_until']}:{slice_record['exit_after']} "
                f"({slice_record['expected_kernels']} kernels) from census {slice_record['census_run_id']}"
            )
        print(f"run:  {out}/run.sh   (or the argv of command.json from {out})")
    return 0
