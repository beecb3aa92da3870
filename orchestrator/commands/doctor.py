"""`layerlab doctor`: does this host have what a real gem5 GPU-FS run needs? Each item with its fix."""

from __future__ import annotations

import argparse
import os
import sys

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab doctor --gem5 ~/gem5/build/VEGA_X86/gem5.opt --gem5-src ~/gem5 --image out/default.manifest.json
  layerlab doctor --spec experiments/llama-3.2-1b-decode-mi300x.yaml   # take gem5 and image from a spec
  layerlab doctor --json

Checks: the gem5 binary (a VEGA_X86 build, not the test double), the source tree and its version
against the profile, /dev/kvm, perf_event_paranoid against KVM perf use, docker and its image (when
a container is used), the image manifest and its kernel pairing, free disk. Exit status 0 only when
a real run can start (1 otherwise). Defaults come from $LAYERLAB_GEM5 and $LAYERLAB_GEM5_SRC."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help=SUMMARIES["doctor"], description="Check what a real gem5 GPU-FS run needs here.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--spec", metavar="SPEC", help="take gem5, image, profile and backend from an experiment spec"
    )
    parser.add_argument("--gem5", metavar="BIN", default=os.environ.get("LAYERLAB_GEM5"), help="gem5 binary")
    parser.add_argument(
        "--gem5-src", metavar="DIR", default=os.environ.get("LAYERLAB_GEM5_SRC"), help="gem5 source tree"
    )
    parser.add_argument("--gem5-version", metavar="V", default="v24.0", help="profile (default v24.0)")
    parser.add_argument("--image", metavar="MANIFEST", help="image manifest from `make image`")
    parser.add_argument("--docker-image", metavar="IMG", help="gem5 container image, when runs use one")
    parser.add_argument("--cpu", choices=("kvm", "atomic"), default="kvm")
    parser.add_argument("--kvm-perf", action="store_true", help="runs will use KVM perf counters")
    parser.add_argument(
        "--workspace", metavar="DIR", default=".", help="where runs and images go (free disk)"
    )
    parser.add_argument("--json", action="store_true", help="one record per check")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.doctor import run_checks

    options = {
        "binary": args.gem5, "source": args.gem5_src, "profile": args.gem5_version, "cpu": args.cpu,
        "kvm_perf": args.kvm_perf, "docker_image": args.docker_image, "manifest": args.image,
        "workspace": args.workspace,
    }  # fmt: skip
    if args.spec:
        from pathlib import Path

        from orchestrator.plan import _path
        from orchestrator.spec import load_spec

        spec, base = load_spec(args.spec)
        options.update(
            binary=_path(spec.gem5.binary, base) if spec.gem5.binary else options["binary"],
            source=_path(spec.gem5.source, base) if spec.gem5.source and spec.gem5.source != "auto" else options["source"],
            profile=spec.gem5.profile, cpu=spec.gem5.cpu, docker_image=spec.gem5.container,
            manifest=_path(spec.image.manifest, base), disk=_path(spec.image.disk, base),
            kernel=_path(spec.image.kernel, base), workspace=str(Path(args.spec).resolve().parent),
        )  # fmt: skip
    checks = run_checks(**options)
    ready = all(c.ok for c in checks if c.required)
    if args.json:
        from orchestrator.output import dumps_json

        sys.stdout.write(dumps_json({"ready": ready, "checks": [c.to_json() for c in checks]}))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "note")
            print(f"{mark}  {c.name:18} {c.detail}")
            if c.fix and not c.ok:
                print(f"      {'':18} fix: {c.fix}")
        print("ready for a real run" if ready else "not ready: fix the FAIL lines (the self-test runs without them: "
              "layerlab run experiments/selftest.yaml)")  # fmt: skip
    return 0 if ready else 1
