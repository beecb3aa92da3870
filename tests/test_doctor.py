"""`layerlab doctor`: each check names the problem and its fix; exit 0 only when a real run can start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import REPO
from gem5_configs_support import DOUBLE_BIN

from orchestrator import doctor
from orchestrator.cli import main

TREES = REPO.parent / "shared" / "gem5_src"


def _vega_binary(tmp_path: Path) -> Path:
    binary = tmp_path / "gem5" / "build" / "VEGA_X86" / "gem5.opt"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'gem5 stand-in for the doctor test'\n")
    binary.chmod(0o755)
    return binary


def test_the_test_double_is_not_a_simulator() -> None:
    check = doctor.check_binary(str(DOUBLE_BIN))
    assert not check.ok and "test double" in check.detail and "make gem5" in check.fix


def test_binary_must_be_a_vega_x86_build(tmp_path: Path) -> None:
    assert doctor.check_binary(str(_vega_binary(tmp_path))).ok
    other = tmp_path / "X86" / "gem5.opt"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    assert not doctor.check_binary(str(other)).ok
    assert not doctor.check_binary(None).ok and not doctor.check_binary(str(tmp_path / "nope")).ok


def test_tree_version_must_fit_the_profile() -> None:
    if not TREES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real gem5 trees missing in CI ({TREES})", pytrace=False)
        pytest.skip(f"real gem5 trees not found at {TREES}")
    assert doctor.check_tree(str(TREES / "v24.0.0.1"), "v24.0").ok
    wrong = doctor.check_tree(str(TREES / "v24.1.0.3"), "v24.0")
    assert not wrong.ok and "profile v24.1" in wrong.detail and "--gem5-version v24.1" in wrong.fix
    assert "standing in" in doctor.check_tree(str(TREES / "develop-2025-05-03"), "v25").detail


def test_perf_counters_only_matter_when_used(tmp_path: Path) -> None:
    assert doctor.check_perf(False, "v24.0").ok
    paranoid = tmp_path / "perf_event_paranoid"
    paranoid.write_text("2\n")
    check = doctor.check_perf(True, "v24.1", paranoid)
    assert not check.ok and "perf_event_paranoid=2" in check.detail and "sysctl" in check.fix
    paranoid.write_text("1\n")
    assert doctor.check_perf(True, "v24.1", paranoid).ok


def test_image_manifest_generation_is_checked(tmp_path: Path) -> None:
    from disk_images.manifest import SCHEMA

    disk, kernel = tmp_path / "disk.img", tmp_path / "vmlinux"
    disk.write_bytes(b"")
    kernel.write_bytes(b"")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({
        "schema": SCHEMA, "generation": 2025, "root": {"root_partition": "/dev/sda1"},
        "disk": {"path": str(disk), "sha256": "0" * 64}, "kernel": {"path": str(kernel), "sha256": "1" * 64},
    }))  # fmt: skip
    assert doctor.check_image(str(manifest), None, None, "v25").ok
    refused = doctor.check_image(str(manifest), None, None, "v24.0")
    assert not refused.ok and "2025 image" in refused.detail
    assert not doctor.check_image(None, None, None, "v24.0").ok


def test_cli_exit_status_and_json(tmp_path: Path, capsys) -> None:
    assert main(["doctor", "--gem5", str(DOUBLE_BIN), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is False and {c["name"] for c in report["checks"]} >= {
        "gem5 binary",
        "disk image",
        "free disk",
    }
    assert main(["doctor", "--spec", str(REPO / "experiments" / "selftest.yaml")]) == 1
    out = capsys.readouterr().out
    assert "test double" in out and "not ready" in out
