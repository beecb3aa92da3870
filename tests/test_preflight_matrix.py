"""Every rendered run kind preflights clean against the real gem5 tree of its profile.

device x version profile x script style (classic; stdlib on v24.1+) x run kind (census skip-all,
window with per-kernel dumps, boot checkpoint, restore): each render runs through the tree's own
Python up to the C++ boundary (``layerlab preflight``'s check: findings, version fit, and the
machine read back from the preflight config.ini equal to the run's ``Gem5GpuConfig``).
v25 is checked against develop-2025-05-03, the nearest upstream tree, as a stand-in.
Runs are checked two at a time (each preflight is a child process) to fit CI's two cores.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO
from gem5_configs_support import inputs

from foundation.gem5_names import GEM5_VERSIONS
from foundation.vocabulary import SKIP_ALL
from gem5_configs.params import make_params
from gem5_configs.render import render_to_dir
from orchestrator.cli import main as cli
from orchestrator.commands.preflight import check_run

GEM5_SRC = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src")
GUEST = (
    "python3",
    "/opt/layerlab/drivers/layer.py",
    "--config",
    "/opt/layerlab/model_configs/llama-3.2-1b.json",
)
KINDS = ("census", "window", "boot_checkpoint", "restore")
CASES = [
    (device, profile, style)
    for device in ("mi300x", "mi200")
    for profile in ("v24.0", "v24.1", "v25")
    for style in (("classic",) if profile == "v24.0" else ("classic", "stdlib"))
]


def tree(profile: str) -> Path:
    path = GEM5_SRC / GEM5_VERSIONS[profile].reference_tree
    if not (path / "src" / "base" / "version.cc").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"real gem5 tree {path} missing in CI (../shared/gem5_src)", pytrace=False)
        pytest.skip(f"real gem5 tree {path} not found")
    return path


def render_kind(base: Path, device: str, profile: str, style: str, kind: str) -> Path:
    files = inputs(base)
    options: dict = {"gem5_src": str(tree(profile)), "script_style": style, "guest_command": GUEST}
    if kind == "census":
        options["skip_until"] = SKIP_ALL
    elif kind == "window":
        options.update(skip_until=120, exit_after=131, per_kernel_dumps=True)
    elif kind == "boot_checkpoint":
        options.update(checkpoint_dir=str(base / "ckpt"), guest_command=())
    else:
        ckpt = base / "boot-ckpt"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "layerlab_checkpoint.json").write_text(json.dumps({"run_id": "0" * 16, "tick": 1}))
        options.update(restore_dir=str(ckpt), skip_until=120, exit_after=131, per_kernel_dumps=True)
    run = base / f"run-{kind}"
    params = make_params(
        profile=profile,
        device=device,
        kernel=files["vmlinux-gpu-ml"],
        disk=files["x86-ubuntu-gpu-ml"],
        **options,
    )
    render_to_dir(params, run)
    return run


@pytest.mark.parametrize(("device", "profile", "style"), CASES, ids=["-".join(c) for c in CASES])
def test_every_run_kind_preflights_clean(tmp_path: Path, device: str, profile: str, style: str) -> None:
    tree(profile)
    runs = [render_kind(tmp_path / kind, device, profile, style, kind) for kind in KINDS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(check_run, runs))
    for kind, report in zip(KINDS, reports, strict=True):
        assert report["findings"] == [], (kind, report["findings"])
        assert report["machine_mismatches"] == [], (kind, report["machine_mismatches"])
        assert report["ok"] and report["reached_boundary"], kind
        assert report["sim_objects"] > (9000 if device == "mi300x" else 2500), kind
        assert Path(report["config_ini"]).is_file()
        if profile == "v25":
            assert "stands in" in (report["stand_in"] or "")


def test_a_tree_of_another_version_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = render_kind(tmp_path, "mi300x", "v24.0", "classic", "census")
    assert cli(["preflight", str(run), "--gem5-src", str(tree("v24.1"))]) == 2
    err = capsys.readouterr().err
    assert "is gem5 24.1.0.3 (profile v24.1) but" in err and "rendered for v24.0" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_json_report_and_one_line_error_on_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = render_kind(tmp_path, "mi200", "v24.0", "classic", "window")
    assert cli(["preflight", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["run_id"] == json.loads((run / "params.json").read_text())["run_id"]
    assert (run / "preflight" / "layerlab_preflight.json").is_file()
    script = run / "gem5_config.py"
    text = script.read_text()
    script.write_text(
        text.replace(
            "    system.exit_on_work_items = True\n",
            "    system.exit_on_work_items = True\n    shader.dispatcher.kernel_exit_eventz = True\n",
        )
    )
    assert cli(["preflight", str(run)]) == 2
    captured = capsys.readouterr()
    assert "unknown_param GPUDispatcher.kernel_exit_eventz" in captured.err
    assert captured.err.count("\n") == 1 and "gem5_config.py:" in captured.err


def test_machine_mismatch_names_the_knob(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A config that builds fine but not the machine the run describes is refused, naming the knob."""
    run = render_kind(tmp_path, "mi300x", "v24.0", "classic", "census")
    params_path = run / "params.json"
    data = json.loads(params_path.read_text())
    data["machine"]["gpu"]["tcc_bytes"] = 8 << 20  # the run now claims 8 MiB of TCC
    params_path.write_text(json.dumps(data))
    assert cli(["preflight", str(run)]) == 2
    err = capsys.readouterr().err
    assert "machine tcc_bytes: the run says 8388608, gem5 built 262144" in err


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("param", "unknown_param GPUDispatcher.kernel_exit_eventz"),
        ("type", "wrong_type"),
        ("option", "unknown_option --no-such-knob"),
    ],
)
def test_negative_edits_exit_2_naming_the_culprit(
    tmp_path: Path, capsys: pytest.CaptureFixture, edit: str, needle: str
) -> None:
    run = render_kind(tmp_path, "mi200", "v24.0", "classic", "census")
    script = run / "gem5_config.py"
    text = script.read_text()
    anchor = "    system.exit_on_work_items = True\n"
    if edit == "param":
        script.write_text(text.replace(anchor, anchor + "    shader.dispatcher.kernel_exit_eventz = True\n"))
    elif edit == "type":
        script.write_text(text.replace(anchor, "    system.exit_on_work_items = 'maybe'\n"))
    else:
        command = json.loads((run / "command.json").read_text())
        command["argv"].append("--no-such-knob=3")
        (run / "command.json").write_text(json.dumps(command))
    assert cli(["preflight", str(run)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    if edit == "type":
        assert "exit_on_work_items" in err
