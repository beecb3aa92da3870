"""`layerlab render`: write a gem5 GPU-FS run directory (config, guest script, params, command)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from workloads.errors import InputError

DESCRIPTION = """\
Render one gem5 GPU full-system run into a directory:

  gem5_config.py         classic config (gem5's configs/example/gpufs pieces + layerlab's loop)
  gem5_config_stdlib.py  stdlib ViperBoard config with the same loop (gem5 v24.1+ only)
  guest_run.sh           the guest script gem5 hands over via `m5 readfile`
  params.json            every parameter, gem5 defaults replaced by explicit values
  command.json           the gem5 argv (run it with the run directory as cwd)

Same inputs give byte-identical files; the printed content hash names the run. The guest
command after `--` must already be in the disk image (nothing is embedded)."""

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

  # inside gem5's GPU container instead of a host binary
  layerlab render ... --gem5-src ~/gem5 --docker-image ghcr.io/gem5/gpu-fs:latest -- ...

then:  cd runs/l3 && <argv of command.json>"""


def _size_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*(GiB|GB|G|MiB|MB|M|KiB|kB|KB|K)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256KiB, 4MiB, 8GiB)")
    scale = {"G": 30, "M": 20, "K": 10, "k": 10}[match.group(2)[0]] if match.group(2) else 0
    return int(match.group(1)) << scale


def _hz(text: str) -> float:
    match = re.fullmatch(r"\s*([\d.]+)\s*(GHz|MHz|kHz|Hz)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a clock: {text!r} (e.g. 1GHz, 1801MHz)")
    unit = match.group(2) or "Hz"
    return float(match.group(1)) * {"GHz": 1e9, "MHz": 1e6, "kHz": 1e3, "Hz": 1.0}[unit]


def _window(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a window: {text!r} (K:M, e.g. 120:131)")
    return int(match.group(1)), int(match.group(2))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="write a gem5 GPU-FS run directory (config, guest script, params, command)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--device", required=True, help="mi200 | mi300x")
    run.add_argument("--gem5-version", required=True, metavar="V", help="gem5 profile: v24.0 | v24.1 | v25")
    run.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    run.add_argument(
        "--skip-until", type=int, default=0, metavar="K", help="skip non-blit kernels 0..K-1 (default 0)"
    )
    run.add_argument("--exit-after", type=int, default=None, metavar="M", help="stop after non-blit kernel M")
    run.add_argument(
        "--window", type=_window, default=None, metavar="K:M", help="same as --skip-until K --exit-after M"
    )
    run.add_argument(
        "--exit-at-task", type=int, default=None, metavar="N", help="stop after N GPU tasks (blits too)"
    )
    run.add_argument(
        "--per-kernel-dumps", action="store_true", help="dump+reset stats at every kernel/blit in the window"
    )
    run.add_argument(
        "--tick-limit", type=int, default=None, metavar="TICKS", help="--abs-max-tick (default: none)"
    )
    run.add_argument(
        "--outdir", default="m5out", help="gem5 output dir inside the run directory (default m5out)"
    )
    run.add_argument(
        "--script-style",
        choices=("classic", "stdlib"),
        default="classic",
        help="which rendered config command.json runs (stdlib: v24.1+)",
    )

    hw = parser.add_argument_group(
        "GPU knobs (default: layerlab's machine for the device; gem5 defaults in --help of gem5)"
    )
    hw.add_argument("--num-cus", type=int, help="compute units (gem5 default 4; mi300.py 40)")
    hw.add_argument("--sys-clock", type=_hz, help="shader/CU clock, e.g. 1GHz (gem5 default 1GHz)")
    hw.add_argument("--gpu-clock", type=_hz, help="GPU cache/TLB clock (gem5 default 1GHz)")
    hw.add_argument("--tcp-size", type=_size_bytes, help="L1D per CU (gem5 default 16KiB)")
    hw.add_argument("--tcc-size", type=_size_bytes, help="L2 total over all TCCs (gem5 default 256KiB)")
    hw.add_argument("--num-tccs", type=int, help="L2 slices (gem5 default 1)")
    hw.add_argument(
        "--sqc-size", type=_size_bytes, help="instruction/scalar cache per 4 CUs (gem5 default 32KiB)"
    )
    hw.add_argument("--dram-type", help="GPU DRAM class (gem5 default HBM_1000_4H_1x128)")
    hw.add_argument(
        "--dram-channels", type=int, help="GPU memory channels = --dgpu-num-dirs (gem5 default 1)"
    )
    hw.add_argument(
        "--reg-alloc-policy",
        choices=("dynamic", "simple"),
        help="dynamic (layerlab default) or simple (gem5 default: ONE workgroup per CU)",
    )
    hw.add_argument("--mfma-scale", type=float, help="scale MFMA matrix-core cycles (v24.1+; default 1.0)")
    hw.add_argument("--gpu-mem", type=_size_bytes, help="GPU memory (must be 16GiB in gem5 v24.x)")

    sysg = parser.add_argument_group("system")
    sysg.add_argument(
        "--kernel", required=True, metavar="PATH", help="vmlinux extracted from the same disk image"
    )
    sysg.add_argument("--disk", required=True, metavar="PATH", help="boot disk image (/dev/sda)")
    sysg.add_argument("--second-disk", metavar="PATH", help="second disk (/dev/sdb)")
    sysg.add_argument("--root-partition", default="/dev/sda1", help="root= partition (default /dev/sda1)")
    sysg.add_argument(
        "--host-mem", type=_size_bytes, default=8 << 30, help="host memory (default 8GiB, as mi300.py)"
    )
    sysg.add_argument("--cpu", choices=("kvm", "atomic"), default="kvm", help="host CPU model (default kvm)")
    sysg.add_argument(
        "--kvm-perf", action="store_true", help="use KVM perf counters (needs perf_event_paranoid <= 1)"
    )
    sysg.add_argument(
        "--guest-env", action="append", default=[], metavar="NAME=VALUE", help="export in the guest"
    )
    sysg.add_argument(
        "--checkpoint-dir", metavar="DIR", help="boot, load the driver, checkpoint to DIR, stop"
    )
    sysg.add_argument("--restore-dir", metavar="DIR", help="resume from a boot checkpoint in DIR")

    g5 = parser.add_argument_group("gem5")
    g5.add_argument("--gem5-src", metavar="DIR", help="gem5 source tree (its configs/ is imported)")
    where = g5.add_mutually_exclusive_group()
    where.add_argument(
        "--gem5", metavar="BIN", default="gem5.opt", help="host gem5 binary (default gem5.opt on PATH)"
    )
    where.add_argument(
        "--docker-image", metavar="IMG", help="run inside this container (e.g. ghcr.io/gem5/gpu-fs:latest)"
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
    parser.add_argument("guest_command", nargs=argparse.REMAINDER, help="-- then the guest argv")
    parser.set_defaults(func=run_render)


_KNOBS = {
    "num_cus": "num_cus",
    "sys_clock": "sys_clock_hz",
    "gpu_clock": "gpu_clock_hz",
    "tcp_size": "tcp_bytes",
    "tcc_size": "tcc_bytes",
    "num_tccs": "num_tccs",
    "sqc_size": "sqc_bytes",
    "dram_type": "dram_type",
    "dram_channels": "dram_channels",
    "reg_alloc_policy": "reg_alloc_policy",
    "mfma_scale": "mfma_scale",
    "gpu_mem": "gpu_mem_bytes",
}


def params_from_args(args: argparse.Namespace):  # -> RenderParams
    from gem5_configs.params import make_params

    skip_until, exit_after = args.skip_until, args.exit_after
    if args.window is not None:
        if args.skip_until or args.exit_after is not None:
            raise InputError("--window: give either --window K:M or --skip-until/--exit-after, not both")
        skip_until, exit_after = args.window
    command = list(args.guest_command)
    if command and command[0] == "--":
        command = command[1:]
    env = []
    for item in args.guest_env:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--guest-env: expected NAME=VALUE, got {item!r}")
        env.append((name, value))
    overrides = {field: getattr(args, opt) for opt, field in _KNOBS.items() if getattr(args, opt) is not None}
    return make_params(
        profile=args.gem5_version,
        device=args.device,
        kernel=args.kernel,
        disk=args.disk,
        gpu_overrides=overrides,
        guest_command=tuple(command),
        guest_env=tuple(env),
        second_disk=args.second_disk,
        root_partition=args.root_partition,
        host_mem_bytes=args.host_mem,
        cpu_type=args.cpu,
        kvm_perf=args.kvm_perf,
        skip_until=skip_until,
        exit_after=exit_after,
        exit_at_task=args.exit_at_task,
        per_kernel_dumps=args.per_kernel_dumps,
        debug_flags=tuple(f for f in (args.debug_flags or "").split(",") if f),
        debug_at_gpu_task=args.debug_at_gpu_task,
        debug_start=args.debug_start,
        tick_limit=args.tick_limit,
        checkpoint_dir=args.checkpoint_dir,
        restore_dir=args.restore_dir,
        gem5_src=args.gem5_src,
        gem5_binary=args.gem5,
        docker_image=args.docker_image,
        script_style=args.script_style,
        outdir=args.outdir,
    )


def run_render(args: argparse.Namespace) -> int:
    import logging

    from gem5_configs.render import render_to_dir
    from orchestrator.output import dumps_json

    logging.basicConfig(format="layerlab render: warning: %(message)s", level=logging.WARNING)
    params = params_from_args(args)
    rendered, written = render_to_dir(params, args.out)
    if args.format == "json":
        sys.stdout.write(
            dumps_json(
                {
                    "out": str(Path(args.out)),
                    "hash": rendered.content_hash,
                    "files": [p.name for p in written],
                    "argv": list(rendered.command.argv),
                }
            )
        )
    else:
        print(f"rendered {len(written)} files to {args.out}  (hash {rendered.content_hash[:16]})")
        for path in written:
            print(f"  {path.name}")
        print(
            f"run:  cd {args.out} && "
            + " ".join(rendered.command.argv[:6])
            + " ...  (full argv in command.json)"
        )
    return 0
