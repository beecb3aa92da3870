"""README.md is executable: every ``sh`` block runs, every ``make`` line of a ``console`` block dry-runs.

The gem5 test double (tests/gem5_double, clearly not a simulator) stands in for gem5, empty files for
the guest kernel and disk image, and the real v24.0 source tree in ../shared/gem5_src for the tree
(preflight needs its Python). The double replays the kernels and markers the real ``layer`` driver
produced on the CPU for a 16-layer toy model, and writes the driver's marker table the way the
guest's ``m5 writefile`` would, so census -> window -> sliced run -> stats run as the README says.
``make test`` is this suite itself and is not run from inside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from gem5_configs_support import DOUBLE_BIN

pytestmark = pytest.mark.torch
pytest.importorskip("torch")

README = REPO / "README.md"
TREE = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src") / "v24.0.0.1"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A double scenario from the real layer driver on the CPU (16 tiny layers, 2 decode steps)."""
    from driver_scenario import run_layer_driver, scenario_events

    root = tmp_path_factory.mktemp("readme-guest")
    argv = ["--num-layers", "16", "--phases", "both", "-C", "16", "-S", "4", "-D", "2"]
    trace, table = run_layer_driver(root, argv)
    events = scenario_events(trace, table)
    from driver_scenario import write_scenario

    return write_scenario(root / "scenario.json", events)


def _env(tmp_path: Path, scenario: Path) -> dict[str, str]:
    if not (TREE / "src" / "base" / "version.cc").is_file():
        pytest.skip(f"real gem5 tree {TREE} not found")
    (tmp_path / "experiments").symlink_to(REPO / "experiments")  # README paths are from the repository root
    (tmp_path / "vmlinux-gpu-ml").write_bytes(b"")
    (tmp_path / "x86-ubuntu-gpu-ml").write_bytes(b"")
    bin_dir = str(Path(sys.executable).parent)
    return dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        GEM5=str(DOUBLE_BIN),
        GEM5_SRC=str(TREE),
        LAYERLAB_GEM5_DOUBLE_SCENARIO=str(scenario),
        REPO=str(REPO),
    )


#: `make` in a README block runs the repository's Makefile, its outputs in the test's folder.
MAKE_SHIM = 'make() { for a in "$@"; do [ "$a" = test ] && return 0; done; command make -s -C "$REPO" DEMO_OUT="$PWD/demo-out" "$@"; }\n'


def test_every_sh_block_runs(tmp_path: Path, scenario: Path) -> None:
    found = blocks("sh")
    assert len(found) >= 3, "README lost its command blocks"
    env = _env(tmp_path, scenario)
    for i, block in enumerate(found):
        script = tmp_path / f"block{i}.sh"
        script.write_text("set -euo pipefail\n" + MAKE_SHIM + block, encoding="utf-8")
        done = subprocess.run(
            ["bash", str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, (
            f"README block {i} failed:\n{block}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
    # What the README promises came out.
    assert (tmp_path / "demo-out" / "roofline.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "runs" / "l3" / "slice.json").read_text())["layer"] == 3
    rows = (tmp_path / "l3-kernels.csv").read_text().splitlines()
    assert len(rows) > 2 and "kernel_index" in rows[0]
    assert (tmp_path / "runs" / "selftest" / "layerlab-runs.sqlite").is_file()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_console_make_lines_name_real_targets() -> None:
    lines = [ln.split("#")[0].strip() for b in blocks("console") for ln in b.splitlines()]
    makes = [ln for ln in lines if ln.startswith("make ")]
    assert makes, "README's development block lost its make lines"
    for line in makes:
        argv = ["make", "-n", "-C", str(REPO), *line.split()[1:]]
        argv = [a.replace("~/gem5", "/nonexistent/gem5") for a in argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{line}: {done.stderr}"
