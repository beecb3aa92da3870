"""disk_images on real small images: partition tables, inspect, grow, inject, build, faults.

Images of 64-256 MiB are made with real sfdisk/sgdisk and mke2fs (``disk_images.testimage``);
ground truth comes from the tools (sfdisk -J, sgdisk -v, e2fsck -fn, debugfs cat), never from
the code under test. Loop-device tests need root and skip otherwise; every test works in its
own tmp_path, and the fault tests check that no loop device or mount is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disk_images import build, e2fs, guest, inject, partitions, testimage
from disk_images.manifest import check_profile, read_manifest
from disk_images.recipe import load_recipe
from foundation.digests import file_digest
from foundation.errors import InputError

REPO = Path(__file__).resolve().parents[1]
needs_tools = pytest.mark.skipif(
    not all(
        shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin")
        for t in ("sfdisk", "sgdisk", "debugfs", "mke2fs")
    ),
    reason="needs e2fsprogs, fdisk (sfdisk) and gdisk (sgdisk): run .ci/install-image-tools.sh",
)
needs_root = pytest.mark.skipif(not inject.can_loop_mount(), reason="loop devices need root")
pytestmark = needs_tools


def _sha(path: Path) -> str:
    return subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]


def _loops_under(folder: Path) -> list[str]:
    out = subprocess.run(
        ["losetup", "-l", "-n", "-O", "NAME,BACK-FILE"], capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if str(folder) in line]


def _mounts_of_ours() -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if "layerlab-mnt-" in line]


def _recipe(tmp: Path, text: str = "", name: str = "t") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\nheadroom_mib: 8\n{text}")
    return path


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, Path]:
    img = testimage.make_image(tmp_path / "base.img", layout="gpt", size_mib=128)
    return img, testimage.make_kernel(tmp_path / "vmlinux")


# ----------------------------------------------------------------------------- tables


@pytest.mark.parametrize("layout", ["mbr", "gpt"])
def test_partition_table_matches_sfdisk(tmp_path: Path, layout: str) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout=layout, size_mib=64)
    truth = json.loads(
        subprocess.run(["sfdisk", "-J", str(img)], capture_output=True, text=True, check=True).stdout
    )
    table = partitions.read_table(img)
    assert (
        table.kind
        == {"mbr": "mbr", "gpt": "gpt"}[layout]
        == truth["partitiontable"]["label"].replace("dos", "mbr")
    )
    got = {(p.start_bytes, p.size_bytes) for p in table.partitions}
    assert got == {(e["start"] * 512, e["size"] * 512) for e in truth["partitiontable"]["partitions"]}
    root = partitions.root_candidate(table)
    assert root.fs == "ext4" and root.number == 1
    assert root.start_bytes == (1 << 20 if layout == "mbr" else 2 << 20)
    if layout == "gpt":
        assert table.get(2).fs == "bios_grub" and table.get(2).start_bytes == 1 << 20


def test_superblock_matches_dumpe2fs(tmp_path: Path) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout="mbr", size_mib=64)
    sb = e2fs.read_superblock(img, 1 << 20)
    text = e2fs.debugfs(img, 1 << 20, "stats")
    assert f"Block count:              {sb.blocks}" in text
    assert f"Free blocks:              {sb.free_blocks}" in text
    assert f"Filesystem UUID:          {sb.uuid}" in text
    assert sb.block_size == 4096 and sb.clean


@pytest.mark.parametrize("generation", [2024, 2025])
def test_guest_facts_and_generation(tmp_path: Path, generation: int) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout="gpt", generation=generation)
    facts = guest.read_guest(img, 2 << 20)
    os_version, python, rocm, kernel, torch = testimage.FLAVOURS[generation]
    assert (facts.os_version, facts.python, facts.rocm) == (os_version, python, rocm)
    assert facts.kernel_modules == (kernel,)  # through the merged-/usr /lib symlink
    assert facts.packages == {"torch": torch}
    assert facts.site_packages == f"/usr/local/lib/python{python}/dist-packages"
    assert facts.generation == generation and facts.has_run_gem5_app


def test_inspect_cli_json(tmp_path: Path) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout="gpt")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "image", "inspect", str(img), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"number", "start_bytes", "size_bytes", "fs"} <= set(report["partitions"][0])
    assert report["root"] == {
        "number": 1,
        "start_bytes": 2 << 20,
        "size_bytes": report["root"]["size_bytes"],
        "fs": "ext4",
        "root_partition": "/dev/sda1",
    }
    assert report["guest"]["python"] == "3.10" and report["manifest"] is None and report["generation"] == 2024


# ----------------------------------------------------------------------------- grow


@pytest.mark.parametrize("layout", ["mbr", "gpt"])
def test_grow_table_and_filesystem_rootless(tmp_path: Path, layout: str) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout=layout, size_mib=64)
    root = partitions.root_candidate(partitions.read_table(img))
    grown = partitions.grow_partition(img, root.number, 160 << 20)
    e2fs.resize(img, root.start_bytes, grown.size_bytes)
    partitions.grow_partition(img, root.number, 160 << 20)  # rewrite the tail resize2fs cut (GPT backup)
    assert img.stat().st_size == 160 << 20
    check = subprocess.run(
        ["e2fsck", "-fn", e2fs.spec(img, root.start_bytes)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert e2fs.read_superblock(img, root.start_bytes).size_bytes == grown.size_bytes
    truth = json.loads(
        subprocess.run(["sfdisk", "-J", str(img)], capture_output=True, text=True, check=True).stdout
    )
    entry = next(e for e in truth["partitiontable"]["partitions"] if e["start"] * 512 == root.start_bytes)
    assert entry["size"] * 512 == grown.size_bytes
    if layout == "gpt":
        verify = subprocess.run(["sgdisk", "-v", str(img)], capture_output=True, text=True)
        assert "No problems found" in verify.stdout, verify.stdout
    assert guest.read_guest(img, root.start_bytes).python == "3.10"  # contents survived


# ----------------------------------------------------------------------------- build


def _check_payload(image: Path, start: int) -> None:
    from workloads.drivers import GUEST_CONFIG_DIR, GUEST_DIR, GUEST_FILES, HERE

    for name in GUEST_FILES:
        assert e2fs.read_file(image, start, f"{GUEST_DIR}/{name}") == (HERE / name).read_text()
    stat = e2fs.debugfs(image, start, f"stat {GUEST_DIR}/layer.py")
    assert "Mode:  0755" in stat and "User:     0   Group:     0" in stat
    cfg = e2fs.read_file(image, start, f"{GUEST_CONFIG_DIR}/llama-3.2-1b.json")
    assert cfg == (REPO / "workloads/model_configs/llama-3.2-1b.json").read_text()


@pytest.mark.parametrize("access", ["rootless", pytest.param("root", marks=needs_root)])
def test_build_inject_manifest_noop(tmp_path: Path, base: tuple[Path, Path], access: str) -> None:
    img, kernel = base
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    (model / "model.safetensors").write_bytes(os.urandom(3 << 20))
    recipe = _recipe(tmp_path, f"model: {{name: tiny, path: {model}}}\n")
    before = _sha(img)
    result = build.build(recipe, base=str(img), kernel=str(kernel), out_dir=tmp_path / "out", access=access)
    assert not result.noop and result.image == tmp_path / "out/t.img"
    assert _sha(img) == before  # the base is never modified
    m = read_manifest(result.manifest)
    assert m.disk == result.image and m.kernel == kernel.resolve() and m.root_partition == "/dev/sda1"
    assert m.generation == 2024 and m.disk_digest == f"sha256:{_sha(result.image)}"
    assert m.kernel_digest == f"sha256:{_sha(kernel)}" and m.record["guest"]["python"] == "3.10"
    assert m.record["tools"]["access"] == access
    _check_payload(result.image, m.record["root"]["start_bytes"])
    start = m.record["root"]["start_bytes"]
    blob = subprocess.run(
        ["debugfs", "-R", "cat /opt/layerlab/models/tiny/model.safetensors", e2fs.spec(result.image, start)],
        capture_output=True,
        check=True,
    ).stdout
    assert blob == (model / "model.safetensors").read_bytes()
    inside = json.loads(e2fs.read_file(result.image, start, build.GUEST_MANIFEST))
    assert inside["build_key"] == m.record["build_key"]
    check_profile(m, "v24.0")
    with pytest.raises(InputError, match="2024 image; gem5 v25"):
        check_profile(m, "v25")
    # Nothing changed: a no-op that re-hashes nothing.
    t0 = time.monotonic()
    again = build.build(recipe, base=str(img), kernel=str(kernel), out_dir=tmp_path / "out", access=access)
    assert again.noop and time.monotonic() - t0 < 2
    # A changed model file changes the build key: rebuilt.
    (model / "config.json").write_text('{"model_type": "llama", "x": 1}\n')
    third = build.build(recipe, base=str(img), kernel=str(kernel), out_dir=tmp_path / "out", access=access)
    assert not third.noop and third.record["build_key"] != m.record["build_key"]
    assert list((tmp_path / "out").glob(".t.img.partial-*")) == []
    assert not _loops_under(tmp_path) and not _mounts_of_ours()


def test_build_grows_mbr_when_payload_needs_room(tmp_path: Path) -> None:
    img = testimage.make_image(tmp_path / "base.img", layout="mbr", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(80 << 20))  # more than the 64 MiB base holds
    recipe = _recipe(tmp_path, f"model: {{name: big, path: {model}}}\n")
    result = build.build(
        recipe, base=str(img), kernel=str(kernel), out_dir=tmp_path / "out", access="rootless"
    )
    assert result.image.stat().st_size > 64 << 20 and img.stat().st_size == 64 << 20
    start = result.record["root"]["start_bytes"]
    check = subprocess.run(["e2fsck", "-fn", e2fs.spec(result.image, start)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert e2fs.read_superblock(result.image, start).free_bytes >= 8 << 20


def test_default_recipe_needs_no_downloads(tmp_path: Path, base: tuple[Path, Path]) -> None:
    recipe, _ = load_recipe(REPO / "images/default.yaml")
    assert recipe.model is None and not recipe.wheels.packages and recipe.base.url is None
    img, kernel = base
    result = build.build(
        REPO / "images/default.yaml",
        base=str(img),
        kernel=str(kernel),
        out_dir=tmp_path / "out",
        access="rootless",
    )
    _check_payload(result.image, 2 << 20)


def test_recipe_errors_name_field_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: ok\nmodel:\n  name: m\n  path: /x\n  hf_repo: a/b\nheadroom_mib: 4\n")
    with pytest.raises(InputError, match=r"bad.yaml:3: model: Value error, give exactly one"):
        load_recipe(bad)
    bad.write_text("name: ok\nbase:\n  url: https://x/y.gz\n")
    with pytest.raises(InputError, match=r"bad.yaml:3: base: .*sha256"):
        load_recipe(bad)
    bad.write_text("name: ok\nheadroom: 4\n")
    with pytest.raises(InputError, match=r"bad.yaml:2: headroom: Extra inputs"):
        load_recipe(bad)


# ----------------------------------------------------------------------------- faults


def test_kernel_from_other_generation_is_refused(tmp_path: Path, base: tuple[Path, Path]) -> None:
    img, _ = base
    other = testimage.make_kernel(tmp_path / "vmlinux-6.8", release=testimage.FLAVOURS[2025][3])
    with pytest.raises(
        InputError, match=r"no /lib/modules/6.8.0-60-generic .*2025 generation, the image from 2024"
    ):
        build.build(_recipe(tmp_path), base=str(img), kernel=str(other), out_dir=tmp_path / "out")
    assert not (tmp_path / "out/t.img").exists()


def test_compressed_kernel_is_refused(tmp_path: Path, base: tuple[Path, Path]) -> None:
    img, _ = base
    (tmp_path / "vmlinuz").write_bytes(b"MZ\x00\x00" + b"\0" * 1000)
    with pytest.raises(InputError, match="not an ELF vmlinux"):
        build.build(
            _recipe(tmp_path), base=str(img), kernel=str(tmp_path / "vmlinuz"), out_dir=tmp_path / "out"
        )


def test_corrupt_partition_tables(tmp_path: Path) -> None:
    img = testimage.make_image(tmp_path / "g.img", layout="gpt")
    with img.open("r+b") as handle:
        handle.seek(512 + 40)
        handle.write(b"\xff")
    with pytest.raises(InputError, match="no valid GPT header at LBA 1"):
        partitions.read_table(img)
    img = testimage.make_image(tmp_path / "m.img", layout="mbr")
    with img.open("r+b") as handle:
        handle.seek(510)
        handle.write(b"\0\0")
    with pytest.raises(InputError, match="no partition table"):
        build.inspect_image(img)


def test_non_ext4_root_is_refused(tmp_path: Path) -> None:
    img = testimage.make_image(tmp_path / "x.img", layout="mbr", fs="xfs")
    with pytest.raises(InputError, match=r"no ext4 partition in the image \(1:xfs\)"):
        build.inspect_image(img)


@pytest.mark.parametrize("access", ["rootless", pytest.param("root", marks=needs_root)])
def test_full_target_filesystem(tmp_path: Path, access: str) -> None:
    img = testimage.make_image(tmp_path / "a.img", layout="mbr", size_mib=64)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80 << 20))
    part = partitions.read_table(img).get(1)
    with pytest.raises(InputError, match="full"):
        inject.inject(img, part.start_bytes, part.size_bytes, [inject.Item("/opt/big.bin", big)], access)
    assert not _loops_under(tmp_path) and not _mounts_of_ours()


@needs_root
def test_base_attached_elsewhere_is_refused(tmp_path: Path, base: tuple[Path, Path]) -> None:
    img, kernel = base
    size = partitions.read_table(img).get(1).size_bytes
    refused = pytest.raises(InputError, match=r"attached to /dev/loop\d+ \(mounted or in use elsewhere\)")
    with inject.loop_mount(img, 2 << 20, size), refused:
        build.build(_recipe(tmp_path), base=str(img), kernel=str(kernel), out_dir=tmp_path / "out")
    assert not _loops_under(tmp_path)


_CHILD = """
import os, sys, time
from disk_images import build, inject
stage, marker = sys.argv[5], sys.argv[6]
def hold(*_a, **_k):
    open(marker, "w").close()
    time.sleep(60)
if stage == "derive":
    real = build.derive
    def slow(base, dest, advance):
        def tick(n):
            advance(n); open(marker, "w").close(); time.sleep(0.2)
        return real(base, dest, tick)
    build.derive = slow
else:
    inject.inject_mounted = hold
    inject.inject_rootless = hold
build.build(sys.argv[1], base=sys.argv[2], kernel=sys.argv[3], out_dir=sys.argv[4])
"""


@pytest.mark.parametrize(
    ("stage", "sig"),
    [
        ("derive", signal.SIGTERM),
        ("derive", signal.SIGINT),
        pytest.param("inject", signal.SIGTERM, marks=needs_root),
    ],
)
def test_killed_build_leaves_nothing(tmp_path: Path, stage: str, sig: int) -> None:
    img = testimage.make_image(tmp_path / "base.img", layout="gpt", size_mib=256)
    with img.open("r+b") as handle:  # data (not holes) so the copy takes several chunks
        for off in range(8 << 20, 200 << 20, 16 << 20):
            handle.seek(off)
            handle.write(os.urandom(1 << 20))
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    before = _sha(img)
    marker = tmp_path / "marker"
    out = tmp_path / "out"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(_recipe(tmp_path)),
            str(img),
            str(kernel),
            str(out),
            stage,
            str(marker),
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert _sha(img) == before
    assert not (out / "t.img").exists() and not (out / "t.manifest.json").exists()
    assert list(out.glob(".t.img.partial-*")) == []
    assert not _loops_under(tmp_path) and not _mounts_of_ours()


def test_digest_cache_is_shared_with_the_run_contract(tmp_path: Path, base: tuple[Path, Path]) -> None:
    img, kernel = base
    result = build.build(
        _recipe(tmp_path), base=str(img), kernel=str(kernel), out_dir=tmp_path / "out", access="rootless"
    )
    assert file_digest(img) == result.record["base"]["sha256"]
    assert file_digest(result.image) == read_manifest(result.manifest).disk_digest
