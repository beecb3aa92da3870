"""The gem5 TEST DOUBLE's config.ini/config.json are real gem5's, taken from a preflight.

The double must not drift from gem5's object tree: with the real source tree of the script's
profile on this host (``../shared/gem5_src``, ``LAYERLAB_GEM5_SRC_DIR``), its config files are
the ones real gem5's Python writes for the same run, byte for byte (tests/gem5_double/real_config.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gem5_configs_support import load_double, params

from gem5_configs.render import render_to_dir

fake_gem5 = load_double()
real_config = fake_gem5.real_config

SHORT = {
    "schema": "layerlab-gem5-double/1",
    "events": [{"type": "host", "ticks": 1_000_000}, {"type": "kernel"}, {"type": "exit"}],
}


def _tree(profile: str) -> Path:
    tree = real_config.find_tree(profile)
    if tree is None:
        pytest.skip(f"no real gem5 tree for {profile} under {real_config.gem5_src_dir()}")
    return tree


def _render(tmp: Path, name: str, profile: str, device: str, **options) -> tuple[Path, list[str]]:
    if options.get("script_style") == "stdlib":
        options.setdefault("host_mem_bytes", 3 << 30)  # X86Board's limit
    rendered, _ = render_to_dir(
        params(tmp / name, profile=profile, device=device, **options), tmp / name / "run"
    )
    return tmp / name / "run", list(rendered.command.argv)


def _run(run_dir: Path, argv: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    status = fake_gem5.run(argv[1:], scenario=SHORT, cwd=run_dir)
    return status, time.perf_counter() - start


@pytest.mark.parametrize(
    ("profile", "device", "style"),
    [("v24.0", "mi300x", "classic"), ("v24.0", "mi200", "classic"), ("v24.1", "mi200", "stdlib")],
)
def test_double_config_is_the_preflight_config_byte_for_byte(
    tmp_path: Path, profile: str, device: str, style: str
) -> None:
    from gem5_configs.preflight import preflight

    tree = _tree(profile)
    run_dir, argv = _render(tmp_path, "run", profile, device, script_style=style, skip_until=1, exit_after=1)
    status, took = _run(run_dir, argv)
    assert status == 0
    print(f"double run {profile} {device} {style}: {took:.2f} s")
    ref = preflight(run_dir, tree, out_dir=tmp_path / "ref")
    assert ref.ok, ref.findings
    out = run_dir / "m5out"
    assert (out / "config.ini").read_bytes() == ref.config_ini.read_bytes()
    assert ref.config_json is not None
    assert (out / "config.json").read_bytes() == ref.config_json.read_bytes()
    ini = (out / "config.ini").read_text(encoding="utf-8")
    assert "target_non_blit_kernel_id=1" in ini and "kernel_exit_events=true" in ini


def test_real_config_reads_back_as_the_rendered_gpu(tmp_path: Path) -> None:
    """What the per-kernel table reads (stats_parsers.config) comes out of the real config.ini."""
    from stats_parsers.config import read_config

    _tree("v24.0")
    run_dir, argv = _render(
        tmp_path,
        "run",
        "v24.0",
        "mi300x",
        gpu_overrides={"num_cus": 8, "num_tccs": 2, "sys_clock_hz": 1.5e9, "gpu_clock_hz": 2e9},
    )
    assert _run(run_dir, argv)[0] == 0
    for name in ("config.ini", "config.json"):
        gpu = read_config(run_dir / "m5out" / name).gpu()
        assert (gpu.shader_path, gpu.shader_stats_prefix) == ("system.Shader", "system.cpu1")
        assert gpu.num_cus == 8 and gpu.cu_paths[0] == "system.Shader.CUs0"
        assert gpu.clock_period_ticks == 667 and gpu.tcc_count == 2 and gpu.tcc_size_bytes == 128 * 1024


def test_second_run_of_the_same_machine_is_a_cache_hit(tmp_path: Path, capsys) -> None:
    _tree("v24.0")
    took = []
    for name in ("first", "second"):  # different run dirs and input paths, the same machine
        run_dir, argv = _render(tmp_path, name, "v24.0", "mi300x", skip_until=3)
        status, seconds = _run(run_dir, argv)
        assert status == 0
        took.append(seconds)
        simout = (run_dir / "m5out" / "simout.txt").read_text(encoding="utf-8")
        line = next(ln for ln in simout.splitlines() if ln.startswith("gem5 test double: config from"))
        if name == "second":
            assert "(cached," in line
            assert b"/first/" not in (run_dir / "m5out" / "config.ini").read_bytes()
            assert str(tmp_path / "second" / "inputs") in (run_dir / "m5out" / "config.ini").read_text()
    with capsys.disabled():
        print(f"\ngem5 double mi300x v24.0: first run {took[0]:.2f} s, second (cache hit) {took[1]:.2f} s")


def test_no_real_tree_gives_a_synthetic_config_and_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(real_config.GEM5_SRC_ENV, str(tmp_path / "no-gem5-here"))
    run_dir, argv = _render(tmp_path, "run", "v24.0", "mi300x")
    assert _run(run_dir, argv)[0] == 0
    note = "gem5 test double: no real gem5 tree; config.ini is synthetic"
    assert note in capsys.readouterr().err
    assert note in (run_dir / "m5out" / "simerr.txt").read_text(encoding="utf-8")
    ini = (run_dir / "m5out" / "config.ini").read_text(encoding="utf-8")
    assert "[system.Shader]\ntype=Shader" in ini and not (run_dir / "m5out" / "config.json").exists()


def test_config_real_gem5_rejects_fails_the_run_without_outputs(tmp_path: Path, capsys) -> None:
    _tree("v24.0")
    run_dir, argv = _render(tmp_path, "run", "v24.0", "mi300x")
    script = run_dir / "gem5_config.py"
    text = script.read_text(encoding="utf-8")
    good = "    system.exit_on_work_items = True\n"
    assert good in text
    # The double's fake objects take any attribute; gem5's GPUDispatcher has no such param.
    script.write_text(text.replace(good, good + "    shader.dispatcher.kernel_exit_eventz = True\n"))
    assert _run(run_dir, argv)[0] == 1
    err = capsys.readouterr().err
    assert "rejects this config" in err and "kernel_exit_eventz" in err
    out = run_dir / "m5out"
    assert not any((out / name).exists() for name in ("stats.txt", "config.ini", "config.json"))
    assert not (out / "layerlab_events.jsonl").exists()


def test_host_path_options_match_the_renderer() -> None:
    from gem5_configs.command import PATH_OPTIONS

    assert real_config.PATH_OPTIONS == PATH_OPTIONS


def test_cache_key_ignores_run_id_and_host_paths_only() -> None:
    tree = Path("/nowhere")
    text = "# layerlab-profile: v24.0\nSETTINGS = {\n    'run_id': '0123456789abcdef',\n    'x': 1,\n}\n"
    other = text.replace("0123456789abcdef", "fedcba9876543210")
    a_opts, a_paths = real_config.host_paths(["--kernel=/a/k", "--disk-image", "/a/d", "--num-cpus=1"])
    b_opts, _ = real_config.host_paths(["--kernel=/b/k", "--disk-image", "/b/d", "--num-cpus=1"])
    assert a_opts == b_opts and a_paths == ["/a/k", "/a/d"]
    key = real_config.cache_key("v24.0", "classic", "gem5_config.py", text, a_opts, tree)
    assert key == real_config.cache_key("v24.0", "classic", "gem5_config.py", other, b_opts, tree)
    same_file, _ = real_config.host_paths(["--kernel=/a/k", "--disk-image=/a/k"])
    assert key != real_config.cache_key("v24.0", "classic", "gem5_config.py", text, same_file, tree)
    assert key != real_config.cache_key(
        "v24.0", "classic", "gem5_config.py", text.replace("1", "2"), a_opts, tree
    )
    opts, _ = real_config.host_paths(["--kernel=/a/k", "--disk-image", "/a/d", "--num-cpus=2"])
    assert key != real_config.cache_key("v24.0", "classic", "gem5_config.py", text, opts, tree)
