"""Real gem5: the rendered mi200 / mi300x configs instantiate their systems.

Skipped unless LAYERLAB_GEM5 (a gem5.opt built for VEGA_X86) and LAYERLAB_GEM5_SRC (its source
tree) are set. gem5 loads the kernel and opens the disk at instantiate, so LAYERLAB_GEM5_KERNEL
and LAYERLAB_GEM5_DISK must name a GPU-FS vmlinux and disk image too. The run uses the Atomic
CPU (no /dev/kvm needed) and a one-tick limit: far enough to build and instantiate the system.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from foundation.events import read_events
from gem5_configs.params import make_params
from gem5_configs.render import render_to_dir

pytestmark = pytest.mark.gem5


@pytest.mark.parametrize("device", ["mi200", "mi300x"])
def test_rendered_config_instantiates_in_real_gem5(tmp_path: Path, device: str) -> None:
    kernel, disk = os.environ.get("LAYERLAB_GEM5_KERNEL"), os.environ.get("LAYERLAB_GEM5_DISK")
    if not (kernel and disk):
        pytest.skip("set LAYERLAB_GEM5_KERNEL and LAYERLAB_GEM5_DISK (gem5 loads them at instantiate)")
    profile = os.environ.get("LAYERLAB_GEM5_PROFILE", "v24.0")
    params = make_params(
        profile=profile,
        device=device,
        kernel=kernel,
        disk=disk,
        gem5_src=os.environ["LAYERLAB_GEM5_SRC"],
        gem5_binary=os.environ["LAYERLAB_GEM5"],
        cpu_type="atomic",
        tick_limit=1,
        guest_command=("true",),
    )
    rendered, _ = render_to_dir(params, tmp_path / "run")
    done = subprocess.run(
        list(rendered.command.argv),
        cwd=tmp_path / "run",
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    out = tmp_path / "run" / "m5out"
    simout = (
        (out / "simout.txt").read_text(encoding="utf-8", errors="replace") if out.exists() else done.stdout
    )
    assert done.returncode == 0, simout[-3000:]
    assert "because simulate() limit reached" in simout
    _, _, end = read_events(out)
    assert end is not None and end["expected"]
    ini = (out / "config.ini").read_text(encoding="utf-8")
    assert "[system.Shader]" in ini and json.loads(rendered.files["command.json"])["argv"]
