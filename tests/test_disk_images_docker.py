"""The docker route of ``make image`` on a real, private Docker engine (tests/services/dockerd.py).

The container image is made here by ``docker import`` (no registry is reachable): the engine
fixture's busybox + python rootfs plus this host's e2fsprogs (debugfs, e2fsck, resize2fs) and
the shared libraries ``ldd`` names. Builds run the whole pipeline on small real images
(``disk_images.testimage``) with every e2fsprogs call in the container, and are checked
against the rootless route on the same inputs, with the tools as ground truth (e2fsck -fn,
debugfs cat on the host), and as a user without root. Fault tests: SIGINT mid-build (no container,
partial or final image left), SIGKILL (the next build removes the dead build's container), an image
without e2fsprogs, an image not on the engine. One engine per module (~1 s), the image ~3 s.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from services.dockerd import PrivateDockerd, build_test_image, missing_tools, private_dockerd, rootfs_tarball

from disk_images import build, docker_access, e2fs, inject, testimage
from disk_images.manifest import read_manifest
from foundation.errors import InputError

REPO = Path(__file__).resolve().parents[1]
TAG = "layerlab-test-e2fs:1"
WHY_NOT = missing_tools() or (
    "needs e2fsprogs, sfdisk and sgdisk on the host (to build test images and the container image)"
    if e2fs.missing_host_tools() or not (shutil.which("sgdisk") and shutil.which("sfdisk"))
    else None
)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


def _e2fs_rootfs() -> bytes:
    """The engine fixture's rootfs tarball with this host's e2fsprogs and their libraries added."""
    buf = io.BytesIO(rootfs_tarball())
    with tarfile.open(fileobj=buf, mode="a", dereference=True) as tar:
        have = {name.rstrip("/") for name in tar.getnames()}
        libs: set[str] = set()
        for name in e2fs.TOOLS:
            binary = e2fs.tool(name)
            tar.add(binary, arcname=f"usr/sbin/{name}")
            ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
            libs |= set(re.findall(r"(/\S+) \(0x", ldd))
        for lib in sorted(libs):
            if lib.lstrip("/") not in have:
                tar.add(lib, arcname=lib.lstrip("/"))
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine():
    with private_dockerd() as started, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKER_HOST", started.host)
        yield started


@pytest.fixture(scope="module")
def image(engine: PrivateDockerd) -> str:
    engine.docker("import", "-", TAG, input=_e2fs_rootfs())
    return TAG


@pytest.fixture(autouse=True)
def _no_container_left(engine: PrivateDockerd):
    yield
    assert engine.containers(docker_access.LABEL) == [], "a build container was left behind"


def _recipe(tmp: Path, text: str = "", name: str = "t") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nheadroom_mib: 8\n{text}")
    return path


def _sha(path: Path) -> str:
    return subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]


def _host_cat(image: Path, start: int, guest: str) -> bytes:
    spec = e2fs.spec(image, start)
    return subprocess.run(["debugfs", "-R", f"cat {guest}", spec], capture_output=True, check=True).stdout


# ----------------------------------------------------------------------------- choosing the route


def _decide(wanted: str, *, root: bool = False, missing=(), image=None, reachable: str | None = None) -> str:
    return inject.decide_access(
        wanted,
        loop_ok=root,
        missing_tools=list(missing),
        docker_image=image,
        docker_unreachable=lambda: reachable,
    )


def test_auto_picks_docker_only_when_no_host_route_works() -> None:
    assert _decide("auto", root=True) == "root"
    assert _decide("auto") == "rootless"
    assert _decide("auto", image="x:1") == "rootless"  # e2fsprogs here: no container needed
    no_tools = ("debugfs", "e2fsck", "resize2fs")
    assert _decide("auto", missing=no_tools, image="x:1") == "docker"
    assert _decide("auto", root=True, missing=no_tools, image="x:1") == "docker"
    with pytest.raises(
        InputError, match=r"debugfs, e2fsck, resize2fs not found.*no container image is named"
    ):
        _decide("auto", missing=no_tools)
    with pytest.raises(InputError, match=r"docker route cannot be used: no engine at unix:///x"):
        _decide("auto", missing=no_tools, image="x:1", reachable="no engine at unix:///x")
    assert _decide("docker", image="x:1") == "docker"
    with pytest.raises(InputError, match=r"access docker: name the container image"):
        _decide("docker")
    with pytest.raises(InputError, match=r"access rootless: debugfs not found.*--access docker"):
        _decide("rootless", missing=("debugfs",))
    with pytest.raises(InputError, match=r"access root: needs root"):
        _decide("root")
    with pytest.raises(InputError, match=r"access 'fuse': one of auto, root, rootless, docker"):
        _decide("fuse")


def test_engine_unreachable_is_one_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    assert f"no docker engine answers at unix://{tmp_path}/none.sock" in (docker_access.unreachable() or "")


# ----------------------------------------------------------------------------- the build


def test_docker_build_matches_rootless(tmp_path: Path, image: str, engine: PrivateDockerd) -> None:
    base = testimage.make_image(tmp_path / "base.img", layout="gpt", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    (model / "weights.bin").write_bytes(os.urandom(48 << 20))  # more than the 64 MiB base has free
    recipe = _recipe(tmp_path, f"model: {{name: tiny, path: {model}}}\ndocker_image: {image}\n")
    before = _sha(base)
    lines: list[str] = []
    docker = build.build(
        recipe, base=str(base), kernel=str(kernel), out_dir=tmp_path / "d", access="docker", log=lines.append
    )
    rootless = build.build(
        recipe, base=str(base), kernel=str(kernel), out_dir=tmp_path / "r", access="rootless"
    )
    assert _sha(base) == before
    why = next(line for line in lines if line.startswith("docker: container"))
    assert "unprivileged" in why and "no loop device" in why and f"{tmp_path / 'd'} (rw)" in why
    assert any(line.startswith("grow root /dev/sda1") for line in lines)
    tools = docker.record["tools"]
    assert tools["access"] == "docker" and tools["docker"]["image"] == image
    assert tools["docker"]["privileged"] is False and tools["e2fsprogs"] == e2fs.version()
    # The same image, apart from when and how it was made.
    same = ("created", "tools", "disk")
    assert {k: v for k, v in docker.record.items() if k not in same} == {
        k: v for k, v in rootless.record.items() if k not in same
    }
    assert docker.record["build_key"] == rootless.record["build_key"]
    m = read_manifest(docker.manifest)
    assert m.disk_digest == f"sha256:{_sha(docker.image)}" and m.generation == 2024
    start = m.record["root"]["start_bytes"]
    assert docker.image.stat().st_size == rootless.image.stat().st_size > base.stat().st_size
    check = subprocess.run(["e2fsck", "-fn", e2fs.spec(docker.image, start)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    verify = subprocess.run(["sgdisk", "-v", str(docker.image)], capture_output=True, text=True)
    assert "No problems found" in verify.stdout, verify.stdout
    for guest in ("/opt/layerlab/models/tiny/weights.bin", "/opt/layerlab/drivers/layer.py"):
        assert _host_cat(docker.image, start, guest) == _host_cat(rootless.image, start, guest)
    assert (
        _host_cat(docker.image, start, "/opt/layerlab/models/tiny/weights.bin")
        == (model / "weights.bin").read_bytes()
    )
    inside = json.loads(_host_cat(docker.image, start, build.GUEST_MANIFEST))
    assert inside["tools"]["access"] == "docker" and inside["build_key"] == m.record["build_key"]
    assert list((tmp_path / "d").glob(".*")) == []  # no partial image, scratch or docker folder
    # Nothing changed: a no-op without a container, whichever route is asked for.
    t0 = time.monotonic()
    again = build.build(recipe, base=str(base), kernel=str(kernel), out_dir=tmp_path / "d", access="docker")
    assert again.noop and time.monotonic() - t0 < 2


def test_cli_build_and_inspect_in_docker(tmp_path: Path, image: str, engine: PrivateDockerd) -> None:
    base = testimage.make_image(tmp_path / "base.img", layout="mbr", size_mib=64, generation=2025)
    kernel = testimage.make_kernel(tmp_path / "vmlinux", release=testimage.FLAVOURS[2025][3])
    env = {**os.environ, "DOCKER_HOST": engine.host}
    cli = [sys.executable, "-m", "orchestrator.cli", "image"]
    built = subprocess.run(
        [*cli, "build", str(_recipe(tmp_path)), "--base", str(base), "--kernel", str(kernel),
         "--out", str(tmp_path / "out"), "--access", "docker", "--docker-image", image, "--json"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    record = json.loads(built.stdout)
    assert record["tools"]["access"] == "docker" and record["generation"] == 2025
    assert "unprivileged" in built.stderr
    out_img = tmp_path / "out/t.img"
    done = subprocess.run(
        [*cli, "inspect", str(out_img), "--json", "--access", "docker", "--docker-image", image],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == json.loads(json.dumps(build.inspect_image(out_img)))  # as the host's e2fsprogs read it
    assert seen["guest"]["python"] == "3.12" and seen["manifest"]["name"] == "t"


def test_bad_docker_images_are_one_line(tmp_path: Path, image: str, engine: PrivateDockerd) -> None:
    base = testimage.make_image(tmp_path / "base.img", layout="mbr", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "image", "build", str(_recipe(tmp_path)),
         "--base", str(base), "--kernel", str(kernel), "--out", str(tmp_path / "out"),
         "--access", "docker", "--docker-image", "layerlab-test-absent:1"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "DOCKER_HOST": engine.host},
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "docker image 'layerlab-test-absent:1' is not on the engine" in done.stderr
    no_e2fs = build_test_image(engine, "layerlab-test-no-e2fs:1")  # busybox + python only
    cases = [
        (no_e2fs, r"docker image 'layerlab-test-no-e2fs:1' has no debugfs, e2fsck, resize2fs"),
        (None, r"access docker: name the container image"),
    ]
    for name, message in cases:
        with pytest.raises(InputError, match=message):
            build.build(
                _recipe(tmp_path),
                base=str(base),
                kernel=str(kernel),
                out_dir=tmp_path / "out",
                access="docker",
                docker_image=name,
            )
    assert list((tmp_path / "out").iterdir()) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndocker_image: 'a b'\n")
    with pytest.raises(InputError, match=r"bad.yaml:2: docker_image: String should match"):
        build.build(bad, base=str(base), kernel=str(kernel), out_dir=tmp_path / "out")


_AS_NOBODY = """
import json, os, sys
from pathlib import Path
from disk_images import build
work = Path(sys.argv[1])
args = dict(base=str(work / "base.img"), kernel=str(work / "vmlinux"), access="docker")
# As root first, a rootless build and a docker inspect: this interpreter lives under /root, which
# nobody cannot enter, so every module (the standard library's lazy imports too) is loaded now.
build.build(work / "r.yaml", out_dir=work / "as-root", **{**args, "access": "rootless"})
build.inspect_via(work / "base.img", access="docker", docker_image=sys.argv[2])
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
lines = []
result = build.build(work / "r.yaml", out_dir=work / "out", log=lines.append, **args)
print(json.dumps({"record": result.record, "log": lines}))
"""


def test_a_user_without_root_builds_in_docker(image: str, engine: PrivateDockerd) -> None:
    """The case the route is for: uid 65534, not root, with access to the engine's socket."""
    work = Path(tempfile.mkdtemp(prefix="ll-nobody-", dir="/tmp"))  # pytest's tmp is root-only
    modes = {path: path.stat().st_mode & 0o777 for path in (engine.sock, engine.root)}
    try:
        work.chmod(0o777)
        testimage.make_image(work / "base.img", layout="gpt", size_mib=64).chmod(0o644)
        testimage.make_kernel(work / "vmlinux").chmod(0o644)
        (work / "r.yaml").write_text(f"name: nr\nheadroom_mib: 8\ndocker_image: {image}\n")
        engine.sock.chmod(0o666)
        engine.root.chmod(0o755)
        done = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, str(work), image],
            capture_output=True, text=True, cwd=REPO,
            env={**os.environ, "DOCKER_HOST": engine.host, "LAYERLAB_CACHE_DIR": str(work / "cache")},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.splitlines()[-1])
        assert any("as 65534:65534, unprivileged" in line for line in out["log"])
        made = work / "out/nr.img"
        assert (made.stat().st_uid, made.stat().st_gid) == (65534, 65534)
        start = out["record"]["root"]["start_bytes"]
        check = subprocess.run(["e2fsck", "-fn", e2fs.spec(made, start)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
        assert (
            _host_cat(made, start, "/opt/layerlab/drivers/layer.py")
            == (REPO / "workloads/drivers/layer.py").read_bytes()
        )
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- faults

_CHILD = """
import os, sys, time
from disk_images import build, inject
marker = sys.argv[6]
def hold(*_a, **_k):
    open(marker, "w").close()
    time.sleep(60)
inject.inject_rootless = hold
build.build(sys.argv[1], base=sys.argv[2], kernel=sys.argv[3], out_dir=sys.argv[4], access="docker",
            docker_image=sys.argv[5])
"""


def _held_build(tmp_path: Path, engine: PrivateDockerd, image: str) -> tuple[subprocess.Popen, Path]:
    """A build in a child process, held inside the injection with its container up."""
    base = testimage.make_image(tmp_path / "base.img", layout="gpt", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    marker = tmp_path / "marker"
    argv = [str(_recipe(tmp_path)), str(base), str(kernel), str(tmp_path / "out"), image, str(marker)]
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *argv],
        cwd=REPO,
        env={**os.environ, "DOCKER_HOST": engine.host},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        if child.poll() is not None:
            raise AssertionError(child.stderr.read() if child.stderr else "child exited")
        assert time.monotonic() < deadline, "the build never reached the injection"
        time.sleep(0.05)
    assert len(engine.containers(docker_access.LABEL)) == 1
    return child, base


def test_interrupted_build_leaves_no_container(tmp_path: Path, image: str, engine: PrivateDockerd) -> None:
    """SIGINT (SIGTERM takes the same path: ``build`` raises it as an exception; test_disk_images)."""
    sig = signal.SIGINT
    child, _base = _held_build(tmp_path, engine, image)
    try:
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    out = tmp_path / "out"
    assert not (out / "t.img").exists() and not (out / "t.manifest.json").exists()
    assert list(out.glob(".*")) == []  # partial image, docker scratch: gone
    # (_no_container_left checks the engine)


def test_killed_build_container_is_removed_by_the_next(
    tmp_path: Path, image: str, engine: PrivateDockerd
) -> None:
    child, base = _held_build(tmp_path, engine, image)
    child.kill()
    child.wait()
    assert len(engine.containers(docker_access.LABEL)) == 1  # SIGKILL: nothing could clean up
    lines: list[str] = []
    result = build.build(
        _recipe(tmp_path),
        base=str(base),
        kernel=str(tmp_path / "vmlinux"),
        out_dir=tmp_path / "out",
        access="docker",
        docker_image=image,
        log=lines.append,
    )
    assert any(
        re.match(
            rf"docker: removed layerlab-image-\w+, left by an image build that died \(pid {child.pid}\)", x
        )
        for x in lines
    ), lines
    assert result.image.is_file() and not result.noop
    assert [p.name for p in (tmp_path / "out").glob(".*")] == []
