"""--notebook reproduces the researchers' notebook (issue #13 §1).

Two kinds of check: the notebook's own printed figures (its example cells: Llama-3.1-8B, NVL-AX,
2 bytes/value), and a plain scalar re-implementation of the method as written (analytical.notebook's
docstring) for other models, parts and lengths, op by op.
"""

from __future__ import annotations

import json
import math

import pytest

from analytical.catalog import get_hardware
from analytical.notebook import NotebookShape, notebook_shape, notebook_split, notebook_table
from orchestrator.cli import main
from workloads.models import load_model_config

L8B = load_model_config("llama-3.1-8b")
NVL = get_hardware("nvl-ax")
CHUNK = notebook_split(256, 8192, 512)


def _total(shape: NotebookShape, estimator: str, bugs: bool = True, model=L8B, hw=NVL, column=None):
    table = notebook_table(model, hw, shape, estimator=estimator, bugs=bugs)
    return table, table[column or ("t_est_s" if estimator == "simple" else "tiling_cycles")].sum()


@pytest.mark.parametrize(
    ("shape", "estimator", "figure"),
    [
        (NotebookShape("prefill", 1, 1024, 0), "simple", 1.427e-3),
        (NotebookShape("decode", 1, 1, 1024), "simple", 1.199e-3),
        (NotebookShape("decode", 256, 1, 8448), "simple", 25.42e-3),
        (NotebookShape("prefill", 1, 8192, 0), "tiling", 35_651_584),
        (NotebookShape("decode", 256, 1, 8448), "tiling", 64_463_476),
        (
            notebook_shape("chunked", 1, CHUNK.seq, CHUNK.context, CHUNK.decode_tokens, CHUNK.decode_context),
            "tiling",
            7_349_613,
        ),
    ],
)
def test_notebook_figures(shape, estimator, figure):
    _, value = _total(shape, estimator)
    assert value == pytest.approx(figure, rel=1e-3)


def test_exact_figures_to_the_cycle():
    table, cycles = _total(NotebookShape("prefill", 1, 8192, 0), "tiling")
    assert table["macs"].sum() == 2_336_462_209_024
    assert cycles == pytest.approx(35_651_584, abs=0.5)
    assert (table.loc[table["kind"].isin(["AW", "AA"]), "bound"] == "compute").all()
    assert cycles / 2.5e9 == pytest.approx(14.26e-3, rel=1e-3)
    table, cycles = _total(NotebookShape("decode", 256, 1, 8448), "tiling")
    assert round(cycles) == 64_463_476
    assert round(table.loc[table["op"] == "kv_read", "tiling_cycles"].iloc[0]) == 60_307_018
    assert cycles / 2.5e9 == pytest.approx(25.79e-3, rel=1e-3)


def test_chunk_split_uses_the_notebooks_integers():
    assert (CHUNK.decode_tokens, CHUNK.decode_context, CHUNK.seq, CHUNK.context) == (15, 8448, 241, 4615)
    # int(in/1.73) - p//2, not round(in/sqrt(3) - p/2)
    s = notebook_split(512, 1000, 250)
    assert (s.decode_tokens, s.seq, s.context, s.decode_context) == (102, 410, 373, 1125)


def test_bugs_change_shapes_not_prefill_or_decode_macs():
    for shape in (NotebookShape("prefill", 2, 512, 0), NotebookShape("decode", 8, 1, 2048)):
        buggy = notebook_table(L8B, NVL, shape, bugs=True)
        fixed = notebook_table(L8B, NVL, shape, bugs=False)
        assert buggy["macs"].sum() == fixed["macs"].sum()  # D = H·d
        attn_fixed = fixed[fixed["kind"] == "AA"]
        attn_buggy = buggy[buggy["kind"] == "AA"]
        assert set(attn_buggy["gemm_k"]) | set(attn_buggy["gemm_n"]) >= {4096}
        qk = attn_fixed[attn_fixed["op"] == "attn_qk"].iloc[0]
        assert qk["gemm_k"] == 128 and qk["gemm_m"] == 4 * shape.seq  # GQA fold, head_dim contraction
        assert qk["gemm_batch"] == shape.batch * 8


# -- the method as written, one op at a time (scalar, independent of analytical.notebook) ----------


def _tiles(m, n, k, e):
    dims = [m, n, k]
    order = sorted(range(3), key=lambda i: dims[i])
    d1, d2, _ = (dims[i] for i in order)
    x0 = math.sqrt(e / 3)
    if d1 >= x0:
        t = [x0, x0, x0]
    else:
        x = math.sqrt(d1 * d1 + e) - d1
        t = [d1, x, x] if d2 >= x else [d1, d2, (e - d1 * d2) / (d1 + d2)]
    out = [0.0] * 3
    for j, i in enumerate(order):
        out[i] = min(t[j], dims[i])
    return out


def _method(model, hw, phase, batch, seq, context, dt=0, dc=0, b=2, bugs=True):
    """{op: (simple seconds, tiling cycles)} from the docstring's recipe."""
    macs_cycle = hw.compute_units * hw.flops_per_clock_per_cu["bf16_matrix"] / 2
    clock, bw, e = hw.clock_hz, hw.dram_bandwidth_bytes_per_s, hw.last_level_cache_bytes / b
    dmod, f, kv, q = model.hidden_size, model.intermediate_size, model.kv_size, model.q_size
    g, hkv, hd = model.group_size, model.num_key_value_heads, model.head_dim
    tokens = {"prefill": batch * seq, "decode": batch, "chunked": batch * seq + dt}[phase]
    gemms, mem = {}, {}

    def attn(sfx, rows, width, req):
        if bugs:
            gemms["attn_qk" + sfx] = ("AA", rows, width, dmod, req)
            gemms["attn_pv" + sfx] = ("AA", rows, dmod, width, req)
        else:
            gemms["attn_qk" + sfx] = ("AA", g * rows, width, hd, req * hkv)
            gemms["attn_pv" + sfx] = ("AA", g * rows, hd, width, req * hkv)

    for name, n, k in (("qkv_proj", q + 2 * kv, dmod), ("o_proj", dmod, q), ("ffn_up", f, dmod),
                       ("ffn_gate", f, dmod), ("ffn_down", dmod, f)):  # fmt: skip
        gemms[name] = ("AW", tokens, n, k, 1)
    if phase == "prefill":
        attn("", seq, seq, batch)
    elif phase == "decode":
        attn("", 1, context, batch)
        mem["kv_read"] = ("R", 2 * batch * context * kv * b)
    else:
        attn("", seq, context, batch)
        if not bugs:
            mem["kv_read"] = ("R", 2 * batch * context * kv * b)
        attn("_decode", 1, kv if bugs else dc, dt)
        mem["kv_read_decode"] = ("R", 2 * dt * dc * kv * b)
    mem["kv_store"] = ("S", 2 * tokens * kv * b)
    out = {}
    for name, (kind, m, n, k, bt) in gemms.items():
        macs = m * n * k * bt
        weights = n * k * b if kind == "AW" else 0
        simple = max(macs / (macs_cycle * clock), weights / bw)
        fold = max(1, min(bt, math.floor(n / m)))
        mf, rest = m * fold, bt / fold
        tm, tn, tk = _tiles(mf, n, k, e)
        tiles = mf * n * k / (tm * tn * tk) * rest
        per_tile = max(tm * tn * tk / macs_cycle, (tm * tk + tk * tn) * b / (bw / clock))
        out[name] = (simple, tiles * per_tile)
    for name, (kind, nbytes) in mem.items():
        out[name] = (nbytes / bw, nbytes / (bw / clock) if kind == "R" else 0.0)
    return out


CASES = [
    ("llama-3.2-1b", "jgs", "prefill", 2, 3000, 0),
    ("llama-3.2-1b", "nvl-ax", "decode", 33, 1, 5000),
    ("llama-3.2-3b", "mi300x", "decode", 7, 1, 777),
    ("llama-3.1-8b", "jgs", "prefill", 1, 100, 0),
    ("gpt2", "a100", "prefill", 4, 512, 0),
]


@pytest.mark.parametrize("bugs", [True, False])
@pytest.mark.parametrize(("model", "part", "phase", "batch", "seq", "context"), CASES)
def test_per_op_against_the_method(model, part, phase, batch, seq, context, bugs):
    cfg, hw = load_model_config(model), get_hardware(part)
    shape = notebook_shape(phase, batch, seq, context, 0, None)
    table = notebook_table(cfg, hw, shape, dtype="bf16", estimator="simple", bugs=bugs)
    want = _method(cfg, hw, phase, batch, seq, context, bugs=bugs)
    if not cfg.gated_mlp:
        want.pop("ffn_gate")
    assert set(table["op"]) == set(want)
    for row in table.itertuples():
        simple, cycles = want[row.op]
        assert row.t_simple_s == pytest.approx(simple, rel=1e-3)
        assert row.tiling_cycles == pytest.approx(cycles, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("bugs", [True, False])
@pytest.mark.parametrize(("chunk", "io", "part"), [(256, (8192, 512), "nvl-ax"), (1024, (3000, 900), "jgs")])
def test_chunked_against_the_method(chunk, io, part, bugs):
    hw = get_hardware(part)
    s = notebook_split(chunk, *io)
    shape = notebook_shape("chunked", 1, s.seq, s.context, s.decode_tokens, s.decode_context)
    table = notebook_table(L8B, hw, shape, estimator="tiling", bugs=bugs)
    want = _method(L8B, hw, "chunked", 1, s.seq, s.context, s.decode_tokens, s.decode_context, bugs=bugs)
    assert set(table["op"]) == set(want)
    for row in table.itertuples():
        assert row.tiling_cycles == pytest.approx(want[row.op][1], rel=1e-3, abs=1e-9)
        assert row.t_simple_s == pytest.approx(want[row.op][0], rel=1e-3)


# -- CLI ----------------------------------------------------------------------------------------------


def _cli(capsys, *argv):
    assert (
        main(["estimate", "--model", "llama-3.1-8b", "--hardware", "nvl-ax", "--format", "json", *argv]) == 0
    )
    return json.loads(capsys.readouterr().out)


def test_cli_notebook_chunk_and_engine_independence(capsys):
    args = [
        "--notebook",
        "--notebook-bugs",
        "--phase",
        "chunked",
        "--seq",
        "256",
        "--notebook-chunk",
        "8192:512",
    ]
    rows = _cli(capsys, *args)
    assert sum(r["est_cycles"] for r in rows) == pytest.approx(7_349_613, rel=1e-3)
    assert {r["engine"] for r in rows} == {"notebook"}
    assert rows[0]["seq"] == 241 and rows[0]["context"] == 4615 and rows[0]["decode_tokens"] == 15
    for engine in ("vllm", "hf-eager"):
        assert _cli(capsys, *args, "--engine", engine) == rows


def test_cli_notebook_simple_decode(capsys):
    rows = _cli(capsys, "--notebook", "--estimator", "simple", "--phase", "decode", "--context", "8448",
                "--batch", "256")  # fmt: skip
    assert sum(r["t_est_s"] for r in rows) == pytest.approx(25.42e-3, rel=1e-3)
    assert {"op", "module", "flops", "weight_bytes", "kv_read_bytes", "bound", "t_est_s"} <= set(rows[0])


def test_cli_notebook_refuses_layerlab_estimators(capsys):
    argv = ["estimate", "--model", "llama-3.1-8b", "--hardware", "nvl-ax", "--notebook", "--estimator", "waves",
            "--phase", "decode", "--context", "16"]  # fmt: skip
    assert main(argv) == 2
    assert "--notebook has the notebook's estimators" in capsys.readouterr().err
