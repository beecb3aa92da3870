"""Disk images: payload injection throughput beside plain ``cp``, and the no-op rebuild of 50 GB.

1. Injection: a 256 MiB payload (four random files) written into a loop-mounted ext4 by
   ``inject.inject_mounted`` versus ``cp -r`` of the same files into the same mount, each into a
   fresh directory, page cache dropped between (target: layerlab ≥ 80 % of cp's throughput).
   The rootless path (debugfs) is timed too, for information. Needs root; skipped otherwise.
2. No-op rebuild: a 50 GB sparse base image (real partition table + ext4, the rest a hole) is
   built once (hashing it takes a while), then ``layerlab image build`` runs again with nothing
   changed, as a fresh process (target: ≤ 2 s; baseline: ``layerlab --help`` in the same run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from disk_images import build, inject, partitions, testimage  # noqa: E402

LAYERLAB = Path(sys.executable).with_name("layerlab")
MIB = 1 << 20
INJECT_TARGET = 0.80
NOOP_TARGET_S = 2.0


def _drop_caches() -> None:
    os.sync()
    if os.geteuid() == 0:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")


def bench_inject(tmp: Path) -> None:
    if not inject.can_loop_mount():
        print("inject: skipped (loop devices need root)")
        return
    payload = tmp / "payload"
    payload.mkdir()
    for i in range(4):
        (payload / f"shard-{i}.safetensors").write_bytes(os.urandom(64 * MIB))
    img = testimage.make_image(tmp / "inject.img", layout="gpt", size_mib=1024)
    part = partitions.read_table(img).get(1)
    total = 256 * MIB
    results = {}
    with inject.loop_mount(img, part.start_bytes, part.size_bytes) as mnt:
        for round_ in range(2):
            _drop_caches()
            t0 = time.perf_counter()
            subprocess.run(["cp", "-r", str(payload), str(mnt / f"cp-{round_}")], check=True)
            os.sync()
            results.setdefault("cp", []).append(time.perf_counter() - t0)
            _drop_caches()
            t0 = time.perf_counter()
            inject.inject_mounted(mnt, inject.tree_items(payload, f"/layerlab-{round_}"))
            results.setdefault("layerlab", []).append(time.perf_counter() - t0)
            shutil.rmtree(mnt / f"cp-{round_}")
            shutil.rmtree(mnt / f"layerlab-{round_}")
    _drop_caches()
    t0 = time.perf_counter()
    inject.inject_rootless(img, part.start_bytes, inject.tree_items(payload, "/rootless"))
    rootless = time.perf_counter() - t0
    cp_s, ll_s = min(results["cp"]), min(results["layerlab"])
    ratio = cp_s / ll_s
    print(
        f"inject 256 MiB into a loop mount: cp {total / MIB / cp_s:.0f} MiB/s, layerlab {total / MIB / ll_s:.0f} MiB/s "
        f"({ratio:.0%} of cp; target ≥ {INJECT_TARGET:.0%}) {'OK' if ratio >= INJECT_TARGET else 'MISSED'}"
    )
    print(f"inject 256 MiB rootless (debugfs): {total / MIB / rootless:.0f} MiB/s (information)")


def bench_noop(tmp: Path) -> None:
    base = testimage.make_image(tmp / "base50.img", layout="mbr", size_mib=256)
    os.truncate(base, 50 * 10**9 // 512 * 512)
    kernel = testimage.make_kernel(tmp / "vmlinux")
    recipe = tmp / "bench.yaml"
    recipe.write_text("name: bench\nheadroom_mib: 8\n")
    out = tmp / "out"
    t0 = time.perf_counter()
    build.build(recipe, base=str(base), kernel=str(kernel), out_dir=out)
    first = time.perf_counter() - t0
    argv = [
        str(LAYERLAB),
        "image",
        "build",
        str(recipe),
        "--base",
        str(base),
        "--kernel",
        str(kernel),
        "--out",
        str(out),
    ]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        assert "up to date" in proc.stdout, proc.stdout
    t0 = time.perf_counter()
    subprocess.run([str(LAYERLAB), "--help"], capture_output=True, check=True)
    help_s = time.perf_counter() - t0
    noop = min(times)
    print(
        f"50 GB sparse image: first build {first:.1f} s (hashes base and output once); "
        f"no-op rebuild {noop:.2f} s (target ≤ {NOOP_TARGET_S:.0f} s) {'OK' if noop <= NOOP_TARGET_S else 'MISSED'}; "
        f"baseline `layerlab --help` {help_s:.2f} s"
    )


def main() -> None:
    cache = tempfile.mkdtemp(prefix="layerlab-bench-cache-")
    os.environ["LAYERLAB_CACHE_DIR"] = cache
    tmp = Path(tempfile.mkdtemp(prefix="layerlab-bench-image-"))
    try:
        bench_inject(tmp)
        bench_noop(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
