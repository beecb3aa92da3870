"""Structural slicer and trace readers on the real fixtures (and variants made from them)."""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from foundation.errors import InputError
from orchestrator.cli import main
from workloads.slicer import slice_kernels
from workloads.traces import read_trace

SWITCH = Path("kernel_traces/switchtransformer_a100_torchprofiler")
BLOCK = re.compile(r"nn\.Module: SwitchTransformerBlock_(\d+)$")


@pytest.fixture(scope="module", params=["trace.json", "trace_128token_100Kpar_4exp_4batch_128seq-2.json"])
def switch(request, fixtures_dir):
    return read_trace(fixtures_dir / SWITCH / request.param)


def annotated_blocks(trace) -> list[tuple[int, int]]:
    """Ground truth: the kernels launched inside each SwitchTransformerBlock_N module."""
    blocks = sorted(
        (int(BLOCK.match(s.name).group(1)), s.first, s.end - 1) for s in trace.spans if BLOCK.match(s.name)
    )
    return [(first, last) for _, first, last in blocks]


def test_switch_annotations_are_what_the_test_assumes(switch):
    # Inspected from the data: 494 kernels in one forward pass, 1 embedding kernel, 10 encoder
    # blocks of 49 kernels (attention, LayerNorm, 4 experts), 3 kernels after the last block.
    assert len(switch) == 494 and switch.format == "kineto-gpu"
    blocks = annotated_blocks(switch)
    assert len(blocks) == 10
    assert blocks[0] == (1, 49) and blocks[-1] == (442, 490)


def test_switch_layers_match_module_annotations(switch):
    result = slice_kernels(switch.kernels, 10)
    assert len(result.steps) == 1
    step = result.steps[0]
    assert list(step.layers) == annotated_blocks(switch)
    assert (step.first, step.last) == (0, 493)
    assert result.confidence == 1.0


def test_switch_wrong_layer_count_is_refused_with_a_hint(switch):
    with pytest.raises(InputError, match="repeats 10 times"):
        slice_kernels(switch.kernels, 7)


def test_switch_too_many_layers_names_the_repeat_found(switch):
    with pytest.raises(InputError, match="block of 49 kernels repeats 10 times"):
        slice_kernels(switch.kernels, 12)


def test_switch_too_few_kernels(switch):
    with pytest.raises(InputError, match="too few"):
        slice_kernels(switch.kernels[:30], 10)


def test_no_repeat_is_refused():
    with pytest.raises(InputError, match="repeats exactly 3 times"):
        slice_kernels([f"k{i}" for i in range(200)], 3)


def test_slack_boundary_is_resolved_by_rule_with_lower_confidence():
    block = ["a", "b", "c", "d", "e"]
    seq = ["x", *block * 3, "a", "b", "c", "d", "y"]  # 3 copies + 4 kernels that repeat the start
    result = slice_kernels(seq, 3)
    assert result.steps[0].layers == ((1, 5), (6, 10), (11, 15))
    assert result.confidence < 1.0 and "5 positions" in result.notes[0]


def test_a_run_of_one_kernel_is_not_a_layer():
    # weight upload: the same copy kernel 9 times per layer would repeat "exactly N" times
    with pytest.raises(InputError, match="repeats exactly 3 times"):
        slice_kernels(["embed", *["copy"] * 27, "head"], 3)


def test_equally_good_periods_are_refused():
    # period 4 repeats 3 times over kernels 0..11, period 5 repeats 3 times over 8..22
    seq = list("abcdabcd" + "abcdx" * 3)
    with pytest.raises(InputError, match="several equally good"):
        slice_kernels(seq, 3)


def test_mi250_trace_has_too_few_kernels(fixtures_dir):
    trace = read_trace(
        fixtures_dir / "kernel_traces/hta_kineto_samples/mi250_minitoy_train_ROCm6_2_kineto.json.gz"
    )
    assert len(trace) == 14 and trace.kernels[1].startswith("Cijk_")  # Tensile names under ROCm
    with pytest.raises(InputError, match="14 kernels: too few"):
        slice_kernels(trace.kernels, 4)


def test_rocprof_stats_csv_is_refused(fixtures_dir):
    with pytest.raises(InputError, match="--stats summary"):
        read_trace(fixtures_dir / "kernel_traces/llamacpp_gfx900_rocprofv1_stats/results_f16.stats.csv")


def test_rocprof_v1_results_csv(switch, tmp_path):
    # A v1 results.csv built from the real kernel names, shuffled rows, with a barrier packet.
    path = tmp_path / "results.csv"
    rows = [{"Index": i, "KernelName": name, "gpu-id": 0} for i, name in enumerate(switch.kernels)]
    rows.insert(100, {"Index": 10_000, "KernelName": "<barrier packet>", "gpu-id": 0})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Index", "KernelName", "gpu-id"])
        writer.writeheader()
        writer.writerows(reversed(rows))
    trace = read_trace(path)
    assert trace.format == "rocprof-v1" and trace.kernels == switch.kernels


def test_rocprof_kernel_trace_csv(switch, tmp_path):
    path = tmp_path / "kernel_trace.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Kind", "Agent_Id", "Dispatch_Id", "Kernel_Name", "Start_Timestamp"])
        for i, name in enumerate(switch.kernels):
            writer.writerow(["KERNEL_DISPATCH", 1, i + 1, name, 1000 + i])
    assert read_trace(path).kernels == switch.kernels


def gem5_debug_text(kernels: list[str], with_names: bool = True, skip_all: bool = False) -> str:
    """A gem5 GPUCommandProc/GPUKernelInfo trace in the §2.4 formats, blits interleaved."""
    addresses = {name: f"{0x7F0000001000 + 0x40 * i:#x}" for i, name in enumerate(dict.fromkeys(kernels))}
    lines, tick, task = [], 1000, 0
    for index, name in enumerate(kernels):
        if index % 50 == 0:  # a blit (code upload) now and then
            lines.append(
                f"{tick}: system.Shader.gpu_cmd_proc: kernel_object vaddr 0x7f00000ff000 paddr 0x1 size 64 s:0"
            )
            if with_names:
                lines.append(f"{tick}: system.Shader.gpu_cmd_proc: Kernel name: Blit kernel")
            task += 1
        lines.append(
            f"{tick}: system.Shader.gpu_cmd_proc: kernel_object vaddr {addresses[name]} paddr 0x2 size 64 s:0"
        )
        lines.append(
            f"{tick}: system.Shader.gpu_cmd_proc: GPU machine code is 256 bytes from start of the kernel object"
        )
        if with_names:
            lines.append(f"{tick}: system.Shader.gpu_cmd_proc: Kernel name: Some kernel")
        if skip_all:
            lines.append(
                f"{tick}: system.Shader.gpu_cmd_proc: Skipping non-blit kernel {index} (Task ID: {task})"
            )
        task += 1
        tick += 1000
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("with_names,skip_all", [(True, False), (False, True)])
def test_gem5_debug_trace_slices_like_the_profiler(switch, tmp_path, with_names, skip_all):
    path = tmp_path / "debug.log.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(gem5_debug_text(switch.kernels, with_names, skip_all))
    trace = read_trace(path)
    assert trace.format == "gem5-debug" and len(trace) == len(switch)
    assert slice_kernels(trace.kernels, 10).to_json() == slice_kernels(switch.kernels, 10).to_json()


def test_gem5_debug_trace_without_blit_information(switch, tmp_path):
    path = tmp_path / "debug.log"
    path.write_text(gem5_debug_text(switch.kernels[:20], with_names=False))
    with pytest.raises(InputError, match="GPUKernelInfo"):
        read_trace(path)


def test_cli_slice_json_and_table(fixtures_dir, tmp_path, capsys):
    trace = tmp_path / "trace.json.gz"
    with (fixtures_dir / SWITCH / "trace.json").open("rb") as src, gzip.open(trace, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert main(["slice", str(trace), "--layers", "10", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"steps", "confidence"}
    assert payload["steps"][0]["kernels"] == [0, 493]
    assert payload["steps"][0]["layers"][3] == [148, 196]
    assert main(["slice", str(trace), "--layers", "10"]) == 0
    assert "confidence 1.00" in capsys.readouterr().out


def test_cli_slice_bad_input_exits_2(fixtures_dir, capsys):
    stats = fixtures_dir / "kernel_traces/llamacpp_gfx900_rocprofv1_stats/results_q4.stats.csv"
    assert main(["slice", str(stats), "--layers", "4"]) == 2
    assert "--stats summary" in capsys.readouterr().err
    assert main(["slice", str(stats), "--model", "no-such-model"]) == 2
    assert "unknown" in capsys.readouterr().err


def decode_trace(layers: int, decode_steps: int) -> list[str]:
    """A GPU-like generation: the prefill uses other GEMM kernels than the decode steps."""
    prefill_block = [
        "norm",
        "gemm_big",
        "rope",
        "attn_prefill",
        "gemm_big",
        "add",
        "norm",
        "gemm_big",
        "act",
        "add",
    ]
    decode_block = ["norm", "gemv", "rope", "attn_decode", "gemv", "add", "norm", "gemv", "act", "add"]
    out = ["embed", *prefill_block * layers, "norm", "lm_head", "argmax"]
    for _ in range(decode_steps):
        out += ["embed", *decode_block * layers, "norm", "lm_head", "argmax"]
    return out


def test_prefill_and_decode_steps_with_different_blocks():
    result = slice_kernels(decode_trace(4, 2), 4)
    assert [(s.first, s.last) for s in result.steps] == [(0, 43), (44, 87), (88, 131)]
    assert result.steps[1].layers[0] == (45, 54)


def test_decode_steps_equal_to_layer_count_are_not_taken_for_layers():
    # D == N: whole decode steps repeat exactly N times too; the layers must still win.
    result = slice_kernels(decode_trace(4, 4), 4)
    assert len(result.steps) == 5
    assert all(s.period == 10 for s in result.steps)
    assert result.confidence <= 0.8 and any("whole steps" in note for note in result.notes)
