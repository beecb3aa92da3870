"""The GPU machine a gem5 ``config.ini`` describes, as ``Gem5GpuConfig`` knobs, and how it differs.

``layerlab estimate`` draws the roofline of a ``Gem5GpuConfig``; ``render`` turns the same object
into gem5 options; gem5 builds *its* object tree from those options through its own configs/.
Reading the knobs back out of the tree gem5 built (a real run's ``config.ini``, or preflight's)
and comparing proves the machine estimated is the machine simulated -- or names the knob where
they part. Names differ between releases (v24.1+ prefixes protocol controllers:
``GPU_VIPER_TCC_Controller``), so objects are found by type suffix, and DRAM classes (``config.ini``
only says ``DRAMInterface``) by their timing parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from analytical.hardware import Gem5GpuConfig
from foundation.errors import InputError
from stats_parsers.config import Gem5Config, dram_class, gpu_memory_controllers, int_param, parse_size

#: Knobs compared, in the order a report lists them.
CHECKED_KNOBS = (
    "num_cus",
    "sys_clock_hz",
    "gpu_clock_hz",
    "simds_per_cu",
    "wfs_per_simd",
    "wf_size",
    "issue_period",
    "lds_bytes",
    "tcp_bytes",
    "tcp_assoc",
    "sqc_bytes",
    "tcc_bytes",
    "tcc_assoc",
    "num_tccs",
    "dram_type",
    "dram_channels",
    "reg_alloc_policy",
    "mfma_scale",
)


@dataclass(frozen=True)
class Mismatch:
    knob: str
    expected: Any
    built: Any
    where: str  # the config.ini object the built value was read from

    def __str__(self) -> str:
        return f"{self.knob}: the run says {self.expected!r}, gem5 built {self.built!r} ({self.where})"


def _of_type_suffix(config: Gem5Config, suffix: str) -> list[str]:
    return sorted(p for p, o in config.objects.items() if str(o.get("type", "")).endswith(suffix))


def _index_key(path: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", path)
    return (int(match.group(1)) if match else -1, path)


def _clock_hz(config: Gem5Config, path: str) -> float | None:
    try:
        return 1e12 / config.clock_period_ticks(path)
    except (InputError, ZeroDivisionError):
        return None


def _cache_bytes(config: Gem5Config, ctrl: str, attr: str) -> tuple[int | None, int | None]:
    cache = config.param(ctrl, attr)
    if not cache or cache not in config:
        return None, None
    return parse_size(config.param(cache, "size")), int_param(config, cache, "assoc")


def built_machine(config: Gem5Config) -> tuple[dict[str, Any], dict[str, str]]:
    """Knob -> value as gem5 built it, and knob -> the object it was read from."""
    gpu = config.gpu()
    values: dict[str, Any] = {"num_cus": gpu.num_cus}
    where: dict[str, str] = {"num_cus": f"{gpu.shader_path}.CUs"}
    cu = gpu.cu_paths[0] if gpu.cu_paths else None

    def put(knob: str, value: Any, path: str) -> None:
        if value is not None:
            values[knob], where[knob] = value, path

    put("sys_clock_hz", _clock_hz(config, gpu.shader_path), f"{gpu.shader_path}.clk_domain")
    if cu is not None:
        put("simds_per_cu", int_param(config, cu, "num_SIMDs"), cu)
        put("wfs_per_simd", int_param(config, cu, "n_wf"), cu)
        put("wf_size", int_param(config, cu, "wf_size"), cu)
        put("issue_period", int_param(config, cu, "issue_period"), cu)
        if config.param(cu, "mfma_scale") is not None:
            put("mfma_scale", float(config.param(cu, "mfma_scale") or 1), cu)
        lds = config.param(cu, "localDataStore")
        if lds and lds in config:
            put("lds_bytes", int_param(config, lds, "size"), lds)
        pools = [p for p in config.objects if p.startswith(f"{cu}.register_manager.vrf_pool_managers")]
        if pools:
            kind = config.param(sorted(pools)[0], "type")
            policy = {"DynPoolManager": "dynamic", "SimplePoolManager": "simple"}.get(str(kind), str(kind))
            put("reg_alloc_policy", policy, sorted(pools)[0])
    tcps = sorted(_of_type_suffix(config, "TCP_Controller"), key=_index_key)
    if tcps:
        size, assoc = _cache_bytes(config, tcps[0], "L1cache")
        put("tcp_bytes", size, f"{tcps[0]}.L1cache")
        put("tcp_assoc", assoc, f"{tcps[0]}.L1cache")
        put("gpu_clock_hz", _clock_hz(config, tcps[0]), f"{tcps[0]}.clk_domain")
    sqcs = sorted(_of_type_suffix(config, "SQC_Controller"), key=_index_key)
    if sqcs:
        put("sqc_bytes", _cache_bytes(config, sqcs[0], "L1cache")[0], f"{sqcs[0]}.L1cache")
    tccs = sorted(_of_type_suffix(config, "TCC_Controller"), key=_index_key)
    if tccs:
        sizes = [_cache_bytes(config, t, "L2cache") for t in tccs]
        if all(s is not None for s, _ in sizes):
            put("tcc_bytes", sum(s for s, _ in sizes if s is not None), f"{tccs[0]}.L2cache (x{len(tccs)})")
        put("tcc_assoc", sizes[0][1], f"{tccs[0]}.L2cache")
        put("num_tccs", len(tccs), "system.ruby.tcc_cntrl*")
    ctrls = gpu_memory_controllers(config)
    if ctrls:
        put("dram_channels", len(ctrls), ctrls[0].rstrip("0123456789") + "*")
        dram = config.param(ctrls[0], "dram")
        if dram and dram in config:
            put("dram_type", dram_class(config, dram), dram)
    return values, where


def compare_machine(config: Gem5Config, gpu: Gem5GpuConfig) -> list[Mismatch]:
    """Every checked knob where the tree gem5 built differs from ``gpu`` (or could not be read)."""
    values, where = built_machine(config)
    out = []
    for knob in CHECKED_KNOBS:
        expected = getattr(gpu, knob)
        if knob not in values:
            if knob == "mfma_scale" and expected == 1.0:
                continue  # releases without the param simulate scale 1 (no MFMA table)
            out.append(Mismatch(knob, expected, None, "not found in config.ini"))
            continue
        built = values[knob]
        if knob.endswith("_clock_hz"):
            # gem5 keeps a clock as whole ticks (ps): 1.8GHz is built as 556 ps, 1801MHz as 555 ps.
            same = round(1e12 / float(built)) == round(1e12 / float(expected))
        elif isinstance(expected, float):
            same = abs(float(built) - float(expected)) <= 1e-6 * abs(float(expected))
        else:
            same = built == expected
        if not same:
            out.append(Mismatch(knob, expected, built, where[knob]))
    return out
