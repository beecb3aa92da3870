"""The report's charts: roofline of the simulated machine, time per op, error histogram, sweeps,
and with a trace the model, gem5 and measured time per role (``three_way_figure``).

Made for a paper: every axis has its unit, labels never overlap each other or leave the figure,
legends sit outside the axes so no data hides behind them, and a chart built from runs of the
gem5 test double carries the self-test title in red on its first line, and one with CPU-measured
times says so in dark orange on the next. Each function returns a
matplotlib Figure (tests measure it); ``save`` writes one PNG atomically and closes it.

Roofline: one op (or role) per number, placed at its model arithmetic intensity; the filled
marker is the throughput the simulation achieved (model FLOPs / simulated time), the hollow
marker above or below it on the same vertical is the estimate's (model FLOPs / estimated time),
so the vertical gap is the estimate's error on a log scale.
"""

from __future__ import annotations

import math
import os
import textwrap
from typing import Any

import numpy as np
import pandas as pd

from analytical.estimators import ESTIMATORS
from analytical.plot import format_number  # one number format for every chart of layerlab
from foundation import atomic
from reports.hardware import CPU_WARNING as CPU_NOTE
from reports.runs import SELFTEST_TITLE

CLASS_COLOURS = {
    "gemm": "tab:blue",
    "attention": "tab:red",
    "elementwise": "tab:green",
    "norm": "tab:purple",
    "kv_store": "tab:orange",
    "embedding": "tab:brown",
}
ESTIMATOR_COLOURS = dict(
    zip(
        ESTIMATORS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"), strict=True
    )
)
#: Estimators the per-op bars show beside the simulation (the ideal roofline and the full model).
BAR_ESTIMATORS = ("roofline", "full")
_DPI = 120
_SELFTEST_COLOUR = "#b00020"
_WARNING_COLOUR = "#8a4b00"
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85}


def _rate_text(value: float, unit: str) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _header(fig: Any, title: str, subtitle: str, selftest: bool, notes: tuple[str, ...] = ()) -> float:
    """Self-test line (red), warnings (``notes``, dark orange), title, subtitle from the top;
    returns the figure y below them."""
    y = 0.985
    height = fig.get_figheight()
    step = 0.3 / height  # ~0.3 inch per line whatever the figure's height
    if selftest:
        fig.text(0.01, y, SELFTEST_TITLE, fontsize=11, fontweight="bold", color=_SELFTEST_COLOUR, va="top")
        y -= step
    for note in notes:
        fig.text(0.01, y, note, fontsize=11, fontweight="bold", color=_WARNING_COLOUR, va="top")
        y -= step
    fig.text(0.01, y, title, fontsize=12, fontweight="bold", va="top")
    y -= step
    if subtitle:
        fig.text(0.01, y, subtitle, fontsize=9, va="top")
        y -= step * 0.85
    return y


def _role_label(row: pd.Series) -> str:
    ops = str(row.get("ops") or "")
    if not ops or ops == "nan":
        return f"{row['role']} (no op)"
    names = ops.split(",")
    if len(names) > 1:
        return f"{row['role']} ({len(names)} ops)"
    return str(row["role"]) if names[0] == row["role"] else f"{row['role']} ({names[0]})"


# -- roofline ------------------------------------------------------------------------------------


def _draw_roof(ax: Any, machine: Any, x_lo: float, x_hi: float) -> list[Any]:
    from analytical.plot import merged_ceilings

    bw = machine.dram_bandwidth_bytes_per_s
    ceilings = merged_ceilings(machine)
    top = ceilings[0][0]
    xs = np.logspace(math.log10(x_lo), math.log10(max(top / bw, x_lo * 1.01)), 60)
    handles = [ax.plot(xs, bw * xs, color="black", lw=1.6, label=f"DRAM: {_rate_text(bw, 'B/s')}")[0]]
    styles = iter(["--", "-.", ":", (0, (5, 1)), (0, (1, 1))])
    for peak, _, label in ceilings:
        style = next(styles, ":")
        handles.append(
            ax.plot([peak / bw, max(x_hi, peak / bw * 2)], [peak, peak], color="0.35", ls=style, lw=1.1, label=label)[0]
        )  # fmt: skip
    return handles


def _place_labels(
    fig: Any, ax: Any, points: list[tuple[float, float, str]], avoid: list[tuple[float, float]]
) -> None:
    """Numbers beside their markers, off every other label and marker (leader line when pushed)."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_px = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    marker = 5.0 * to_px
    markers = [
        Bbox.from_extents(px - marker, py - marker, px + marker, py + marker)
        for px, py in (ax.transData.transform(p) for p in avoid)
    ]
    placed: list[Any] = []
    angles = (45, -45, 135, -135, 0, 180, 90, -90, 22, -22, 158, -158, 68, -68, 112, -112)
    for x, y, text in points:
        cx, cy = ax.transData.transform((x, y))
        probe = ax.text(0, 0, text, fontsize=8, transform=None)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        best = None
        for dist in (7, 11, 16, 24, 34, 48, 66):
            for angle in angles:
                dx, dy = dist * math.cos(math.radians(angle)), dist * math.sin(math.radians(angle))
                ha = "left" if dx > 0.5 else "right" if dx < -0.5 else "center"
                va = "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center"
                ox, oy = cx + dx * to_px, cy + dy * to_px
                x0 = ox if ha == "left" else ox - w if ha == "right" else ox - w / 2
                y0 = oy if va == "bottom" else oy - h if va == "top" else oy - h / 2
                box = Bbox.from_extents(x0 - 2, y0 - 2, x0 + w + 2, y0 + h + 2)
                inside = (
                    box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
                )
                if not inside:
                    continue
                cost = (sum(box.overlaps(o) for o in placed), sum(box.overlaps(o) for o in markers), dist)
                if best is None or cost < best[0]:
                    best = (cost, dx, dy, ha, va, box, dist)
                if cost[:2] == (0, 0):
                    break
            if best is not None and best[0][:2] == (0, 0):
                break
        if best is None:
            best = ((0, 0, 7), 7.0, 7.0, "left", "bottom", extent, 7)
        _, dx, dy, ha, va, box, dist = best
        arrow = (
            {"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 0, "shrinkB": 3} if dist > 12 else None
        )
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8,
                    zorder=6, bbox=_LABEL_BOX, arrowprops=arrow)  # fmt: skip
        placed.append(box)


def _coincident(ax: Any, entries: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """One label per spot: numbers of points closer than 4 px share it (``9,10,13``)."""
    spots: list[tuple[float, float, float, float, list[int]]] = []
    for e in entries:
        y = e["y_sim"] if math.isfinite(e["y_sim"]) else e["y_est"]
        if not math.isfinite(y):
            continue
        px, py = ax.transData.transform((e["x"], y))
        for spot in spots:
            if math.hypot(spot[2] - px, spot[3] - py) < 4:
                spot[4].append(e["n"])
                break
        else:
            spots.append((e["x"], y, px, py, [e["n"]]))
    return [(x, y, ",".join(map(str, numbers))) for x, y, _, _, numbers in spots]


def roofline_figure(
    ops: pd.DataFrame, machine: Any, title: str, caption: str, selftest: bool, estimator: str = "roofline"
) -> Any:
    """Roofline of ``machine`` with ``ops`` (one run's op/role rows) placed by simulation and estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    est_col = f"est_cycles_{estimator}"
    rows = ops[ops["n_ops"] > 0].reset_index(drop=True)
    clock = float(machine.clock_hz)
    placed, listed = [], []
    for i, r in rows.iterrows():
        sim_t = float(r["sim_time_s"]) if pd.notna(r["sim_time_s"]) else math.nan
        est_t = float(r[est_col]) / clock if pd.notna(r[est_col]) else math.nan
        entry = {"n": i + 1, "label": _role_label(r), "class": str(r["op_class"]), "row": r,
                 "x": float(r["intensity"]) if pd.notna(r["intensity"]) else math.nan,
                 "y_sim": float(r["flops"]) / sim_t if sim_t > 0 else math.nan,
                 "y_est": float(r["flops"]) / est_t if est_t > 0 else math.nan,
                 "sim_t": sim_t, "est_t": est_t}  # fmt: skip
        on_chart = float(r["flops"]) > 0 and math.isfinite(entry["x"]) and entry["x"] > 0
        (placed if on_chart else listed).append(entry)
    fig = plt.figure(figsize=(13.5, 8.0), dpi=_DPI)
    top = _header(fig, title, "", selftest)
    ax = fig.add_axes((0.065, 0.30, 0.47, top - 0.36))
    bw = machine.dram_bandwidth_bytes_per_s
    peak = max(machine.peak_flops(c) for c in machine.flops_per_clock_per_cu)
    xs = [e["x"] for e in placed] or [1.0]
    ys = [v for e in placed for v in (e["y_sim"], e["y_est"]) if math.isfinite(v) and v > 0] or [peak / 100]
    x_lo, x_hi = min(min(xs), 0.1) / 3, max(max(xs), peak / bw) * 4
    y_lo, y_hi = min(min(ys) / 4, bw * x_lo), max(peak, max(ys)) * 3
    ax.set_xscale("log")
    ax.set_yscale("log")
    handles = _draw_roof(ax, machine, x_lo, x_hi)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte, model FLOPs over model bytes)")
    ax.set_ylabel("attained performance (TFLOP/s)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v / 1e12)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    avoid = []
    for e in placed:
        colour = CLASS_COLOURS.get(e["class"], "gray")
        if math.isfinite(e["y_sim"]) and math.isfinite(e["y_est"]):
            ax.plot([e["x"], e["x"]], [e["y_sim"], e["y_est"]], color=colour, lw=0.8, alpha=0.6, zorder=2)
        if math.isfinite(e["y_est"]):
            ax.scatter(
                [e["x"]], [e["y_est"]], s=46, facecolor="white", edgecolor=colour, linewidth=1.4, zorder=3
            )
            avoid.append((e["x"], e["y_est"]))
        if math.isfinite(e["y_sim"]):
            ax.scatter([e["x"]], [e["y_sim"]], s=46, color=colour, edgecolor="white", linewidth=0.6, zorder=4)
            avoid.append((e["x"], e["y_sim"]))
    classes = list(dict.fromkeys(e["class"] for e in placed))
    source = "test double" if selftest else "gem5"
    handles += [
        Line2D([], [], ls="", marker="o", ms=7, color="0.3", label=f"simulated ({source}): model FLOPs / simulated time"),
        Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec="0.3", label=f"estimate ({estimator}): model FLOPs / estimated time"),
        *[Line2D([], [], ls="", marker="o", ms=7, color=CLASS_COLOURS.get(c, "gray"), label=f"op class: {c}") for c in classes],
    ]  # fmt: skip
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.06, 0.215), ncol=2, fontsize=8,
               frameon=False, borderaxespad=0.0)  # fmt: skip
    _place_labels(fig, ax, _coincident(ax, placed), avoid)

    width = max([len(e["label"]) for e in placed + listed] + [8])
    head = f"{'#':>2}  {'op / role':<{width}}  {'FLOP/B':>6} {'sim µs':>8} {'est µs':>8} {'error':>9}"
    lines = [head, "-" * len(head)]
    for e in placed:
        err = (e["est_t"] - e["sim_t"]) / e["sim_t"] * 100 if e["sim_t"] > 0 else math.nan
        lines.append(
            f"{e['n']:>2}  {e['label']:<{width}}  {format_number(e['x']):>6} {format_number(e['sim_t'] * 1e6):>8} "
            f"{format_number(e['est_t'] * 1e6):>8} {_error_text(err):>9}"
        )
    if listed:
        lines += ["", "no FLOPs, so not on the chart:"]
        for e in listed:
            err = (e["est_t"] - e["sim_t"]) / e["sim_t"] * 100 if e["sim_t"] > 0 else math.nan
            lines.append(
                f" -  {e['label']:<{width}}  {'':>6} {format_number(e['sim_t'] * 1e6):>8} {format_number(e['est_t'] * 1e6):>8} {_error_text(err):>9}"
            )
    unmatched = ops[ops["n_ops"] == 0]
    if len(unmatched):
        lines += ["", "kernels without an estimated op:"]
        for _, r in unmatched.iterrows():
            lines.append(
                f" -  {r['role']!s:<{width}}  {'':>6} {format_number(float(r['sim_time_s']) * 1e6):>8}"
            )
    lines += ["", f"error = (estimate - simulated) / simulated ({estimator})"]
    size = 8.0 if len(lines) <= 36 else max(5.5, 8.0 * 36 / len(lines))
    fig.text(0.57, top - 0.01, "\n".join(lines), fontsize=size, family="monospace", va="top")
    if caption:
        fig.text(0.01, 0.012, textwrap.fill(caption, width=200), fontsize=8, va="bottom", color="0.15")
    return fig


def _error_text(pct: float) -> str:
    if not math.isfinite(pct):
        return "-"
    if abs(pct) >= 900:
        return f"×{format_number(pct / 100 + 1)}"
    return f"{pct:+.0f} %"


# -- time per op ---------------------------------------------------------------------------------


def bars_figure(
    ops: pd.DataFrame, title: str, selftest: bool, estimators: tuple[str, ...] = BAR_ESTIMATORS
) -> Any:
    """Horizontal bars per op/role: simulated time beside the chosen estimators' (log scale, µs)."""
    rows = ops.reset_index(drop=True)
    series = [("simulated" + (" (test double)" if selftest else " (gem5)"), rows["sim_time_s"], "0.15")]
    for e in estimators:
        series.append((f"estimate: {e}", rows[f"est_cycles_{e}"] / rows["clock_hz"], ESTIMATOR_COLOURS[e]))
    return _bar_chart(
        rows, series, title, selftest, "time in one layer, summed over the op's kernels (µs, log scale)"
    )


#: Colour of the measured (hardware) bars.
MEASURED_COLOUR = "tab:orange"


def three_way_figure(
    rows: pd.DataFrame,
    title: str,
    selftest: bool,
    measured_label: str,
    cpu: bool,
    estimator: str = "roofline",
    subtitle: str = "",
) -> Any:
    """Per role of one slice (``reports.tables.HARDWARE_COLUMNS`` rows): the model, gem5 (where the
    rows have it) and the measured time, as bars on one log axis (µs)."""
    rows = rows.reset_index(drop=True)
    machine = str(rows["model_machine"].iloc[0]) if len(rows) else ""
    series = [
        (
            f"model: {estimator} estimate ({machine})",
            rows[f"model_s_{estimator}"],
            ESTIMATOR_COLOURS[estimator],
        )
    ]
    gem5 = rows["gem5_kernels"].fillna(0).astype(int) > 0
    if gem5.any():
        what = "test double" if selftest else "gem5"
        series.append((f"simulated: {what} ({rows['gem5_machine'].iloc[0]})", rows["gem5_s"], "0.15"))
    hardware = f"measured: {measured_label}" + (f" — {CPU_NOTE}" if cpu else "")
    series.append((hardware, rows["measured_s"], MEASURED_COLOUR))
    notes = (f"hardware times {CPU_NOTE}: CPU timings are not GPU timings",) if cpu else ()
    return _bar_chart(
        rows,
        series,
        title,
        selftest,
        "time in one layer, summed over the role's kernels (µs, log scale)",
        notes,
        subtitle,
    )


def _bar_chart(
    rows: pd.DataFrame,
    series: list[tuple[str, pd.Series, str]],
    title: str,
    selftest: bool,
    xlabel: str,
    notes: tuple[str, ...] = (),
    subtitle: str = "",
) -> Any:
    """Horizontal bars per row, one per series (log scale, µs); the legend above the axes, in as
    many rows as its labels need to stay inside the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    n = len(rows)
    one_row = sum(len(label) + 6 for label, _, _ in series) <= 105
    legend_rows = 1 if one_row else len(series)
    legend_in = 0.35 + 0.22 * (legend_rows - 1)
    header_in = 0.7 + 0.3 * ((1 if selftest else 0) + len(notes)) - 0.05 * bool(selftest or notes)
    header_in += 0.26 if subtitle else 0.0
    height = header_in + 0.55 + legend_in + 0.36 * n * len(series) / 2 + 0.3
    fig = plt.figure(figsize=(11.0, height), dpi=_DPI)
    top = _header(fig, title, subtitle, selftest, notes)
    bottom = 0.62 / height
    ax = fig.add_axes((0.27, bottom, 0.70, top - bottom - legend_in / height))
    band = 0.8 / len(series)
    values = []
    for k, (label, times, colour) in enumerate(series):
        micro = times.astype(float) * 1e6
        ys = np.arange(n) - 0.4 + band * (k + 0.5)
        ax.barh(ys, micro.where(micro > 0), height=band * 0.92, color=colour, label=label)
        values += [v for v in micro if math.isfinite(v) and v > 0]
    ax.set_yticks(np.arange(n))
    ax.set_yticklabels([_role_label(r) for _, r in rows.iterrows()], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    if values:
        ax.set_xlim(min(values) / 2, max(values) * 2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", which="major", lw=0.4, alpha=0.5)
    fig.legend(loc="upper left", bbox_to_anchor=(0.27, top - 0.02 / height), ncol=1 if legend_rows > 1 else len(series),
               fontsize=8.5, frameon=False, borderaxespad=0.0)  # fmt: skip
    return fig


# -- error histogram -----------------------------------------------------------------------------


def _ratio_text(ratio: float) -> str:
    if ratio >= 10:
        return f"×{ratio:g}"
    return f"{(ratio - 1) * 100:+.0f} %" if abs(ratio - 1) > 1e-9 else "0 %"


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    """Ticks on a log10 span [lo, hi]: 1 first, then decades, then ±50 %, ±20 %, none crowding."""
    decades = [10.0**k for k in range(math.floor(lo), math.ceil(hi) + 1)]
    candidates = [1.0, *decades, 0.5, 2.0, 0.8, 1.25]
    gap = (hi - lo) / 9
    chosen: list[float] = []
    for t in candidates:
        if lo - 1e-9 <= math.log10(t) <= hi + 1e-9 and all(abs(math.log10(t / c)) >= gap for c in chosen):
            chosen.append(t)
    return sorted(chosen)


def histogram_figure(
    ops: pd.DataFrame, title: str, selftest: bool, estimators: tuple[str, ...] = ESTIMATORS
) -> Any:
    """One panel per estimator: how many matched ops/roles land at each estimate / simulated ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from reports import metrics

    matched = ops[ops["matched"].astype(bool) & (ops["sim_cycles"] > 0)]
    ratios = {
        e: (matched[f"est_cycles_{e}"] / matched["sim_cycles"]).to_numpy(dtype=float) for e in estimators
    }
    finite = np.concatenate([r[np.isfinite(r) & (r > 0)] for r in ratios.values()] or [np.array([1.0])])
    if not finite.size:
        finite = np.array([1.0])
    lo = math.floor(math.log10(min(finite.min(), 0.5)) * 4) / 4
    hi = math.ceil(math.log10(max(finite.max(), 2.0)) * 4) / 4
    bins = np.logspace(lo - 0.125, hi + 0.125, round((hi - lo) * 8) + 3)
    header_in = 0.95 if selftest else 0.7
    panel_in = 1.25
    height = header_in + panel_in * len(estimators) + 0.9
    fig = plt.figure(figsize=(11.0, height), dpi=_DPI)
    top = _header(fig, title, "", selftest)
    axes = fig.subplots(len(estimators), 1, sharex=True, squeeze=False)[:, 0]
    fig.subplots_adjust(left=0.08, right=0.97, top=top - 0.3 / height, bottom=0.75 / height, hspace=0.55)
    ticks = _ratio_ticks(lo, hi)
    for ax, e in zip(axes, estimators, strict=True):
        r = ratios[e]
        r = r[np.isfinite(r) & (r > 0)]
        ax.axvspan(0.8, 1.25, color="tab:green", alpha=0.10, lw=0)
        ax.axvspan(0.9, 1 / 0.9, color="tab:green", alpha=0.18, lw=0)
        ax.axvline(1.0, color="0.3", lw=0.8)
        ax.hist(r, bins=bins, color=ESTIMATOR_COLOURS[e], edgecolor="white", linewidth=0.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _ratio_text(v)))
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("count", fontsize=8)
        s = metrics.summary(matched[f"est_cycles_{e}"].tolist(), matched["sim_cycles"].tolist())
        within = s["within_20pct"]
        ax.set_title(
            f"{e}: MAPE {format_number(s['mape_pct'])} %, within 20 %: "
            f"{'-' if not math.isfinite(within) else f'{within * 100:.0f} %'} of {s['pairs']} ops/roles",
            fontsize=9, loc="left",
        )  # fmt: skip
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel(
        "estimate vs simulated cycles: error in % (×N: N times the simulated cycles), log scale; "
        "shaded: within 10 % and 20 %"
    )
    return fig


# -- sweeps --------------------------------------------------------------------------------------


def sweep_figure(layers: pd.DataFrame, parameter: str, swept: list[str], title: str, selftest: bool) -> Any:
    """Layer time against one swept parameter: simulated (solid) and each estimator (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    others = [p for p in swept if p != parameter]
    table = layers.copy()
    numeric = pd.api.types.is_numeric_dtype(table[parameter])
    if not numeric:
        order = list(dict.fromkeys(table[parameter].astype(str)))
        table["_x"] = table[parameter].astype(str).map({v: i for i, v in enumerate(order)})
    else:
        table["_x"] = table[parameter].astype(float)
    groups = list(table.groupby(others, sort=True)) if others else [((), table)]
    fig = plt.figure(figsize=(11.0, 6.2 if selftest else 5.9), dpi=_DPI)
    top = _header(fig, title, "", selftest)
    ax = fig.add_axes((0.08, 0.12, 0.58, top - 0.2))
    source = "test double" if selftest else "gem5"
    markers = iter("osD^v<>ph*")
    for key, group in groups:
        group = group.sort_values("_x")
        suffix = ""
        if others:
            values = key if isinstance(key, tuple) else (key,)
            suffix = " [" + ", ".join(f"{p}={v}" for p, v in zip(others, values, strict=True)) + "]"
        marker = next(markers, "o")
        ax.plot(group["_x"], group["sim_time_s"] * 1e6, color="black", lw=1.8, marker=marker,
                label=f"simulated ({source}){suffix}")  # fmt: skip
        chosen = ESTIMATORS if len(groups) == 1 else ("roofline",)
        lines: list[tuple[list[str], Any]] = []  # estimators with equal series share one line
        for e in chosen:
            est = (group[f"est_cycles_{e}"] / group["clock_hz"] * 1e6).to_numpy(dtype=float)
            same = next(
                (names for names, other in lines if np.allclose(other, est, rtol=1e-9, equal_nan=True)), None
            )
            if same is None:
                lines.append(([e], est))
            else:
                same.append(e)
        for names, est in lines:
            ax.plot(group["_x"], est, color=ESTIMATOR_COLOURS[names[0]], ls="--", lw=1.2, marker=marker, ms=4,
                    label=f"estimate: {' = '.join(names)}{suffix}")  # fmt: skip
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    if hi / lo < 1e4:  # few decades: label 2 and 5 times each decade too
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    if not numeric:
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order)
    else:
        values = sorted(table["_x"].unique())
        positive = all(v > 0 for v in values)
        if positive and len(values) > 2 and values[-1] / values[0] >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
    ax.set_xlabel(_parameter_label(parameter))
    ax.set_ylabel("layer time, non-blit kernels (µs, log scale)")
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    fig.legend(
        loc="upper left", bbox_to_anchor=(0.69, top - 0.02), fontsize=8, frameon=False, borderaxespad=0.0
    )
    return fig


def _parameter_label(name: str) -> str:
    if name.endswith("_bytes"):
        return f"{name} (bytes)"
    if name.endswith("_hz"):
        return f"{name} (Hz)"
    units = {"context": "tokens", "prompt_len": "tokens", "batch": "requests", "num_cus": "CUs"}
    return f"{name} ({units[name]})" if name in units else name


def save(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
