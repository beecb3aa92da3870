"""The real guest drivers on the CPU: markers by census and blocks by structure must agree.

Each driver runs in-process with ``--profile`` (torch.profiler records the steps with the
``layerlab:<id>`` markers). The trace's kernel stand-ins on the CPU are top-level aten ops
(``workloads.traces``). From the same trace we derive the events side-file gem5 would write
for a skip-all census (``census.events_from_trace``), build the kernel map, and compare every
(step, layer) window with the layer blocks the structural slicer finds without the markers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workloads import census
from workloads.drivers import markers as mk
from workloads.slicer import slice_kernels
from workloads.traces import read_trace

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
LAYERS = 3


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    small = {"vocab_size": 256}
    models = {
        "llama": transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=LAYERS + 1,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                **small,
            )
        ),
        "gpt2": transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                n_embd=64, n_layer=LAYERS, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **small
            )
        ),
        "opt": transformers.OPTForCausalLM(
            transformers.OPTConfig(
                hidden_size=64,
                ffn_dim=128,
                num_hidden_layers=LAYERS,
                num_attention_heads=4,
                max_position_embeddings=64,
                word_embed_proj_dim=64,
                **small,
            )
        ),
    }
    dirs = {}
    for name, model in models.items():
        dirs[name] = root / name
        model.save_pretrained(dirs[name])
    return dirs


def census_vs_slicer(tmp_path: Path, trace_path: Path, table_path: Path, layers: int):
    trace = read_trace(trace_path)
    run = tmp_path / "census"
    run.mkdir()
    census.write_events(run, census.events_from_trace(trace))
    os.replace(table_path, run / census.MARKER_TABLE_FILE)
    kernel_map = census.build_kernel_map(run)
    result = slice_kernels(trace.kernels, layers)
    assert len(result.steps) == len(kernel_map.steps)
    for step, found in zip(kernel_map.steps, result.steps, strict=True):
        by_markers = [census.window(kernel_map, step, layer)[0] for layer in range(layers)]
        assert [(w.skip_until, w.exit_after) for w in by_markers] == list(found.layers), f"step {step}"
    # Steps too: the structural split of the gaps between steps lands on the step markers.
    regions = kernel_map.regions
    marked = regions[regions["layer"].isna() & regions["module"].isna()]
    assert marked[["first_kernel", "last_kernel"]].values.tolist() == [
        [s.first, s.last] for s in result.steps
    ]
    return kernel_map, result


def run_hf(model_dir: Path, tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    from workloads.drivers import hf

    trace, table = tmp_path / "trace.json", tmp_path / "markers.json"
    argv = [
        "--model-dir",
        str(model_dir),
        "-S",
        "5",
        "-D",
        "2",
        "--dtype",
        "fp32",
        "--device",
        "cpu",
        "--profile",
        str(trace),
        "--marker-table",
        str(table),
        *extra,
    ]
    assert hf.main(argv) == 0
    return trace, table


@pytest.mark.parametrize("family", ["gpt2", "opt"])
def test_hf_families_census_and_slicer_agree(model_dirs, tmp_path, family):
    trace, table = run_hf(model_dirs[family], tmp_path)
    kernel_map, result = census_vs_slicer(tmp_path, trace, table, LAYERS)
    assert kernel_map.meta["driver"] == "hf" and kernel_map.meta["num_hidden_layers"] == LAYERS
    assert [kernel_map.meta["steps"][s]["phase"] for s in kernel_map.steps] == ["prefill", "decode", "decode"]
    assert result.confidence >= 0.75


def test_hf_llama_truncated_with_warmup(model_dirs, tmp_path):
    # 4-layer checkpoint truncated to 3; one warm-up pass is a counted step 0.
    trace, table = run_hf(model_dirs["llama"], tmp_path, "--layers", str(LAYERS), "--warmup", "1")
    kernel_map, _ = census_vs_slicer(tmp_path, trace, table, LAYERS)
    assert kernel_map.steps == [0, 1, 2, 3]
    assert kernel_map.meta["steps"][0]["phase"] == "warmup"
    modules = set(kernel_map.kernels.loc[kernel_map.kernels["layer"] == 1, "module"])
    assert {
        "input_norm",
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "attention",
        "gate_proj",
        "up_proj",
        "act_fn",
        "down_proj",
        "post_attention_norm",
    } <= modules
    win, expected = census.window(kernel_map, 2, 1, "o_proj")
    assert win.num_kernels == 1 and list(expected["op_name"]) == ["model.layers.1.self_attn.o_proj"]


def test_hf_same_arguments_same_kernel_sequence(model_dirs, tmp_path):
    # The premise of census + sliced run: identical arguments give an identical numbering.
    first = read_trace(run_hf(model_dirs["gpt2"], tmp_path)[0]).kernels
    again = tmp_path / "again"
    again.mkdir()
    assert read_trace(run_hf(model_dirs["gpt2"], again)[0]).kernels == first


def test_layer_driver_prefill_and_decode(tmp_path):
    from workloads.drivers import layer

    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "hidden_size": 128,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 256,
                "num_hidden_layers": 16,
                "model_type": "llama",
            }
        )
    )
    trace, table = tmp_path / "trace.json", tmp_path / "markers.json"
    argv = [
        "--config",
        str(config),
        "--num-layers",
        str(LAYERS),
        "-C",
        "16",
        "-S",
        "4",
        "-D",
        "2",
        "--dtype",
        "fp32",
        "--device",
        "cpu",
        "--profile",
        str(trace),
        "--marker-table",
        str(table),
    ]
    assert layer.main(argv) == 0
    kernel_map, result = census_vs_slicer(tmp_path, trace, table, LAYERS)
    assert result.confidence == 1.0  # no embedding, no final norm: boundaries forced by the data
    assert [s["context"] for s in kernel_map.meta["steps"]] == [16, 20, 21]


def test_layer_driver_rejects_non_llama_config(tmp_path):
    from workloads.drivers import layer

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"n_embd": 64, "n_head": 4}))
    with pytest.raises(SystemExit, match="missing field"):
        layer.main(["--config", str(config), "--device", "cpu"])


def test_profiler_markers_are_named_by_id(tmp_path, model_dirs):
    trace, _ = run_hf(model_dirs["gpt2"], tmp_path)
    names = [s.name for s in read_trace(trace).spans if s.name.startswith(mk.PROFILER_PREFIX)]
    assert f"layerlab:{mk.encode(1, 2, 'qkv_proj')}:transformer.h.2.attn.c_attn" in names
