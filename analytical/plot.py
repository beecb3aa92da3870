"""A roofline chart a reviewer can read: log-log ceilings, one numbered marker per distinct op.

Points sit at (arithmetic intensity, attained FLOP/s = FLOPs / t_est_s), so the vertical gap to
the ceiling is the estimator's overhead beyond the ideal roofline. Layout:

* markers carry numbers, placed by a greedy search that keeps every label off every other
  label and marker (a leader line joins a label pushed away from its marker); ops that land on
  the same point share one marker (``1,10``), and ops repeated over layers are one entry ``x16``;
* beside the axes, a numbered table of the ops (class, FLOP/byte, TFLOP/s, time, share) and the
  ops with no FLOPs (KV-cache copies, repeat_kv, embedding gathers), which have no place on a
  FLOP/s axis but do take time, with their bytes and time;
* ceilings with equal peaks are one line (``fp16 / bf16 matrix: 1310 TFLOP/s``); the title
  names model, phase, batch, length, dtype, engine, estimator and machine, and a gem5 machine's
  caption says how it differs from the part it is named after.

The file is written atomically (matplotlib renders into a temp file that is then renamed).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analytical.hardware import DTYPE_CLASSES, HardwareSpec
from foundation import atomic

_CLASS_COLOURS = {
    "gemm": "tab:blue",
    "attention": "tab:red",
    "elementwise": "tab:green",
    "norm": "tab:purple",
    "kv_store": "tab:orange",
    "embedding": "tab:brown",
}
_FIGSIZE = (13.0, 7.6)
_DPI = 120
_MARKER_PT = 6.0  # marker diameter in points
_LABEL_BOX = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85}


def step_text(row: Mapping[str, Any]) -> str:
    """``batch 1, seq 512`` / ``batch 1, context 1024`` / chunked: chunk, context and decode riders."""
    phase = str(row["phase"])
    batch, seq, context = int(row["batch"]), int(row["seq"]), int(row["context"])
    if phase == "decode":
        return f"batch {batch}, context {context}"
    text = f"batch {batch}, seq {seq}" + (f", context {context}" if context else "")
    if phase == "chunked" and int(row["decode_tokens"]):
        text += f" + {int(row['decode_tokens'])} decode tokens @ context {int(row['decode_context'])}"
    return text


def format_number(value: float) -> str:
    """Three significant digits without scientific notation for the usual chart range."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1e-3:
        return f"{value:.3g}"
    return f"{value:.2g}"


def _bytes_text(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def _bandwidth_text(value: float) -> str:
    return f"{value / 1e12:.3g} TB/s" if value >= 1e12 else f"{value / 1e9:.3g} GB/s"


def merged_ceilings(hardware: HardwareSpec) -> list[tuple[float, list[str], str]]:
    """(peak FLOP/s, compute classes, legend label) per distinct peak, highest first.

    Classes with the same peak are one ceiling: ``fp16 / bf16 matrix: 1310 TFLOP/s``,
    ``fp32 vector / matrix: 164 TFLOP/s``.
    """
    groups: list[tuple[float, list[str]]] = []
    order = [c for c in DTYPE_CLASSES if c in hardware.flops_per_clock_per_cu]
    order += [c for c in hardware.flops_per_clock_per_cu if c not in order]
    for cls in order:
        peak = hardware.peak_flops(cls)
        for known, members in groups:
            if math.isclose(known, peak, rel_tol=1e-9):
                members.append(cls)
                break
        else:
            groups.append((peak, [cls]))
    out = []
    for peak, members in sorted(groups, key=lambda g: -g[0]):
        kinds: dict[str, list[str]] = {}
        for cls in members:
            dtype, _, kind = cls.partition("_")
            kinds.setdefault(kind or "", []).append(dtype)
        dtypes = {d for ds in kinds.values() for d in ds}
        if len(dtypes) == 1 and len(kinds) > 1:
            name = f"{dtypes.pop()} " + " / ".join(kinds)
        else:
            name = ", ".join(" / ".join(ds) + (f" {kind}" if kind else "") for kind, ds in kinds.items())
        out.append((peak, members, f"{name}: {format_number(peak / 1e12)} TFLOP/s"))
    return out


def _entries(table: pd.DataFrame) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """Distinct ops (repeats over layers folded) with FLOPs, those without, and the total time."""
    rows = table[table["op"].astype(str) != "total"]
    total_time = float(rows["t_est_s"].sum())
    plotted: dict[tuple, dict[str, Any]] = {}
    zero: dict[tuple, dict[str, Any]] = {}
    for r in rows.itertuples(index=False):
        flops, t = float(r.flops), float(r.t_est_s)
        on_chart = flops > 0 and t > 0 and math.isfinite(float(r.intensity)) and float(r.intensity) > 0
        if on_chart:
            x, y = float(r.intensity), flops / t
            key = (str(r.op), round(math.log10(x), 6), round(math.log10(y), 6))
            bucket = plotted
        else:
            key = (str(r.op), float(r.total_bytes), t)
            x = y = float("nan")
            bucket = zero
        entry = bucket.setdefault(
            key,
            {
                "op": str(r.op),
                "op_class": str(r.op_class),
                "x": x,
                "y": y,
                "bytes": float(r.total_bytes),
                "t": t,
                "layers": [],
            },
        )
        entry["layers"].append(int(r.layer))
    for bucket in (plotted, zero):
        split = {}
        for entry in bucket.values():
            split[entry["op"]] = split.get(entry["op"], 0) + 1
        for entry in bucket.values():
            n = len(entry["layers"])
            name = entry["op"]
            if split[name] > 1:  # the same op differs between layers: say which layers
                layers = sorted(entry["layers"])
                span = f"L{layers[0]}" if n == 1 else f"L{layers[0]}-{layers[-1]}"
                name += f" [{span}]"
            entry["name"] = name + (f" ×{n}" if n > 1 else "")
            entry["share"] = n * entry["t"] / total_time if total_time > 0 else 0.0
    return list(plotted.values()), list(zero.values()), total_time


def _title_lines(table: pd.DataFrame, hardware: HardwareSpec, total_time: float) -> tuple[str, str]:
    row = table.iloc[0]
    layers = sorted({int(v) for v in table["layer"]})
    body = [v for v in layers if v >= 0]
    if -1 in layers:
        scope = f"whole model ({len(body)} layers + embedding and LM head)"
    elif len(body) == 1:
        scope = f"decoder layer {body[0]}"
    else:
        scope = (
            f"decoder layers {body[0]}-{body[-1]}"
            if body == list(range(body[0], body[-1] + 1))
            else ("decoder layers " + ",".join(map(str, body)))
        )
    first = f"{row['model']}: {row['phase']}, {step_text(row)}, {row['dtype']} - {scope}"
    machine = (
        f"{hardware.name} = gem5's simulated {hardware.gem5.device}, not the datasheet part"
        if hardware.gem5 is not None
        else f"{hardware.name} (datasheet)"
    )
    second = (
        f"engine {row['engine']}, estimator {row['estimator']}, on {machine}: "
        f"{hardware.compute_units} CUs @ {hardware.clock_hz / 1e9:.3g} GHz, "
        f"DRAM {_bandwidth_text(hardware.dram_bandwidth_bytes_per_s)}; "
        f"sum of t_est = {format_number(total_time * 1e6)} µs"
    )
    return first, second


def _groups_by_point(
    entries: list[dict[str, Any]], ax: Any
) -> list[tuple[float, float, list[str], list[int]]]:
    """Markers: entries whose markers would overlap on ``ax`` (under a marker apart) share one."""
    px = _MARKER_PT * ax.figure.dpi / 72.0
    points: list[tuple[float, float, list[str], list[int]]] = []
    centres: list[np.ndarray] = []
    for i, e in enumerate(entries, start=1):
        here = ax.transData.transform((e["x"], e["y"]))
        for (_, _, classes, numbers), centre in zip(points, centres, strict=True):
            if float(np.hypot(*(here - centre))) < px:
                numbers.append(i)
                if e["op_class"] not in classes:
                    classes.append(e["op_class"])
                break
        else:
            points.append((e["x"], e["y"], [e["op_class"]], [i]))
            centres.append(here)
    return points


def _place_labels(fig: Any, ax: Any, points: list[tuple[float, float, list[str], list[int]]]) -> None:
    """Numbered labels off every marker and every other label (greedy, nearest free spot).

    Each label is measured once; candidate spots (rings of growing radius, 16 directions) are
    boxes computed from that size. The first spot inside the axes that touches no marker and no
    placed label wins; failing that, the nearest one that touches no label (it may cover a
    marker); failing that, the one touching the fewest. A label far from its marker gets a leader.
    """
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    to_px = fig.dpi / 72.0
    centres = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    radii = [(_MARKER_PT + 3.0 * (len(p[2]) - 1)) / 2 * to_px + 1.5 for p in points]
    markers = [
        Bbox.from_extents(cx - r, cy - r, cx + r, cy + r) for (cx, cy), r in zip(centres, radii, strict=True)
    ]
    frame = ax.get_window_extent(renderer)
    angles = (45, 0, 90, -45, 135, 180, -90, -135, 22, 67, 112, 157, -22, -67, -112, -157)
    distances = (5, 9, 14, 20, 28, 38, 50, 65, 85)
    pad = 3.0
    placed: list[Any] = []
    # crowded points first: they have the fewest free spots
    crowd = [sum(np.hypot(*(c - d)) < 40 * to_px for d in centres) for c in centres]
    for k in sorted(range(len(points)), key=lambda i: (-crowd[i], centres[i][0])):
        x, y, _, numbers = points[k]
        label = ",".join(map(str, numbers))
        probe = ax.text(0, 0, label, fontsize=8, transform=None)
        extent = probe.get_window_extent(renderer)
        probe.remove()
        w, h = extent.width, extent.height
        cx, cy = centres[k]
        choices = []
        for dist in distances:
            for angle in angles:
                dx, dy = dist * math.cos(math.radians(angle)), dist * math.sin(math.radians(angle))
                ha = "left" if dx > 0.5 else "right" if dx < -0.5 else "center"
                va = "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center"
                ox, oy = cx + dx * to_px, cy + dy * to_px
                x0 = ox if ha == "left" else ox - w if ha == "right" else ox - w / 2
                y0 = oy if va == "bottom" else oy - h if va == "top" else oy - h / 2
                box = Bbox.from_extents(x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad)
                if not (
                    box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
                ):
                    continue
                on_labels = sum(box.overlaps(o) for o in placed)
                on_markers = sum(box.overlaps(o) for o in markers)
                choices.append(
                    ((on_labels > 0, on_labels + on_markers, len(choices)), (dx, dy, ha, va, box, dist))
                )
                if on_labels + on_markers == 0:
                    break
            if choices and choices[-1][0][1] == 0:
                break
        if not choices:  # a point on the frame edge: any spot
            choices.append(((True, 0, 0), (6.0, 6.0, "left", "bottom", extent, 6)))
        dx, dy, ha, va, box, dist = min(choices, key=lambda c: c[0])[1]
        ax.annotate(
            label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=8, zorder=5,
            bbox=_LABEL_BOX,
        )  # fmt: skip
        if dist > 10:
            ax.annotate(
                "",
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 2, "shrinkB": 3},
                zorder=4,
            )
        placed.append(box)


def _draw_roof(
    ax: Any, hardware: HardwareSpec, ceilings: list[tuple[float, list[str], str]], main_class: str,
    x_lo: float, x_hi: float,
) -> list[Any]:  # fmt: skip
    """The memory diagonal(s) up to the highest peak, then each compute peak from its ridge on."""
    bw = hardware.dram_bandwidth_bytes_per_s
    top = ceilings[0][0]
    ax.set_xscale("log")
    ax.set_yscale("log")
    handles = []
    xs = np.logspace(math.log10(x_lo), math.log10(max(top / bw, x_lo * 1.01)), 50)
    handles.append(ax.plot(xs, bw * xs, color="black", lw=1.8, label=f"DRAM: {_bandwidth_text(bw)}")[0])
    if hardware.llc_bandwidth_bytes_per_s:
        llc = hardware.llc_bandwidth_bytes_per_s
        xl = np.logspace(math.log10(x_lo), math.log10(max(top / llc, x_lo * 1.01)), 50)
        label = f"LLC (Infinity Cache): {_bandwidth_text(llc)}"
        handles.append(
            ax.plot(xl, llc * xl, color="tab:cyan", ls=(0, (4, 1.5, 1, 1.5, 1, 1.5)), lw=1.0, label=label)[0]
        )
    others = iter(["-.", ":", (0, (5, 1)), (0, (1, 1))])
    for peak, members, label in ceilings:
        main = main_class in members  # the peak this dtype's GEMMs run at
        style = (
            {"color": "0.1", "ls": "--", "lw": 1.5}
            if main
            else {"color": "0.5", "ls": next(others, ":"), "lw": 1.0}
        )
        handles.append(
            ax.plot([max(peak / bw, x_lo), max(x_hi, peak / bw)], [peak, peak], label=label, **style)[0]
        )
    return handles


def _draw_points(ax: Any, points: list[tuple[float, float, list[str], list[int]]]) -> None:
    for x, y, point_classes, _ in points:  # one ring per class when ops of several classes coincide
        for j, cls in enumerate(point_classes):
            size = _MARKER_PT + 3.0 * (len(point_classes) - 1 - j)
            ax.scatter([x], [y], s=size**2, color=_CLASS_COLOURS.get(cls, "gray"), edgecolor="white",
                       linewidth=0.6, zorder=3 + 0.1 * j)  # fmt: skip


def _inset_for(ax: Any, points: list[tuple[float, float, list[str], list[int]]]) -> list[float] | None:
    """Axes-fraction box for a magnifying inset when the ops crowd a small corner, else None.

    The inset goes where no op is: above the memory diagonal (upper left) or below the ceilings
    (lower right), and never over the region it magnifies.
    """
    if len(points) < 4:
        return None
    frac = ax.transAxes.inverted().transform([ax.transData.transform((x, y)) for x, y, _, _ in points])
    (fx0, fy0), (fx1, fy1) = frac.min(axis=0), frac.max(axis=0)
    if fx1 - fx0 > 0.3 or fy1 - fy0 > 0.3:
        return None
    for box in ([0.1, 0.5, 0.44, 0.46], [0.54, 0.06, 0.44, 0.42]):
        bx0, by0, bx1, by1 = box[0] - 0.08, box[1] - 0.07, box[0] + box[2], box[1] + box[3]
        if fx1 < bx0 or fx0 > bx1 or fy1 < by0 or fy0 > by1:
            return box
    return None


def roofline_figure(
    table: pd.DataFrame, hardware: HardwareSpec, title: str | None = None, caption: str = ""
) -> Any:
    """The chart as a matplotlib Figure (not saved): see the module docstring for its parts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    entries, zero, total_time = _entries(table)
    fig = plt.figure(figsize=_FIGSIZE, dpi=_DPI)
    ax = fig.add_axes((0.065, 0.29, 0.50, 0.58))
    bw = hardware.dram_bandwidth_bytes_per_s
    ceilings = merged_ceilings(hardware)
    top = ceilings[0][0]
    gemms = table[table["op_class"].astype(str) == "gemm"]
    main_class = str(gemms["compute_class"].iloc[0]) if len(gemms) else ""
    if main_class == "fp32_matrix" and main_class not in hardware.flops_per_clock_per_cu:
        main_class = "fp32_vector"  # no FP32 MMA: GEMMs run on the vector ALUs (analytical.estimators)
    xs_data = [e["x"] for e in entries] or [1.0]
    ys_data = [e["y"] for e in entries] or [top / 10]
    x_lo = min(min(xs_data), 0.1) / 3
    x_hi = max(max(xs_data), top / bw) * 4
    y_hi = top * 3
    y_lo = min(min(ys_data) / 4, bw * x_lo, top / 1e4)
    handles = _draw_roof(ax, hardware, ceilings, main_class, x_lo, x_hi)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained performance (TFLOP/s)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v / 1e12)))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.grid(True, which="minor", lw=0.2, alpha=0.3)

    singles = [(e["x"], e["y"], [e["op_class"]], [i]) for i, e in enumerate(entries, start=1)]
    zoom = _inset_for(ax, singles)
    _draw_points(ax, _groups_by_point(entries, ax))
    classes = list(dict.fromkeys(e["op_class"] for e in entries))
    handles += [
        Line2D([], [], ls="", marker="o", ms=_MARKER_PT, color=_CLASS_COLOURS.get(c, "gray"), label=f"op class: {c}")
        for c in classes
    ]  # fmt: skip
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.06, 0.195), ncol=2, fontsize=8,
               frameon=False, borderaxespad=0.0)  # fmt: skip

    first, second = _title_lines(table, hardware, total_time)
    fig.text(0.01, 0.985, title or first, fontsize=12, fontweight="bold", va="top")
    fig.text(0.01, 0.945, second, fontsize=9, va="top")

    labelled = ax
    if zoom is not None:  # the ops sit in a small corner of the roofline: magnify it, label them there
        labelled = ax.inset_axes(zoom)
        xs_p, ys_p = [e["x"] for e in entries], [e["y"] for e in entries]
        ix = (min(xs_p) / 10**0.3, max(xs_p) * 10**0.3)
        iy = (min(ys_p) / 10**0.35, max(ys_p) * 10**0.35)
        _draw_roof(labelled, hardware, ceilings, main_class, ix[0], ix[1])
        labelled.set_xlim(*ix)
        labelled.set_ylim(*iy)
        labelled.set_facecolor("white")
        labelled.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        labelled.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        labelled.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
        labelled.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v / 1e12)))
        for axis in (labelled.xaxis, labelled.yaxis):
            axis.set_minor_formatter(NullFormatter())
        labelled.tick_params(labelsize=7)
        labelled.grid(True, which="major", lw=0.3, alpha=0.5)
        ax.indicate_inset_zoom(labelled, edgecolor="0.35", lw=0.8)
    fig.canvas.draw()
    points = _groups_by_point(entries, labelled)
    if labelled is not ax:
        _draw_points(labelled, points)
    _place_labels(fig, labelled, points)

    # the numbered table beside the axes, then the ops the FLOP/s axis cannot show
    name_w = max([len(e["name"]) for e in entries + zero] + [4])
    head = f"{'#':>3}  {'op':<{name_w}}  {'class':<11} {'FLOP/B':>7} {'TFLOP/s':>8} {'t µs':>8} {'t %':>5}"
    lines = [head, "-" * len(head)]
    for i, e in enumerate(entries, start=1):
        lines.append(
            f"{i:>3}  {e['name']:<{name_w}}  {e['op_class']:<11} {format_number(e['x']):>7} {format_number(e['y'] / 1e12):>8} "
            f"{format_number(e['t'] * 1e6):>8} {e['share'] * 100:>5.1f}"
        )
    if zero:
        lines += ["", "no FLOPs, so not on the chart (bytes moved, time):"]
        for e in zero:
            lines.append(
                f"  -  {e['name']:<{name_w}}  {e['op_class']:<11} {_bytes_text(e['bytes']):>16} "
                f"{format_number(e['t'] * 1e6):>8} {e['share'] * 100:>5.1f}"
            )
        share = sum(e["share"] for e in zero) * 100
        lines.append(f"     ({share:.1f} % of the time moves data without FLOPs)")
    lines += ["", "t = t_est per instance; t % = share of the chart's total (all instances)"]
    size = 8.0 if len(lines) <= 34 else max(5.5, 8.0 * 34 / len(lines))
    fig.text(0.595, 0.87, "\n".join(lines), fontsize=size, family="monospace", va="top")
    if caption:
        wrapped = textwrap.fill(caption, width=190)
        fig.text(0.01, 0.012, wrapped, fontsize=8, va="bottom", color="0.15")
    return fig


def roofline_plot(
    table: pd.DataFrame,
    hardware: HardwareSpec,
    path: str | os.PathLike[str],
    title: str | None = None,
    caption: str = "",
) -> None:
    """Write the roofline chart of ``table`` (one machine's rows) to ``path`` (png, svg, pdf...)."""
    import matplotlib.pyplot as plt

    fig = roofline_figure(table, hardware, title=title, caption=caption)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        atomic.write_with(path, lambda tmp: fig.savefig(tmp, format=fmt))
    finally:
        plt.close(fig)
