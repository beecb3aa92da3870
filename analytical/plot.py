"""A real roofline chart: log-log, memory and compute ceilings, one point per op.

Points sit at (arithmetic intensity, attained FLOP/s = FLOPs / t_est_s), so the vertical gap to
the ceiling is the estimator's overhead beyond the ideal roofline. The file is written
atomically (matplotlib renders into a temp file that is then renamed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from analytical.hardware import HardwareSpec
from foundation import atomic

_CLASS_COLOURS = {
    "gemm": "tab:blue",
    "attention": "tab:red",
    "elementwise": "tab:green",
    "norm": "tab:purple",
    "kv_store": "tab:orange",
    "embedding": "tab:brown",
}


def roofline_plot(
    table: pd.DataFrame, hardware: HardwareSpec, path: str | os.PathLike[str], title: str | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[(table["flops"] > 0) & (table["t_est_s"] > 0) & np.isfinite(table["intensity"])]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    bw = hardware.dram_bandwidth_bytes_per_s
    ceilings = sorted(hardware.flops_per_clock_per_cu.items(), key=lambda kv: -kv[1])
    top = max(per_cu for _, per_cu in ceilings) * hardware.compute_units * hardware.clock_hz
    # x range: every op and every ridge point (peak / BW) with some margin
    x_lo = max(min(rows["intensity"].min() if len(rows) else 0.1, 0.1) / 2, 1e-3)
    x_hi = max(rows["intensity"].max() if len(rows) else 1.0, top / bw) * 4
    xs = np.logspace(np.log10(x_lo), np.log10(x_hi), 200)
    styles = ["-", "--", "-.", ":", (0, (5, 1))]
    for i, (cls, per_cu) in enumerate(ceilings):
        peak = per_cu * hardware.compute_units * hardware.clock_hz
        ax.plot(
            xs,
            np.minimum(peak, bw * xs),
            color="0.25",
            ls=styles[i % len(styles)],
            lw=1.0,
            label=f"{cls} {peak / 1e12:.3g} TFLOP/s",
        )
    ax.plot(xs, np.minimum(top, bw * xs), color="black", lw=1.6, label=f"DRAM {bw / 1e9:.4g} GB/s")
    if hardware.llc_bandwidth_bytes_per_s:
        llc = hardware.llc_bandwidth_bytes_per_s
        ax.plot(
            xs, np.minimum(top, llc * xs), color="0.6", ls=":", lw=1.0, label=f"LLC {llc / 1e12:.3g} TB/s"
        )
    for cls, group in rows.groupby("op_class"):
        attained = group["flops"] / group["t_est_s"]
        ax.scatter(
            group["intensity"],
            attained,
            s=22,
            color=_CLASS_COLOURS.get(str(cls), "gray"),
            label=str(cls),
            zorder=3,
        )
        for _, r in group.iterrows():
            ax.annotate(
                str(r["op"]),
                (r["intensity"], r["flops"] / r["t_est_s"]),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(title or f"roofline: {hardware.name}")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format=fmt))
    finally:
        plt.close(fig)
