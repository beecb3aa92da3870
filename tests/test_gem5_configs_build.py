"""`make gem5` (gem5_configs.build): argument validation and the commands it would run.

The real build runs only when LAYERLAB_GEM5_SRC names a gem5 checkout (it takes tens of
minutes); everything else here is cheap and checks the plan, not a build.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from foundation.errors import InputError
from gem5_configs import build


def _fake_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "gem5"
    (tree / "configs").mkdir(parents=True)
    (tree / "SConstruct").write_text("# not really\n")
    return tree


def test_plan_for_a_local_tree_and_a_url(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    local = build.plan_build(str(tree), "v24.0.0.1", jobs=3)
    assert not local.clone and local.tree == tree.resolve() and local.docker_image is None
    assert local.scons_argv == ("scons", "build/VEGA_X86/gem5.opt", "-j3")
    assert local.provenance_path.name == "gem5.opt.provenance.json"
    remote = build.plan_build(
        "https://github.com/gem5/gem5", "v24.1.0.0", docker=True, workdir=tmp_path / "w"
    )
    assert (
        remote.clone
        and remote.docker_image == build.DEFAULT_IMAGE
        and remote.tree == (tmp_path / "w").resolve()
    )
    kwargs = build.docker_run_kwargs(remote)
    assert kwargs["command"][:2] == ["scons", "build/VEGA_X86/gem5.opt"]
    assert (
        kwargs["volumes"][str(remote.tree)] == {"bind": "/gem5", "mode": "rw"}
        and kwargs["working_dir"] == "/gem5"
    )


@pytest.mark.parametrize(
    ("source", "ref", "message"),
    [
        ("", "v24.0.0.1", "--source"),
        ("https://github.com/gem5/gem5", "", "--ref"),
        ("https://github.com/gem5/gem5", "v1;rm -rf /", "not a git ref"),
        ("/nonexistent", "v24.0.0.1", "not a gem5"),
    ],
)
def test_bad_build_requests(source: str, ref: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        build.plan_build(source, ref)


def test_local_tree_must_be_at_the_ref(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(tree)], check=True)
    subprocess.run([*git, "-C", str(tree), "add", "."], check=True)
    subprocess.run([*git, "-C", str(tree), "commit", "-qm", "a"], check=True)
    subprocess.run([*git, "-C", str(tree), "tag", "v1"], check=True)
    (tree / "x").write_text("x")
    subprocess.run([*git, "-C", str(tree), "add", "."], check=True)
    subprocess.run([*git, "-C", str(tree), "commit", "-qm", "b"], check=True)
    with pytest.raises(InputError, match="not v1"):
        build.prepare_tree(build.plan_build(str(tree), "v1"))
    head = build.prepare_tree(build.plan_build(str(tree), "HEAD"))
    assert len(head) == 40


def test_main_exit_codes(capsys: pytest.CaptureFixture) -> None:
    assert build.main(["--source", "", "--ref", "v24.0.0.1"]) == 2
    assert "--source" in capsys.readouterr().err
    assert build.main(["--source", "https://github.com/gem5/gem5", "--ref", "v24.0.0.1", "--dry-run"]) == 0


@pytest.mark.gem5
@pytest.mark.slow
def test_real_build_records_provenance() -> None:
    src = os.environ["LAYERLAB_GEM5_SRC"]
    ref = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    record = build.build(build.plan_build(src, ref.stdout.strip()))
    assert len(record["sha256"]) == 64 and Path(record["binary"]).is_file()
