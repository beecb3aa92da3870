"""`layerlab report` end to end on runs of the gem5 TEST DOUBLE (not a simulator), and its parts.

One module fixture runs the self-test experiment over two machines (40 and 20 CUs: a sweep) and
reports it once; the tests read that report (page, Markdown, tables, charts) and build bad
copies of its runs (another machine, a knob config.ini contradicts, no census map, a stats block
cut out, no config.ini, a folder of no runs), each of which must exit 2 with one line naming the
input and leave no report behind. With ``LAYERLAB_GEM5`` set the runs come from a real gem5 (one
machine) and the self-test title must be absent instead.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.text import Text
from test_orchestrator_local import make_spec, real_gem5_spec

from analytical.estimators import ESTIMATORS
from analytical.hardware import gem5_machine
from orchestrator.cli import main
from reports import metrics, plots
from reports.runs import SELFTEST_TITLE, SOURCE_DOUBLE, load_run
from reports.tables import KERNEL_HEAD, LAYER_COLUMNS, OP_COLUMNS, _kernel_rows, _roles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The self-test experiment run once (on the double unless LAYERLAB_GEM5 names a real gem5)."""
    root = tmp_path_factory.mktemp("report")
    spec = real_gem5_spec(root)
    double = spec is None
    spec = spec or make_spec(root)
    assert main(["run", str(spec), "--quiet"]) == 0
    runs = sorted(root.glob("runs/selftest/*/*/*/step1-layer1"))
    assert len(runs) == 1
    return SimpleNamespace(root=root, spec=spec, double=double, runs=runs, out=root / "report")


def _report(argv: list[str]) -> dict:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main([*argv, "--json"]) == 0
    return json.loads(buffer.getvalue())


@pytest.fixture(scope="module")
def report(workspace):
    """`layerlab report SPEC --json` and what it printed."""
    return _report(["report", str(workspace.spec), "--out", str(workspace.out)])


@pytest.fixture(scope="module")
def sweep(workspace, report):
    """A second machine (4 MiB TCC): a copy of the run whose params.json and config.ini both say so
    (same cycles), reported beside the first with --allow-mixed: a sweep over tcc_bytes."""
    copy = copy_run(workspace.runs[0], workspace.root / "tcc4m")
    _edit_gpu(copy, tcc_bytes=4 * 2**20)
    _set_ini(copy / "m5out" / "config.ini", "system.ruby.tcc_cntrl0.L2cache", "size", "4194304.0")
    out = workspace.root / "sweep-report"
    printed = _report(["report", str(workspace.runs[0]), str(copy), "--allow-mixed", "--out", str(out)])
    return SimpleNamespace(out=out, printed=printed, runs=[workspace.runs[0], copy])


# -- the report ---------------------------------------------------------------------------------


def test_report_writes_every_file_and_prints_the_metrics(workspace, report) -> None:
    out = workspace.out
    assert report["out"] == str(out) and report["self_test"] is workspace.double
    assert [Path(p) for p in report["files"]] == [out / p.name for p in map(Path, report["files"])]
    for name in ("report.html", "report.md", "kernels.csv", "kernels.parquet", "ops.csv", "ops.parquet",
                 "layers.csv", "summary.csv", "report.json", "error-histogram.png"):  # fmt: skip
        assert (out / name).is_file() and str(out / name) in report["files"], name
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 * len(workspace.runs) + 1  # roofline + bars per run, the histogram
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, png
        image = plt.imread(png)
        assert (
            len({tuple(px) for px in image[::9, ::9, :3].reshape(-1, 3).round(2).tolist()}) > 20
        )  # not blank
    rows = {(m["level"], m["estimator"], m["op_class"]) for m in report["metrics"]}
    assert {("op", e, "all") for e in ESTIMATORS} | {("layer", e, "all") for e in ESTIMATORS} <= rows
    assert {("op", "roofline", "gemm"), ("op", "roofline", "norm")} <= rows
    first = next(m for m in report["metrics"] if m["level"] == "op" and m["op_class"] == "all")
    assert {"pairs", "mape_pct", "pearson", "nrmse", "within_10pct", "within_20pct"} <= set(first)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temp left


def test_the_html_page_parses_and_says_self_test_everywhere(workspace, report) -> None:
    page = Page()
    page.feed((workspace.out / "report.html").read_text(encoding="utf-8"))
    assert "{{" not in page.text and "{%" not in page.text
    assert page.headings and page.headings[0].startswith(("Pipeline self-test", "layerlab report"))
    for src in page.images:
        assert (workspace.out / src).is_file() and (workspace.out / src).stat().st_size > 0, src
    assert {Path(s).name for s in page.images} == {p.name for p in workspace.out.glob("*.png")}
    for href in page.links:
        assert (workspace.out / href).is_file(), href
    assert page.tables >= 4 and all(page.captions), page.captions
    markdown = (workspace.out / "report.md").read_text(encoding="utf-8")
    assert "| q_proj | q_proj | kernel |" in markdown
    if workspace.double:
        assert SELFTEST_TITLE in page.title and "selftest" in page.ids
        assert all(SELFTEST_TITLE in c for c in page.captions), page.captions
        assert SELFTEST_TITLE in markdown.splitlines()[2]
        assert "Whole request" in page.text or "HOOK (reports.extrapolate)" in page.text
    else:
        assert SELFTEST_TITLE not in page.text and SELFTEST_TITLE not in markdown


def test_tables_have_every_column_and_say_their_source(workspace, report) -> None:
    out = workspace.out
    ops, kernels = pd.read_parquet(out / "ops.parquet"), pd.read_parquet(out / "kernels.parquet")
    layers, summary = pd.read_csv(out / "layers.csv"), pd.read_csv(out / "summary.csv")
    assert list(ops.columns) == list(OP_COLUMNS)
    assert list(kernels.columns[: len(KERNEL_HEAD)]) == list(KERNEL_HEAD)
    assert list(layers.columns[: len(LAYER_COLUMNS)]) == list(LAYER_COLUMNS)
    assert list(summary.columns) == ["source", *metrics.SUMMARY_COLUMNS]
    for e in ESTIMATORS:
        assert {f"error_pct_{e}", f"est_cycles_{e}", f"calibration_{e}"} <= set(ops.columns)
        expected = (ops[f"est_cycles_{e}"] - ops["sim_cycles"]) / ops["sim_cycles"] * 100
        assert ops[f"error_pct_{e}"].to_numpy() == pytest.approx(expected.to_numpy())
        some = ops[ops[f"est_cycles_{e}"] > 0]  # the simple estimator gives element-wise ops 0
        assert (some[f"calibration_{e}"] * some[f"est_cycles_{e}"]).to_numpy() == pytest.approx(
            some["sim_cycles"]
        )
        assert ops.loc[ops[f"est_cycles_{e}"] <= 0, f"calibration_{e}"].isna().all()
    source = SOURCE_DOUBLE if workspace.double else "gem5"
    for table in (ops, kernels, layers, summary):
        assert set(table["source"]) == {source}
    assert ops["matched"].all() and set(ops["compare_at"]) <= {"kernel", "op", "role"}
    assert set(ops.loc[ops["role"] == "attention", "compare_at"]) == {"role"}
    assert set(ops["bound_model"]) <= {"compute", "memory"}
    # per run, the kernels sum to the layer and the layer to the ops
    for run, group in ops.groupby("run"):
        layer = layers.set_index("run").loc[run]
        assert group["sim_cycles"].sum() == pytest.approx(layer["sim_cycles"])
        assert group["est_cycles_roofline"].sum() == pytest.approx(layer["est_cycles_roofline"])
        non_blit = kernels[(kernels["run"] == run) & ~kernels["blit"].astype(bool)]
        assert non_blit["sim_cycles"].sum() == pytest.approx(layer["sim_cycles"])
    one = kernels[kernels["compare_at"] == "kernel"]
    assert len(one) and one["est_cycles_roofline"].notna().all()
    assert kernels.loc[kernels["compare_at"] == "role", "est_cycles_roofline"].isna().all()


def test_a_sweep_over_two_machines_gets_a_line_per_parameter(workspace, sweep) -> None:
    layers = pd.read_csv(sweep.out / "layers.csv")
    assert sorted(layers["tcc_bytes"]) == [256 * 1024, 4 * 2**20] and len(set(layers["machine"])) == 2
    assert "tcc_bytes=4MiB" in " ".join(layers["machine"])
    assert (sweep.out / "sweep-tcc_bytes.png").is_file() and len(sweep.printed["runs"]) == 2
    assert len(list(sweep.out.glob("roofline-*.png"))) == 2
    page = Page()
    page.feed((sweep.out / "report.html").read_text(encoding="utf-8"))
    assert "sweep-tcc_bytes.png" in page.images and "2 simulated machine(s)" in page.text
    fig = plots.sweep_figure(layers, "tcc_bytes", ["tcc_bytes"], "sweep", workspace.double)
    assert "tcc_bytes (bytes)" in [t.get_text() for t in _texts(fig)]
    assert_readable(fig, workspace.double)


# -- the charts ---------------------------------------------------------------------------------


def _texts(fig) -> list[Text]:
    """Texts a reader sees: visible, non-empty, tick labels only of ticks in view."""
    unseen = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - abs(lo) * 1e-9 <= tick.get_loc() <= hi + abs(hi) * 1e-9:
                    unseen.update((id(tick.label1), id(tick.label2)))
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in unseen]


def assert_readable(fig, selftest: bool) -> None:
    """No two texts overlap, all lie in the figure, no legend covers an axes, the title says self-test."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    clashes = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert not clashes, clashes[:5]
    page = fig.bbox
    outside = [
        s
        for s, b in boxes
        if b.x0 < page.x0 - 1 or b.x1 > page.x1 + 1 or b.y0 < page.y0 - 1 or b.y1 > page.y1 + 1
    ]
    assert not outside, outside
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes), "legend over an axes"
    texts = [t.get_text() for t in _texts(fig)]
    assert (SELFTEST_TITLE in texts) is selftest
    plt.close(fig)


def test_every_chart_is_readable_and_titled(workspace, report) -> None:
    ops = pd.read_parquet(workspace.out / "ops.parquet")
    run = load_run(workspace.runs[0])
    mine = ops[ops["run_id"] == run.run_id]
    selftest = workspace.double
    fig = plots.roofline_figure(
        mine, run.machine, "roofline", "gem5's simulated mi300x, not the datasheet part", selftest
    )
    texts = "\n".join(t.get_text() for t in _texts(fig))
    for part in (
        "arithmetic intensity (FLOP/byte",
        "attained performance (TFLOP/s)",
        "DRAM: 16 GB/s",
        "q_proj",
    ):
        assert part in texts, part
    assert_readable(fig, selftest)
    assert_readable(plots.bars_figure(mine, "bars", selftest), selftest)
    assert_readable(plots.histogram_figure(ops, "histogram", selftest), selftest)


def test_roofline_places_coincident_ops_under_one_label() -> None:
    machine = gem5_machine("mi300x", "v24.0")
    rows = pd.DataFrame({
        "role": ["a", "b", "c"], "ops": ["a", "b", "c"], "n_ops": [1, 1, 1], "op_class": ["gemm"] * 3,
        "intensity": [1.0, 1.0, 10.0], "flops": [1e6, 1e6, 1e7], "sim_time_s": [1e-5, 1e-5, 1e-5],
        "est_cycles_roofline": [2e4, 2e4, 5e3], "kernels": [1, 1, 1],
    })  # fmt: skip
    fig = plots.roofline_figure(rows, machine, "t", "", False)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(labels) == ["1,2", "3"]
    assert_readable(fig, False)


# -- hand-checked pieces ------------------------------------------------------------------------


def _fake_run() -> SimpleNamespace:
    machine = gem5_machine("mi300x", "v24.0")  # 40 CUs, 4 SIMDs, issue_period 4, 1 GHz, 16 GB/s
    return SimpleNamespace(machine=machine, params=SimpleNamespace(gpu=machine.gem5))


def test_roles_keep_unmatched_blits_apart_and_bound_by_counters() -> None:
    kernels = pd.DataFrame({
        "kernel_index": [0, 1, 2, None, 3], "blit": [False, False, False, True, False],
        "gpu_cycles": [1000.0, 300.0, 200.0, 50.0, 70.0],
        "census_module": ["q_proj", "attention", "attention", None, None],
        # q_proj: 1000 cycles = 1 µs; 16 000 B in 1 µs = 16 GB/s = 100 % of DRAM peak; VALU
        # 4 000 insts x 4 cycles over 40 CUs x 4 SIMDs x 1000 cycles = 10 % of the issue slots
        "dram_read_bytes": [12000.0, None, None, 0.0, None], "dram_written_bytes": [4000.0, None, None, 0.0, None],
        "valu_insts": [4000.0, None, None, 0.0, None],
    })  # fmt: skip
    est = pd.DataFrame({
        "role": ["q_proj", "attention", "o_proj"], "join": ["op", "role", "op"], "ops": ["q_proj", "rope,attn", "o_proj"],
        "n_ops": [1, 2, 1], "op_class": ["gemm", "attention", "gemm"], "op_classes": ["gemm", "elementwise,attention", "gemm"],
        "flops": [2e6, 1e5, 2e6], "bytes": [1.6e4, 4e3, 1.6e4], "t_compute_s": [1e-7, 1e-8, 1e-7],
        "t_memory_s": [1e-6, 2.5e-7, 1e-6], "peak_flops_per_s": [3.2768e14] * 3,
        **{f"est_cycles_{e}": [800.0, 1000.0, 900.0] for e in ESTIMATORS},
    })  # fmt: skip
    run = _fake_run()
    roles = _roles(kernels, est, run).set_index("role")
    assert list(roles.index) == ["q_proj", "attention", "o_proj", "(no census label)"]
    q = roles.loc["q_proj"]
    assert q["compare_at"] == "kernel" and q["error_pct_roofline"] == pytest.approx(-20.0)
    assert q["calibration_roofline"] == pytest.approx(1.25) and q["bound_model"] == "memory"
    assert q["sim_dram_pct_of_peak"] == pytest.approx(100.0) and q["sim_valu_busy_pct"] == pytest.approx(10.0)
    assert q["bound_sim"] == "memory" and q["achieved_flops_per_s"] == pytest.approx(2e12)
    a = roles.loc["attention"]
    assert a["compare_at"] == "role" and a["kernels"] == 2 and a["sim_cycles"] == 500.0
    assert pd.isna(a["bound_sim"])  # no counters: no verdict
    assert a["error_pct_roofline"] == pytest.approx(100.0)
    assert not roles.loc["o_proj", "matched"] and roles.loc["o_proj", "kernels"] == 0  # op kept
    assert (
        not roles.loc["(no census label)", "matched"] and roles.loc["(no census label)", "sim_cycles"] == 70.0
    )
    assert roles["kernels"].sum() == 4  # the blit is not joined
    rows = _kernel_rows(kernels, roles.reset_index(), run)
    assert rows.loc[3, "compare_at"] == "blit (not joined)" and pd.isna(rows.loc[3, "est_cycles_roofline"])
    assert rows.loc[0, "est_cycles_roofline"] == 800.0 and pd.isna(rows.loc[1, "est_cycles_roofline"])


def test_agreement_table_on_hand_checked_pairs() -> None:
    ops = pd.DataFrame({
        "matched": [True, True, True, False], "op_class": ["gemm", "gemm", "norm", "gemm"],
        "sim_cycles": [100.0, 100.0, 100.0, 100.0], "est_cycles_roofline": [110.0, 90.0, 50.0, 1.0],
    })  # fmt: skip
    layers = pd.DataFrame({"sim_cycles": [300.0, 200.0], "est_cycles_roofline": [250.0, 220.0]})
    table = metrics.agreement_table(ops, layers, ["roofline"]).set_index(["level", "op_class"])
    assert table.loc[("op", "all"), "pairs"] == 3  # the unmatched row is left out
    assert table.loc[("op", "all"), "mape_pct"] == pytest.approx((10 + 10 + 50) / 3)
    assert table.loc[("op", "gemm"), "mape_pct"] == pytest.approx(10.0)
    assert (
        table.loc[("op", "gemm"), "within_10pct"] == 1.0 and table.loc[("op", "norm"), "within_20pct"] == 0.0
    )
    assert math.isnan(table.loc[("op", "norm"), "pearson"])  # one pair
    assert table.loc[("layer", "all"), "mape_pct"] == pytest.approx((50 / 300 + 20 / 200) / 2 * 100)
    assert table.loc[("layer", "all"), "pearson"] == pytest.approx(1.0)  # both go down together


# -- inputs and bad input -----------------------------------------------------------------------


def copy_run(run: Path, where: Path) -> Path:
    """A copy of a sliced run (gem5's 7 MB config.json left out: nothing here reads it)."""
    target = where / run.name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("config.json", "kernels.parquet"))
    return target


def _edit_gpu(run: Path, **knobs) -> None:
    path = run / "params.json"
    params = json.loads(path.read_text())
    params["machine"]["gpu"].update(knobs)
    path.write_text(json.dumps(params))


def _set_ini(path: Path, section: str, key: str, value: str) -> None:
    """One parameter of one object of a gem5 config.ini, set as gem5 would have written it."""
    lines, inside = path.read_text().splitlines(), False
    for i, line in enumerate(lines):
        if line.startswith("["):
            inside = line == f"[{section}]"
        elif inside and line.startswith(f"{key}="):
            lines[i] = f"{key}={value}"
            break
    else:
        raise AssertionError(f"{path}: no {key} in [{section}]")
    path.write_text("\n".join(lines) + "\n")


def _cut_stats_block(run: Path) -> None:
    path = run / "m5out" / "stats.txt"
    marker = "---------- Begin Simulation Statistics ----------"
    blocks = path.read_text().split(marker)
    del blocks[3]
    path.write_text(marker.join(blocks))


BAD: dict[str, tuple] = {
    # name: (how to spoil a copy, use the good run beside it, extra argv, what the line must say)
    "another machine": (lambda r: _edit_gpu(r, tcc_bytes=4 * 2**20), True, [], ["gpu.tcc_bytes", "--allow-mixed"]),
    "config.ini disagrees": (lambda r: _edit_gpu(r, tcc_bytes=4 * 2**20), False, ["--allow-mixed"], ["tcc_bytes", "config.ini"]),
    "no census map": (lambda r: (r / "slice.json").unlink(), False, [], ["slice.json", "census"]),
    "stats block missing": (_cut_stats_block, False, [], ["stats.txt"]),
    "no config.ini": (lambda r: (r / "m5out" / "config.ini").unlink(), False, [], ["config.ini"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_naming_it_and_leaves_no_report(case, workspace, report, tmp_path, capsys) -> None:
    spoil, with_good, extra, words = BAD[case]
    bad = copy_run(workspace.runs[0], tmp_path)
    spoil(bad)
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["report", str(bad), *([str(workspace.runs[0])] if with_good else []), "--out", str(out), *extra]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(bad) in err and all(w in err for w in words), err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_not_a_run_directory_and_a_foreign_out_dir(workspace, report, tmp_path, capsys) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "no sliced run" in err and not (tmp_path / "out").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["report", str(workspace.runs[0]), "--out", str(foreign)]) == 2
    assert "not a layerlab report" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_run_dirs_report_into_dot_report_and_replace_it(
    workspace, report, tmp_path, monkeypatch, capsys
) -> None:
    """RUN_DIR input (a folder holding runs), the default ./report, and a second report over the first."""
    monkeypatch.chdir(tmp_path)
    one = workspace.runs[-1]
    assert main(["report", str(one.parent), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["out"] == str(tmp_path / "report") and len(first["runs"]) == 1
    assert first["runs"][0]["run_dir"] == str(one.resolve())
    (tmp_path / "report" / "stale.txt").write_text("from the first report")
    assert main(["report", str(one)]) == 0
    printed = capsys.readouterr().out
    assert (SELFTEST_TITLE in printed) is workspace.double and "report.html" in printed
    assert (
        not (tmp_path / "report" / "stale.txt").exists() and (tmp_path / "report" / "report.html").is_file()
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


class Page(HTMLParser):
    """What the tests read off the page: title, headings, images, links, tables and captions."""

    def __init__(self) -> None:
        super().__init__()
        self.title = ""
        self.headings: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tables = 0
        self.captions: list[str] = []
        self.ids: set[str] = set()
        self.text = ""
        self._stack: list[str] = []

    @property
    def _where(self) -> str:
        return self._stack[-1] if self._stack else ""

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
            return
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "table":
            self.tables += 1
        if tag in ("title", "h1", "caption"):
            if tag == "h1":
                self.headings.append("")
            if tag == "caption":
                self.captions.append("")
        if tag not in ("br", "meta", "link"):
            self._stack.append(tag)

    def handle_endtag(self, tag) -> None:
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data) -> None:
        self.text += data
        if "title" in self._stack:
            self.title += data
        if "h1" in self._stack:
            self.headings[-1] += data
        if "caption" in self._stack:
            self.captions[-1] += data
