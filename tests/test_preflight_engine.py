"""The preflight engine against the real gem5 trees in ../shared/gem5_src (Python side only).

Each tree's Python is built once per test session (the conftest points LAYERLAB_CACHE_DIR at a
temporary folder), and each rendered run is rendered once per module, so the whole file stays
well inside CI's budget on two cores. The expected outcomes are facts about the trees
(../shared/reference/gem5_python_only_check.md): v24.0 and develop build the MI300X system
completely; v24.1 has no --mfma-scale; the stdlib ViperBoard script reads ``gpu._shader``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO
from gem5_configs_support import params

from foundation.errors import InputError
from gem5_configs.preflight import PreflightResult, preflight, tree_version

GEM5_SRC = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src")
TREES = {"v24.0": "v24.0.0.1", "v24.1": "v24.1.0.3", "v25": "develop-2025-05-03"}


def tree(profile: str) -> Path:
    path = GEM5_SRC / TREES[profile]
    if not (path / "src" / "base" / "version.cc").is_file():
        pytest.skip(f"real gem5 tree {path} not found (set LAYERLAB_GEM5_SRC_DIR to ../shared/gem5_src)")
    return path


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory):
    """``render(profile, device, **options)`` -> run dir, rendered once per module per argument set."""
    from gem5_configs.render import render_to_dir

    done: dict[tuple, Path] = {}

    def _render(profile: str, device: str = "mi300x", **options) -> Path:
        key = (profile, device, tuple(sorted(options.items())))
        if key not in done:
            base = tmp_path_factory.mktemp(f"run-{profile}-{device}")
            options.setdefault("skip_until", 1_000_000_000)
            render_to_dir(
                params(base, profile=profile, device=device, gem5_src=str(tree(profile)), **options),
                base / "run",
            )
            done[key] = base / "run"
        return done[key]

    return _render


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("preflight"))
    return dest


def edit_script(run: Path, anchor: str, new_line: str, replace: bool = False) -> int:
    """Put ``new_line`` after (or instead of) the line holding ``anchor``; return its line number."""
    path = run / "gem5_config.py"
    lines = path.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if anchor in line)
    indent = re.match(r"\s*", lines[index]).group(0)
    if replace:
        lines[index] = indent + new_line + "\n"
        number = index + 1
    else:
        lines.insert(index + 1, indent + new_line + "\n")
        number = index + 2
    path.write_text("".join(lines))
    return number


def kinds(res: PreflightResult) -> list[tuple[str, str]]:
    return [(f.kind, f.name) for f in res.findings]


def test_tree_version_reads_version_cc():
    assert tree_version(tree("v24.0")) == "24.0.0.1"
    assert tree_version(tree("v24.1")) == "24.1.0.3"
    assert tree_version(tree("v25")) == "DEVELOP-FOR-25.0"


def test_v24_0_mi300x_builds_completely_and_writes_config(render, capsys):
    run = render("v24.0")
    res = preflight(run, tree("v24.0"))
    assert res.ok, [str(f) for f in res.findings]
    assert res.gem5_version == "24.0.0.1"
    assert res.sim_objects > 9000
    assert res.config_ini is not None and res.config_ini.parent == run / "preflight"
    assert res.config_json is not None and res.config_json.is_file()
    ini = res.config_ini.read_text()
    assert re.search(r"^\[system\.\S*CUs0+\]$", ini, re.M), "no GPU compute-unit section in config.ini"
    assert res.to_json()["ok"] is True
    # Warm timing (the tree's build is cached now): printed for the record, not asserted.
    start = time.perf_counter()
    again = preflight(run, tree("v24.0"), out_dir=run / "preflight-warm")
    warm = time.perf_counter() - start
    assert again.ok and again.build_s == 0.0
    with capsys.disabled():
        print(
            f"\npreflight v24.0 mi300x: first {res.elapsed_s:.1f} s (build {res.build_s:.1f} s), warm {warm:.1f} s"
        )


def test_v24_0_mi200_window_passes(render):
    res = preflight(
        render("v24.0", "mi200", skip_until=2, exit_after=5, per_kernel_dumps=True), tree("v24.0")
    )
    assert res.ok, [str(f) for f in res.findings]
    assert 2000 < res.sim_objects < 9000


def test_develop_mi300x_builds_completely(render):
    res = preflight(render("v25"), tree("v25"))
    assert res.ok, [str(f) for f in res.findings]
    assert res.gem5_version == "DEVELOP-FOR-25.0"
    assert res.sim_objects > 9000


def test_v24_1_classic_has_no_mfma_scale_option(render, tmp_path):
    # No v24.1.0.x release has --mfma-scale; the renderer may already leave it out, so the
    # option is put back into a copy of the argv to check the engine reports the tree's answer.
    run = copy_run(render("v24.1"), tmp_path / "run")
    command = json.loads((run / "command.json").read_text())
    if not any(a.startswith("--mfma-scale") for a in command["argv"]):
        command["argv"].append("--mfma-scale=1.0")
        (run / "command.json").write_text(json.dumps(command))
    res = preflight(run, tree("v24.1"))
    assert not res.ok
    assert kinds(res) == [("unknown_option", "--mfma-scale")]
    finding = res.findings[0]
    assert finding.script == "gem5_config.py" and finding.line is not None
    assert "parse_args" in (run / "gem5_config.py").read_text().splitlines()[finding.line - 1]


def test_v24_1_stdlib_builds_and_a_missing_attribute_is_named(render, tmp_path):
    run = render("v24.1", script_style="stdlib")
    res = preflight(run, tree("v24.1"))
    assert res.script == "gem5_config_stdlib.py"
    assert res.ok, [str(f) for f in res.findings]
    assert res.sim_objects > 9000
    # Early stdlib renders read gpu._shader; every tree with the board keeps it as gpu.shader.
    copy = copy_run(run, tmp_path / "run")
    script = copy / "gem5_config_stdlib.py"
    lines = script.read_text().splitlines(keepends=True)
    index = next(i for i, ln in enumerate(lines) if "= gpu.shader" in ln)
    lines[index] = lines[index].replace("gpu.shader", "gpu._shader")
    script.write_text("".join(lines))
    res = preflight(copy, tree("v24.1"))
    assert kinds(res) == [("missing_attribute", "_shader")]
    assert res.findings[0].line == index + 1


def test_unknown_simobject_param_names_class_param_and_line(render, tmp_path):
    run = copy_run(render("v24.0", "mi200"), tmp_path / "run")
    line = edit_script(run, "system.exit_on_work_items = True", "shader.dispatcher.kernel_exit_eventz = True")
    res = preflight(run, tree("v24.0"))
    assert not res.ok
    assert kinds(res) == [("unknown_param", "GPUDispatcher.kernel_exit_eventz")]
    assert res.findings[0].line == line


def test_wrong_type_value_is_reported_with_its_param(render, tmp_path):
    run = copy_run(render("v24.0", "mi200"), tmp_path / "run")
    line = edit_script(
        run, "system.exit_on_work_items = True", 'system.exit_on_work_items = "maybe"', replace=True
    )
    res = preflight(run, tree("v24.0"))
    assert len(res.findings) == 1
    finding = res.findings[0]
    assert finding.kind == "wrong_type" and finding.name.endswith(".exit_on_work_items")
    assert finding.line == line and "maybe" in finding.message


def test_unknown_option_in_command_json(render, tmp_path):
    run = copy_run(render("v24.0", "mi200"), tmp_path / "run")
    command = json.loads((run / "command.json").read_text())
    command["argv"].append("--no-such-knob=3")
    (run / "command.json").write_text(json.dumps(command))
    res = preflight(run, tree("v24.0"))
    assert kinds(res) == [("unknown_option", "--no-such-knob")]


def test_bad_inputs_raise_input_error(render, tmp_path):
    with pytest.raises(InputError, match="no-such-tree"):
        preflight(render("v24.0", "mi200"), tmp_path / "no-such-tree")
    with pytest.raises(InputError, match=r"command\.json"):
        preflight(tmp_path, tree("v24.0"))
    with pytest.raises(InputError, match="nowhere"):
        preflight(tmp_path / "nowhere", tree("v24.0"))
    not_gem5 = tmp_path / "not-gem5"
    not_gem5.mkdir()
    with pytest.raises(InputError, match="not-gem5"):
        preflight(render("v24.0", "mi200"), not_gem5)
