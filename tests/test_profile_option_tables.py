"""The profile option tables are what the real gem5 trees define (gem5_configs/preflight/options.py).

``profiles/<name>.yaml``'s ``gem5_options``/``script_options`` are generated from the profile's
reference tree (``foundation.gem5_names.GEM5_VERSIONS[profile].reference_tree`` under
../shared/gem5_src) by running that tree's Python; these tests re-read each tree and require the
YAML to be exactly what the generator writes, so a hand edit or a stale table fails here. The
trees' differences that matter to rendering are asserted as facts. Without the trees the
tree-reading tests skip, except under CI, where the trees must be there.
"""

from __future__ import annotations

import argparse
import optparse
import os
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from foundation.errors import InputError
from foundation.gem5_names import GEM5_PROFILES, GEM5_VERSIONS
from gem5_configs.preflight import options_child
from gem5_configs.preflight.options import (
    MARKER,
    OptionReading,
    flag_order,
    main,
    read_options,
    rewrite_profile_text,
    tables_text,
)
from gem5_configs.profiles import OPTION_TYPES, all_profiles

GEM5_SRC = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src")
PROFILES_DIR = REPO / "gem5_configs" / "profiles"


def tree(profile: str) -> Path:
    path = GEM5_SRC / GEM5_VERSIONS[profile].reference_tree
    if not (path / "src" / "base" / "version.cc").is_file():
        why = f"real gem5 tree {path} not found (set LAYERLAB_GEM5_SRC_DIR to ../shared/gem5_src)"
        if os.environ.get("CI"):
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def reading():
    """``reading(profile)`` -> the OptionReading of its reference tree, read once per module."""
    done: dict[str, OptionReading] = {}

    def _reading(profile: str) -> OptionReading:
        if profile not in done:
            done[profile] = read_options(tree(profile))
        return done[profile]

    return _reading


def yaml_of(profile: str) -> dict:
    return yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text(encoding="utf-8"))


# -- against the real trees --------------------------------------------------------------------


@pytest.mark.parametrize("profile", GEM5_PROFILES)
def test_tables_equal_the_reference_tree(profile: str, reading) -> None:
    found = reading(profile).tables()
    data = yaml_of(profile)
    for table in ("gem5_options", "script_options"):
        have, want = data[table], found[table]
        assert have == want, (
            f"profiles/{profile}.yaml {table} differs from {GEM5_VERSIONS[profile].reference_tree}: "
            f"missing {sorted(set(want) - set(have))}, extra {sorted(set(have) - set(want))}, "
            f"retyped {sorted(k for k in set(have) & set(want) if have[k] != want[k])}; regenerate with "
            f"python -m gem5_configs.preflight.options --write {profile} <tree>"
        )


@pytest.mark.parametrize("profile", GEM5_PROFILES)
def test_yaml_is_what_the_generator_writes(profile: str, reading) -> None:
    """Order, grouping comments and the provenance comment too (--check would pass)."""
    path = PROFILES_DIR / f"{profile}.yaml"
    text = path.read_text(encoding="utf-8")
    assert rewrite_profile_text(text, reading(profile), profile, str(path)) == text


@pytest.mark.parametrize("profile", GEM5_PROFILES)
def test_provenance_names_the_tree_and_commit(profile: str, reading) -> None:
    read = reading(profile)
    text = (PROFILES_DIR / f"{profile}.yaml").read_text(encoding="utf-8")
    generated = text[text.index(MARKER) :]
    assert read.gem5_src.name in generated
    if read.ref:
        assert read.ref.split()[1] in generated  # the commit of GEM5_REF
    assert ("standing in for" in generated) == GEM5_VERSIONS[profile].reference_is_stand_in


def test_release_differences(reading) -> None:
    """What differs between the trees, as the renderer relies on it."""
    v240, v241, v25 = (reading(p) for p in ("v24.0", "v24.1", "v25"))
    s240, s241, s25 = v240.script_options, v241.script_options, v25.script_options
    # MFMA timing table and its scale: develop after v24.1 branched (PR #1700), the v25 line only.
    assert "--mfma-scale" not in s240 and "--mfma-scale" not in s241
    assert s25["--mfma-scale"] == "float"
    # KVM perf: on unless --no-kvm-perf in v24.0; off unless --kvm-perf from v24.1.
    assert s240["--no-kvm-perf"] == "flag" and "--kvm-perf" not in s240
    assert s241["--kvm-perf"] == "flag" and "--no-kvm-perf" not in s241
    assert s25["--kvm-perf"] == "flag" and "--no-kvm-perf" not in s25
    # VBIOS and MMIO trace options went away in v24.1.
    for flag in ("--gpu-rom", "--gpu-mmio-trace"):
        assert flag in s240 and flag not in s241 and flag not in s25
    # CU token and memory-latency knobs arrived in v24.1.
    for flag in (
        "--max-cu-tokens",
        "--memtime-latency",
        "--mem-req-latency",
        "--mem-resp-latency",
        "--scalar-mem-req-latency",
        "--scalar-mem-resp-latency",
        "--vrf_lm_bus_latency",
    ):
        assert flag not in s240 and s241[flag] == "int" and s25[flag] == "int"
    # develop-2025-05-03 only.
    assert "--gpu-progress-interval" not in s241 and "--gpu-progress-interval" in s25
    assert "--show-exit-event-messages" not in v241.gem5_options
    assert v25.gem5_options["--show-exit-event-messages"] == "flag"
    assert set(s241) - set(s240) == {
        "--kvm-perf",
        "--max-cu-tokens",
        "--memtime-latency",
        "--mem-req-latency",
        "--mem-resp-latency",
        "--scalar-mem-req-latency",
        "--scalar-mem-resp-latency",
        "--vrf_lm_bus_latency",
    }
    assert set(s240) - set(s241) == {"--no-kvm-perf", "--gpu-rom", "--gpu-mmio-trace"}
    assert v240.gem5_options == v241.gem5_options
    assert set(s25) - set(s241) == {"--gpu-progress-interval", "--mfma-scale"}
    assert set(s241) - set(s25) == set()


@pytest.mark.parametrize("profile", GEM5_PROFILES)
def test_types_read_from_the_parsers(profile: str, reading) -> None:
    read = reading(profile)
    g, s = read.gem5_options, read.script_options
    assert g["--debug-flags"] == g["--path"] == g["-p"] == "append"  # split= callbacks
    assert g["--debug-start"] == g["--remote-gdb-port"] == "int"
    assert g["--stats-help"] == "flag"  # a callback with no value
    assert g["--verbose"] == g["-v"] == "count"
    assert g["-c"] == "str"
    assert "--help" not in g and "-h" not in s and "--help" not in s
    assert s["-u"] == s["--num-compute-units"] == "int"  # short and long strings are both keys
    assert s["--list-cpu-types"] == "nargs"
    assert s["--param"] == "append" and s["--maxtime"] == "float" and s["--ruby"] == "flag"
    labels = [label for label, _opts in read.script_groups]
    assert labels[:2] == ["runfs.addRunFSOptions", "Options.addCommonOptions"]
    assert "GPU_VIPER.define_options (via Ruby.define_options)" in labels
    assert "Network.define_options (via Ruby.define_options)" in labels
    assert labels[-2:] == ["AmdGPUOptions.addAmdGPUOptions", "GPUTLBOptions.tlb_options"]


def test_check_cli_refuses_another_release_tree(capsys) -> None:
    assert main(["--check", "v24.1", str(tree("v24.0"))]) == 2
    assert "is a v24.0 tree, not v24.1" in capsys.readouterr().err


def test_check_cli_passes_on_the_reference_tree(capsys) -> None:
    assert main(["--check", "v24.0", str(tree("v24.0"))]) == 0
    assert "tables match v24.0.0.1" in capsys.readouterr().out


# -- no tree needed ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", GEM5_PROFILES)
def test_tables_agree_with_the_profile_facts(profile: str) -> None:
    version = all_profiles()[profile]
    assert version.kvm_perf_flag in version.script_options
    assert ("--gpu-rom" in version.script_options) == version.has_gpu_rom_option
    assert ("--mfma-scale" in version.script_options) == version.has_mfma_scale
    for table in (version.gem5_options, version.script_options):
        assert set(table.values()) <= set(OPTION_TYPES)


def test_argparse_types() -> None:
    class ListThings(argparse.Action):  # like Options.ListCpu: nargs=0, prints and exits
        def __call__(self, *args: object, **kwargs: object) -> None:
            pass

    parser = argparse.ArgumentParser()
    kinds = {
        "--t": parser.add_argument("--t", action="store_true"),
        "--f": parser.add_argument("--f", action="store_false"),
        "--c": parser.add_argument("-c", "--c", action="count"),
        "--a": parser.add_argument("--a", action="append"),
        "--n": parser.add_argument("--n", nargs="+"),
        "--z": parser.add_argument("--z", nargs=0, action=ListThings),
        "--i": parser.add_argument("--i", type=int),
        "--x": parser.add_argument("--x", type=float),
        "--s": parser.add_argument("--s"),
        "--o": parser.add_argument("--o", nargs="?", type=int),
        "--b": parser.add_argument("--b", action=argparse.BooleanOptionalAction),
    }
    got = {flag: options_child.argparse_type(action) for flag, action in kinds.items()}
    assert got == {
        "--t": "flag",
        "--f": "flag",
        "--c": "count",
        "--a": "append",
        "--n": "nargs",
        "--z": "nargs",
        "--i": "int",
        "--x": "float",
        "--s": "str",
        "--o": "int",
        "--b": "flag",
    }
    assert options_child.argparse_type(parser._actions[0]) is None  # -h/--help


def test_optparse_types() -> None:
    class splitter:  # gem5's m5.options.splitter, by name
        def __call__(self, *args: object) -> None:
            pass

    parser = optparse.OptionParser()
    opts = {
        "--t": parser.add_option("--t", action="store_true"),
        "--q": parser.add_option("--q", action="count"),
        "--a": parser.add_option("--a", action="append"),
        "--sp": parser.add_option("--sp", action="callback", type="string", callback=splitter()),
        "--cb": parser.add_option("--cb", action="callback", callback=lambda *a: None),
        "--cv": parser.add_option("--cv", action="callback", type=str, callback=lambda *a: None),
        "--i": parser.add_option("--i", type="int"),
        "--x": parser.add_option("--x", type="float"),
        "--s": parser.add_option("--s"),
        "--n": parser.add_option("--n", nargs=2),
    }
    got = {flag: options_child.optparse_type(option) for flag, option in opts.items()}
    assert got == {
        "--t": "flag",
        "--q": "count",
        "--a": "append",
        "--sp": "append",
        "--cb": "flag",
        "--cv": "str",
        "--i": "int",
        "--x": "float",
        "--s": "str",
        "--n": "nargs",
    }
    assert options_child.optparse_type(parser.get_option("--help")) is None


def _fake_reading() -> OptionReading:
    return OptionReading(
        gem5_src=Path("/trees/v24.1.0.3"),
        version="24.1.0.3",
        ref="v24.1.0.3 b9da2bfe1e21f6efa2730edd4e80e58c5d965458 2025-04-11T12:08:05-07:00",
        gem5_options={"-d": "str", "--outdir": "str", "-P": "flag", "-p": "append"},
        script_groups=[
            ("runfs.addRunFSOptions", {"--kvm-perf": "flag"}),
            ("Ruby.define_options", {"--ruby-clock": "str"}),
        ],
        elapsed_s=0.0,
        build_s=0.0,
    )


def test_rewrite_keeps_the_facts_and_is_idempotent() -> None:
    text = (
        "# header kept\nname: v24.1\nkvm_perf: {flag: --kvm-perf}  # comment kept\n"
        'gem5_options:\n  "--old": str\nscript_options:\n  # old group\n  "--gone": int\n'
    )
    new = rewrite_profile_text(text, _fake_reading(), "v24.1")
    assert new.startswith(
        "# header kept\nname: v24.1\nkvm_perf: {flag: --kvm-perf}  # comment kept\n" + MARKER
    )
    data = yaml.safe_load(new)
    assert data["gem5_options"] == _fake_reading().gem5_options
    assert data["script_options"] == {"--kvm-perf": "flag", "--ruby-clock": "str"}
    assert "--gone" not in new and "old group" not in new
    assert (
        "# runfs.addRunFSOptions" in new
        and "commit b9da2bfe1e21f6efa2730edd4e80e58c5d965458, 2025-04-11" in new
    )
    assert rewrite_profile_text(new, _fake_reading(), "v24.1") == new
    body = new[new.index("gem5_options:") :].splitlines()
    assert body[1:5] == ['  "--outdir": str', '  "-d": str', '  "-P": flag', '  "-p": append']
    assert tables_text(_fake_reading(), "v24.1") == new[new.index(MARKER) :]


def test_rewrite_refuses_to_drop_fields() -> None:
    text = 'name: v24.1\ngem5_options:\n  "--old": str\nscript_options: {}\ndevices: {}\n'
    with pytest.raises(InputError, match="would be lost"):
        rewrite_profile_text(text, _fake_reading(), "v24.1")
    with pytest.raises(InputError, match="no gem5_options"):
        rewrite_profile_text("name: v24.1\n", _fake_reading(), "v24.1")


def test_flag_order() -> None:
    flags = ["-p", "--cpu-voltage", "-P", "--CPUClock", "--cu-per-sa", "-S", "-s"]
    assert sorted(flags, key=flag_order) == [
        "--cpu-voltage",
        "--CPUClock",
        "--cu-per-sa",
        "-P",
        "-p",
        "-S",
        "-s",
    ]
