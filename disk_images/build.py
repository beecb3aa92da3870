"""``make image``: resolve → inspect → derive → grow → inject → finish, from a recipe.

The base image is opened read-only and never modified: a sparse copy (a reflink where the
filesystem can) is made under a temporary name beside the output, grown if the payload needs
room, filled, and renamed to ``<out>/<name>.img`` only when complete; the manifest
``<name>.manifest.json`` beside it is written last. A failure or SIGINT/SIGTERM at any step
removes the partial image and releases loop devices and mounts (``inject.loop_mount``) and, on
the docker route, the build's container (``docker_access.session``), which is opened before the
base is inspected so that every e2fsprogs step, the guest reads included, runs inside it.

The build key hashes the recipe and the digests of every input (base, kernel, drivers, model
configs, model files, wheels). When the manifest beside the output has that key and the image
is the file the manifest recorded (size, mtime, inode), the build is a no-op: it costs the
digest-cache look-ups, never a re-hash of an unchanged multi-GB file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disk_images import e2fs, guest, inject, partitions
from disk_images.manifest import SCHEMA, manifest_path_for
from disk_images.recipe import Recipe, load_recipe
from foundation.digests import cache_dir, file_digest, text_digest
from foundation.errors import InputError

#: Bumped when the build changes what an image holds for the same inputs.
BUILD_FORMAT = "layerlab-image/1"
#: The manifest's copy inside the image (without the image's own digest, which it cannot know).
GUEST_MANIFEST = "/opt/layerlab/image-manifest.json"
MIB = 1 << 20
GROW_STEP = 64 * MIB
_FICLONE = 0x40049409

Progress = Callable[[str, int | None], Callable[[int], None]]


def _no_progress(_label: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


@dataclass(frozen=True)
class BuildResult:
    image: Path
    manifest: Path
    noop: bool
    elapsed_s: float
    record: dict


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM during a build: raised so every ``finally`` runs, like SIGINT's KeyboardInterrupt."""


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    if sys.modules["threading"].current_thread() is not sys.modules["threading"].main_thread():
        yield
        return

    def on_term(signum: int, _frame: object) -> None:
        raise BuildInterrupted(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ---------------------------------------------------------------------------------------------
# inspect


def attached_loops(image: Path) -> list[str]:
    """Loop devices backed by ``image`` (from sysfs; no root needed)."""
    target = str(image.resolve())
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().strip().removesuffix(" (deleted)") == target:
                found.append("/dev/" + backing.parts[3])
    return found


def _root_json(root: Any) -> dict:
    """The root partition as inspect and the manifest report it (``root_partition``: gem5's form)."""
    return {
        "number": root.number,
        "start_bytes": root.start_bytes,
        "size_bytes": root.size_bytes,
        "fs": root.fs,
        "root_partition": root.root_partition,
    }


def inspect_image(image: str | os.PathLike[str], root_number: int | None = None) -> dict:
    """Partition table, root filesystem, free space, guest facts and any manifest (no root needed)."""
    path = Path(image)
    if not path.exists():
        raise InputError(f"{path}: disk image not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a disk image")
    table = partitions.read_table(path)
    root = table.get(root_number) if root_number else partitions.root_candidate(table)
    if root.fs not in ("ext4", "ext3", "ext2"):
        raise InputError(
            f"{path}: partition {root.number} holds {root.fs or 'no known filesystem'}, not ext4"
        )
    sb = e2fs.read_superblock(path, root.start_bytes)
    facts = guest.read_guest(path, root.start_bytes)
    beside = manifest_path_for(path)
    manifest = None
    if beside.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            manifest = json.loads(beside.read_text())
    if manifest is None:
        inside = e2fs.read_file(path, root.start_bytes, GUEST_MANIFEST)
        with contextlib.suppress(TypeError, json.JSONDecodeError):
            manifest = json.loads(inside) if inside else None
    return {
        "image": str(path),
        "size_bytes": table.disk_bytes,
        "table": table.kind,
        "partitions": [p.to_json() for p in table.partitions],
        "root": _root_json(root),
        "filesystem": {
            "block_size": sb.block_size,
            "size_bytes": sb.size_bytes,
            "free_bytes": sb.free_bytes,
            "free_inodes": sb.free_inodes,
            "uuid": sb.uuid,
            "clean": sb.clean,
            "needs_recovery": sb.needs_recovery,
        },
        "guest": facts.to_json(),
        "generation": facts.generation,
        "attached_loops": attached_loops(path),
        "manifest": manifest,
    }


def inspect_via(
    image: str | os.PathLike[str],
    root_number: int | None = None,
    access: str = "auto",
    docker_image: str | None = None,
) -> dict:
    """``inspect_image`` with e2fsprogs on this host, or in a container (``access`` docker, or
    auto on a host without e2fsprogs when ``docker_image`` is named); the image is bound read-only."""
    if access not in ("auto", "rootless", "docker"):
        raise InputError(f"access {access!r}: inspect reads with auto, rootless or docker")
    path = Path(image)
    if access == "rootless" or (access == "auto" and not e2fs.missing_host_tools()) or not path.is_file():
        return inspect_image(path, root_number)  # a missing image: its one-line error, no container
    inject.choose_access(access, docker_image)  # auto here: docker, or why it cannot be used
    from disk_images import docker_access

    assert docker_image is not None
    import tempfile

    path = path.absolute()
    with (
        _signals_raise(),
        docker_access.session(
            docker_image, read_only=[path], scratch_near=Path(tempfile.gettempdir())
        ) as runner,
        e2fs.using(runner),
    ):
        return inspect_image(path, root_number)


# ---------------------------------------------------------------------------------------------
# derive


def derive(base: Path, dest: Path, advance: Callable[[int], None]) -> str:
    """Copy ``base`` to a new ``dest``: a reflink if possible, else a sparse copy. Returns which."""
    with base.open("rb") as fin, open(dest, "xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            advance(base.stat().st_size)
            return "reflink"
        except OSError:
            pass
        size = os.fstat(fin.fileno()).st_size
        src, dst = fin.fileno(), fout.fileno()
        pos = 0
        while pos < size:
            try:
                data = os.lseek(src, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(src, data, os.SEEK_HOLE)
            advance(data - pos)
            off = data
            while off < hole:
                n = os.copy_file_range(src, dst, min(inject.CHUNK, hole - off), off, off)
                if n == 0:
                    raise InputError(f"{base}: short read at byte {off} (file truncated while copying?)")
                off += n
                advance(n)
            pos = hole
        fout.truncate(size)
        os.fsync(dst)
    return "sparse copy"


# ---------------------------------------------------------------------------------------------
# payload


def _payload(recipe: Recipe, model_dir: Path | None, wheel_tree: Path | None, site: str | None) -> dict:
    from workloads.drivers import (
        DRIVERS,
        GUEST_CONFIG_DIR,
        GUEST_DIR,
        GUEST_FILES,
        GUEST_MODEL_DIR,
        HERE,
    )
    from workloads.models import CONFIG_DIR

    scripts = set(DRIVERS.values())
    groups: dict[str, list[inject.Item]] = {
        "drivers": [
            inject.Item(f"{GUEST_DIR}/{name}", HERE / name, 0o755 if name in scripts else 0o644)
            for name in GUEST_FILES
        ],
        "model_configs": inject.tree_items(CONFIG_DIR, GUEST_CONFIG_DIR),
    }
    if model_dir is not None and recipe.model is not None:
        groups["model"] = inject.tree_items(model_dir, f"{GUEST_MODEL_DIR}/{recipe.model.name}")
    if wheel_tree is not None and site:
        groups["wheels"] = inject.tree_items(wheel_tree, site)
    return groups


def _group_digest(items: list[inject.Item]) -> str:
    parts = []
    for item in items:
        parts += [item.guest, f"{item.mode:o}", file_digest(item.source)]
    return text_digest(*parts)


def _free_space_check(folder: Path, need: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < need:
        raise InputError(
            f"{folder}: {free / 2**30:.1f} GiB free, {what} needs {need / 2**30:.1f} GiB; "
            "free some space or pass --out DIR on a larger disk"
        )


def _stale_partials(out_dir: Path, name: str) -> None:
    for partial in out_dir.glob(f".{name}.img.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        alive = pid.isdigit() and Path(f"/proc/{pid}").exists() and int(pid) != os.getpid()
        if not alive and not attached_loops(partial):
            partial.unlink(missing_ok=True)


def _tool_versions(access: str, docker_ref: dict | None = None) -> dict:
    tools = {
        "layerlab": "0.1.0",
        "build_format": BUILD_FORMAT,
        "python": platform.python_version(),
        "e2fsprogs": e2fs.version(),  # the container's on the docker route (e2fs runs there)
        "access": access,
    }
    if docker_ref is not None:
        tools["docker"] = docker_ref
    return tools


# ---------------------------------------------------------------------------------------------
# build


def build(
    recipe_path: str | os.PathLike[str],
    *,
    base: str | None = None,
    kernel: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    access: str | None = None,
    docker_image: str | None = None,
    progress: Progress = _no_progress,
    log: Callable[[str], None] = lambda _m: None,
) -> BuildResult:
    """Build (or find up to date) the image a recipe describes; see the module doc."""
    from disk_images import fetch

    t0 = time.monotonic()
    recipe, recipe_dir = load_recipe(recipe_path)
    cwd = Path.cwd()
    base_path = fetch.resolve_source(
        "base image",
        base or recipe.base.path,
        None if base else recipe.base.url,
        recipe.base.sha256,
        cwd if base else recipe_dir,
        progress,
    )
    kernel_path = fetch.resolve_source(
        "kernel",
        kernel or recipe.kernel.path,
        None if kernel else recipe.kernel.url,
        recipe.kernel.sha256,
        cwd if kernel else recipe_dir,
        progress,
    )
    # Absolute: the docker route runs the same command lines in a container whose cwd is not ours.
    out = Path(out_dir).absolute() if out_dir else cache_dir().absolute() / "images"
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{recipe.name}.img"
    manifest_file = manifest_path_for(final)
    if final.resolve() == base_path:
        raise InputError(f"{final}: the output would overwrite the base image; choose another --out")

    size = base_path.stat().st_size
    base_digest = file_digest(base_path, progress(f"sha256 {base_path.name} (once per file version)", size))
    kernel_digest = file_digest(kernel_path)
    model_dir = _model_dir(recipe, recipe_dir, progress)
    wheel_spec = _wheel_spec_digest(recipe, recipe_dir)
    # The payload's guest paths depend on the guest's Python only for wheels; digests come first.
    groups = _payload(recipe, model_dir, None, None)
    digests = {name: _group_digest(items) for name, items in groups.items()}
    source_free = recipe.model_copy(
        update={
            "base": type(recipe.base)(),
            "kernel": type(recipe.kernel)(),
            "access": "auto",
            "model": recipe.model.model_copy(
                update={"path": None, "hf_repo": recipe.model.hf_repo or "local"}
            )
            if recipe.model
            else None,
        }
    )
    key = text_digest(
        BUILD_FORMAT,
        source_free.canonical(),
        base_digest,
        kernel_digest,
        wheel_spec,
        *(f"{k}={v}" for k, v in sorted(digests.items())),
    )
    noop = _up_to_date(final, manifest_file, key)
    if noop is not None:
        log(f"up to date: {final} (manifest {manifest_file})")
        return BuildResult(final, manifest_file, True, time.monotonic() - t0, noop)

    # Inspect the base (read-only) and check the kernel pairs with it.
    loops = attached_loops(base_path)
    if loops:
        raise InputError(
            f"base image {base_path} is attached to {', '.join(loops)} (mounted or in use elsewhere); "
            "its filesystem may change while it is copied: unmount it and `losetup -d` the device first"
        )
    docker_image = docker_image or recipe.docker_image
    chosen = inject.choose_access(access or recipe.access, docker_image)

    with _signals_raise(), contextlib.ExitStack() as stack:
        docker_ref = None
        if chosen == "docker":
            from disk_images import docker_access

            assert docker_image is not None  # choose_access checked it
            runner = stack.enter_context(
                docker_access.session(
                    docker_image,
                    read_only=[base_path, *(i.source.parent for g in groups.values() for i in g)],
                    read_write=[out],
                    scratch_near=out,
                    log=log,
                )
            )
            stack.enter_context(e2fs.using(runner))
            docker_ref = runner.image_ref
        facts_json = inspect_image(base_path, recipe.root_partition)
        table = partitions.read_table(base_path)
        root = table.get(facts_json["root"]["number"])
        seen = facts_json["guest"]
        facts = guest.GuestFacts(**{**seen, "kernel_modules": tuple(seen["kernel_modules"])})
        generation = facts.generation
        if recipe.generation is not None:
            if generation is not None and generation != recipe.generation:
                raise InputError(
                    f"recipe says generation {recipe.generation} but {base_path} is a {generation} image "
                    f"({facts.generation_from})"
                )
            generation = recipe.generation
        if generation is None:
            raise InputError(
                f"{base_path}: cannot tell the image generation (os {facts.os_version}, ROCm {facts.rocm}, "
                f"modules {', '.join(facts.kernel_modules) or 'none'}); set `generation: 2024|2025` in the recipe"
            )
        release = guest.kernel_version(kernel_path)
        guest.check_pair(release, facts, str(kernel_path), str(base_path))
        log(
            f"base {base_path}: {table.kind.upper()}, root {root.root_partition} at byte {root.start_bytes}, "
            f"{facts.os_pretty}, Python {facts.python}, ROCm {facts.rocm}, generation {generation}"
        )
        wheel_tree = None
        if recipe.wheels.packages or recipe.wheels.files:
            from disk_images import wheels

            scratch = stack.enter_context(_scratch_dir(out))
            wheel_tree = wheels.stage(recipe.wheels, recipe_dir, facts, scratch, log)
        groups = _payload(recipe, model_dir, wheel_tree, facts.site_packages)
        items = [item for group in groups.values() for item in group]
        payload = inject.payload_bytes(items)
        sb = e2fs.read_superblock(base_path, root.start_bytes)
        want_free = payload + payload // 20 + recipe.headroom_mib * MIB + 4 * MIB
        grow = 0 if sb.free_bytes >= want_free else -(-(want_free - sb.free_bytes) // GROW_STEP) * GROW_STEP
        allocated = base_path.stat().st_blocks * 512
        _free_space_check(out, allocated + grow + payload, "the derived image")
        _stale_partials(out, recipe.name)

        tmp = out / f".{recipe.name}.img.partial-{os.getpid()}"
        created_final = False
        try:
            log(f"derive {tmp.name} from {base_path.name} (base opened read-only)")
            how = derive(base_path, tmp, progress(f"copy {base_path.name}", size))
            if grow:
                log(
                    f"grow root {root.root_partition} by {grow // MIB} MiB (payload {payload / MIB:.1f} MiB, "
                    f"headroom {recipe.headroom_mib} MiB, free {sb.free_bytes / MIB:.0f} MiB)"
                )
                if table.kind == "gpt":
                    new_size = size + grow
                else:
                    new_size = root.end_bytes + grow
                    new_size = max(new_size, size)
                e2fs.fsck(tmp, root.start_bytes)
                grown = partitions.grow_partition(tmp, root.number, new_size)
                if chosen == "root":
                    with inject.loop_device(tmp, grown.start_bytes, grown.size_bytes) as device:
                        e2fs.resize_device(device)
                else:  # rootless: resize2fs truncates the file (see e2fs); restore the table's tail, repair
                    e2fs.resize(tmp, root.start_bytes, grown.size_bytes // 4096 * 4096)
                    partitions.grow_partition(tmp, root.number, new_size)
                    e2fs.fsck(tmp, root.start_bytes, repair=True)
                root = grown
            elif sb.needs_recovery:
                e2fs.fsck(tmp, root.start_bytes)
            log(f"inject {len(items)} files, {payload / MIB:.1f} MiB ({chosen})")
            inject.inject(
                tmp, root.start_bytes, root.size_bytes, items, chosen, progress("inject payload", payload)
            )
            record = _manifest_record(
                recipe,
                recipe_path,
                key,
                base_path,
                base_digest,
                kernel_path,
                kernel_digest,
                release,
                partitions.read_table(tmp),
                root,
                facts,
                generation,
                groups,
                digests,
                chosen,
                how,
                docker_ref,
            )
            inside = stack.enter_context(_scratch_dir(out)) / "image-manifest.json"
            inside.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
            inject.inject(
                tmp, root.start_bytes, root.size_bytes, [inject.Item(GUEST_MANIFEST, inside)], chosen
            )
            e2fs.fsck(tmp, root.start_bytes)
            manifest_file.unlink(missing_ok=True)  # an old manifest must never describe the new image
            os.replace(tmp, final)
            created_final = True
            st = final.stat()
            disk_digest = file_digest(final, progress(f"sha256 {final.name}", st.st_size))
            st = final.stat()
            record["disk"] = {
                "path": final.name,
                "sha256": disk_digest,
                "size_bytes": st.st_size,
                "stat": {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino},
            }
            from foundation import atomic

            atomic.write_text(manifest_file, json.dumps(record, indent=2, sort_keys=True) + "\n")
        except BaseException:
            tmp.unlink(missing_ok=True)
            if created_final:
                final.unlink(missing_ok=True)
            raise
    log(f"image {final}\nmanifest {manifest_file}")
    return BuildResult(final, manifest_file, False, time.monotonic() - t0, record)


@contextlib.contextmanager
def _scratch_dir(near: Path) -> Iterator[Path]:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=".layerlab-scratch-", dir=near))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _up_to_date(final: Path, manifest_file: Path, key: str) -> dict | None:
    if not (final.is_file() and manifest_file.is_file()):
        return None
    try:
        record = json.loads(manifest_file.read_text())
        st = final.stat()
        recorded = record["disk"]["stat"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    same = (st.st_size, st.st_mtime_ns, st.st_ino) == (
        recorded["size"],
        recorded["mtime_ns"],
        recorded["inode"],
    )
    return record if record.get("build_key") == key and same else None


def _model_dir(recipe: Recipe, recipe_dir: Path, progress: Progress) -> Path | None:
    if recipe.model is None:
        return None
    if recipe.model.path:
        folder = Path(recipe.model.path).expanduser()
        folder = folder if folder.is_absolute() else recipe_dir / folder
        if not folder.is_dir():
            raise InputError(
                f"model.path {folder}: not a directory (a local HF snapshot or plain model folder)"
            )
        return folder
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise InputError(
            f"model.hf_repo {recipe.model.hf_repo}: huggingface_hub is not installed; "
            "download the model yourself and give model.path"
        ) from None
    # The token is read from the environment for this call only; it is never written anywhere.
    return Path(
        snapshot_download(
            recipe.model.hf_repo,
            revision=recipe.model.revision,
            token=os.environ.get("HF_TOKEN") or None,
            cache_dir=cache_dir() / "hf",
        )
    )


def _wheel_spec_digest(recipe: Recipe, recipe_dir: Path) -> str:
    files = []
    for name in recipe.wheels.files:
        path = Path(name) if Path(name).is_absolute() else recipe_dir / name
        if not path.is_file():
            raise InputError(f"wheels.files: {path}: file not found")
        files.append(file_digest(path))
    return text_digest(*recipe.wheels.packages, *files)


def _manifest_record(
    recipe: Recipe,
    recipe_path: str | os.PathLike[str],
    key: str,
    base: Path,
    base_digest: str,
    kernel: Path,
    kernel_digest: str,
    release: str,
    table: partitions.Table,
    root: partitions.Partition,
    facts: guest.GuestFacts,
    generation: int,
    groups: dict[str, list[inject.Item]],
    digests: dict[str, str],
    access: str,
    how: str,
    docker_ref: dict | None = None,
) -> dict:
    from workloads.drivers import GUEST_CONFIG_DIR, GUEST_DIR, GUEST_MODEL_DIR

    recipe_text = Path(recipe_path).read_text()
    payload = {
        name: {"files": len(items), "bytes": inject.payload_bytes(items), "sha256": digests.get(name)}
        for name, items in groups.items()
    }
    payload["drivers"]["guest_dir"] = GUEST_DIR
    payload["model_configs"]["guest_dir"] = GUEST_CONFIG_DIR
    if "model" in payload and recipe.model:
        payload["model"]["guest_dir"] = f"{GUEST_MODEL_DIR}/{recipe.model.name}"
    if "wheels" in payload:
        payload["wheels"]["guest_dir"] = facts.site_packages
        payload["wheels"]["spec"] = recipe.wheels.model_dump(mode="json")
    return {
        "schema": SCHEMA,
        "name": recipe.name,
        "build_key": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {
            "file": str(Path(recipe_path).resolve()),
            "sha256": text_digest(recipe_text),
            "content": recipe.model_dump(mode="json"),
        },
        "base": {
            "path": str(base),
            "sha256": base_digest,
            "size_bytes": base.stat().st_size,
            "derived_by": how,
        },
        "kernel": {"path": str(kernel), "sha256": kernel_digest, "release": release},
        "generation": generation,
        "generation_from": facts.generation_from,
        "table": table.kind,
        "partitions": [p.to_json() for p in table.partitions],
        "root": _root_json(root),
        "guest": {
            "os": facts.os_pretty,
            "python": facts.python,
            "rocm": facts.rocm,
            "site_packages": facts.site_packages,
            "packages": facts.packages,
            "kernel_modules": list(facts.kernel_modules),
            "run_gem5_app": facts.has_run_gem5_app,
        },
        "payload": payload,
        "tools": _tool_versions(access, docker_ref),
    }
