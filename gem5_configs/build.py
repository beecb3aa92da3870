"""Build gem5's GPU binary (build/VEGA_X86/gem5.opt) at a pinned ref, and record its provenance.

``python -m gem5_configs.build --source SRC_OR_GIT_URL --ref REF [--docker]`` (``make gem5``):

1. Source: a local gem5 checkout must already be at REF (we never move a user's checkout);
   a git URL is cloned into ``--workdir`` (default ``.layerlab-cache/gem5/<ref>``) and REF checked out.
2. Build: ``scons build/VEGA_X86/gem5.opt -j<N>`` on the host, or the same argv inside gem5's GPU
   build container (``ghcr.io/gem5/gpu-fs``) through the Docker SDK, the tree bind-mounted and
   the build run as the calling user so the outputs stay the user's.
3. Provenance: ``build/VEGA_X86/gem5.opt.provenance.json`` with the binary's sha256, the ref, the
   resolved commit and the source, so a report can name exactly which gem5 produced its cycles.

``plan_build`` is pure (no side effects) so the argv it would run can be checked cheaply.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation import atomic
from foundation.errors import InputError

TARGET = "build/VEGA_X86/gem5.opt"
DEFAULT_IMAGE = "ghcr.io/gem5/gpu-fs:latest"
CONTAINER_SRC = "/gem5"
PROVENANCE_SCHEMA = "layerlab-gem5-build/1"
_URL = re.compile(r"^(https?://|ssh://|git://|file://|git@[^:]+:)")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,200}$")


@dataclass(frozen=True)
class BuildPlan:
    source: str  # what the user gave (path or URL)
    ref: str
    tree: Path  # the checkout that will be built
    clone: bool  # True: clone ``source`` into ``tree`` first
    scons_argv: tuple[str, ...]
    docker_image: str | None
    jobs: int

    @property
    def binary(self) -> Path:
        return self.tree / TARGET

    @property
    def provenance_path(self) -> Path:
        return self.tree / (TARGET + ".provenance.json")


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def plan_build(
    source: str,
    ref: str,
    docker: bool = False,
    jobs: int | None = None,
    workdir: str | Path | None = None,
    image: str | None = None,
) -> BuildPlan:
    """Validate the request and say what would run; raises InputError on bad input."""
    if not source:
        raise InputError("--source: give a gem5 source tree or git URL (make gem5 GEM5_SRC=...)")
    if not ref:
        raise InputError("--ref: give the gem5 version to build, e.g. v24.0.0.1 (make gem5 GEM5_REF=...)")
    if not _REF.match(ref) or ".." in ref:
        raise InputError(f"--ref: {ref!r} is not a git ref name")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {jobs}")
    if is_url(source):
        tree = Path(workdir) if workdir else Path(".layerlab-cache") / "gem5" / ref.replace("/", "_")
        clone = True
    else:
        tree = Path(source).expanduser()
        if not (tree / "SConstruct").is_file() or not (tree / "configs").is_dir():
            raise InputError(f"--source: {tree} is not a gem5 source tree (no SConstruct / configs/)")
        clone = False
    argv = ("scons", TARGET, f"-j{jobs}")
    return BuildPlan(
        source=source,
        ref=ref,
        tree=tree.resolve(),
        clone=clone,
        scons_argv=argv,
        docker_image=(image or DEFAULT_IMAGE) if docker else None,
        jobs=jobs,
    )


def _git(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *argv], cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode:
        raise InputError(f"git {' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def prepare_tree(plan: BuildPlan) -> str:
    """Clone/check the tree; return the commit being built."""
    if plan.clone:
        if not (plan.tree / ".git").exists():
            plan.tree.parent.mkdir(parents=True, exist_ok=True)
            _git("clone", "--filter=blob:none", "--no-checkout", plan.source, str(plan.tree))
        _git("fetch", "--tags", "origin", cwd=plan.tree)
        _git("checkout", "--detach", plan.ref, cwd=plan.tree)
    wanted = _git("rev-parse", f"{plan.ref}^{{commit}}", cwd=plan.tree)
    head = _git("rev-parse", "HEAD", cwd=plan.tree)
    if head != wanted:
        raise InputError(
            f"--source: {plan.tree} is at {head[:12]}, not {plan.ref} ({wanted[:12]}); "
            f"run `git -C {plan.tree} checkout {plan.ref}` or pass a git URL"
        )
    return head


def _build_on_host(plan: BuildPlan) -> None:
    if shutil.which("scons") is None:
        raise InputError("scons not found on PATH; install gem5's build dependencies or use --docker")
    done = subprocess.run(list(plan.scons_argv), cwd=plan.tree, check=False)
    if done.returncode:
        raise RuntimeError(f"scons failed with exit status {done.returncode}")


def docker_run_kwargs(plan: BuildPlan) -> dict[str, Any]:
    """Arguments for ``docker.from_env().containers.run`` (as data, so they can be checked)."""
    return {
        "image": plan.docker_image,
        "command": list(plan.scons_argv),
        "volumes": {str(plan.tree): {"bind": CONTAINER_SRC, "mode": "rw"}},
        "working_dir": CONTAINER_SRC,
        "user": f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None,
        "environment": {"HOME": "/tmp"},
        "detach": True,
        "labels": {"tool": "layerlab", "job": "gem5-build"},
    }


def _build_in_docker(plan: BuildPlan) -> None:
    import docker  # deferred: only this path needs a Docker daemon

    client = docker.from_env(timeout=None)  # builds are silent for minutes; no API timeout
    container = client.containers.run(**docker_run_kwargs(plan))
    try:
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.write(chunk.decode(errors="replace"))
        status = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    if status:
        raise RuntimeError(f"scons in {plan.docker_image} failed with exit status {status}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(plan: BuildPlan, commit: str) -> dict[str, Any]:
    return {
        "schema": PROVENANCE_SCHEMA,
        "binary": str(plan.binary),
        "sha256": sha256_file(plan.binary),
        "ref": plan.ref,
        "commit": commit,
        "source": plan.source,
        "built_in": f"docker:{plan.docker_image}" if plan.docker_image else "host",
        "scons_argv": list(plan.scons_argv),
    }


def build(plan: BuildPlan) -> dict[str, Any]:
    """Run the whole build; return (and write) the provenance record."""
    commit = prepare_tree(plan)
    if plan.docker_image:
        _build_in_docker(plan)
    else:
        _build_on_host(plan)
    if not plan.binary.is_file():
        raise RuntimeError(f"build finished but {plan.binary} is missing")
    record = provenance(plan, commit)
    atomic.write_text(plan.provenance_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gem5_configs.build",
        description="Build gem5's build/VEGA_X86/gem5.opt at a pinned ref and record its sha256.",
        epilog="example: python -m gem5_configs.build --source https://github.com/gem5/gem5 --ref v24.0.0.1 --docker",
    )
    parser.add_argument("--source", required=True, help="gem5 checkout (already at --ref) or git URL")
    parser.add_argument("--ref", required=True, help="tag/branch/commit to build, e.g. v24.0.0.1")
    parser.add_argument(
        "--docker", action="store_true", help=f"build inside {DEFAULT_IMAGE} via the Docker SDK"
    )
    parser.add_argument("--image", default=None, help=f"container image (default {DEFAULT_IMAGE})")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="scons -j (default: all cores)")
    parser.add_argument(
        "--workdir", default=None, help="where a git URL is cloned (default .layerlab-cache/gem5/REF)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, build nothing")
    args = parser.parse_args(argv)
    try:
        plan = plan_build(args.source, args.ref, args.docker, args.jobs, args.workdir, args.image)
        if args.dry_run:
            print(
                json.dumps(
                    {
                        "tree": str(plan.tree),
                        "clone": plan.clone,
                        "argv": list(plan.scons_argv),
                        "docker_image": plan.docker_image,
                    },
                    indent=2,
                    sort_keys=True,
                )
            )
            return 0
        record = build(plan)
    except InputError as exc:
        print(f"gem5 build: error: {exc}", file=sys.stderr)
        return 2
    print(f"built {record['binary']}\n  sha256 {record['sha256']}\n  {record['ref']} = {record['commit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
