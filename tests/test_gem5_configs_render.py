"""Rendering: golden files per (gem5 version, device), parseable scripts, option tables, determinism."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from gem5_configs_support import GOLDEN, GUEST, normalise, params

from foundation import events
from gem5_configs.command import CONFIG_SCRIPT, GUEST_SCRIPT, STDLIB_SCRIPT, build_command, check_options
from gem5_configs.profiles import all_profiles
from gem5_configs.render import (
    COMMAND_FILE,
    INSTANTIATION_FILE,
    PARAMS_FILE,
    RUN_SCRIPT,
    SIMULATION_FILES,
    render_run,
    render_to_dir,
)

VERSIONS = ("v24.0", "v24.1", "v25")
DEVICES = ("mi200", "mi300x")
UPDATE = os.environ.get("LAYERLAB_UPDATE_GOLDEN") == "1"


def _golden_params(tmp: Path, version: str, device: str, **options):
    return params(
        tmp,
        version,
        device,
        skip_until=120,
        exit_after=131,
        per_kernel_dumps=True,
        guest_env=(("HF_HUB_OFFLINE", "1"),),
        **options,
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_golden_render(tmp_path: Path, version: str, device: str) -> None:
    """Every rendered file equals its golden (regenerate with LAYERLAB_UPDATE_GOLDEN=1).

    Profiles with the stdlib board add the stdlib-style render's files under ``stdlib/``.
    """
    rendered = render_run(_golden_params(tmp_path, version, device))
    files = dict(rendered.files)
    if all_profiles()[version].stdlib_gpu_board:
        stdlib = render_run(_golden_params(tmp_path, version, device, script_style="stdlib"))
        files.update({f"stdlib/{name}": text for name, text in stdlib.files.items()})
    folder = GOLDEN / f"{version}-{device}"
    for name, text in sorted(files.items()):
        got = normalise(text, tmp_path)
        path = folder / f"{name}.golden"  # not *.py: goldens are data, not project code for ruff
        if UPDATE:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(got, encoding="utf-8")
        assert path.is_file(), f"missing golden {path}; run with LAYERLAB_UPDATE_GOLDEN=1"
        assert got == path.read_text(encoding="utf-8"), f"{path} differs from the render"
    on_disk = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.golden"))
    assert on_disk == sorted(f"{n}.golden" for n in files)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("device", DEVICES)
def test_rendered_scripts_parse_and_options_exist(tmp_path: Path, version: str, device: str) -> None:
    rendered = render_run(_golden_params(tmp_path, version, device))
    for name, text in rendered.files.items():
        if name.endswith(".py"):
            ast.parse(text, filename=name)
    profile = all_profiles()[version]
    command = json.loads(rendered.files[COMMAND_FILE])
    argv = command["argv"]
    script_at = argv.index(CONFIG_SCRIPT)
    for item in argv[1:script_at]:
        assert item.split("=")[0] in profile.gem5_options, item
    for item in argv[script_at + 1 :]:
        assert item.split("=")[0] in profile.script_options, f"{item} not in gem5 {version}'s option table"
    assert STDLIB_SCRIPT not in rendered.files  # only a stdlib-style render has it
    assert ("--mfma-scale=1.0" in argv) == (version == "v25")  # no v24.x release has the option


def test_option_table_versions_differ_as_the_reference_says() -> None:
    tables = all_profiles()
    assert (
        "--no-kvm-perf" in tables["v24.0"].script_options
        and "--kvm-perf" not in tables["v24.0"].script_options
    )
    assert (
        "--kvm-perf" in tables["v24.1"].script_options
        and "--no-kvm-perf" not in tables["v24.1"].script_options
    )
    assert "--gpu-rom" in tables["v24.0"].script_options and "--gpu-rom" not in tables["v25"].script_options
    assert "--mfma-scale" not in tables["v24.0"].script_options
    assert "--mfma-scale" not in tables["v24.1"].script_options  # checked on the v24.1.0.3 tree
    assert "--mfma-scale" in tables["v25"].script_options
    assert tables["v24.0"].size(16 << 30) == "16GB" and tables["v24.1"].size(16 << 30) == "16GiB"


def test_check_options_rejects_an_option_the_version_lacks(tmp_path: Path) -> None:
    from gem5_configs.command import OptionTableError

    with pytest.raises(OptionTableError, match="--mfma-scale"):
        check_options(all_profiles()["v24.0"], [], [("--mfma-scale", 1.0)])


def test_kvm_perf_flag_follows_the_version(tmp_path: Path) -> None:
    v240 = build_command(params(tmp_path, "v24.0")).argv
    v241 = build_command(params(tmp_path, "v24.1")).argv
    v241_perf = build_command(params(tmp_path, "v24.1", kvm_perf=True)).argv
    assert "--no-kvm-perf" in v240 and "--kvm-perf" not in v241 and "--kvm-perf" in v241_perf


def test_same_inputs_byte_identical_and_hash_names_the_content(tmp_path: Path) -> None:
    first = render_run(params(tmp_path, "v24.1", "mi200", exit_after=3))
    second = render_run(params(tmp_path, "v24.1", "mi200", exit_after=3))
    other = render_run(params(tmp_path, "v24.1", "mi200", exit_after=4))
    assert first.files == second.files and first.content_hash == second.content_hash
    assert other.content_hash != first.content_hash and other.run_id != first.run_id
    for text in first.files.values():
        assert "/tmp/tmp" not in text  # no temp-file paths of our own
    data = json.loads(first.files[PARAMS_FILE])
    assert data["workload"]["exit_after"] == 3 and data["run_id"] == first.run_id


def test_run_id_is_the_same_for_the_same_files_at_other_paths(tmp_path: Path) -> None:
    """Host paths never enter the run_id or the simulation files; input contents do."""
    here = render_run(params(tmp_path / "a", "v24.1", exit_after=3))
    there = render_run(params(tmp_path / "b" / "deeper", "v24.1", exit_after=3))
    assert here.run_id == there.run_id
    for name in SIMULATION_FILES & set(here.files):
        assert here.files[name] == there.files[name], name
        assert str(tmp_path) not in here.files[name], name
    assert here.files[INSTANTIATION_FILE] != there.files[INSTANTIATION_FILE]
    from gem5_configs.params import make_params

    kernel = tmp_path / "other-vmlinux"
    kernel.write_bytes(b"another kernel")
    same = here.files[INSTANTIATION_FILE]
    disk = json.loads(same)["disk"]
    changed = make_params(
        profile="v24.1",
        device="mi300x",
        kernel=kernel,
        disk=disk,
        exit_after=3,
        gem5_src=json.loads(same)["gem5_src"],
        guest_command=GUEST,
    )
    assert render_run(changed).run_id != here.run_id


def test_input_digests_are_cached_by_path_size_mtime_inode(tmp_path: Path, monkeypatch) -> None:
    from foundation import digests

    big = tmp_path / "disk.img"
    big.write_bytes(b"x" * 4096)
    first = digests.file_digest(big)
    calls = []
    monkeypatch.setattr(digests, "_hash_file", lambda path, progress: calls.append(path) or "0" * 64)
    assert digests.file_digest(big) == first and not calls  # unchanged file: from the cache
    os.utime(big, ns=(1, 1))
    assert digests.file_digest(big) == "sha256:" + "0" * 64 and calls  # mtime changed: hashed again


def test_render_to_dir_writes_simulation_and_instantiation_and_removes_stale_ones(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _, written = render_to_dir(params(tmp_path, "v24.1", script_style="stdlib"), out)
    assert {p.name for p in written} == {
        STDLIB_SCRIPT,
        GUEST_SCRIPT,
        PARAMS_FILE,
        COMMAND_FILE,
        INSTANTIATION_FILE,
        RUN_SCRIPT,
    }
    render_to_dir(params(tmp_path, "v24.0"), out)
    assert not (out / STDLIB_SCRIPT).exists() and (out / CONFIG_SCRIPT).is_file()
    assert os.access(out / RUN_SCRIPT, os.X_OK)
    assert os.access(out / GUEST_SCRIPT, os.X_OK)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_guest_script_per_image_generation(tmp_path: Path) -> None:
    g24 = render_run(params(tmp_path, "v24.0", "mi300x")).files[GUEST_SCRIPT]
    g25 = render_run(params(tmp_path, "v25", "mi300x")).files[GUEST_SCRIPT]
    g24_mi200 = render_run(params(tmp_path, "v24.0", "mi200")).files[GUEST_SCRIPT]
    assert "modprobe -v amdgpu ip_block_mask=0x6f ppfeaturemask=0 dpm=0 audio=0 ras_enable=0" in g24
    assert "dd if=/root/roms/mi200.rom of=/dev/mem bs=1k seek=768 count=128" in g24
    assert "HSA_OVERRIDE_GFX_VERSION=9.4.2" in g24 and "HSA_OVERRIDE_GFX_VERSION" not in g24_mi200
    assert "HCC_AMDGPU_TARGET=gfx90a" in g24_mi200 and "HCC_AMDGPU_TARGET=gfx942" in g24
    assert "mi300.rom" in g25 and "load_amdgpu.sh" in g25 and "ip_discovery.bin" in g25
    assert "HSA_OVERRIDE_GFX_VERSION" not in g25
    for text in (g24, g25):
        assert "HSA_ENABLE_INTERRUPT=0" in text and "base64" not in text
        assert shlex.join(GUEST) in text  # every argument quoted
        assert text.rstrip().endswith("$M5 exit")


def test_checkpoint_boot_and_restore_scripts(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    boot = render_run(params(tmp_path, "v24.0", checkpoint_dir=str(ckpt), guest_command=()))
    ckpt.mkdir()
    (ckpt / "m5.cpt").write_text("[root]\n")
    again = render_run(params(tmp_path, "v24.0", restore_dir=str(ckpt), exit_after=2))
    guest_boot, guest_run = boot.files[GUEST_SCRIPT], again.files[GUEST_SCRIPT]
    assert "$M5 checkpoint" in guest_boot and "$M5 readfile > /tmp/layerlab_run.sh" in guest_boot
    assert (
        guest_boot.index("modprobe") < guest_boot.index("$M5 checkpoint") < guest_boot.index("$M5 readfile")
    )
    assert "# layerlab-phase: run" in guest_run and "modprobe" not in guest_run
    assert "--disable-avx" in boot.command.argv and "--disable-avx" in again.command.argv
    assert f"--checkpoint-dir={ckpt.resolve()}" in boot.command.argv
    assert f"--restore-dir={ckpt.resolve()}" in again.command.argv
    # The restore names its checkpoint by content (no layerlab marker here: a digest of m5.cpt).
    assert json.loads(again.files[PARAMS_FILE])["workload"]["kind"] == "restore"


def test_restore_names_the_checkpoint_by_the_run_that_wrote_it(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "layerlab_checkpoint.json").write_text('{"run_id": "0123456789abcdef", "tick": 5}')
    again = render_run(params(tmp_path, "v24.0", restore_dir=str(ckpt), exit_after=2))
    assert json.loads(again.files[PARAMS_FILE])["workload"]["checkpoint_id"] == "run:0123456789abcdef"
    empty = tmp_path / "empty"
    empty.mkdir()
    from foundation.errors import InputError

    with pytest.raises(InputError, match="holds no gem5 checkpoint"):
        params(tmp_path, "v24.0", restore_dir=str(empty), exit_after=2)


def test_container_command_maps_paths_and_passes_kvm(tmp_path: Path) -> None:
    binary = tmp_path / "gem5.opt"
    binary.write_text("#!/bin/sh\n")
    image = "ghcr.io/gem5/gpu-fs@sha256:" + "ab" * 32
    rendered = render_run(params(tmp_path, "v24.0", docker_image=image, gem5_binary=str(binary)))
    spec = json.loads(rendered.files[COMMAND_FILE])["container"]
    assert spec["image"] == image  # pinned by digest
    # gpu-fs holds no gem5: the binary built in that image is mounted in.
    assert spec["argv"][0] == "/layerlab/bin/gem5.opt"
    assert {"host": str(binary), "container": "/layerlab/bin/gem5.opt", "mode": "ro"} in spec["mounts"]
    assert "--path=/layerlab/gem5/configs" in spec["argv"]
    assert json.loads(rendered.files[PARAMS_FILE])["gem5"]["container"] == image
    assert "/dev/kvm:/dev/kvm:rwm" in spec["devices"]
    mounts = {m["container"]: m for m in spec["mounts"]}
    assert mounts["/layerlab/run"]["host"] == "." and mounts["/layerlab/run"]["mode"] == "rw"
    kernel = next(a for a in spec["argv"] if a.startswith("--kernel="))
    assert kernel.split("=", 1)[1] in mounts and mounts[kernel.split("=", 1)[1]]["mode"] == "ro"
    assert str(tmp_path) not in rendered.files[CONFIG_SCRIPT]
    assert not any(str(tmp_path) in a for a in spec["argv"])
    run_sh = rendered.files[RUN_SCRIPT]
    assert run_sh.startswith("#!/bin/sh") and "docker run" in run_sh and image in run_sh


def test_loop_uses_the_events_schema_of_workloads_events(tmp_path: Path) -> None:
    text = render_run(params(tmp_path)).files[CONFIG_SCRIPT]
    assert f"EVENTS_SCHEMA = {events.SCHEMA!r}" in text
    assert f"EVENTS_FILENAME = {events.FILENAME!r}" in text
    for name in events.EVENT_FIELDS + events.END_FIELDS + events.START_FIELDS:
        assert repr(name) in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_guest_scripts_are_valid_bash(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "m5.cpt").write_text("[root]\n")
    variants = [params(tmp_path, v, d) for v in VERSIONS for d in DEVICES]
    variants += [
        params(tmp_path, checkpoint_dir=str(tmp_path / "new"), guest_command=()),
        params(tmp_path, "v25", restore_dir=str(ckpt)),
    ]
    for p in variants:
        script = tmp_path / "guest.sh"
        script.write_text(render_run(p).files[GUEST_SCRIPT], encoding="utf-8")
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


def test_params_json_round_trips_to_the_simulated_machine(tmp_path: Path) -> None:
    from gem5_configs import read_params

    original = params(
        tmp_path, "v25", "mi200", exit_after=9, gpu_overrides={"num_cus": 16, "mfma_scale": 2.0}
    )
    render_to_dir(original, tmp_path / "run")
    assert read_params(tmp_path / "run") == original
