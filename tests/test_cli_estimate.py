"""`layerlab estimate` end to end through orchestrator.cli.main."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main

REQUIRED = {
    "op",
    "module",
    "phase",
    "flops",
    "weight_bytes",
    "act_in_bytes",
    "act_out_bytes",
    "kv_read_bytes",
    "kv_write_bytes",
    "intensity",
    "bound",
    "t_est_s",
}


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_demo_decode_on_gem5(capsys):
    assert (
        main(
            [
                "estimate",
                "--model",
                "llama-3.2-1b",
                "--hardware",
                "gem5-mi300",
                "--phase",
                "decode",
                "--batch",
                "1",
                "--context",
                "1024",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "q_proj" in out and "gem5-mi300" in out


def test_demo_prefill_with_plot(capsys, tmp_path):
    plot = tmp_path / "demo-out" / "roofline.png"
    plot.parent.mkdir()  # as `make demo` does: --plot refuses a missing directory
    assert (
        main(
            [
                "estimate",
                "--model",
                "llama-3.2-1b",
                "--hardware",
                "mi300x",
                "--phase",
                "prefill",
                "--seq",
                "512",
                "--format",
                "table",
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in plot.parent.iterdir() if p.name.endswith(".tmp")]


def test_json_records_have_the_contract_fields(capsys):
    records = _json(
        capsys,
        [
            "estimate",
            "--model",
            "Llama-3.2-1B",
            "--hardware",
            "MI300X",
            "--phase",
            "chunked",
            "--seq",
            "256",
            "--context",
            "1024",
            "--decode-tokens",
            "4",
            "--engine",
            "vllm",
            "--format",
            "json",
        ],
    )
    assert records and all(set(r) >= REQUIRED for r in records)
    ops = {r["op"] for r in records}
    assert {"qkv_proj", "attn", "attn_decode", "gate_up_proj"} <= ops
    assert all(r["phase"] == "chunked" for r in records)


def test_layers_all_adds_model_ops_and_total(capsys):
    records = _json(
        capsys,
        [
            "estimate",
            "--model",
            "gpt2",
            "--hardware",
            "a100",
            "--phase",
            "prefill",
            "--seq",
            "128",
            "--layers",
            "all",
            "--format",
            "json",
        ],
    )
    ops = [r["op"] for r in records]
    assert ops[-1] == "total" and "lm_head" in ops and "embed_tokens" in ops
    layers = {r["layer"] for r in records if r["layer"] >= 0}
    assert layers == set(range(12))
    total = records[-1]
    body = [r for r in records if r["op"] != "total"]
    assert total["flops"] == pytest.approx(sum(r["flops"] for r in body))
    assert total["t_est_s"] == pytest.approx(sum(r["t_est_s"] for r in body))


def test_csv_and_estimator_and_gem5_overrides(capsys):
    base = [
        "estimate",
        "--model",
        "llama-3.2-1b",
        "--hardware",
        "gem5-mi200",
        "--phase",
        "decode",
        "--context",
        "512",
        "--format",
        "json",
        "--estimator",
        "full",
    ]
    slow = _json(capsys, base)
    fast = _json(
        capsys,
        [
            *base,
            "--num-cus",
            "8",
            "--sys-clock",
            "2GHz",
            "--tcc-size",
            "4MiB",
            "--dram-channels",
            "8",
            "--gem5-version",
            "v24.1",
        ],
    )
    assert sum(r["t_est_s"] for r in fast) < sum(r["t_est_s"] for r in slow) / 4
    assert {r["estimator"] for r in fast} == {"full"}
    assert fast[0]["clock_hz"] == 2e9
    assert main([*base[:-4], "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert set(header) >= REQUIRED


def test_notebook_chunk_option(capsys):
    records = _json(
        capsys,
        [
            "estimate",
            "--model",
            "llama-3.2-1b",
            "--hardware",
            "nvl-ax",
            "--phase",
            "chunked",
            "--seq",
            "512",
            "--notebook-chunk",
            "1000:250",
            "--estimator",
            "simple",
            "--format",
            "json",
        ],
    )
    assert records[0]["decode_tokens"] == 102 and records[0]["seq"] == 410


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (
            ["--model", "llama-3.2-1x", "--hardware", "mi300x", "--phase", "decode"],
            "did you mean 'llama-3.2-1b'",
        ),
        (["--model", "llama-3.2-1b", "--hardware", "mi301x", "--phase", "decode"], "did you mean 'mi300x'"),
        (["--model", "llama-3.2-1b", "--hardware", "mi300x", "--phase", "prefill", "--seq", "-5"], "--seq"),
        (
            ["--model", "llama-3.2-1b", "--hardware", "mi300x", "--phase", "decode", "--context", "-1"],
            "--context",
        ),
        (["--model", "llama-3.2-1b", "--hardware", "mi300x", "--phase", "prefill"], "needs --seq"),
        (
            ["--model", "llama-3.2-1b", "--hardware", "mi300x", "--phase", "decode", "--num-cus", "8"],
            "datasheet",
        ),
        (
            ["--model", "llama-3.2-1b", "--hardware", "gem5-mi300", "--phase", "decode", "--num-cus", "-8"],
            "gpu.num_cus: must be a whole number >= 1",
        ),
        (["--model", "llama-3.2-1b", "--hardware", "mi100", "--phase", "decode", "--dtype", "fp8"], "no fp8"),
        (
            ["--model", "llama-3.2-1b", "--hardware", "mi300x", "--phase", "decode", "--layers", "99"],
            "outside",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, match):
    assert main(["estimate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0]


def test_config_missing_field_exit_2(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    assert main(["estimate", "--model", str(tmp_path), "--hardware", "mi300x", "--phase", "decode"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "missing field" in err and len(err.strip().splitlines()) == 1


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["estimate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--sys-clock" in text and "gem5-mi300" in text and "llama-3.2-1b" in text
