"""Small real disk images with a fake guest tree, for tests and benchmarks (no root needed).

``make_image`` writes a raw image with a real partition table (``sfdisk``/``sgdisk``) and a
real ext4 made by ``mke2fs -E offset=N -d TREE``, holding the files the image stage reads: an
``/etc/os-release``, ``/usr/bin/python3 -> python3.X``, a site-packages with a torch
``.dist-info``, ``/opt/rocm-X/.info/version``, ``/lib/modules/<kernel>`` and the image's own
``/home/gem5/run_gem5_app.sh``. ``make_kernel`` writes a tiny ELF with a "Linux version" banner.
Layouts follow the gem5-resources images: ``mbr`` (root at 1 MiB) and ``gpt`` (bios_grub at
1 MiB as partition 2, root at 2 MiB as partition 1).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from disk_images import e2fs

MIB = 1 << 20
#: generation → (os VERSION_ID, python, ROCm, kernel release, torch)
FLAVOURS = {
    2024: ("22.04", "3.10", "6.1.0", "5.15.0-124-generic", "2.3.0+rocm6.0"),
    2025: ("24.04", "3.12", "6.4.0", "6.8.0-60-generic", "2.4.1+rocm6.0"),
}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def guest_tree(root: Path, generation: int = 2024) -> Path:
    """A fake guest root filesystem tree for ``generation`` under ``root``."""
    os_version, python, rocm, kernel, torch = FLAVOURS[generation]
    _write(
        root / "etc/os-release",
        f'NAME="Ubuntu"\nVERSION_ID="{os_version}"\nID=ubuntu\nPRETTY_NAME="Ubuntu {os_version} LTS"\n',
    )
    _write(root / "etc/hosts", "127.0.0.1 localhost\n")
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "lib").symlink_to("usr/lib")  # merged /usr, as on Ubuntu
    _write(root / f"usr/bin/python{python}", "#!/bin/false\n", 0o755)
    (root / "usr/bin/python3").symlink_to(f"python{python}")
    _write(root / f"usr/lib/python{python}/os.py", "# stdlib stand-in\n")
    dist = root / f"usr/local/lib/python{python}/dist-packages"
    _write(dist / f"torch-{torch}.dist-info/METADATA", f"Name: torch\nVersion: {torch}\n")
    _write(dist / "torch/__init__.py", f"__version__ = '{torch}'\n")
    _write(root / f"opt/rocm-{rocm}/.info/version", f"{rocm}-82\n")
    (root / "opt/rocm").symlink_to(f"/opt/rocm-{rocm}")  # absolute, as the ROCm packages make it
    _write(root / f"usr/lib/modules/{kernel}/updates/dkms/amdgpu.ko", "not a real module\n")
    _write(
        root / "home/gem5/run_gem5_app.sh",
        "/sbin/m5 readfile > script.sh\nif [ -s script.sh ]; then\n    chmod +x script.sh\n"
        "    ./script.sh\n    /sbin/m5 exit\nfi\n",
        0o755,
    )
    _write(root / "root/.bashrc", "/home/gem5/run_gem5_app.sh\n")
    return root


def make_image(
    path: str | os.PathLike[str],
    *,
    layout: str = "mbr",
    size_mib: int = 64,
    generation: int = 2024,
    fs: str = "ext4",
    tree: Path | None = None,
) -> Path:
    """Write a raw image at ``path``; returns it. ``fs="xfs"``-like values make a non-ext4 root."""
    image = Path(path)
    image.unlink(missing_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size_mib * MIB)
    if layout == "mbr":
        start = 1 * MIB
        subprocess.run(
            [e2fs.tool("sfdisk"), "-q", str(image)],
            input="label: dos\nstart=2048, type=83\n",
            text=True,
            check=True,
        )
    elif layout == "gpt":
        start = 2 * MIB
        subprocess.run(
            [
                e2fs.tool("sgdisk"),
                "-o",
                "-n",
                "2:2048:4095",
                "-t",
                "2:ef02",
                "-n",
                "1:4096:0",
                "-t",
                "1:8300",
                str(image),
            ],
            check=True,
            capture_output=True,
        )
    else:
        raise ValueError(f"layout {layout!r}: mbr or gpt")
    from disk_images.partitions import read_table

    part = read_table(image).get(1)
    if fs != "ext4":
        with image.open("r+b") as handle:  # a signature that is not ext: leave the partition "unknown"
            handle.seek(part.start_bytes)
            handle.write(b"XFSB" + b"\0" * 4092)
        return image
    with tempfile.TemporaryDirectory(prefix="layerlab-guest-") as scratch:
        root = tree or guest_tree(Path(scratch) / "root", generation)
        subprocess.run(
            [
                e2fs.tool("mke2fs"),
                "-q",
                "-F",
                "-t",
                "ext4",
                "-b",
                "4096",
                "-E",
                f"offset={start},root_owner=0:0",
                "-d",
                str(root),
                str(image),
                f"{part.size_bytes // 1024}k",
            ],
            check=True,
            capture_output=True,
        )
    return image


def make_kernel(path: str | os.PathLike[str], release: str = FLAVOURS[2024][3], size_kib: int = 64) -> Path:
    """A stand-in vmlinux: an ELF magic, padding and the ``Linux version <release>`` banner."""
    kernel = Path(path)
    banner = f"Linux version {release} (buildd@lcy02-amd64) (gcc 11.4.0) #134-Ubuntu SMP\n".encode()
    body = b"\x7fELF\x02\x01\x01" + b"\0" * (size_kib * 1024 - 7 - len(banner)) + banner
    kernel.write_bytes(body)
    return kernel
