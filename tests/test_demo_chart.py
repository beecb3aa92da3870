"""The roofline chart (`make demo`'s demo-out/roofline.png): readable, merged, complete.

Overlap is checked the way a reader sees it: every non-empty text artist of the drawn figure
(title, tick labels, legend, op numbers, the op table, the caption) gets its bounding box from
the renderer, and no two may intersect.
"""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from matplotlib.text import Annotation, Text

from analytical.catalog import get_hardware
from analytical.pipeline import estimate_layer, gem5_caption
from analytical.plot import merged_ceilings, roofline_figure
from orchestrator.cli import main
from workloads.models import load_model_config

CASES = {
    "demo": ("llama-3.2-1b", "mi300x", dict(phase="prefill", seq=512)),
    "gem5-decode": ("llama-3.2-1b", "gem5-mi300x", dict(phase="decode", context=1024)),
    "layers-all": ("llama-3.2-1b", "mi300x", dict(phase="prefill", seq=512, layers="all")),
    "gpt2-all-a100-fp32": ("gpt2", "a100", dict(phase="prefill", seq=128, layers="all")),  # no FP32 MMA
    "mixtral-vllm-chunked": (
        "mixtral-8x7b",
        "gem5-mi200",
        dict(phase="chunked", seq=256, context=512, decode_tokens=8, engine="vllm"),
    ),
}


_DRAWN: dict[str, tuple] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_figures():
    yield
    for fig, _ in _DRAWN.values():
        plt.close(fig)
    _DRAWN.clear()


def _figure(case: str):
    """The drawn chart of one case (drawn once per module: the tests only read it)."""
    if case not in _DRAWN:
        _DRAWN[case] = _draw(case)
    return _DRAWN[case]


def _draw(case: str):
    model_name, machine_name, kwargs = CASES[case]
    machine = get_hardware(machine_name)
    table = estimate_layer(load_model_config(model_name), machine, **kwargs)
    fig = roofline_figure(table[table["op"] != "total"], machine, caption=gem5_caption(machine))
    fig.canvas.draw()
    return fig, table


def _texts(fig) -> list[Text]:
    """The texts a reader sees: visible, non-empty, and for tick labels only ticks in view."""
    unseen = set()
    for ax in [a for top in fig.axes for a in (top, *top.child_axes)]:  # insets too
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo * (1 - 1e-9) <= tick.get_loc() <= hi * (1 + 1e-9):
                    unseen.update((id(tick.label1), id(tick.label2)))
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in unseen]


@pytest.mark.parametrize("case", list(CASES))
def test_no_two_texts_overlap_and_all_fit(case):
    fig, _ = _figure(case)
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    assert len(boxes) > 20
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert not clashes, clashes[:5]
    page = fig.bbox
    outside = [s for s, b in boxes if b.x0 < page.x0 or b.x1 > page.x1 or b.y0 < page.y0 or b.y1 > page.y1]
    assert not outside, outside


@pytest.mark.parametrize("case", list(CASES))
def test_every_op_is_numbered_or_listed(case):
    fig, table = _figure(case)
    text = "\n".join(t.get_text() for t in _texts(fig))
    for op in set(table.loc[table["op"] != "total", "op"].astype(str)):
        assert f" {op}" in text, op
    # every number of the op table appears on a marker label
    numbered = [line.split()[0] for line in text.splitlines() if line.strip()[:1].isdigit() and "  " in line]
    markers = [t for t in _texts(fig) if isinstance(t, Annotation)]
    labels = {n for t in markers for n in t.get_text().split(",")}
    assert set(numbered) <= labels


def test_identical_ceilings_are_one_line_and_one_entry():
    fig, _ = _figure("demo")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    ceilings = [label for label in labels if label.endswith("TFLOP/s")]
    assert ceilings == [
        "fp8 matrix: 2,615 TFLOP/s",
        "fp16 / bf16 matrix: 1,307 TFLOP/s",
        "fp32 vector / matrix: 163 TFLOP/s",
    ]
    assert "DRAM: 5.3 TB/s" in labels and "LLC (Infinity Cache): 17 TB/s" in labels
    horizontal = [ln for ln in fig.axes[0].get_lines() if len(set(ln.get_ydata())) == 1]
    assert len(horizontal) == 3  # one line per distinct peak
    assert [label for _, _, label in merged_ceilings(get_hardware("nvl-ax"))] == [
        "fp32 vector, fp16 / bf16 matrix: 328 TFLOP/s"
    ]


def test_zero_flop_ops_are_listed_with_bytes_and_time():
    fig, table = _figure("gem5-decode")
    text = "\n".join(t.get_text() for t in _texts(fig))
    assert "no FLOPs, so not on the chart" in text
    for op in ("kv_store", "repeat_kv"):
        line = next(line for line in text.splitlines() if f" {op} " in line)
        row = table[table["op"] == op].iloc[0]
        assert f"{row['total_bytes'] / 1e6:.3g} MB" in line and f"{row['t_est_s'] * 1e6:.3g}" in line
    assert "% of the time moves data without FLOPs" in text


def test_title_names_the_whole_setup_and_gem5_is_not_the_part():
    fig, _ = _figure("gem5-decode")
    text = "\n".join(t.get_text() for t in _texts(fig))
    for part in ("Llama-3.2-1B", "decode", "batch 1", "context 1024", "bf16", "engine hf-eager",
                 "estimator roofline", "gem5-mi300x = gem5's simulated mi300x, not the datasheet part",
                 "arithmetic intensity (FLOP/byte)", "attained performance (TFLOP/s)"):  # fmt: skip
        assert part in text, part
    flat = " ".join(text.split())
    assert "40 CUs @ 1 GHz (vs 304 @ 2.1 GHz)" in flat and "16 GB/s (vs 5.3 TB/s)" in flat
    fig, _ = _figure("demo")
    text = "\n".join(t.get_text() for t in _texts(fig))
    assert "prefill, batch 1, seq 512, bf16" in text and "mi300x (datasheet)" in text
    assert "gem5" not in text


def test_demo_command_writes_a_real_png(tmp_path, capsys):
    path = tmp_path / "demo-out" / "roofline.png"
    path.parent.mkdir()  # as `make demo` does: --plot refuses a missing directory
    argv = [
        "estimate",
        "--model",
        "llama-3.2-1b",
        "--hardware",
        "mi300x",
        "--phase",
        "prefill",
        "--seq",
        "512",
    ]
    assert main([*argv, "--format", "table", "--plot", str(path)]) == 0
    assert f"roofline chart: {path}" in capsys.readouterr().err
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    image = plt.imread(path)
    assert image.shape[0] >= 800 and image.shape[1] >= 1400
    assert len({tuple(px) for px in image[::7, ::7, :3].reshape(-1, 3).round(2).tolist()}) > 50  # not blank
    assert not [p for p in path.parent.iterdir() if p.name != "roofline.png"]
