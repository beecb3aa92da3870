"""Hardware catalog and as-simulated gem5 machines."""

from __future__ import annotations

import pytest

from analytical.catalog import get_hardware, list_hardware
from analytical.hardware import (
    GEM5_DRAM_TYPES,
    Gem5GpuConfig,
    dram_peak_bytes_per_s,
    gem5_machine,
    mfma_timing,
)
from foundation.errors import InputError


@pytest.mark.parametrize(
    ("name", "cls", "tflops", "tbs"),
    [
        ("mi300x", "bf16_matrix", 1307.4, 5.3),
        ("MI300X", "fp8_matrix", 2614.9, 5.3),
        ("mi210", "fp16_matrix", 181.0, 1.6384),
        ("mi250x", "bf16_matrix", 383.0, 3.2768),
        ("mi250x-gcd", "bf16_matrix", 191.5, 1.6384),
        ("mi100", "fp16_matrix", 184.6, 1.2288),
        ("mi300x", "fp32_vector", 163.4, 5.3),
        ("a100", "bf16_matrix", 312.0, 2.039),
        ("h100", "fp16_matrix", 989.4, 3.35),
    ],
)
def test_datasheet_peaks(name, cls, tflops, tbs):
    hw = get_hardware(name)
    assert hw.peak_flops(cls) / 1e12 == pytest.approx(tflops, rel=0.005)
    assert hw.dram_bandwidth_bytes_per_s / 1e12 == pytest.approx(tbs, rel=0.001)


def test_notebook_parts():
    nvl = get_hardware("NVL-AX")
    assert nvl.peak_flops("fp16_matrix") == pytest.approx(32 * 2.5e9 * 2048 * 2)
    assert nvl.dram_bandwidth_bytes_per_s == 342 * 2**30 and nvl.last_level_cache_bytes == 36 * 2**20
    jgs = get_hardware("jgs")
    assert jgs.peak_flops("fp32_matrix") == pytest.approx(192 * 1.5e9 * 8192 * 2)
    assert jgs.dram_bandwidth_bytes_per_s == 30 * 2**40 and jgs.last_level_cache_bytes == 120 * 2**20


def test_dram_table_matches_gem5_timings():
    assert GEM5_DRAM_TYPES["HBM_1000_4H_1x128"].bytes_per_burst == 64
    assert GEM5_DRAM_TYPES["HBM_1000_4H_1x128"].peak_bytes_per_s == pytest.approx(16e9)
    assert GEM5_DRAM_TYPES["HBM_1000_4H_1x64"].peak_bytes_per_s == pytest.approx(8e9)
    assert GEM5_DRAM_TYPES["HBM_2000_4H_1x64"].peak_bytes_per_s == pytest.approx(16e9)
    assert GEM5_DRAM_TYPES["DDR3_1600_8x8"].peak_bytes_per_s == pytest.approx(12.8e9)
    assert GEM5_DRAM_TYPES["DDR4_2400_8x8"].peak_bytes_per_s == pytest.approx(19.2e9, rel=1e-3)
    assert dram_peak_bytes_per_s("hbm_1000_4h_1x128", 8) == pytest.approx(128e9)
    with pytest.raises(InputError, match="did you mean"):
        dram_peak_bytes_per_s("HBM_1000_4H_1x256", 1)


def test_gem5_defaults_are_the_stock_scripts():
    mi300 = get_hardware("gem5-mi300")
    assert (mi300.compute_units, mi300.clock_hz, mi300.l2_bytes) == (40, 1e9, 256 * 1024)
    assert mi300.dram_bandwidth_bytes_per_s == pytest.approx(16e9)
    assert mi300.gem5 == Gem5GpuConfig(device="mi300x", num_cus=40)
    assert get_hardware("GEM5-MI200").compute_units == 4


def test_gem5_mfma_model_depends_on_version():
    new = gem5_machine("mi300", "v25")
    assert new.peak_flops("bf16_matrix") / 1e12 == pytest.approx(81.92)  # 40 x 2048 x 1 GHz
    assert gem5_machine("mi200", "25.0").flops_per_clock_per_cu["fp16_matrix"] == 1024
    old = gem5_machine("mi300", "v24.0.0.1")
    assert old.flops_per_clock_per_cu["bf16_matrix"] == 8192  # 16x16x16 MFMA per issue_period (4) cycles
    assert "fp8_matrix" not in old.flops_per_clock_per_cu
    scaled = gem5_machine("mi300", "v25", mfma_scale=2.0)
    assert scaled.flops_per_clock_per_cu["bf16_matrix"] == 1024
    assert [mfma_timing(v) for v in ("v24.0", "v24.1", "v25")] == [
        "issue_period",
        "issue_period",
        "cycle_table",
    ]
    with pytest.raises(InputError, match="gem5 version"):
        mfma_timing("v23.9")


def test_v24_1_has_no_mfma_table_or_scale():
    """No v24.1.0.x release has --mfma-scale or the table (checked on the v24.1.0.3 tree)."""
    v241 = gem5_machine("mi300x", "v24.1")
    assert v241.flops_per_clock_per_cu == gem5_machine("mi300x", "v24.0").flops_per_clock_per_cu
    with pytest.raises(InputError, match=r"gpu.mfma_scale: gem5 v24.1 has no --mfma-scale"):
        gem5_machine("mi300x", "v24.1", mfma_scale=2.0)


def test_gem5_overrides():
    hw = get_hardware(
        "gem5-mi200",
        num_cus=8,
        sys_clock_hz=1.8e9,
        tcc_bytes=4 * 2**20,
        dram_type="HBM_2000_4H_1x64",
        dram_channels=16,
    )
    assert (hw.compute_units, hw.clock_hz, hw.l2_bytes) == (8, 1.8e9, 4 * 2**20)
    assert hw.dram_bandwidth_bytes_per_s == pytest.approx(256e9)
    assert hw.gem5.num_cus == 8 and hw.gem5.dram_channels == 16
    with pytest.raises(InputError, match=r"gpu.num_cus: must be a whole number >= 1"):
        get_hardware("gem5-mi300", num_cus=-4)
    for knob, value, message in (
        ("num_cus", 38, "not a multiple of cu_per_sqc"),
        ("tcc_bytes", 1536 * 1024 + 512, "whole number of KiB"),
        ("num_tccs", 3, "power of two"),
    ):
        with pytest.raises(InputError, match=message):
            get_hardware("gem5-mi300x", **{knob: value})
    with pytest.raises(InputError, match="datasheet part"):
        get_hardware("mi300x", num_cus=8)


def test_unknown_hardware_suggests():
    with pytest.raises(InputError, match=r"unknown hardware 'mi301x'.*mi300x"):
        get_hardware("mi301x")
    assert "gem5-mi300x" in list_hardware() and "nvl-ax" in list_hardware()
    assert get_hardware("gem5-mi300").name == get_hardware("GEM5-MI300X").name == "gem5-mi300x"
