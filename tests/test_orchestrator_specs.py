"""Every shipped experiment spec loads, expands, and describes runs gem5 and the drivers accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from analytical.hardware import gem5_config
from orchestrator.plan import _gpu_overrides, guest_command, machine_label
from orchestrator.spec import load_spec, variants

SPECS = sorted((REPO / "experiments").glob("*.yaml"))


def test_the_common_cases_are_shipped() -> None:
    names = {p.stem for p in SPECS}
    assert {"selftest", "llama-3.2-1b-decode-mi300x", "llama-3.2-1b-prefill-mi200", "sweep-cus-tcc"} <= names


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_expands_into_valid_runs(path: Path) -> None:
    from workloads.drivers import layer

    spec, _base = load_spec(path)
    expanded = variants(spec)
    assert expanded and len({machine_label(v) for _, v in expanded}) == len(expanded)
    for _label, variant in expanded:
        gem5_config(
            variant.hardware.device, variant.gem5.profile, **_gpu_overrides(variant)
        )  # the one validator
        argv = guest_command(variant)
        if variant.driver == "layer":
            args = layer.parser().parse_args(list(argv[2:]))  # the real driver's own parser
            assert args.markers == "gem5" and args.marker_table
    if path.stem == "sweep-cus-tcc":
        assert len(expanded) == 4
