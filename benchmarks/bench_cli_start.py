"""CLI start: ``layerlab --help`` and a warm ``layerlab preflight``, process start to output.

Users feel the CLI's start on every command. ``layerlab --help`` must list every command without
importing pandas, polars or numba (target <= 0.3 s); the baseline in the same run is a bare
``python -c pass`` (the interpreter's own start) and the eager import of every command module
(what the CLI cost before commands loaded lazily). When the real gem5 trees are beside the
checkout, a warm preflight of one MI300X run is timed too (target <= 10 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERLAB = Path(sys.executable).with_name("layerlab")
HELP_TARGET_S = 0.3
PREFLIGHT_TARGET_S = 10.0


def best_of(argv: list[str], n: int = 5, **kw) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kw)
        times.append(time.perf_counter() - start)
    return min(times)


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def main() -> int:
    bare = best_of([sys.executable, "-c", "pass"])
    eager = best_of([sys.executable, "-c", "import orchestrator.cli as c; c.build_parser(None)"])
    lazy = best_of([str(LAYERLAB), "--help"])
    print(
        f"layerlab --help: {lazy:.3f} s   (bare python {bare:.3f} s; eager imports {eager:.3f} s)  "
        f"target <= {HELP_TARGET_S} s: {verdict(lazy, HELP_TARGET_S)}"
    )
    ok = lazy <= HELP_TARGET_S
    trees = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src")
    tree = trees / "v24.0.0.1"
    if tree.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            (t / "vmlinux").write_bytes(b"")
            (t / "disk.img").write_bytes(b"")
            env = dict(os.environ, LAYERLAB_CACHE_DIR=str(t / "cache"))
            subprocess.run(
                [str(LAYERLAB), "render", "--device", "mi300x", "--gem5-version", "v24.0", "--out", str(t / "run"),
                 "--gem5-src", str(tree), "--kernel", str(t / "vmlinux"), "--disk", str(t / "disk.img"),
                 "--skip-until", "1000000000", "--", "python3", "/opt/layerlab/drivers/layer.py"],
                check=True, stdout=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            argv = [str(LAYERLAB), "preflight", str(t / "run")]
            cold = best_of(argv, n=1, env=env)
            warm = best_of(argv, n=3, env=env)
            print(
                f"layerlab preflight (MI300X, v24.0): warm {warm:.2f} s   (cold, tree built once: {cold:.2f} s)  "
                f"target <= {PREFLIGHT_TARGET_S} s: {verdict(warm, PREFLIGHT_TARGET_S)}"
            )
            ok = ok and warm <= PREFLIGHT_TARGET_S
    else:
        print(f"layerlab preflight: skipped (no gem5 tree at {tree})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
