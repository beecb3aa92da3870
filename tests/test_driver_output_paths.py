"""A driver refuses an output path it could not write at the end, before running anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LAYER = REPO / "workloads" / "drivers" / "layer.py"
CONFIG = REPO / "workloads" / "model_configs" / "llama-3.2-1b.json"


@pytest.mark.parametrize("flag", ["--profile", "--marker-table"])
def test_missing_output_directory_is_refused_before_the_run(tmp_path: Path, flag: str) -> None:
    target = tmp_path / "missing" / "out.json"
    done = subprocess.run(
        [sys.executable, str(LAYER), "--config", str(CONFIG), "--device", "cpu", flag, str(target)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"{flag} {target}: no such directory" in done.stderr and "Traceback" not in done.stderr
    assert not target.parent.exists()
