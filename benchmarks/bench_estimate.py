"""Op-estimates per second: the vectorised estimator path vs a naive per-op Python loop.

An op-estimate is one (op, shape, machine) row with every estimator's time computed. The
vectorised figure includes building the op table from the shapes; the naive loop computes only
the plain roofline per row (strictly less work), so the ratio understates the gap.
Target: >= 1e6 op-estimates/s on the vectorised path.
"""

from __future__ import annotations

import time

import numpy as np

from analytical.catalog import get_hardware
from analytical.estimators import estimate, naive_roofline
from analytical.ops import build_ops, make_shapes
from workloads.models import load_model_config

TARGET = 1e6


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    model = load_model_config("llama-3.2-1b")
    machines = [get_hardware("mi300x"), get_hardware("gem5-mi300"), get_hardware("a100")]
    rng = np.random.default_rng(0)
    n_shapes = 20_000
    shapes = make_shapes(
        "chunked",
        batch=rng.integers(1, 9, n_shapes),
        seq=rng.integers(1, 2049, n_shapes),
        context=rng.integers(0, 8193, n_shapes),
        decode_tokens=rng.integers(0, 65, n_shapes),
    )

    def vectorised() -> None:
        ops = build_ops(model, shapes, engine="vllm")
        estimate(ops, machines, estimator="full")

    rows = len(build_ops(model, shapes, engine="vllm")) * len(machines)
    t_vec = _best_of(vectorised)
    vec_rate = rows / t_vec

    sample = build_ops(
        model,
        make_shapes("chunked", batch=2, seq=rng.integers(1, 2049, 2_000), context=512, decode_tokens=4),
        engine="vllm",
    )
    t_naive = _best_of(lambda: [naive_roofline(sample, hw) for hw in machines], repeats=1)
    naive_rate = len(sample) * len(machines) / t_naive

    print(
        f"vectorised: {rows:,} op-estimates (ops x {n_shapes:,} shapes x {len(machines)} machines, "
        f"all estimators) in {t_vec:.3f} s = {vec_rate:,.0f} op-estimates/s"
    )
    print(
        f"naive loop: {len(sample) * len(machines):,} op-estimates (roofline only) in {t_naive:.3f} s "
        f"= {naive_rate:,.0f} op-estimates/s"
    )
    print(
        f"speed-up: {vec_rate / naive_rate:,.1f}x; target {TARGET:,.0f}/s: "
        f"{'met' if vec_rate >= TARGET else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
