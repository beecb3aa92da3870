"""`layerlab estimate` refuses flags it would ignore or misread, and names the real cause.

Also the two misleading messages outside estimate (slice of a 1-layer trace, window past the
layers a run had) and the gem5 machine's differences from its datasheet part on the table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_census import marker_table, program, side_file

from analytical.catalog import get_hardware
from analytical.pipeline import gem5_caption, gem5_contrast
from foundation.errors import InputError
from orchestrator.cli import main
from workloads import census
from workloads.models import config_from_dict
from workloads.slicer import slice_kernels

BASE = ["estimate", "--model", "llama-3.2-1b", "--hardware", "mi300x"]


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    return lines[0]


def _words(text: str) -> str:
    return " ".join(text.split())  # rich wraps and centres long titles


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--phase", "decode", "--context", "64", "--seq", "5"], "--seq 5 with --phase decode"),
        (
            ["--phase", "decode", "--context", "64", "--decode-tokens", "4"],
            "--decode-tokens is for --phase chunked",
        ),
        (
            ["--phase", "prefill", "--seq", "64", "--decode-tokens", "4"],
            "--decode-tokens is for --phase chunked",
        ),
        (
            ["--phase", "decode", "--context", "64", "--decode-context", "9"],
            "--decode-context is for --phase chunked",
        ),
        (
            ["--phase", "chunked", "--seq", "64", "--decode-context", "9"],
            "--decode-context needs --decode-tokens",
        ),
        (["--phase", "decode", "--context", "64", "--notebook-bugs"], "add --estimator tiling"),
        (["--phase", "decode"], "decode needs --context N (tokens already in the KV cache"),
        (["--phase", "decode", "--context", "0"], "decode needs --context N"),
        (
            ["--phase", "chunked", "--seq", "512", "--notebook-chunk", "1000:250", "--context", "5"],
            "--notebook-chunk sets --context itself",
        ),
        (["--phase", "prefill", "--seq", "8", "--layers", "3-1"], "range 3-1 is empty (3 > 1)"),
    ],
)
def test_ignored_or_meaningless_flags_are_errors(capsys, extra, needle):
    assert needle in _error(capsys, [*BASE, *extra])


def test_notebook_bugs_with_tiling_is_fine(capsys):
    argv = [*BASE, "--phase", "decode", "--context", "64", "--estimator", "tiling", "--notebook-bugs"]
    assert main([*argv, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["estimator"] == "tiling"


def test_decode_context_sets_the_kv_read(capsys):
    assert main([*BASE, "--phase", "decode", "--context", "64", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["seq"] for r in rows} == {1} and {r["context"] for r in rows} == {64}


def test_context_beyond_the_position_table(capsys):
    line = _error(capsys, [*BASE, "--phase", "decode", "--context", "131072"])
    assert "131073 positions" in line and "max_position_embeddings=131072" in line
    assert "llama-3.2-1b.json" in line
    line = _error(
        capsys, ["estimate", "--model", "gpt2", "--hardware", "mi300x", "--phase", "prefill", "--seq", "2048"]
    )
    assert "n_positions=1024" in line and "gpt2.json" in line
    argv = [*BASE, "--phase", "chunked", "--seq", "8", "--decode-tokens", "2", "--decode-context", "131072"]
    assert "--decode-context 131072 + 1 new token" in _error(capsys, argv)
    assert (
        main([*BASE, "--phase", "decode", "--context", "131071", "--format", "csv"]) == 0
    )  # the last position


@pytest.mark.parametrize("model_type", ["mamba", "qwen2", None])
def test_unsupported_model_type_is_refused(capsys, tmp_path, model_type):
    raw = json.loads(Path("workloads/model_configs/llama-3.2-1b.json").read_text())
    raw.pop("model_type")
    if model_type:
        raw["model_type"] = model_type
    (tmp_path / "config.json").write_text(json.dumps(raw))
    line = _error(capsys, ["estimate", "--model", str(tmp_path), "--hardware", "mi300x", "--phase", "decode"])
    assert "config.json" in line and "gpt2, llama, mistral, mixtral, opt" in line
    assert (
        f"model_type {model_type!r} is not supported" if model_type else "'model_type' is missing"
    ) in line


def test_mistral_is_a_llama_layer():
    raw = json.loads(Path("workloads/model_configs/llama-3.2-1b.json").read_text())
    raw["model_type"] = "mistral"
    assert config_from_dict(raw).family == "mistral"


def test_attention_under_vllm_is_a_note(capsys):
    argv = [*BASE, "--phase", "decode", "--context", "64", "--engine", "vllm", "--attention", "sdpa"]
    assert main([*argv, "--format", "csv"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "note: --attention applies to --engine hf-eager" in err[0]


# -- gem5 machines: what makes them unlike their part, computed from the config ------------------


def test_gem5_mi300x_table_says_what_differs(capsys):
    argv = ["estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300x", "--phase", "decode"]
    assert main([*argv, "--context", "1024"]) == 0
    out = _words(capsys.readouterr().out)
    assert "note: gem5's simulated mi300x, not the datasheet part (mi300x)" in out
    for fact in (
        "40 CUs @ 1 GHz (vs 304 @ 2.1 GHz)",
        "one HBM_1000_4H_1x128 channel = 16 GB/s (vs 5.3 TB/s)",
        "256KiB TCC (vs 32MiB L2 + 256MiB Infinity Cache)",
        "4x CDNA3's (fp16/bf16)",
        "issue_period=4 cycles",
    ):
        assert fact in out


def test_gem5_contrast_follows_the_knobs_and_version():
    mi200 = gem5_contrast(get_hardware("gem5-mi200"), "v24.0")
    assert "4 CUs @ 1 GHz (vs 104 @ 1.7 GHz)" in mi200 and "256KiB TCC (vs 8MiB L2)" in mi200
    assert any("8x CDNA2's (fp16/bf16/fp32)" in item for item in mi200)
    wide = get_hardware("gem5-mi300x", gem5_version="v25", num_cus=304, dram_channels=8, sys_clock_hz=2.1e9)
    items = gem5_contrast(wide, "v25")
    assert not any("CUs" in item for item in items)  # 304 CUs at 2.1 GHz: as the part
    assert "8 HBM_1000_4H_1x128 channels x 16 GB/s = 128 GB/s (vs 5.3 TB/s)" in items
    assert not any("MFMA" in item for item in items)  # v25's cycle table matches CDNA3
    assert gem5_caption(get_hardware("mi300x")) == "" and gem5_contrast(get_hardware("mi300x")) == []


# -- messages that used to name the wrong cause --------------------------------------------------


def test_slice_of_a_one_layer_trace_names_the_real_cause():
    layer = ["norm", "q", "k", "v", "attn", "o", "add", "norm2", "gate", "down", "add2"]
    trace = ["init"] + ["embed", *layer, "final_norm", "head", "argmax"] * 2  # 1 layer, 2 steps
    with pytest.raises(InputError) as info:
        slice_kernels(trace, 1)
    assert "is the layer count" not in str(info.value)
    assert "--layers 1" in str(info.value) and "1-layer step has no second copy" in str(info.value)


@pytest.mark.parametrize("recorded", [4, 16])
def test_window_past_the_run_layers_names_the_layer_count(tmp_path, capsys, recorded):
    items = program(layers=4)
    census.write_events(tmp_path, side_file(items))
    (tmp_path / census.MARKER_TABLE_FILE).write_text(json.dumps(marker_table(items, layers=recorded)))
    argv = ["window", str(tmp_path), "--step", "1", "--layer", "5"]
    if recorded == 4:  # the model config says 16 layers, the run had 4
        argv += ["--model", "llama-3.2-1b"]
    line = _error(capsys, argv)
    assert "the run has 4 layers (0..3)" in line and "without markers" not in line
    assert main(["window", str(tmp_path), "--step", "1", "--layer", "3"]) == 0
