"""Marker ids, the gem5 marker back end (with an m5 test double), driver argv, vLLM driver logic."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from foundation.errors import InputError
from workloads.drivers import DRIVERS, GUEST_DIR, GUEST_FILES, guest_argv, script_path
from workloads.drivers import markers as mk

DRIVER_DIR = Path(mk.__file__).parent


def test_marker_ids_round_trip_and_fit_int32():
    assert mk.encode(3, 1, "q_proj") == 3_002_003
    assert mk.decode(3_002_003) == (3, 1, "q_proj")
    assert mk.decode(mk.encode(0)) == (0, -1, None)
    assert mk.decode(mk.encode(7, 4)) == (7, 4, None)
    assert mk.decode(mk.encode(2, -1, "lm_head")) == (2, -1, "lm_head")
    assert mk.encode(mk.MAX_STEP, mk.MAX_LAYER, 999) < 2**31
    for bad in ((mk.MAX_STEP + 1, 0), (0, mk.MAX_LAYER + 1), (-1, 0)):
        with pytest.raises(ValueError):
            mk.encode(*bad)
    with pytest.raises(ValueError, match="unknown module code"):
        mk.decode(1_000_999)
    assert mk.parse_profiler_name(mk.profiler_name(3_002_003, "x.q_proj")) == 3_002_003
    assert mk.parse_profiler_name("nn.Module: Linear_0") is None


@pytest.fixture()
def fake_m5(tmp_path: Path) -> tuple[Path, Path]:
    """A test double for the guest's /sbin/m5: records its argv, one line per call."""
    log = tmp_path / "m5.log"
    script = tmp_path / "m5"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(0o755)
    return script, log


def test_gem5_backend_calls_m5_with_an_argv(fake_m5, tmp_path):
    script, log = fake_m5
    markers = mk.Markers("gem5", m5=str(script), device="cpu")
    with markers.region(mk.encode(1), "step1"), markers.region(mk.encode(1, 0, "q_proj"), "q"):
        pass
    markers.write_table(str(tmp_path / "t.json"), {"driver": "test"})
    lines = log.read_text().splitlines()
    assert lines[:4] == ["workbegin 1000000", "workbegin 1001003", "workend 1001003", "workend 1000000"]
    assert lines[4].startswith("writefile ") and lines[4].endswith(" t.json")
    table = json.loads((tmp_path / "t.json").read_text())
    assert {m["id"] for m in table["markers"]} == {1_000_000, 1_001_003}


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown marker back end"):
        mk.Markers("perfetto")


def test_guest_argv():
    argv = guest_argv(
        "layer",
        {
            "config": "/opt/layerlab/model_configs/llama-3.2-1b.json",
            "context": 1024,
            "decode_steps": 1,
            "markers": "gem5",
            "profile": None,
            "verbose": True,
        },
    )
    assert argv[:2] == ["python3", f"{GUEST_DIR}/layer.py"]
    assert argv[2:] == [
        "--config",
        "/opt/layerlab/model_configs/llama-3.2-1b.json",
        "--context",
        "1024",
        "--decode-steps",
        "1",
        "--markers",
        "gem5",
        "--verbose",
    ]
    with pytest.raises(InputError, match="did you mean 'vllm'"):
        guest_argv("vlm")
    with pytest.raises(InputError, match="letters, digits"):
        guest_argv("hf", {"x; rm -rf /": 1})
    assert all(script_path(d).is_file() for d in DRIVERS)


def test_guest_files_import_only_what_the_image_has():
    allowed = set(sys.stdlib_module_names) | {
        "torch",
        "transformers",
        "vllm",
        "markers",
        "common",
        "__future__",
    }
    for name in GUEST_FILES:
        # The guest's Python may be 3.10: the scripts must parse there.
        tree = ast.parse((DRIVER_DIR / name).read_text(), feature_version=(3, 10))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{name} imports {roots - allowed}"


@pytest.mark.torch
def test_layer_driver_runs_as_a_guest_script_with_m5_markers(fake_m5, tmp_path):
    pytest.importorskip("torch")
    script, log = fake_m5
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}))
    argv = guest_argv(
        "layer",
        {
            "config": config,
            "prompt_len": 2,
            "decode_steps": 1,
            "dtype": "fp32",
            "device": "cpu",
            "markers": "gem5",
            "m5": script,
            "marker_table": tmp_path / "t.json",
        },
        python=sys.executable,
    )
    argv[1] = str(DRIVER_DIR / "layer.py")  # the host copy of the script, run outside the package
    subprocess.run([sys.executable, "-E", "-s", *argv[1:]], check=True, cwd=tmp_path, timeout=120)
    lines = log.read_text().splitlines()
    begins = [line.split()[1] for line in lines if line.startswith("workbegin")]
    ends = [line.split()[1] for line in lines if line.startswith("workend")]
    assert sorted(begins) == sorted(ends) and len(begins) == 2 * (1 + 1 + 1 + 12)  # 2 steps
    assert begins[0] == "0" and "1001003" in begins  # step 1 layer 0 q_proj


class _FakeEngine:
    def __init__(self, log: list) -> None:
        self.log, self.left = log, {}
        self.model_config = types.SimpleNamespace(get_vocab_size=lambda: 1000)

    def add_request(self, request_id, prompt, params):
        self.log.append(("add", request_id, len(prompt["prompt_token_ids"])))
        self.left[request_id] = params.kwargs["max_tokens"]

    def has_unfinished_requests(self):
        return any(self.left.values())

    def step(self):
        self.log.append(("step",))
        for rid in self.left:
            if self.left[rid]:
                self.left[rid] -= 1
                break


def test_vllm_driver_with_a_fake_vllm(monkeypatch, tmp_path):
    log: list = []

    class LLM:
        def __init__(self, **kwargs):
            log.append(("llm", kwargs))
            self.llm_engine = _FakeEngine(log)

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from workloads.drivers import vllm_driver

    table = tmp_path / "t.json"
    assert (
        vllm_driver.main(
            [
                "--model-dir",
                "/m",
                "-S",
                "7",
                "-D",
                "3",
                "--warmup",
                "1",
                "--markers",
                "none",
                "--marker-table",
                str(table),
            ]
        )
        == 0
    )
    kwargs = log[0][1]
    assert kwargs["enforce_eager"] is True and kwargs["max_model_len"] == 10 and kwargs["dtype"] == "bfloat16"
    assert ("add", "req0", 7) in log
    payload = json.loads(table.read_text())
    assert [s["phase"] for s in payload["steps"]] == ["warmup"] * 3 + ["prefill", "decode", "decode"]
    assert all(m["layer"] == -1 and m["module"] is None for m in payload["markers"])  # steps only


def test_vllm_driver_is_import_safe_without_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    from workloads.drivers import vllm_driver

    args = vllm_driver.parser().parse_args(["--model-dir", "/m", "-S", "4", "-D", "2"])
    assert vllm_driver.sampling_kwargs(args) == {
        "max_tokens": 2,
        "ignore_eos": True,
        "temperature": 0.0,
        "detokenize": False,
    }
    assert len(vllm_driver.prompt_token_ids(args, 100)) == 4
    with pytest.raises(SystemExit, match="not installed"):
        vllm_driver.main(["--model-dir", "/m"])
