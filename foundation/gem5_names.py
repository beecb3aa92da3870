"""One vocabulary for gem5 devices and gem5 versions, shared by estimate, render and specs.

Two kinds of machine carry AMD names here, and every table and file says which one it means:

- a **gem5 device** (``mi200``, ``mi300x``) is the machine gem5's GPU model builds for
  ``--gpu-device MI200 | MI300X`` (stock ``mi300.py``: 40 CUs, one 16 GB/s HBM channel, 256 KiB TCC);
  in ``layerlab estimate`` it is the hardware ``gem5-mi200`` / ``gem5-mi300x``;
- a **datasheet part** (``mi300x``, ``mi210``... in ``layerlab estimate --hardware``) is the real chip.

``render --device mi300x`` therefore means gem5's 40-CU machine, ``estimate --hardware mi300x``
the 304-CU silicon. Any case and the spellings below are accepted wherever a gem5 device is asked for.

gem5 versions are named by *profile* (``v24.0``, ``v24.1``, ``v25``): one per release line whose
GPU-FS behaviour differs. Release tags (``v24.0.0.1``, ``25.0.0.0``) and the version string of a
source tree (``src/base/version.cc``: ``24.1.0.3``, ``DEVELOP-FOR-25.0``) map onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from foundation.errors import unknown_name

#: gem5 devices layerlab renders, by canonical name.
GEM5_DEVICES = ("mi200", "mi300x")

_DEVICE_SPELLINGS = {
    "mi200": "mi200",
    "mi210": "mi200",
    "mi250": "mi200",
    "mi250x": "mi200",
    "gfx90a": "mi200",
    "mi300": "mi300x",
    "mi300x": "mi300x",
    "gfx942": "mi300x",
}


def gem5_device(name: str) -> str:
    """Canonical gem5 device (``mi200`` | ``mi300x``) of any accepted spelling, any case.

    ``gem5-mi300``, ``GEM5-MI300X``, ``mi300`` and ``gfx942`` all name gem5's MI300X machine.
    """
    key = name.strip().lower().removeprefix("gem5-").removeprefix("gem5_")
    if key not in _DEVICE_SPELLINGS:
        raise unknown_name("gem5 device", name, GEM5_DEVICES)
    return _DEVICE_SPELLINGS[key]


def gem5_hardware_name(device: str) -> str:
    """The ``layerlab estimate --hardware`` name of a gem5 device: ``gem5-mi300x``."""
    return f"gem5-{gem5_device(device)}"


@dataclass(frozen=True)
class Gem5VersionFacts:
    """What a gem5 release line does to the simulated machine (not to the command line).

    ``mfma_timing`` is ``issue_period`` where an MFMA holds its SIMD for ``--issue-period``
    cycles whatever its shape, and ``cycle_table`` where the per-opcode matrix-core table of
    gem5 PR #1700 applies (scaled by ``--mfma-scale``). No v24.1.0.x release carries that
    table or the option: they were merged to develop after v24.1 branched, and first ship in
    the v25 line (checked on the v24.1.0.3 and develop-2025-05-03 trees).
    """

    profile: str
    mfma_timing: str
    has_mfma_scale: bool
    gpu_memory_must_be_16gib: bool
    #: ``src/base/version.cc`` strings of trees that belong to this profile (regular expressions).
    tree_versions: tuple[str, ...]
    #: Nearest upstream tree a check uses for this profile, and whether it is a stand-in.
    reference_tree: str
    reference_is_stand_in: bool
    #: The gem5-resources GPU disk-image generation this release boots (its guest script follows it):
    #: 2024 (Ubuntu 22.04, ROCm 6.1) for the v24 line, 2025 (Ubuntu 24.04, ROCm 6.4) for v25.
    disk_image_generation: int


GEM5_VERSIONS: dict[str, Gem5VersionFacts] = {
    f.profile: f
    for f in (
        Gem5VersionFacts("v24.0", "issue_period", False, True, (r"24\.0(\.\d+)*",), "v24.0.0.1", False, 2024),
        Gem5VersionFacts("v24.1", "issue_period", False, True, (r"24\.1(\.\d+)*",), "v24.1.0.3", False, 2024),
        Gem5VersionFacts(
            "v25",
            "cycle_table",
            True,
            True,
            (r"25(\.\d+)*", r"DEVELOP-FOR-25(\.\d+)*"),
            "develop-2025-05-03",
            True,
            2025,
        ),
    )
}
#: Profile names in release order.
GEM5_PROFILES = tuple(GEM5_VERSIONS)


def gem5_profile(text: str) -> str:
    """The profile (``v24.0`` | ``v24.1`` | ``v25``) of a version spelling, any case.

    ``v25``, ``v25.0``, ``25.0.0.0``, ``develop`` → ``v25``; ``24.0.0.1`` → ``v24.0``.
    """
    raw = text.strip()
    low = raw.lower()
    if low in ("develop", "dev"):
        return "v25"
    for facts in GEM5_VERSIONS.values():
        bare = facts.profile.removeprefix("v")
        spelled = low.removeprefix("v")
        if spelled == bare or re.fullmatch(re.escape(bare) + r"(\.\d+)+", spelled):
            return facts.profile
    try:
        return profile_of_tree_version(raw)
    except Exception:
        raise unknown_name("gem5 version", text, GEM5_PROFILES) from None


def profile_of_tree_version(version_cc: str) -> str:
    """The profile a source tree's ``gem5Version`` string belongs to (``24.1.0.3`` → ``v24.1``)."""
    for facts in GEM5_VERSIONS.values():
        if any(re.fullmatch(p, version_cc.strip(), flags=re.IGNORECASE) for p in facts.tree_versions):
            return facts.profile
    raise unknown_name(
        "gem5 source-tree version", version_cc, [f.reference_tree for f in GEM5_VERSIONS.values()]
    )


def version_facts(text: str) -> Gem5VersionFacts:
    return GEM5_VERSIONS[gem5_profile(text)]
