"""The image manifest: what a run names as its image (disk, kernel, root partition, generation).

``make image`` writes ``<name>.manifest.json`` beside the image (and a copy without the disk's
own digest at ``GUEST_MANIFEST`` inside it). ``read_manifest`` is how later stages take an
image: ``layerlab render --image MANIFEST`` gets disk, kernel, ``--root-partition`` and the
digests from it, and ``check_profile`` refuses a generation the gem5 profile cannot boot.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import InputError
from foundation.gem5_names import GEM5_VERSIONS, gem5_profile

SCHEMA = "layerlab.image-manifest/1"
#: gem5 profile → image generations its GPU-FS scripts boot (reference §5.2: the 2025 image needs
#: the v25 runscript's load_amdgpu.sh / gem5_wmi flow; v24.x scripts modprobe amdgpu directly).
#: gem5 profile -> the disk-image generations it boots (one truth: foundation.gem5_names).
PROFILE_GENERATIONS: dict[str, tuple[int, ...]] = {
    name: (facts.disk_image_generation,) for name, facts in GEM5_VERSIONS.items()
}


@dataclass(frozen=True)
class ImageManifest:
    """The hand-over fields; ``record`` is the whole manifest as written."""

    path: Path
    disk: Path
    kernel: Path
    root_partition: str
    generation: int
    disk_digest: str
    kernel_digest: str
    manifest_digest: str
    record: dict


def manifest_path_for(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".img") + ".manifest.json")


def read_manifest(path: str | os.PathLike[str]) -> ImageManifest:
    """Load a manifest written by ``make image``; ``disk`` is resolved beside it when relative."""
    from foundation.digests import text_digest

    file = Path(path)
    try:
        text = file.read_text()
        record = json.loads(text)
    except OSError as exc:
        raise InputError(f"image manifest {file}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"image manifest {file}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise InputError(f"image manifest {file}: not a layerlab image manifest (schema {SCHEMA} expected)")
    try:
        disk = Path(record["disk"]["path"])
        return ImageManifest(
            path=file,
            disk=disk if disk.is_absolute() else file.resolve().parent / disk,
            kernel=Path(record["kernel"]["path"]),
            root_partition=record["root"]["root_partition"],
            generation=int(record["generation"]),
            disk_digest=record["disk"]["sha256"],
            kernel_digest=record["kernel"]["sha256"],
            manifest_digest=text_digest(text),
            record=record,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"image manifest {file}: missing or bad field {exc}") from None


def check_profile(manifest: ImageManifest, profile: str) -> None:
    """Refuse an image whose generation the gem5 ``profile`` (``v24.0`` | ``v24.1`` | ``v25``) cannot boot."""
    with contextlib.suppress(InputError):
        profile = gem5_profile(profile)
    fits = PROFILE_GENERATIONS.get(profile)
    if fits is None:
        raise InputError(f"gem5 profile {profile!r}: one of {', '.join(PROFILE_GENERATIONS)}")
    if manifest.generation not in fits:
        want = [p for p, gens in PROFILE_GENERATIONS.items() if manifest.generation in gens]
        raise InputError(
            f"image {manifest.path} is a {manifest.generation} image; gem5 {profile} boots "
            f"{'/'.join(map(str, fits))} images (use gem5 {' or '.join(want) or '?'}, or an image of the other generation)"
        )
