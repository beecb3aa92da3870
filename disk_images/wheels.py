"""A wheelhouse for the guest's Python and platform, installed into a staging tree on the host.

``pip download --only-binary=:all: --python-version X.Y --platform manylinux…`` fetches wheels
that match the guest (not the host); ``pip install --target`` unpacks them into a staging tree
that ``build`` copies into the guest's site-packages. The guest needs no network and no pip run.
torch for ROCm is the base image's own unless the recipe names a wheel file or index; vLLM for
ROCm has no registry wheel, so the recipe must name a local wheel file (``wheels.files``).

Offline, the recipe names local sources: ``files`` (wheel files), ``index_url`` (a PEP 503
"simple" folder, given as a path or a ``file:`` URL) and ``find_links`` (folders of wheels, also
searched for the dependencies of ``files``); relative paths are taken from the recipe's folder.
Only ``packages`` from the default index (PyPI) need the network.

**Limitations**: x86_64 manylinux wheels only; packages already in the base (numpy, torch) are
not consulted, so pin versions the base's torch accepts. Console scripts (``bin/``) are left
out: pip writes this host's interpreter into them; run ``python3 -m <module>`` in the guest.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.parse
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
    quiet = ["--disable-pip-version-check", "--no-input"]  # no PyPI self-check, never a prompt
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *quiet, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise InputError(f"{what} failed: {' | '.join(tail)}")


def _local(source: str, recipe_dir: Path) -> str:
    """A URL as given; a path (no scheme) resolved against the recipe's folder."""
    if urllib.parse.urlsplit(source).scheme in ("http", "https", "file"):
        return source
    path = Path(source).expanduser()
    path = path if path.is_absolute() else recipe_dir / path
    if not path.exists():
        raise InputError(f"wheels: {path}: no such folder (named by the recipe)")
    return str(path.resolve())


def stage(
    spec: Wheels, recipe_dir: Path, facts: GuestFacts, scratch: Path, log: Callable[[str], None]
) -> Path:
    """Download and unpack the recipe's wheels for the guest's Python; the staging tree."""
    if not facts.python:
        raise InputError("wheels: the base image's Python version is unknown (no /usr/bin/python3)")
    target = [f"--python-version={facts.python}", "--implementation=cp", "--only-binary=:all:"]
    target += [f"--platform={p}" for p in PLATFORMS]
    index_url = _local(spec.index_url, recipe_dir) if spec.index_url else None
    if index_url and not urllib.parse.urlsplit(index_url).scheme:
        index_url = Path(index_url).as_uri()
    links = [f"--find-links={_local(link, recipe_dir)}" for link in spec.find_links]
    index = [f"--index-url={index_url}"] if index_url else []
    index += links
    house = scratch / "wheelhouse"
    house.mkdir(parents=True, exist_ok=True)
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
            *links,
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
    shutil.rmtree(tree / "bin", ignore_errors=True)  # console scripts name this host's python
    return tree
