"""Stats parser speed: full-fidelity parse vs a bare line-split loop, same file, same process.

Builds a >= 200 MB multi-dump stats.txt by concatenating the real fixture blocks (every
version's format: units, no units, no descriptions, one-line buckets) in a temp dir, then
times, alternating, (a) the baseline ``for line in f: line.split('#')[0].split()`` + float of
the value, nothing kept, and (b) ``parse_stats_text`` (the whole table, no cache). Best of N
runs each, since other jobs share this machine. Target: (b) >= 2x (a) in MB/s.

(b) uses the native (numba) scanner; its one-off compile is kept out of the timings and
printed apart: cold (empty numba cache, in a fresh process) and warm (loading the cache, once
per process). It is timed again with one scan thread (what a 1-core machine gets), and the
polars fallback path once, for comparison.

    .venv/bin/python benchmarks/bench_stats.py [--mb 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = REPO.parent / "shared" / "fixtures"

import stats_parsers.stats_text as stats_text  # noqa: E402

try:
    from stats_parsers import scan as scan_mod
except ImportError:  # numba missing: the parse runs the polars path
    scan_mod = None
from stats_parsers.stats import read_stats  # noqa: E402
from stats_parsers.stats_text import parse_stats_text  # noqa: E402

_COMPILE = "import time; t = time.perf_counter(); from stats_parsers import scan; scan.warm(); print(time.perf_counter() - t)"


def compile_times() -> tuple[float | None, float | None]:
    """(cold compile in a fresh process with an empty numba cache, warm cache load here) in s."""
    try:
        from stats_parsers import scan
    except ImportError:
        return None, None
    if not scan.HAVE_NUMBA:
        return None, None
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(REPO))
        out = subprocess.run(
            [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=True
        )
        cold = float(out.stdout.strip().splitlines()[-1])
    start = time.perf_counter()
    scan.warm()
    return cold, time.perf_counter() - start


_BLOCK = re.compile(
    r"\n---------- Begin Simulation Statistics ----------\n.*?\n---------- End Simulation Statistics   ----------\n",
    re.S,
)


def build(path: Path, megabytes: int) -> int:
    blocks = []
    for source in sorted((FIXTURES / "gem5_cpu_stats").glob("*.txt")) + sorted(
        (FIXTURES / "gem5_gpu_stats").glob("*.txt")
    ):
        blocks += _BLOCK.findall(source.read_text())
    target, written, i = megabytes * 2**20, 0, 0
    with path.open("w") as out:
        while written < target:
            block = blocks[i % len(blocks)]
            out.write(block)
            written += len(block)
            i += 1
    return i


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cold, warm = compile_times()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stats.txt"
        dumps = build(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        base_t, full_t, rows = [], [], 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            baseline(path)
            base_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            parsed = parse_stats_text(path)
            full_t.append(time.perf_counter() - start)
            rows = parsed.frame.height
            del parsed
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        one_thread_t = None
        if scan_mod is not None and scan_mod.HAVE_NUMBA:
            threads, scan_mod.THREADS = scan_mod.THREADS, 1
            try:
                one_thread_t = min(_timed(parse_stats_text, path) for _ in range(args.repeat))
            finally:
                scan_mod.THREADS = threads
        stats_text._NATIVE = False
        start = time.perf_counter()
        parse_stats_text(path)
        polars_t = time.perf_counter() - start
        stats_text._NATIVE = True
        cache_dir = Path(tmp) / "cache"
        read_stats(path, cache_dir=cache_dir)  # parse + write the parquet cache
        start = time.perf_counter()
        read_stats(path, cache_dir=cache_dir)
        cached_t = time.perf_counter() - start
        base_rate, full_rate = size_mb / min(base_t), size_mb / min(full_t)
        print(f"file: {size_mb:.0f} MB, {dumps} dumps, {rows:,} rows")
        print(f"baseline split loop : {base_rate:7.1f} MB/s  (best {min(base_t):.2f} s of {args.repeat})")
        print(f"parse_stats_text    : {full_rate:7.1f} MB/s  (best {min(full_t):.2f} s of {args.repeat})")
        print(f"ratio               : {full_rate / base_rate:7.2f}x  (target >= 2x)")
        if one_thread_t is not None:
            print(
                f"one scan thread     : {size_mb / one_thread_t:7.1f} MB/s  "
                f"({size_mb / one_thread_t / base_rate:.2f}x the baseline, best of {args.repeat})"
            )
        print(f"polars path         : {size_mb / polars_t:7.1f} MB/s  (fallback without numba, one run)")
        if cold is None:
            print("native scanner      : numba unavailable, parse_stats_text used the polars path")
        else:
            print(
                f"numba compile       : {cold:7.2f} s cold (empty cache, fresh process), {warm:.2f} s cache load"
            )
        print(f"peak RSS            : {peak_mb:7.0f} MB (whole process, after baseline + parses)")
        print(f"cached re-read      : {size_mb / cached_t:7.1f} MB/s  (read_stats from its parquet cache)")


if __name__ == "__main__":
    main()
