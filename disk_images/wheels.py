"""A wheelhouse for the guest's Python and platform, installed into a staging tree on the host.

``pip download --only-binary=:all: --python-version X.Y --platform manylinux…`` fetches wheels
that match the guest (not the host); ``pip install --target`` unpacks them into a staging tree
that ``build`` copies into the guest's site-packages. The guest needs no network and no pip run.
torch for ROCm is the base image's own unless the recipe names a wheel file or index; vLLM for
ROCm has no registry wheel, so the recipe must name a local wheel file (``wheels.files``).

**Limitations**: x86_64 manylinux wheels only; packages already in the base (numpy, torch) are
not consulted, so pin versions the base's torch accepts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from disk_images.guest import GuestFacts
from disk_images.recipe import Wheels
from foundation.errors import InputError

PLATFORMS = (
    "manylinux_2_35_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InputError(f"{what} failed: {' | '.join(tail)}")


def stage(
    spec: Wheels, recipe_dir: Path, facts: GuestFacts, scratch: Path, log: Callable[[str], None]
) -> Path:
    """Download and unpack the recipe's wheels for the guest's Python; the staging tree."""
    if not facts.python:
        raise InputError("wheels: the base image's Python version is unknown (no /usr/bin/python3)")
    target = [f"--python-version={facts.python}", "--implementation=cp", "--only-binary=:all:"]
    target += [f"--platform={p}" for p in PLATFORMS]
    index = [f"--index-url={spec.index_url}"] if spec.index_url else []
    index += [f"--find-links={link}" for link in spec.find_links]
    house = scratch / "wheelhouse"
    files = [str(f if Path(f).is_absolute() else recipe_dir / f) for f in spec.files]
    log(f"wheelhouse for Python {facts.python}: {', '.join([*spec.packages, *spec.files])}")
    if spec.packages:
        _pip(["download", "-q", "--dest", str(house), *target, *index, *spec.packages], "pip download")
    tree = scratch / "site-packages"
    _pip(
        [
            "install",
            "-q",
            "--no-index",
            f"--find-links={house}",
            "--target",
            str(tree),
            "--no-compile",
            *target,
            *(["--no-deps"] if spec.no_deps else []),
            *spec.packages,
            *files,
        ],
        "pip install --target (for the guest)",
    )
    return tree
