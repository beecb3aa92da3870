"""What a guest image holds (OS, Python, ROCm, torch/transformers, kernel modules) and its generation.

Read rootless with ``debugfs`` on the root partition's byte range; nothing is mounted. The two
gem5-resources GPU image generations (reference §5.2):

* ``2024``: Ubuntu 22.04, ROCm 6.1, Python 3.10, PyTorch 2.3 (rocm6.0 wheel), kernel 5.15-generic;
* ``2025``: Ubuntu 24.04, ROCm 6.4, Python 3.12, kernel 6.8.0-60-generic, ``load_amdgpu.sh``.

The generation comes from ``/etc/os-release`` first, then the ROCm version, then the kernel
module directories; a recipe can state it when none of those decide. A kernel pairs with an
image only when ``/lib/modules/<its version>`` exists in the image (the amdgpu DKMS module is
built for exactly that kernel).
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from disk_images import e2fs
from foundation.errors import InputError

#: os-release VERSION_ID / ROCm major.minor / kernel major.minor → generation.
GENERATION_BY_OS = {"22.04": 2024, "24.04": 2025}
GENERATION_BY_ROCM = {"6.1": 2024, "6.4": 2025}
GENERATION_BY_KERNEL = {"5.15": 2024, "6.8": 2025}
GENERATIONS = (2024, 2025)
#: The packages whose versions the manifest records.
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "vllm", "numpy")


@dataclass(frozen=True)
class GuestFacts:
    """Facts read from the guest root filesystem (None where the image does not say)."""

    os_id: str | None
    os_version: str | None
    os_pretty: str | None
    python: str | None  # "3.10"
    site_packages: str | None  # where layerlab installs wheels, e.g. /usr/local/lib/python3.10/dist-packages
    rocm: str | None  # "6.1.0"
    kernel_modules: tuple[str, ...]
    packages: dict[str, str] = field(default_factory=dict)
    has_run_gem5_app: bool = False
    generation: int | None = None
    generation_from: str | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["kernel_modules"] = list(self.kernel_modules)
        return out


def _os_release(text: str | None) -> dict[str, str]:
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def _python_version(image: Path, start: int) -> str | None:
    try:
        stat = e2fs.debugfs(image, start, "stat /usr/bin/python3")
    except InputError:
        stat = ""
    match = re.search(r'Fast link dest: "(?:.*/)?python(\d+\.\d+)"', stat)
    if match:
        return match.group(1)
    names = [n for n, _m in e2fs.list_dir(image, start, "/usr/bin") or [] if re.fullmatch(r"python3\.\d+", n)]
    if not names:
        return None
    return max((n.removeprefix("python") for n in names), key=lambda v: tuple(int(x) for x in v.split(".")))


def _rocm_version(image: Path, start: int) -> str | None:
    text = e2fs.read_file(image, start, "/opt/rocm/.info/version")
    if text and (match := re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", text)):
        return match.group(1)
    versions = [
        n.removeprefix("rocm-")
        for n, _m in e2fs.list_dir(image, start, "/opt") or []
        if re.fullmatch(r"rocm-\d+\.\d+(\.\d+)?", n)
    ]
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")), default=None)


def site_dirs(python: str) -> tuple[str, ...]:
    """Where a Debian/Ubuntu guest keeps packages for ``python`` (the first is where pip as root installs)."""
    return (
        f"/usr/local/lib/python{python}/dist-packages",
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/python{python}/site-packages",
        f"/usr/lib/python{python}/site-packages",
    )


def _packages(image: Path, start: int, python: str) -> tuple[dict[str, str], str | None]:
    found: dict[str, str] = {}
    target = None
    for folder in site_dirs(python):
        entries = e2fs.list_dir(image, start, folder)
        if entries is None:
            continue
        target = target or folder
        for name, _mode in entries:
            match = re.fullmatch(r"([A-Za-z0-9_.]+)-([^-]+)\.dist-info", name)
            if match:
                key = match.group(1).lower().replace("_", "-")
                if key in PACKAGES and key not in found:
                    found[key] = match.group(2)
    return found, target or site_dirs(python)[0]


def detect_generation(
    os_version: str | None, rocm: str | None, modules: tuple[str, ...]
) -> tuple[int | None, str | None]:
    """``(generation, evidence)`` from the OS version, else ROCm, else the kernel modules."""
    if os_version in GENERATION_BY_OS:
        return GENERATION_BY_OS[os_version], f"/etc/os-release VERSION_ID={os_version}"
    if rocm and (gen := GENERATION_BY_ROCM.get(".".join(rocm.split(".")[:2]))):
        return gen, f"ROCm {rocm}"
    gens = {GENERATION_BY_KERNEL.get(".".join(m.split(".")[:2])) for m in modules} - {None}
    if len(gens) == 1:
        return gens.pop(), f"/lib/modules/{', '.join(modules)}"
    return None, None


def read_guest(image: str | os.PathLike[str], start_bytes: int) -> GuestFacts:
    """Everything ``GuestFacts`` holds, read with debugfs (no root, nothing mounted)."""
    path = Path(image)
    osr = _os_release(e2fs.read_file(path, start_bytes, "/etc/os-release"))
    python = _python_version(path, start_bytes)
    rocm = _rocm_version(path, start_bytes)
    modules = tuple(
        sorted(n for n, mode in e2fs.list_dir(path, start_bytes, "/lib/modules") or [] if mode & 0o040000)
    )
    packages, site = _packages(path, start_bytes, python) if python else ({}, None)
    gen, why = detect_generation(osr.get("VERSION_ID"), rocm, modules)
    runner = e2fs.list_dir(path, start_bytes, "/home/gem5") or []
    return GuestFacts(
        os_id=osr.get("ID"),
        os_version=osr.get("VERSION_ID"),
        os_pretty=osr.get("PRETTY_NAME"),
        python=python,
        site_packages=site,
        rocm=rocm,
        kernel_modules=modules,
        packages=packages,
        has_run_gem5_app=any(n == "run_gem5_app.sh" for n, _m in runner),
        generation=gen,
        generation_from=why,
    )


def kernel_version(kernel: str | os.PathLike[str]) -> str:
    """The release string of a vmlinux (``6.8.0-60-generic``), from its "Linux version X" banner."""
    path = Path(kernel)
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            if head != b"\x7fELF":
                raise InputError(
                    f"{path}: not an ELF vmlinux (gem5 boots the uncompressed kernel; extract it from "
                    "/boot/vmlinuz-<version> with the kernel's scripts/extract-vmlinux)"
                )
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                match = re.search(rb"Linux version (\d+\.\d+\.\d+[^\s\x00]*)", data)
                release = match.group(1).decode("ascii", "replace") if match else None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the kernel ({exc.strerror})") from None
    if release is None:
        raise InputError(f"{path}: no 'Linux version' banner found; is this a Linux vmlinux?")
    return release


def check_pair(kernel_release: str, facts: GuestFacts, kernel: str, image: str) -> None:
    """Refuse a kernel whose modules the image lacks (a kernel from the other generation, typically)."""
    if kernel_release in facts.kernel_modules:
        return
    kernel_gen = GENERATION_BY_KERNEL.get(".".join(kernel_release.split(".")[:2]))
    gens = ""
    if kernel_gen and facts.generation and kernel_gen != facts.generation:
        gens = f" (the kernel is from the {kernel_gen} generation, the image from {facts.generation})"
    have = ", ".join(facts.kernel_modules) or "none"
    raise InputError(
        f"kernel {kernel} is Linux {kernel_release} but the image {image} has no /lib/modules/{kernel_release} "
        f"(it has: {have}){gens}; gem5 must boot the vmlinux extracted from that image, or amdgpu will not load"
    )
