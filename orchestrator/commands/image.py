"""`layerlab image`: inspect a GPU disk image, or build a derived one from a recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.commands import SUMMARIES

DESCRIPTION = """\
Inspect a gem5 GPU full-system disk image, or build a derived image from a recipe.

  inspect IMAGE   partition table (MBR or GPT), root partition and the --root-partition gem5
                  takes, ext4 free space, the guest's OS / Python / ROCm / torch / transformers,
                  the image generation (2024 or 2025) and any layerlab manifest. No root needed.
  build RECIPE    copy the base (never modified; sparse, reflink where possible), grow the root
                  partition if the payload needs room, write layerlab's guest drivers, the
                  shipped model configs, the recipe's model files and wheels into it, and write
                  <name>.img plus <name>.manifest.json. A rebuild with nothing changed is a no-op.

The manifest is what a run names as its image (layerlab render --image MANIFEST).
Exit status: 0 done, 2 bad input (one line naming the problem)."""

EPILOG = """\
examples:
  layerlab image inspect x86-ubuntu-gpu-ml --json
  layerlab image build images/default.yaml --base x86-ubuntu-gpu-ml --kernel vmlinux-gpu-ml
  layerlab image build images/llama-3.2-1b.yaml --base base.img --kernel vmlinux --out /data/images
  make image RECIPE=images/default.yaml BASE=x86-ubuntu-gpu-ml KERNEL=vmlinux-gpu-ml

access (how the filesystem is touched; --access overrides): root -> loop device + mount;
rootless -> e2fsprogs (debugfs/e2fsck/resize2fs) on the partition's byte range; docker ->
the rootless steps in an unprivileged container of --docker-image (it needs sh, sleep and
e2fsprogs; nothing is pulled) on the engine DOCKER_HOST names. auto: root as root with
e2fsprogs, rootless with e2fsprogs, else docker when an image is named and an engine answers."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "image",
        help=SUMMARIES["image"],
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    inspect = actions.add_parser("inspect", help="partitions, filesystem, guest facts, manifest")
    inspect.add_argument("image", metavar="IMAGE", help="a raw disk image")
    inspect.add_argument(
        "--root-partition", type=int, metavar="N", help="partition number (default: largest ext4)"
    )
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.add_argument(
        "--access", choices=("auto", "rootless", "docker"), default="auto", help="where e2fsprogs run"
    )
    inspect.add_argument(
        "--docker-image", metavar="IMAGE", help="container image with e2fsprogs (the docker route)"
    )
    inspect.set_defaults(func=run_inspect)
    build = actions.add_parser("build", help="build the image a recipe describes")
    build.add_argument(
        "recipe", metavar="RECIPE", nargs="?", help="recipe YAML (default: images/default.yaml)"
    )
    build.add_argument("--base", metavar="IMAGE", help="base disk image (overrides the recipe's)")
    build.add_argument("--kernel", metavar="VMLINUX", help="the kernel extracted from that image")
    build.add_argument("--out", metavar="DIR", help="output folder (default: $LAYERLAB_CACHE_DIR/images)")
    build.add_argument(
        "--access", choices=("auto", "root", "rootless", "docker"), help="how to touch the filesystem"
    )
    build.add_argument(
        "--docker-image",
        metavar="IMAGE",
        help="container image with e2fsprogs for the docker route (overrides the recipe's docker_image)",
    )
    build.add_argument("--json", action="store_true", help="print the manifest as JSON")
    build.set_defaults(func=run_build)


def run_inspect(args: argparse.Namespace) -> int:
    from disk_images.build import inspect_via
    from orchestrator.output import dumps_json

    report = inspect_via(args.image, args.root_partition, args.access, args.docker_image)
    if args.json:
        sys.stdout.write(dumps_json(report))
        return 0
    root, fs, g = report["root"], report["filesystem"], report["guest"]
    print(f"{report['image']}: {report['table'].upper()}, {report['size_bytes'] / 2**30:.2f} GiB")
    for p in report["partitions"]:
        print(
            f"  partition {p['number']}: start {p['start_bytes']} B, {p['size_bytes'] / 2**20:.0f} MiB, {p['fs'] or p['type']}"
        )
    print(
        f"root: {root['root_partition']} at byte {root['start_bytes']} ({root['fs']}), "
        f"{fs['free_bytes'] / 2**30:.2f} GiB free of {fs['size_bytes'] / 2**30:.2f} GiB"
    )
    print(
        f"guest: {g['os_pretty']}, Python {g['python']}, ROCm {g['rocm']}, "
        + ", ".join(f"{k} {v}" for k, v in g["packages"].items())
    )
    print(f"kernel modules: {', '.join(g['kernel_modules']) or 'none'}")
    print(
        f"generation: {report['generation'] or 'unknown'}"
        + (f" ({g['generation_from']})" if g["generation_from"] else "")
    )
    if report["attached_loops"]:
        print(f"in use: attached to {', '.join(report['attached_loops'])}")
    m = report["manifest"]
    print(
        f"manifest: {m['name']} ({m['build_key'][:19]}…)" if m else "manifest: none (not built by layerlab)"
    )
    return 0


def run_build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from disk_images.build import build
    from disk_images.recipe import DEFAULT_RECIPE, load_recipe
    from orchestrator.output import dumps_json

    console = Console(stderr=True)
    recipe = Path(args.recipe) if args.recipe else DEFAULT_RECIPE
    load_recipe(recipe)  # bad input is one line, before any progress output
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # no bars (nor a stray blank line) in logs and pipes
    ) as bars:

        def progress(label: str, total: int | None):
            task = bars.add_task(label, total=total)
            return lambda n: bars.advance(task, n)

        result = build(
            recipe,
            base=args.base,
            kernel=args.kernel,
            out_dir=args.out,
            access=args.access,
            docker_image=args.docker_image,
            progress=progress,
            log=lambda m: console.print(m, highlight=False, soft_wrap=True),
        )
    if args.json:
        sys.stdout.write(dumps_json(result.record))
    else:
        state = "up to date" if result.noop else "built"
        print(f"{state} in {result.elapsed_s:.1f} s: {result.image}\nmanifest: {result.manifest}")
    return 0
