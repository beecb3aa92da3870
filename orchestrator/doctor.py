"""What a real gem5 GPU-FS run needs on this host, checked one item at a time, each with its fix.

Checks are data (``Check``: name, ok, detail, fix); ``layerlab doctor`` prints them and exits 0 only
when a real run can start. Nothing here starts a simulation: a gem5 binary is asked for its
build information at most, and the test double is recognised and reported as what it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from foundation.gem5_names import GEM5_VERSIONS, gem5_profile, profile_of_tree_version

#: Free space a census plus a few sliced runs and a boot checkpoint want beside a derived image.
MIN_FREE_BYTES = 60 * 2**30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def to_json(self) -> dict:
        return asdict(self)


def check_binary(binary: str | None) -> Check:
    fix = "build one: make gem5 GEM5_SRC=~/gem5 GEM5_REF=<release> (or point --gem5 / $LAYERLAB_GEM5 at it)"
    if not binary:
        return Check("gem5 binary", False, "no gem5 binary given", fix)
    found = shutil.which(binary) if "/" not in binary else binary
    path = Path(found or binary).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        return Check("gem5 binary", False, f"{path}: not an executable file", fix)
    with path.open("rb") as handle:
        head = handle.read(4096)
    if b"gem5 TEST DOUBLE" in head:
        return Check("gem5 binary", False, f"{path} is layerlab's gem5 test double, not a simulator", fix)
    vega = path.parent.name == "VEGA_X86"
    detail = f"{path}" + ("" if vega else " (not under build/VEGA_X86: GPU-FS needs a VEGA_X86 build)")
    return Check("gem5 binary", vega, detail, "" if vega else fix)


def check_tree(source: str | None, profile: str) -> Check:
    from gem5_configs.params import tree_version

    fix = "clone gem5 at the release of your binary and give --gem5-src DIR (or $LAYERLAB_GEM5_SRC)"
    if not source:
        return Check(
            "gem5 source tree", False, "no gem5 source tree given (render imports its configs/)", fix
        )
    root = Path(source).expanduser()
    if not (root / "configs" / "example" / "gpufs" / "runfs.py").is_file():
        return Check("gem5 source tree", False, f"{root}: no configs/example/gpufs/runfs.py", fix)
    version = tree_version(root)
    if version is None:
        return Check("gem5 source tree", False, f"{root}: no src/base/version.cc", fix)
    try:
        tree_profile = profile_of_tree_version(version)
    except Exception:
        return Check("gem5 source tree", False, f"{root} is gem5 {version}, which no profile covers", fix)
    if tree_profile != profile:
        return Check(
            "gem5 source tree", False, f"{root} is gem5 {version} (profile {tree_profile}), not {profile}",
            f"use a {profile} tree, or --gem5-version {tree_profile}",
        )  # fmt: skip
    stand_in = GEM5_VERSIONS[profile].reference_is_stand_in and version.upper().startswith("DEVELOP")
    return Check(
        "gem5 source tree",
        True,
        f"{root}: gem5 {version}" + (" (a develop tree standing in)" if stand_in else ""),
    )


def check_kvm(cpu: str) -> Check:
    if cpu != "kvm":
        return Check("/dev/kvm", True, "not needed (--cpu atomic: slow, but no KVM)", required=False)
    kvm = Path("/dev/kvm")
    if not kvm.exists():
        return Check(
            "/dev/kvm",
            False,
            "no /dev/kvm on this host",
            "enable virtualisation (or nested KVM), or run with --cpu atomic",
        )
    if not os.access(kvm, os.R_OK | os.W_OK):
        return Check(
            "/dev/kvm",
            False,
            "/dev/kvm is not readable and writable by you",
            "add yourself to the kvm group: sudo usermod -aG kvm $USER",
        )
    return Check("/dev/kvm", True, "readable and writable")


PERF_PARANOID = Path("/proc/sys/kernel/perf_event_paranoid")


def check_perf(kvm_perf: bool, profile: str, paranoid: Path = PERF_PARANOID) -> Check:
    try:
        level = int(paranoid.read_text().strip())
    except (OSError, ValueError):
        level = None
    if not kvm_perf:
        note = "" if level is None else f" (perf_event_paranoid={level})"
        flag = "--no-kvm-perf is passed" if profile == "v24.0" else "perf stays off by default"
        return Check("KVM perf counters", True, f"not used: {flag}{note}", required=False)
    if level is not None and level > 1:
        return Check("KVM perf counters", False, f"perf_event_paranoid={level}: gem5 panics in PerfKvmCounter::attach",
                     "sudo sysctl kernel.perf_event_paranoid=1, or render without --kvm-perf")  # fmt: skip
    return Check("KVM perf counters", True, f"perf_event_paranoid={level}")


def check_docker(image: str | None) -> Check:
    if not image:
        return Check("docker", True, "not used (host binary)", required=False)
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return Check(
            "docker",
            False,
            f"no docker engine reachable ({type(exc).__name__})",
            "start dockerd, or run on the host",
        )
    try:
        client.images.get(image)
    except Exception:
        return Check(
            "docker", False, f"image {image} is not on this host", f"docker pull {image} (pin it by digest)"
        )
    return Check("docker", True, f"engine reachable, {image} present")


def check_disk(folder: str | Path) -> Check:
    target = Path(folder).expanduser()
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    ok = free >= MIN_FREE_BYTES
    fix = (
        ""
        if ok
        else f"free space (or choose another --workspace): runs want about {MIN_FREE_BYTES // 2**30} GiB"
    )
    return Check("free disk", ok, f"{free / 2**30:.0f} GiB free under {probe}", fix)


def check_image(manifest: str | None, disk: str | None, kernel: str | None, profile: str) -> Check:
    fix = "build one: make image BASE=<gem5-resources GPU image> KERNEL=<its vmlinux>"
    if manifest:
        from disk_images.manifest import check_profile, read_manifest
        from foundation.errors import InputError

        try:
            m = read_manifest(manifest)
            check_profile(m, profile)
        except InputError as exc:
            return Check("disk image", False, str(exc), fix)
        missing = [str(p) for p in (m.disk, m.kernel) if not Path(p).is_file()]
        if missing:
            return Check("disk image", False, f"the manifest names missing files: {', '.join(missing)}", fix)
        return Check("disk image", True, f"{m.disk} + {m.kernel} (generation {m.generation})")
    if disk and kernel:
        missing = [p for p in (disk, kernel) if not Path(p).expanduser().is_file()]
        if missing:
            return Check("disk image", False, f"not found: {', '.join(missing)}", fix)
        return Check("disk image", True, f"{disk} + {kernel} (no manifest: generation unchecked)")
    return Check("disk image", False, "no image manifest (or disk and kernel) given", fix)


def run_checks(
    *,
    binary: str | None,
    source: str | None,
    profile: str,
    cpu: str = "kvm",
    kvm_perf: bool = False,
    docker_image: str | None = None,
    manifest: str | None = None,
    disk: str | None = None,
    kernel: str | None = None,
    workspace: str | Path = ".",
) -> list[Check]:
    profile = gem5_profile(profile)
    return [
        check_binary(binary),
        check_tree(source, profile),
        check_kvm(cpu),
        check_perf(kvm_perf, profile),
        check_docker(docker_image),
        check_image(manifest, disk, kernel, profile),
        check_disk(workspace),
    ]


def gem5_build_info(binary: str) -> str | None:
    """``gem5.opt --build-info`` (its first line), if the binary answers within a few seconds."""
    try:
        done = subprocess.run(
            [binary, "--build-info"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else None
