"""Stats parser speed, library and CLI, on three file shapes, against a bare line-split loop.

Files (made in a temp dir, deleted after):

1. ``blocks``: >= 200 MB of the real fixture *blocks* concatenated (every version's format:
   units, no units, no descriptions, one-line buckets) -- the shape this benchmark always had.
2. ``real``: >= 200 MB of *whole* real multi-dump fixture files repeated (gem5 v24 2-dump
   bootcamp run, gem5 2017 28-dump DRAM run: long descriptions, thousands of distinct stats),
   and ``real-100``: its first ~100 MB (whole files), for the CLI's 100 MB target.
3. ``gpufs``: >= 500 MB shaped like a per-kernel-dump GPU-FS run: the object tree of the stock
   MI300X's preflight ``config.ini`` (40 CUs, TCP/TCC/SQC controllers, DRAM), made here with
   ``layerlab render`` + ``layerlab preflight`` when the gem5 tree exists (else a built-in tree
   of the same shape, and the output says so), with the real GPU stat lines of the 2016 VIPER
   fixture renamed onto each object, one dump per kernel, over a hundred dumps.

Per file, alternating, best of ``--repeat``: (a) the baseline ``for line in f:
line.split('#')[0].split()`` + float of the value, nothing kept; (b) the library,
``parse_stats_text`` (the whole table, no cache; the scan kernel's one-off build or load is
kept out, see ``--compile``); (c) the CLI end to end, ``layerlab stats FILE --format parquet -o
out`` in a fresh process with an empty stats cache (process start to file written, what users
run; the C kernel's library stays built, as after ``make setup``). Then the imports
``layerlab stats`` pays (``python -X importtime``). The machine's load average is printed at
the start and the end: on a shared 2-core machine the CLI's two threads lose most to it.

``--kernel numba`` runs the library and the CLI with the numba kernel instead of the C one
(``LAYERLAB_STATS_KERNEL``), for comparison.

Targets (PASS/FAIL): library >= 2.5x the loop on every file; CLI >= 2x on the 500 MB file and
>= 1x on 100 MB; no pandas or analytical imported for parquet/csv, numba only when the numba
kernel scans (never with the C kernel).

    .venv/bin/python benchmarks/bench_stats.py [--repeat 2] [--gpufs-mb 520] [--compile] [--kernel c]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = Path(os.environ.get("LAYERLAB_FIXTURES", REPO.parent / "shared" / "fixtures"))
GEM5_SRC = REPO.parent / "shared" / "gem5_src" / "v24.0.0.1"

import stats_parsers.stats_text as stats_text  # noqa: E402
from stats_parsers.stats_text import parse_stats_text  # noqa: E402

LIB_TARGET = 2.5
CLI_TARGETS = {"gpufs": 2.0, "real-100": 1.0}
REAL_FILES = (
    FIXTURES / "gem5_cpu_stats/gem5-v24_bootcamp2024_simpoint0-run_2dumps_stats.txt",
    FIXTURES / "gem5_cpu_stats/gem5-2017_dram-lowp-openpage_28dumps_stats.txt",
)
GPU_SOURCE = FIXTURES / "gem5_gpu_stats/gem5-2016_04gpu_GPU_VIPER_stats.txt"
BEGIN = "\n---------- Begin Simulation Statistics ----------\n"
END = "\n---------- End Simulation Statistics   ----------\n"

_COMPILE = (
    "import time; t = time.perf_counter(); from stats_parsers import scan; scan.KERNEL = 'numba'; "
    "scan.warm(); print(time.perf_counter() - t)"
)
_BLOCK = re.compile(
    r"\n---------- Begin Simulation Statistics ----------\n.*?\n---------- End Simulation Statistics   ----------\n",
    re.S,
)


# -- files ---------------------------------------------------------------------------------------


def build_blocks(path: Path, megabytes: int) -> None:
    blocks = []
    for source in sorted((FIXTURES / "gem5_cpu_stats").glob("*.txt")) + sorted(
        (FIXTURES / "gem5_gpu_stats").glob("*.txt")
    ):
        blocks += _BLOCK.findall(source.read_text())
    _repeat(path, blocks, megabytes)


def build_real(path: Path, megabytes: int) -> None:
    _repeat(path, [f.read_text() for f in REAL_FILES], megabytes)


def _repeat(path: Path, pieces: list[str], megabytes: int) -> None:
    target, written, i = megabytes * 2**20, 0, 0
    with path.open("w") as out:
        while written < target:
            piece = pieces[i % len(pieces)]
            out.write(piece)
            written += len(piece)
            i += 1


def mi300x_objects(tmp: Path) -> tuple[list[tuple[str, str]], str]:
    """(object path, type) of the stock MI300X's preflight config.ini, and where it came from."""
    config = None
    if GEM5_SRC.is_dir():
        work = tmp / "render"
        work.mkdir()
        (work / "vmlinux").touch()
        (work / "disk.img").touch()
        layerlab = [sys.executable, "-m", "orchestrator"]
        render = [*layerlab, "render", "--device", "mi300x", "--gem5-version", "v24.0", "--out", "r"]
        render += ["--gem5-src", str(GEM5_SRC), "--kernel", "vmlinux", "--disk", "disk.img"]
        render += ["--skip-until", "1000000000", "--", "python3", "x.py"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        try:
            subprocess.run(render, cwd=work, env=env, check=True, capture_output=True)
            subprocess.run([*layerlab, "preflight", "r"], cwd=work, env=env, check=True, capture_output=True)
            config = work / "r" / "preflight" / "config.ini"
        except subprocess.CalledProcessError as exc:
            print(f"note: render/preflight failed ({exc.stderr.decode()[-200:].strip()}); built-in tree")
    if config is None or not config.is_file():
        objects = [("system.Shader", "Shader")]
        objects += [(f"system.Shader.CUs{i:02d}", "ComputeUnit") for i in range(40)]
        objects += [(f"system.ruby.tcp_cntrl{i}", "TCP_Controller") for i in range(40)]
        objects += [(f"system.ruby.sqc_cntrl{i}", "SQC_Controller") for i in range(10)]
        objects += [("system.ruby.tcc_cntrl0", "TCC_Controller")]
        objects += [("system.gpu_mem_ctrls.dram", "HBM_1000_4H_1x128")]
        return objects, "built-in MI300X-shaped tree (no gem5 tree at " + str(GEM5_SRC) + ")"
    objects, section = [], None
    for raw in config.read_text().splitlines():
        if raw.startswith("["):
            section = raw.strip("[]")
        elif raw.startswith("type=") and section:
            objects.append((section, raw[5:]))
    return (
        objects,
        f"preflight config.ini of the stock MI300X ({config.stat().st_size / 1e6:.1f} MB, {len(objects)} objects)",
    )


def build_gpufs(path: Path, megabytes: int, objects: list[tuple[str, str]]) -> tuple[int, dict[str, int]]:
    """Real GPU stat lines (2016 VIPER fixture) renamed onto the MI300X tree, one dump a kernel."""
    from stats_parsers.names import config_to_stats

    lines = _BLOCK.findall(GPU_SOURCE.read_text())[0].strip("\n").splitlines()[1:-1]
    groups: dict[str, list[str]] = {
        "ComputeUnit": [],
        "TCP_Controller": [],
        "TCC_Controller": [],
        "SQC_Controller": [],
        "dram": [],
        "Shader": [],
        "global": [],
        "rest": [],
    }
    prefixes = {
        "system.cpu1.CUs0.": "ComputeUnit",
        "system.ruby.tcp_cntrl0.": "TCP_Controller",
        "system.ruby.tcc_cntrl0.": "TCC_Controller",
        "system.ruby.sqc_cntrl0.": "SQC_Controller",
        "system.mem_ctrls.": "dram",
    }
    old_prefix = {group: prefix for prefix, group in prefixes.items()} | {"Shader": "system.cpu1."}
    for text in lines:
        if not text.strip():
            continue
        for prefix, group in prefixes.items():
            if text.startswith(prefix):
                groups[group].append(text[len(prefix) :])
                break
        else:
            if re.match(r"system\.cpu1\.CUs\d+\.", text):
                continue  # the other fixture CUs: CU 0 stands for each of the 40
            if text.startswith("system.cpu1."):
                groups["Shader"].append(text[len("system.cpu1.") :])
            elif not text.startswith("system."):
                groups["global"].append(text)
            else:
                groups["rest"].append(text)
    groups["Shader"].append(
        "shaderActiveTicks                        2000000 # Total ticks that any CU attached to this shader is active (Unspecified)"
    )
    counts = {k: 0 for k in ("ComputeUnit", "TCP_Controller", "TCC_Controller", "SQC_Controller", "dram")}
    body: list[str] = []
    for obj, kind in objects:
        group = "dram" if kind.startswith(("HBM", "DDR", "LPDDR", "GDDR")) or obj.endswith(".dram") else kind
        if kind == "Shader":
            group = "Shader"
        if group not in groups or group in ("global", "rest"):
            continue
        if group in counts:
            counts[group] += 1
        prefix = config_to_stats(obj, "system.Shader", "system.cpu1") + "."
        body.extend(_rename(prefix, tail, old_prefix[group]) for tail in groups[group])
    block_tail = "\n".join(body + groups["rest"]) + "\n"
    head = "\n".join(groups["global"]) + "\n"
    target, written, dumps = megabytes * 2**20, 0, 0
    with path.open("w") as out:
        while written < target:
            ticks = f"{'simTicks':<40} {2_000_000 + 1000 * dumps:>12} # Number of ticks simulated (Tick)\n"
            piece = BEGIN + ticks + head + block_tail + END
            out.write(piece)
            written += len(piece)
            dumps += 1
    return dumps, counts


def _rename(prefix: str, tail: str, old_prefix: str) -> str:
    """``prefix + tail`` keeping the line's columns: the padding after the name absorbs the
    difference in name length (at least one space stays)."""
    name, rest = tail.split(" ", 1) if " " in tail else (tail, "")
    diff = len(prefix) - len(old_prefix)
    if diff > 0:
        spaces = len(rest) - len(rest.lstrip(" "))
        rest = rest[min(diff, max(spaces - 1, 0)) :]
    else:
        rest = " " * -diff + rest
    return (
        f"{prefix}{name} {rest}"
        if rest and not rest.startswith(" ")
        else f"{prefix}{name}{' ' if rest else ''}{rest}"
    )


# -- timings -------------------------------------------------------------------------------------


def baseline(path: Path) -> None:
    with path.open() as handle:
        for line in handle:
            parts = line.split("#")[0].split()
            if len(parts) >= 2:
                try:  # noqa: SIM105 - contextlib.suppress would slow the baseline
                    float(parts[1])
                except ValueError:
                    pass


def _timed(func, *args) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def cli(path: Path, tmp: Path) -> float:
    """``layerlab stats FILE --format parquet -o out`` in a fresh process, empty cache: seconds."""
    out = tmp / "cli.parquet"
    cache = tempfile.mkdtemp(dir=tmp)
    env = dict(os.environ, PYTHONPATH=str(REPO), LAYERLAB_CACHE_DIR=cache)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "orchestrator", "stats", str(path), "--format", "parquet", "-o", str(out)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    took = time.perf_counter() - start
    subprocess.run(["rm", "-rf", cache], check=True)
    out.unlink()
    return took


def imports(path: Path, fmt: str, tmp: Path) -> set[str]:
    """Top-level packages ``layerlab stats PATH --format FMT -o FILE`` imports."""
    env = dict(os.environ, PYTHONPATH=str(REPO), LAYERLAB_CACHE_DIR=str(tmp / "imp-cache"))
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "orchestrator",
            "stats",
            str(path),
            "--format",
            fmt,
            "-o",
            str(tmp / f"imp.{fmt}"),
            "--no-cache",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    found = set()
    for row in done.stderr.splitlines():
        if row.startswith("import time:") and "|" in row:
            found.add(row.rsplit("|", 1)[1].strip().split(".")[0])
    return found


def compile_times() -> tuple[float | None, float | None]:
    """numba: cold compile into a fresh cache, then the load from the cache (what each process
    using that kernel pays)."""
    from stats_parsers import scan

    if not scan.HAVE_NUMBA:
        return None, None
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO))
        out = subprocess.run(
            [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=True
        )
        cold = float(out.stdout.strip().splitlines()[-1])
        out = subprocess.run(
            [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=True
        )
    return cold, float(out.stdout.strip().splitlines()[-1])


def c_build_times() -> tuple[float | None, float | None]:
    """C kernel: one build with the system compiler, and loading the built library."""
    from stats_parsers import scan_c

    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ok = scan_c._build(compiler, Path(tmp) / "lib.so")
        built = time.perf_counter() - start
        code = (
            "import ctypes, sys, time; t = time.perf_counter(); ctypes.CDLL(sys.argv[1]); "
            "print(time.perf_counter() - t)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(Path(tmp) / "lib.so")],
            capture_output=True,
            text=True,
            check=True,
        )
    return (built if ok else None), float(out.stdout.strip())


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--blocks-mb", type=int, default=200)
    parser.add_argument("--real-mb", type=int, default=200)
    parser.add_argument("--gpufs-mb", type=int, default=520)
    parser.add_argument(
        "--compile", action="store_true", help="also time the C build and the cold numba compile (~1 min)"
    )
    parser.add_argument("--kernel", choices=["c", "numba"], default="c", help="scan kernel (default: c)")
    args = parser.parse_args()
    began = time.perf_counter()
    os.environ["LAYERLAB_STATS_KERNEL"] = args.kernel  # for the CLI's processes
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    if args.compile:
        built, loaded = c_build_times()
        if built is not None:
            print(f"C kernel: {built:.2f} s build (cc -O2, once), {loaded * 1000:.1f} ms load per process")
        cold, warm = compile_times()
        if cold is not None:
            print(f"numba kernel: {cold:.1f} s cold compile (fresh cache), {warm:.2f} s import + cache load")
    from stats_parsers import scan

    scan.KERNEL = args.kernel
    scan.warm()  # the library figures leave out the one-off build/load; the CLI figures include the load
    print(f"scan kernel: {scan.kernel().__name__}")
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        objects, origin = mi300x_objects(tmp)
        files = {}
        build_blocks(tmp / "blocks.txt", args.blocks_mb)
        files["blocks"] = tmp / "blocks.txt"
        build_real(tmp / "real.txt", args.real_mb)
        files["real"] = tmp / "real.txt"
        build_real(tmp / "real-100.txt", 100)
        files["real-100"] = tmp / "real-100.txt"
        dumps, counts = build_gpufs(tmp / "gpufs.txt", args.gpufs_mb, objects)
        files["gpufs"] = tmp / "gpufs.txt"
        print(f"gpufs tree: {origin}")
        print(
            f"gpufs file: {dumps} dumps (one per kernel); per dump: "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + f"; lines renamed from {GPU_SOURCE.name}"
        )
        print(f"built in {time.perf_counter() - began:.0f} s\n")
        header = f"{'file':<9} {'MB':>6} {'dumps':>6} {'rows':>11} | {'loop':>6} {'library':>8} {'ratio':>6} | {'CLI':>6} {'ratio':>6}"
        print(header)
        print("-" * len(header))
        for label, path in files.items():
            size_mb = path.stat().st_size / 1e6
            base_t, lib_t, cli_t = [], [], []
            rows = n_dumps = 0
            for _ in range(args.repeat):
                base_t.append(_timed(baseline, path))
                if label != "real-100":
                    start = time.perf_counter()
                    parsed = parse_stats_text(path)
                    lib_t.append(time.perf_counter() - start)
                    rows, n_dumps = parsed.frame.height, parsed.n_dumps
                    del parsed
                cli_t.append(cli(path, tmp))
            base, lib, cli_s = min(base_t), min(lib_t) if lib_t else None, min(cli_t)
            lib_ratio = base / lib if lib else None
            cli_ratio = base / cli_s
            results.append((label, lib_ratio, cli_ratio))
            lib_text = f"{lib:7.2f}s {lib_ratio:5.2f}x" if lib else f"{'-':>8} {'-':>6}"
            shape = f"{n_dumps:>6} {rows:>11,}" if rows else f"{'-':>6} {'-':>11}"
            print(
                f"{label:<9} {size_mb:6.0f} {shape} | {base:5.2f}s {lib_text} | {cli_s:5.2f}s {cli_ratio:5.2f}x"
            )
        print("\n(loop/library/CLI: best of", args.repeat, "runs, seconds; ratio = loop time / its time)")
        small = REAL_FILES[0]
        imp_small = imports(small, "parquet", tmp)
        imp_big = imports(files["real-100"], "parquet", tmp)
        imp_csv = imports(small, "csv", tmp)
    print("\ntargets:")
    for label, lib_ratio, cli_ratio in results:
        if lib_ratio is not None:
            print(
                f"  library >= {LIB_TARGET}x loop on {label:<9}: {lib_ratio:5.2f}x  {verdict(lib_ratio >= LIB_TARGET)}"
            )
        if label in CLI_TARGETS:
            want = CLI_TARGETS[label]
            print(f"  CLI     >= {want}x loop on {label:<9}: {cli_ratio:5.2f}x  {verdict(cli_ratio >= want)}")
    for name, found, numba_ok in (
        ("parquet, 0.5 MB file", imp_small, "numba" not in imp_small),
        ("csv, 0.5 MB file", imp_csv, "numba" not in imp_csv),
        (
            f"parquet, 100 MB file ({args.kernel} kernel)",
            imp_big,
            args.kernel == "numba" or "numba" not in imp_big,
        ),
    ):
        bad = sorted({"pandas", "analytical"} & found) + ([] if numba_ok else ["numba"])
        loaded = ", ".join(m for m in ("polars", "pyarrow", "numba") if m in found)
        print(f"  imports, {name}: {loaded}; unwanted: {', '.join(bad) or 'none'}  {verdict(not bad)}")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"total benchmark time: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    if "--polars-path" in sys.argv:  # internal: force the polars path (comparison runs)
        stats_text._NATIVE = False
        sys.argv.remove("--polars-path")
    main()
