"""Census and windows from events side-files written the way the gem5 loop writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation import events
from foundation.errors import InputError
from foundation.vocabulary import SKIP_ALL, Window
from orchestrator.cli import main
from workloads import census
from workloads.drivers import markers as mk

LAYERS = 2


def program(steps: int = 2, layers: int = LAYERS) -> list[tuple]:
    """A driver's dispatch/marker order: 2 init kernels + 1 blit, then per step: embed (1 kernel),
    layers (norm 2, q_proj 1, 2 attention kernels, residual add 1), head (1), argmax (1)."""
    out: list[tuple] = [("k",), ("blit",), ("k",)]
    for step in range(steps):
        out.append(("b", mk.encode(step)))
        out += [("b", mk.encode(step, -1, "embed")), ("k",), ("e", mk.encode(step, -1, "embed"))]
        for layer in range(layers):
            out.append(("b", mk.encode(step, layer)))
            out += [("b", mk.encode(step, layer, "input_norm")), ("k",), ("blit",), ("k",)]
            out.append(("e", mk.encode(step, layer, "input_norm")))
            out.append(("b", mk.encode(step, layer, "attention")))
            out += [("b", mk.encode(step, layer, "q_proj")), ("k",), ("e", mk.encode(step, layer, "q_proj"))]
            out += [("k",), ("k",), ("e", mk.encode(step, layer, "attention")), ("k",)]
            out.append(("e", mk.encode(step, layer)))
        out += [("b", mk.encode(step, -1, "lm_head")), ("k",), ("e", mk.encode(step, -1, "lm_head")), ("k",)]
        out.append(("e", mk.encode(step)))
    return out


def side_file(items: list[tuple], end: bool = True, skip_until: int = SKIP_ALL) -> list[dict]:
    records = [
        {
            "kind": "start",
            "schema": events.SCHEMA,
            "run_id": "00000000census00",
            "skip_until": skip_until,
            "exit_after": -1,
            "exit_at_task": 10**8,
            "dump_per_kernel": False,
            "gem5_profile": "v24.0",
            "tick": 0,
        }
    ]
    kernels = tasks = 0
    for seq, item in enumerate(items):
        kind = {"k": "skip", "blit": "blit", "b": "workbegin", "e": "workend"}[item[0]]
        index = None
        if kind == "skip":
            index, kernels = kernels, kernels + 1
        if kind in ("skip", "blit"):
            tasks += 1
        cause = {"skip": "Skipping GPU Kernel", "blit": "GPU Blit Kernel Completed"}.get(kind, kind)
        records.append(
            {
                "seq": seq,
                "kind": kind,
                "cause": cause,
                "exit_code": item[1] if len(item) > 1 else 0,
                "tick": 1000 * seq,
                "kernel_index": index,
                "kernels_done": kernels,
                "tasks_done": tasks,
                "dump": None,
                "dump_suppressed": False,
                "reset": False,
            }
        )
    if end:
        records.append(
            {
                "kind": "end",
                "cause": "m5_exit instruction encountered",
                "exit_code": 0,
                "tick": 10**9,
                "kernels_done": kernels,
                "tasks_done": tasks,
                "expected": True,
                "tail_dump": 0,
            }
        )
    return records


def marker_table(items: list[tuple], layers: int = LAYERS, steps: int = 2) -> dict:
    ids = sorted({i[1] for i in items if i[0] == "b"})
    return {
        "schema": "layerlab-markers/1",
        "driver": "hf",
        "num_hidden_layers": layers,
        "decode_steps": steps - 1,
        "steps": [
            {
                "step": s,
                "phase": "prefill" if s == 0 else "decode",
                "phase_index": max(0, s - 1),
                "tokens": 1,
                "context": 0,
            }
            for s in range(steps)
        ],
        "markers": [{"id": i, "label": f"m{i}"} for i in ids],
    }


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    items = program()
    census.write_events(tmp_path, side_file(items))
    (tmp_path / census.MARKER_TABLE_FILE).write_text(json.dumps(marker_table(items)))
    return tmp_path


def test_kernel_map_labels_every_kernel(run_dir):
    km = census.build_kernel_map(run_dir)
    assert km.meta["num_kernels"] == 2 + 2 * (1 + LAYERS * 6 + 2)
    assert km.steps == [0, 1]
    first = km.kernels.iloc[2]  # the embedding of step 0
    assert (first.step, first.module, first.op_name) == (0, "embed", f"m{mk.encode(0, -1, 'embed')}")
    assert km.kernels.iloc[0]["step"] is None or km.kernels["step"].isna().iloc[0]
    layer0 = km.kernels[(km.kernels["step"] == 1) & (km.kernels["layer"] == 0)]
    assert list(layer0["module"]) == ["input_norm", "input_norm", "q_proj", "attention", "attention", "layer"]


def test_window_of_a_layer_and_a_module(run_dir):
    km = census.build_kernel_map(run_dir)
    win, expected = census.window(km, 1, 1)
    # step 1 starts after 2 init + 15 step-0 kernels; its embed is kernel 17; layer 0 is 18..23
    assert win == Window(24, 29)
    assert win.gem5_options() == ["--skip-until-gpu-kernel=24", "--exit-after-gpu-kernel=29"]
    assert list(expected["kernel_index"]) == list(range(24, 30))
    q, _ = census.window(km, 1, 1, "q_proj")
    assert q == Window(26, 26)


def test_blit_counts_between_markers(run_dir):
    regions = census.build_kernel_map(run_dir).regions
    norms = regions[regions["module"] == "input_norm"]
    assert set(norms["blits"]) == {1}
    steps = regions[regions["layer"].isna() & regions["module"].isna()]
    assert list(steps["blits"]) == [LAYERS, LAYERS]


def test_kernel_map_round_trip_and_cli(run_dir, capsys):
    assert main(["census", str(run_dir)]) == 0
    assert (run_dir / census.KERNEL_MAP_FILE).exists()
    assert "kernels" in capsys.readouterr().out
    loaded = census.load_kernel_map(run_dir)
    assert census.window(loaded, 0, 1)[0] == census.window(census.build_kernel_map(run_dir), 0, 1)[0]
    assert main(["window", str(run_dir), "--step", "1", "--layer", "1", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["gem5_options"] == ["--skip-until-gpu-kernel=24", "--exit-after-gpu-kernel=29"]
    assert len(payload["kernels"]) == 6 and payload["blits"] == 1
    assert main(["window", str(run_dir), "--step", "0", "--layer", "0"]) == 0
    assert "--skip-until-gpu-kernel=3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--step", "5", "--layer", "0"], "--step 5 not in this run: steps are 0..1 (the run had D=1"),
        (["--step", "1", "--layer", "2"], "--layer 2 beyond num_hidden_layers=2"),
        (["--step", "1", "--layer", "0", "--module", "q_prj"], "did you mean 'q_proj'"),
        (["--step", "0", "--layer", "0", "--model", "no-such-model"], "unknown"),
        (
            ["--step", "0", "--layer", "20", "--model", "llama-3.2-1b"],
            "--layer 20 beyond num_hidden_layers=16",
        ),
    ],
)
def test_window_bad_input_one_clear_error(run_dir, capsys, argv, message):
    assert main(["window", str(run_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_marker_in_side_file(tmp_path):
    items = program()
    table = marker_table(items)
    dropped = mk.encode(1, 1, "q_proj")
    items = [i for i in items if not (i[0] in "be" and i[1] == dropped)]
    census.write_events(tmp_path, side_file(items))
    (tmp_path / census.MARKER_TABLE_FILE).write_text(json.dumps(table))
    with pytest.raises(InputError, match=f"lacks 1 marker.*id {dropped}"):
        census.build_kernel_map(tmp_path)


def test_unbalanced_and_unclosed_markers(tmp_path):
    items = program()
    workend = next(i for i, item in enumerate(items) if item[0] == "e")
    census.write_events(tmp_path, side_file(items[:workend] + items[workend + 1 :]))
    with pytest.raises(InputError, match="missing or unbalanced markers"):
        census.build_kernel_map(tmp_path)
    census.write_events(tmp_path, side_file(items[:-1], end=False))
    with pytest.raises(InputError, match="never closed: the run ended early"):
        census.build_kernel_map(tmp_path)


def test_no_markers_and_not_a_census(tmp_path):
    census.write_events(tmp_path, side_file([("k",)] * 5))
    with pytest.raises(InputError, match="no workbegin/workend markers"):
        census.build_kernel_map(tmp_path)
    census.write_events(tmp_path, side_file(program(), skip_until=3))
    with pytest.raises(InputError, match="not a census run"):
        census.build_kernel_map(tmp_path)


def test_missing_side_file(tmp_path):
    with pytest.raises(InputError, match=r"no layerlab_events\.jsonl"):
        census.build_kernel_map(tmp_path)


def test_empty_marker_region_gives_no_window(tmp_path):
    items = [("b", mk.encode(0)), ("b", mk.encode(0, 0)), ("e", mk.encode(0, 0)), ("k",), ("e", mk.encode(0))]
    census.write_events(tmp_path, side_file(items))
    km = census.build_kernel_map(tmp_path)
    with pytest.raises(InputError, match="brackets no non-blit kernel"):
        census.window(km, 0, 0)


def test_steps_only_run_points_to_the_slicer(tmp_path):
    items = [("b", mk.encode(0)), ("k",), ("k",), ("e", mk.encode(0))]
    census.write_events(tmp_path, side_file(items))
    km = census.build_kernel_map(tmp_path)
    assert km.steps == [0]  # steps are there, layers are not
    with pytest.raises(InputError, match=r"no layer markers.*layerlab slice"):
        census.window(km, 0, 0)
