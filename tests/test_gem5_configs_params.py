"""Parameter validation: one clear InputError per bad input; the CLI writes nothing on bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from gem5_configs_support import FAKE_SRC, inputs, params

from analytical.hardware import Gem5GpuConfig, GiB
from foundation.errors import InputError
from gem5_configs.params import default_gpu_config, make_params
from gem5_configs.profiles import get_profile
from orchestrator.cli import main as cli


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "mi301"}, r"unknown gem5 device 'mi301'; did you mean 'mi300x'"),
        ({"profile": "v24.2"}, r"unknown gem5 version 'v24.2'; did you mean"),
        ({"skip_until": 9, "exit_after": 3}, r"exit_after \(3\) is before skip_until \(9\)"),
        ({"gpu_overrides": {"gpu_mem_bytes": 32 * GiB}}, r"requires exactly 16 GiB of GPU memory"),
        ({"gpu_overrides": {"mfma_scale": 2.0}}, r"v24.0 has no --mfma-scale"),
        ({"gpu_overrides": {"num_cus": 38}}, r"not a multiple of cu_per_sqc"),
        ({"gpu_overrides": {"num_tccs": 3}}, r"num_tccs: must be a power of two"),
        ({"gpu_overrides": {"reg_alloc_policy": "dynamc"}}, r"did you mean 'dynamic'"),
        ({"gpu_overrides": {"num_cu": 8}}, r"unknown hardware knob 'num_cu'; did you mean 'num_cus'"),
        ({"checkpoint_dir": "a", "restore_dir": "b"}, r"give one"),
        ({"guest_command": ()}, r"guest_command: give the command"),
        ({"script_style": "stdlib"}, r"v24.0 has no stdlib GPU board"),
        ({"host_mem_bytes": 1 * GiB}, r"at least 2 GiB"),
        ({"cpu_type": "o3"}, r"unknown CPU type 'o3'"),
    ],
)
def test_bad_input_one_clear_error(tmp_path: Path, options: dict, message: str) -> None:
    profile = options.pop("profile", "v24.0")
    device = options.pop("device", "mi300x")
    with pytest.raises(InputError, match=message):
        params(tmp_path, profile, device, **options)


def test_missing_kernel_and_disk_files(tmp_path: Path) -> None:
    files = inputs(tmp_path)
    common = {"profile": "v24.0", "device": "mi200", "gem5_src": str(FAKE_SRC), "guest_command": ("true",)}
    with pytest.raises(InputError, match=r"kernel: file not found: .*nope"):
        make_params(kernel=tmp_path / "nope", disk=files["data.img"], **common)
    with pytest.raises(InputError, match="disk: file not found"):
        make_params(kernel=files["vmlinux-gpu-ml"], disk=tmp_path / "nodisk", **common)
    with pytest.raises(InputError, match="second_disk: file not found"):
        make_params(
            kernel=files["vmlinux-gpu-ml"], disk=files["data.img"], second_disk=tmp_path / "x", **common
        )
    with pytest.raises(InputError, match=r"no configs/example/gpufs/runfs\.py"):
        make_params(
            kernel=files["vmlinux-gpu-ml"], disk=files["data.img"], **{**common, "gem5_src": str(tmp_path)}
        )


def test_16gib_rule_only_where_the_version_has_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile without the 16 GiB rule (a future gem5) accepts other sizes."""
    import dataclasses

    from foundation import gem5_names

    relaxed = dict(gem5_names.GEM5_VERSIONS)
    relaxed["v25"] = dataclasses.replace(relaxed["v25"], gpu_memory_must_be_16gib=False)
    monkeypatch.setattr(gem5_names, "GEM5_VERSIONS", relaxed)
    p = params(tmp_path, "v25", gpu_overrides={"gpu_mem_bytes": 32 * GiB})
    assert p.gpu.gpu_mem_bytes == 32 * GiB


def test_simple_register_allocation_logs_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="layerlab.gem5_configs"):
        params(tmp_path, gpu_overrides={"reg_alloc_policy": "simple"})
    assert "ONE workgroup" in caplog.text


def test_defaults_and_gpu_config_is_the_hardware_type(tmp_path: Path) -> None:
    p = params(tmp_path, "v24.1", "mi200")
    assert isinstance(p.gpu, Gem5GpuConfig) and p.gpu.device == "mi200"
    assert p.gpu.reg_alloc_policy == "dynamic" and p.cpu_type == "kvm" and p.host_mem_bytes == 8 * GiB
    assert default_gpu_config("mi300x").num_cus == 40
    assert not p.kernel_exit_events and params(tmp_path, per_kernel_dumps=True).kernel_exit_events
    assert get_profile("v24.0.0.1").name == "v24.0" and get_profile("25.0").name == "v25"


def _cli_args(tmp_path: Path, *extra: str) -> list[str]:
    files = inputs(tmp_path)
    return [
        "render",
        "--device",
        "mi300x",
        "--gem5-version",
        "v24.0",
        "--out",
        str(tmp_path / "out"),
        "--kernel",
        str(files["vmlinux-gpu-ml"]),
        "--disk",
        str(files["x86-ubuntu-gpu-ml"]),
        "--gem5-src",
        str(FAKE_SRC),
        *extra,
    ]


def test_cli_renders_and_prints_hash_as_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli(
        _cli_args(
            tmp_path,
            "--window",
            "3:7",
            "--per-kernel-dumps",
            "--num-cus",
            "80",
            "--tcc-size",
            "4MiB",
            "--num-tccs",
            "8",
            "--dram-channels",
            "8",
            "--format",
            "json",
            "--",
            "python3",
            "/opt/layerlab/drivers/layer.py",
            "--layer",
            "3",
        )
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["hash"]) == 64 and "gem5_config.py" in report["files"]
    data = json.loads((tmp_path / "out" / "params.json").read_text(encoding="utf-8"))
    assert report["run_id"] == data["run_id"] and len(report["run_id"]) == 16
    machine, workload = data["machine"], data["workload"]
    assert machine["gpu"]["num_cus"] == 80 and machine["gpu"]["tcc_bytes"] == 4 << 20
    assert workload["skip_until"] == 3 and workload["exit_after"] == 7
    assert workload["guest_command"] == ["python3", "/opt/layerlab/drivers/layer.py", "--layer", "3"]
    assert workload["kernel_digest"].startswith("sha256:") and "kernel" not in workload
    assert "--tcc-size=4MB" in report["argv"] and "--num-compute-units=80" in report["argv"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--window", "7:3", "--", "true"), "exit_after (3) is before skip_until (7)"),
        (("--gpu-mem", "32GiB", "--", "true"), "exactly 16 GiB"),
        (("--window", "1:2", "--skip-until", "1", "--", "true"), "not both"),
    ],
)
def test_cli_bad_input_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: tuple, message: str
) -> None:
    assert cli(_cli_args(tmp_path, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_help_teaches_with_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli(["render", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--window 120:131" in text and "--checkpoint-dir" in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--num-cus", "38"), "not a multiple of cu_per_sqc"),
        (("--tcc-size", "1.5KiB"), "whole number of KiB"),
        (("--tcc-size", "3000000"), "whole number of KiB"),
        (("--num-tccs", "3"), "power of two"),
        (("--dram-type", "HBM_9"), "unknown GPU DRAM type"),
    ],
)
def test_estimate_and_render_validate_knobs_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture, flags: tuple, message: str
) -> None:
    """One validator: a knob render refuses, estimate refuses with the same words, and vice versa."""
    assert cli(_cli_args(tmp_path, *flags, "--", "true")) == 2
    render_err = capsys.readouterr().err
    est = ["estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300x", "--phase", "decode"]
    assert cli([*est, "--context", "16", *flags]) == 2
    estimate_err = capsys.readouterr().err
    assert message in render_err and message in estimate_err
    assert render_err.split("error: ", 1)[1] == estimate_err.split("error: ", 1)[1]


def test_device_and_version_spellings(tmp_path: Path) -> None:
    for spelling in ("mi300x", "MI300", "gem5-mi300", "GEM5-MI300X"):
        assert params(tmp_path, "v24.0", spelling).device == "mi300x"
    for spelling in ("v25", "v25.0", "25.0.0.0", "DEVELOP-FOR-25.0"):
        assert params(tmp_path, spelling).machine.profile == "v25"


def test_gem5_src_is_inferred_from_a_built_binary(tmp_path: Path) -> None:
    src = tmp_path / "gem5"
    (src / "configs" / "example" / "gpufs").mkdir(parents=True)
    (src / "configs" / "example" / "gpufs" / "runfs.py").write_text("")
    (src / "build" / "VEGA_X86").mkdir(parents=True)
    binary = src / "build" / "VEGA_X86" / "gem5.opt"
    binary.write_text("")
    p = params(tmp_path, gem5_src=None, gem5_binary=str(binary))
    assert p.gem5_src == str(src.resolve())


def _manifest(tmp_path: Path, generation: int) -> Path:
    from disk_images.manifest import SCHEMA

    files = inputs(tmp_path)
    path = tmp_path / f"image-{generation}.manifest.json"
    path.write_text(json.dumps({
        "schema": SCHEMA, "generation": generation, "root": {"root_partition": "/dev/sda2"},
        "disk": {"path": str(files["x86-ubuntu-gpu-ml"]), "sha256": "0" * 64},
        "kernel": {"path": str(files["vmlinux-gpu-ml"]), "sha256": "1" * 64},
    }))  # fmt: skip
    return path


def test_render_takes_disk_kernel_and_root_from_an_image_manifest(tmp_path: Path, capsys) -> None:
    manifest = _manifest(tmp_path, 2024)
    base = ["render", "--device", "mi300x", "--gem5-version", "v24.0", "--out", str(tmp_path / "out"),
            "--gem5-src", str(FAKE_SRC), "--image", str(manifest)]  # fmt: skip
    assert cli([*base, "--", "true"]) == 0
    inst = json.loads((tmp_path / "out" / "instantiation.json").read_text())
    machine = json.loads((tmp_path / "out" / "params.json").read_text())["machine"]
    assert inst["disk"].endswith("x86-ubuntu-gpu-ml") and machine["root_partition"] == "/dev/sda2"
    capsys.readouterr()
    other = _manifest(tmp_path, 2025)
    base[base.index(str(manifest))] = str(other)
    base[base.index("--out") + 1] = str(tmp_path / "out2")
    assert cli([*base, "--", "true"]) == 2
    err = capsys.readouterr().err
    assert "is a 2025 image" in err and "v24.0" in err and not (tmp_path / "out2").exists()
