"""Structural slicer when the first or last layer of a step differs from the rest (issue #12).

On real traces only N-1 layers (N-2 when both edges differ) repeat exactly: llama.cpp's last
layer gathers only the rows it outputs, HF's first layer can carry mask or rotary setup. The
slicer extends the exact copies with edge layers aligned by best match and says so (``exact``
false, ``edges``, lower confidence), and refuses when the edges do not match.

The traces are real ones perturbed at their edges: the A100 Switch Transformer fixture (ground
truth: the ``SwitchTransformerBlock_N`` module annotations) and CPU traces of the ``layer``
driver (ground truth: its layer markers, through the census). ``perturb`` rebuilds a trace step
by step with the edit applied and returns where every layer lands, so each expectation is exact.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from pathlib import Path

import pytest

from foundation.errors import InputError
from orchestrator.cli import main
from workloads.slicer import EDGE_CONFIDENCE, slice_kernels
from workloads.traces import read_trace

SWITCH = Path("kernel_traces/switchtransformer_a100_torchprofiler")
BLOCK = re.compile(r"nn\.Module: SwitchTransformerBlock_(\d+)$")
Layers = tuple[tuple[int, int], ...]


def perturb(
    kernels: list[str],
    steps: list[tuple[int, int, Layers]],
    add: tuple[int, list[str]] | None = None,
    drop: int | None = None,
    only: set[int] | None = None,
) -> tuple[list[str], list[tuple[int, int, Layers]]]:
    """Insert ``add[1]`` at position ``add[0]`` of each step's first layer and delete 2 kernels at
    position ``drop`` of its last layer (steps in ``only``, default all); returns the new trace and
    each step's (first, last, layers) in it."""
    out: list[str] = []
    expected = []
    pos = 0
    for index, (first, last, layers) in enumerate(steps):
        out += kernels[pos : layers[0][0]]
        new_first = first + len(out) - layers[0][0]
        ranges = []
        for i, (a, b) in enumerate(layers):
            layer = list(kernels[a : b + 1])
            if only is None or index in only:
                if i == 0 and add is not None:
                    layer[add[0] : add[0]] = add[1]
                if i == len(layers) - 1 and drop is not None:
                    del layer[drop : drop + 2]
            ranges.append((len(out), len(out) + len(layer) - 1))
            out += layer
        pos = layers[-1][1] + 1
        expected.append((new_first, last + len(out) - pos, tuple(ranges)))
    out += kernels[pos:]
    return out, expected


def found(result) -> list[tuple[int, int, Layers]]:
    return [(s.first, s.last, s.layers) for s in result.steps]


# --- the Switch Transformer fixture (one forward pass, 10 blocks of 49 kernels) -----------------


@pytest.fixture(scope="module", params=["trace.json", "trace_128token_100Kpar_4exp_4batch_128seq-2.json"])
def switch(request, fixtures_dir):
    trace = read_trace(fixtures_dir / SWITCH / request.param)
    blocks = sorted(
        (int(BLOCK.match(s.name).group(1)), s.first, s.end - 1) for s in trace.spans if BLOCK.match(s.name)
    )
    truth = tuple((first, last) for _, first, last in blocks)
    assert len(truth) == 10 and truth[0] == (1, 49)
    return list(trace.kernels), [(0, len(trace) - 1, truth)]


def mask_setup(kernels: list[str]) -> list[str]:
    """Three real kernels of the trace, as a mask setup would add: fill, triu, copy."""
    return kernels[6:9]


def test_unperturbed_fixture_is_exact_everywhere(switch):
    kernels, truth = switch
    result = slice_kernels(kernels, 10)
    assert found(result) == truth and result.confidence == 1.0 and result.notes == []
    payload = result.to_json()
    assert payload["steps"][0]["exact"] == [True] * 10 and payload["steps"][0]["edges"] == []
    assert payload["confidence"] == 1.0


@pytest.mark.parametrize("at", [0, 5, 20, 40])
def test_last_layer_two_kernels_short(switch, at):
    kernels, truth = switch
    seq, expected = perturb(kernels, truth, drop=at)
    result = slice_kernels(seq, 10)
    assert found(result) == expected
    step = result.steps[0]
    assert step.layers[:9] == truth[0][2][:9]  # the exact layers are where they were
    assert step.layers[9] == (442, 488)
    assert step.exact == (True,) * 9 + (False,)
    assert [(e.layer, e.side) for e in step.edges] == [(9, "last")]
    assert step.edges[0].similarity == pytest.approx(47 / 49)
    assert result.confidence == pytest.approx(EDGE_CONFIDENCE * 47 / 49)
    assert "last layer (kernels 442..488, 47 kernels) aligned by best match" in result.notes[0]


@pytest.mark.parametrize("at", [2, 10, 30, 48])
def test_first_layer_three_kernels_more(switch, at):
    kernels, truth = switch
    seq, expected = perturb(kernels, truth, add=(at, mask_setup(kernels)))
    result = slice_kernels(seq, 10)
    assert found(result) == expected
    step = result.steps[0]
    assert step.layers[0] == (1, 52)
    assert step.layers[1:] == tuple((a + 3, b + 3) for a, b in truth[0][2][1:])
    assert step.exact == (False,) + (True,) * 9
    assert [(e.layer, e.side) for e in step.edges] == [(0, "first")]
    assert result.confidence == pytest.approx(EDGE_CONFIDENCE * 49 / 52)


@pytest.mark.parametrize(("add_at", "drop_at"), [(10, 20), (40, 5), (2, 30), (25, 25)])
def test_both_edges_differ(switch, add_at, drop_at):
    kernels, truth = switch
    seq, expected = perturb(kernels, truth, add=(add_at, mask_setup(kernels)), drop=drop_at)
    result = slice_kernels(seq, 10)
    assert found(result) == expected
    step = result.steps[0]
    assert step.layers[1:9] == tuple((a + 3, b + 3) for a, b in truth[0][2][1:9])
    assert step.exact == (False,) + (True,) * 8 + (False,)
    assert [(e.layer, e.side) for e in step.edges] == [(0, "first"), (9, "last")]
    assert result.confidence == pytest.approx(EDGE_CONFIDENCE * 49 / 52)
    assert sum("aligned by best match" in note and "repeats 8 times" in note for note in result.notes) == 2


def test_a_last_layer_cut_at_its_very_end_is_a_stated_tie(switch):
    # Without its last two kernels (add, LayerNorm) the last layer is a prefix of the block, and
    # the step's own final LayerNorm could be the missing one: the exact layers are still right,
    # the edge takes the tail kernel that matches, and the notes say a tie was broken.
    kernels, truth = switch
    seq, _ = perturb(kernels, truth, drop=47)
    result = slice_kernels(seq, 10)
    step = result.steps[0]
    assert step.layers[:9] == truth[0][2][:9] and step.exact == (True,) * 9 + (False,)
    assert step.layers[9][0] == 442 and 488 <= step.layers[9][1] <= 490


@pytest.mark.parametrize("source", ["unique", "vocabulary"])
@pytest.mark.parametrize("edges", ["last", "both"])
def test_garbage_edges_are_refused_naming_the_counts(switch, source, edges):
    kernels, _ = switch
    rng = random.Random(12)
    names = sorted(set(kernels))

    def garbage(count: int) -> list[str]:
        if source == "unique":
            return [f"garbage_kernel_{rng.randrange(10**9)}" for _ in range(count)]
        return [rng.choice(names) for _ in range(count)]  # the trace's own kernels, shuffled

    seq = list(kernels)
    seq[442:491] = garbage(49)
    if edges == "both":
        seq[1:50] = garbage(49)
    copies = 9 if edges == "last" else 8
    with pytest.raises(InputError) as error:
        slice_kernels(seq, 10)
    message = str(error.value)
    assert "repeats exactly 10 times" in message
    assert f"a block of 49 kernels repeats {copies} times" in message
    assert f"hold {copies} copies of a 49-kernel block" in message
    assert re.search(r"last edge layer \(kernels 4[4-9]\d\.\.4\d\d, \d+ kernels\) matches it", message)
    assert "need >= 0.6 and 25..73 kernels" in message
    similarities = [float(s) for s in re.findall(r"similarity (\d\.\d\d)", message)]
    assert similarities and max(similarities) < 0.6


def test_garbage_edges_never_pass_over_many_draws(switch):
    kernels, _ = switch
    names = sorted(set(kernels))
    block = kernels[1:50]
    for seed in range(40):
        rng = random.Random(seed)
        for source in (names, block):
            seq = list(kernels)
            seq[442:491] = [rng.choice(source) for _ in range(49)]
            with pytest.raises(InputError, match="nor do edge layers complete 10"):
                slice_kernels(seq, 10)


def test_a_wrong_layer_count_is_still_refused(switch):
    kernels, _ = switch
    # N = 11: the 10 real blocks are N-1 exact copies, but nothing after them is a layer.
    with pytest.raises(
        InputError, match=r"repeats 10 times.*last edge layer \(kernels 491..493, 3 kernels\)"
    ):
        slice_kernels(kernels, 11)
    with pytest.raises(InputError, match="repeats 10 times"):
        slice_kernels(kernels, 9)


def test_cli_states_edges_and_lower_confidence(switch, tmp_path, capsys):
    kernels, truth = switch
    seq, expected = perturb(kernels, truth, drop=20)
    path = tmp_path / "kernel_trace.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Kind", "Agent_Id", "Dispatch_Id", "Kernel_Name", "Start_Timestamp"])
        for i, name in enumerate(seq):
            writer.writerow(["KERNEL_DISPATCH", 1, i + 1, name, 1000 + i])
    assert main(["slice", str(path), "--layers", "10", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload) == {"steps", "confidence"}
    step = payload["steps"][0]
    assert step["layers"] == [list(r) for r in expected[0][2]]
    assert step["exact"] == [True] * 9 + [False]
    assert step["edges"] == [{"layer": 9, "edge": "last", "similarity": round(47 / 49, 4)}]
    assert payload["confidence"] < 0.7
    assert main(["slice", str(path), "--layers", "10", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["exact"] for r in rows] == ["True"] * 9 + ["False"] and rows[9]["edge"] == "last"
    assert main(["slice", str(path), "--layers", "10"]) == 0
    out = capsys.readouterr().out
    assert "confidence 0.67" in out and "aligned by best match" in out


# --- CPU traces of the `layer` driver (prefill + 2 decode steps, 4 layers) ----------------------

LAYERS = 4


@pytest.fixture(scope="module")
def layer_trace(tmp_path_factory):
    """The real `layer` driver on the CPU with --profile, and its layer windows from the census."""
    pytest.importorskip("torch")
    from workloads import census
    from workloads.drivers import layer

    root = tmp_path_factory.mktemp("layer")
    config = root / "config.json"
    config.write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 128,
                "num_hidden_layers": 16,
                "model_type": "llama",
            }
        )
    )
    trace_path, table = root / "trace.json", root / "markers.json"
    argv = ["--config", str(config), "--num-layers", str(LAYERS), "-C", "8", "-S", "4", "-D", "2",
            "--dtype", "fp32", "--device", "cpu", "--profile", str(trace_path), "--marker-table", str(table)]  # fmt: skip
    assert layer.main(argv) == 0
    trace = read_trace(trace_path)
    run = root / "census"
    run.mkdir()
    census.write_events(run, census.events_from_trace(trace))
    os.replace(table, run / census.MARKER_TABLE_FILE)
    kernel_map = census.build_kernel_map(run)
    regions = kernel_map.regions
    marked = regions[regions["layer"].isna() & regions["module"].isna()]
    truth = []
    bounds = marked[["first_kernel", "last_kernel"]].values.tolist()
    for step, (first, last) in zip(kernel_map.steps, bounds, strict=True):
        windows = [census.window(kernel_map, step, layer)[0] for layer in range(LAYERS)]
        truth.append((int(first), int(last), tuple((w.skip_until, w.exit_after) for w in windows)))
    assert len(truth) == 3
    return list(trace.kernels), truth


MASK = ["aten::full", "aten::triu", "aten::to"]


@pytest.mark.torch
def test_layer_driver_unperturbed_is_exact(layer_trace):
    kernels, truth = layer_trace
    result = slice_kernels(kernels, LAYERS)
    assert found(result) == truth
    assert result.confidence == 1.0 and result.notes == []
    assert all(s["exact"] == [True] * LAYERS and s["edges"] == [] for s in result.to_json()["steps"])


@pytest.mark.torch
@pytest.mark.parametrize(
    ("name", "edit", "exact"),
    [
        ("drop", {"drop": 12}, (True, True, True, False)),
        ("add", {"add": (10, MASK)}, (False, True, True, True)),
        ("both", {"add": (10, MASK), "drop": 12}, (False, True, True, False)),
        ("drop-early", {"drop": 3}, (True, True, True, False)),
        ("add-late", {"add": (30, MASK)}, (False, True, True, True)),
    ],
)
def test_layer_driver_perturbed_every_step(layer_trace, name, edit, exact):
    kernels, truth = layer_trace
    seq, expected = perturb(kernels, truth, **edit)
    result = slice_kernels(seq, LAYERS)
    assert found(result) == expected, name
    assert [s.exact for s in result.steps] == [exact] * 3
    assert 0 < result.confidence <= EDGE_CONFIDENCE
    for step in result.steps:
        sides = ["first"] * (not exact[0]) + ["last"] * (not exact[-1])
        assert [e.side for e in step.edges] == sides
        assert all(e.similarity >= 0.6 for e in step.edges)


@pytest.mark.torch
def test_layer_driver_only_the_prefill_differs(layer_trace):
    # llama.cpp-like: only the prefill's last layer gathers rows; the decode steps repeat exactly.
    # The exact decode steps are found as before and the prefill in the gap before them.
    kernels, truth = layer_trace
    seq, expected = perturb(kernels, truth, drop=12, only={0})
    result = slice_kernels(seq, LAYERS)
    assert found(result) == expected
    assert [s.exact for s in result.steps] == [(True, True, True, False)] + [(True,) * 4] * 2
    assert [s.layers for s in result.steps[1:]] == [tuple((a - 2, b - 2) for a, b in t[2]) for t in truth[1:]]
    assert result.confidence == pytest.approx(EDGE_CONFIDENCE * result.steps[0].edges[0].similarity)


@pytest.mark.torch
def test_layer_driver_garbage_last_layers_are_refused(layer_trace):
    kernels, truth = layer_trace
    rng = random.Random(3)
    seq = list(kernels)
    for _, _, layers in truth:
        a, b = layers[-1]
        seq[a : b + 1] = [f"aten::garbage_{rng.randrange(10**6)}" for _ in range(b - a + 1)]
    with pytest.raises(InputError, match=r"repeats exactly 4 times.*hold 3 copies of a 4\d-kernel block"):
        slice_kernels(seq, LAYERS)
