"""gem5 version profiles: what changes between gem5 releases, as data.

Each ``profiles/<name>.yaml`` holds one release's facts (KVM perf flag, size units, MFMA timing,
exit API era, disk-image generation, per-device VBIOS / gfx target / HSA override) and the
release's option tables: every gem5 binary option and every config-script option that gem5's
own option functions define. The command builder refuses an option a table lacks, so a
rendered command never asks a gem5 release for something it does not have.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from foundation.errors import InputError, unknown_name

#: The devices layerlab renders (gem5 ``--gpu-device`` MI200 / MI300X).
DEVICES = ("mi200", "mi300x")
OPTION_TYPES = ("str", "int", "float", "flag", "count", "append", "nargs")


@dataclass(frozen=True)
class DeviceProfile:
    """How one GPU model is named and brought up under one gem5 release."""

    gpu_device: str  # --gpu-device value
    gfx_target: str  # HCC_AMDGPU_TARGET in the guest
    rom: str  # VBIOS file under /root/roms in the image
    hsa_override_gfx_version: str | None  # HSA_OVERRIDE_GFX_VERSION, only where gem5 needs it
    stdlib_class: str | None = None  # gem5.components.devices.gpus.amdgpu class, if the stdlib has one


@dataclass(frozen=True)
class VersionProfile:
    """One gem5 release, as far as rendering a GPU-FS run is concerned."""

    name: str
    gem5_ref: str
    summary: str
    kvm_perf_flag: str  # "--no-kvm-perf" (v24.0) or "--kvm-perf" (v24.1+)
    kvm_perf_on_by_default: bool
    size_unit: str  # "GB" (v24.0) or "GiB"
    has_gpu_rom_option: bool
    exit_api: str  # "classic" | "hypercall"
    stdlib_gpu_board: bool
    gpu_memory_must_be_16gib: bool
    avx_breaks_checkpoints: bool
    docker_image: str
    devices: dict[str, DeviceProfile]
    gem5_options: dict[str, str]
    script_options: dict[str, str]

    def device(self, name: str) -> DeviceProfile:
        if name not in self.devices:
            raise unknown_name("device", name, self.devices)
        return self.devices[name]

    def size(self, num_bytes: int) -> str:
        """A memory size spelled the way this release's own configs spell it ("16GB" / "16GiB")."""
        for unit, scale in ((self.size_unit, 1 << 30), (self.size_unit.replace("G", "M"), 1 << 20)):
            if num_bytes % scale == 0:
                return f"{num_bytes // scale}{unit}"
        kib_unit = "kB" if self.size_unit == "GB" else "KiB"
        if num_bytes % 1024:
            raise InputError(f"memory size {num_bytes} bytes is not a whole number of KiB")
        return f"{num_bytes // 1024}{kib_unit}"

    @property
    def disk_image_generation(self) -> int:
        """The disk-image generation (2024 | 2025) this release boots (foundation.gem5_names)."""
        from foundation.gem5_names import version_facts

        return version_facts(self.name).disk_image_generation

    @property
    def has_mfma_scale(self) -> bool:
        """``--mfma-scale`` and the MFMA timing table behind it (the v25 line only)."""
        from foundation.gem5_names import version_facts

        return version_facts(self.name).has_mfma_scale

    def has_option(self, flag: str) -> bool:
        return flag in self.script_options


def _load(name: str, data: dict[str, Any]) -> VersionProfile:
    try:
        devices = {k: DeviceProfile(**v) for k, v in data["devices"].items()}
        for table in ("gem5_options", "script_options"):
            bad = {t for t in data[table].values() if t not in OPTION_TYPES}
            if bad:
                raise InputError(f"profiles/{name}.yaml: {table} has unknown type(s) {sorted(bad)}")
        return VersionProfile(
            name=data["name"],
            gem5_ref=data["gem5_ref"],
            summary=data["summary"],
            kvm_perf_flag=data["kvm_perf"]["flag"],
            kvm_perf_on_by_default=data["kvm_perf"]["perf_on_by_default"],
            size_unit=data["size_unit"],
            has_gpu_rom_option=data["has_gpu_rom_option"],
            exit_api=data["exit_api"],
            stdlib_gpu_board=data["stdlib_gpu_board"],
            gpu_memory_must_be_16gib=data["gpu_memory_must_be_16gib"],
            avx_breaks_checkpoints=data["avx_breaks_checkpoints"],
            docker_image=data["docker_image"],
            devices=devices,
            gem5_options=dict(data["gem5_options"]),
            script_options=dict(data["script_options"]),
        )
    except (KeyError, TypeError) as exc:
        raise InputError(f"profiles/{name}.yaml: malformed profile ({exc})") from None


@functools.cache
def all_profiles() -> dict[str, VersionProfile]:
    """Every shipped profile by name, read once from package data."""
    out: dict[str, VersionProfile] = {}
    for entry in sorted(resources.files("gem5_configs").joinpath("profiles").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            stem = entry.name.removesuffix(".yaml")
            # The C loader parses the option tables ~10x faster (every render reads them).
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            profile = _load(stem, yaml.load(entry.read_text(encoding="utf-8"), Loader=loader))
            if profile.name != stem:
                raise InputError(f"profiles/{entry.name}: name {profile.name!r} does not match the file name")
            out[profile.name] = profile
    return out


def get_profile(name: str) -> VersionProfile:
    """A gem5 version by profile name or any release spelling (``foundation.gem5_names``)."""
    from foundation.gem5_names import gem5_profile

    profiles = all_profiles()
    key = gem5_profile(name)
    if key not in profiles:
        raise unknown_name("gem5 version", name, profiles)
    return profiles[key]
