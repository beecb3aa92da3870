"""The one set of GPU-knob flags, shared by ``estimate``, ``render`` (and experiment specs' names).

Each flag maps to one ``Gem5GpuConfig`` field and is parsed by ``foundation.units``; the values
are validated by ``analytical.hardware.check_gem5_config`` against the gem5 version, so a
machine ``estimate`` accepts is a machine ``render`` accepts. Kept import-light: it runs every
time ``layerlab`` builds its parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from foundation.errors import InputError
from foundation.units import parse_frequency, parse_size


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


size_arg = _arg(parse_size)
frequency_arg = _arg(parse_frequency)

#: flag -> (Gem5GpuConfig field, argparse type, help). The gem5 option each one sets is in the help.
GPU_KNOBS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--num-cus": (
        "num_cus",
        int,
        "compute units, a multiple of --cu-per-sqc (-u; gem5 default 4, mi300.py 40)",
    ),
    "--cu-per-sqc": ("cu_per_sqc", int, "CUs sharing one SQC and scalar cache (gem5 default 4)"),
    "--sys-clock": (
        "sys_clock_hz",
        frequency_arg,
        "shader/CU clock, e.g. 1GHz (--sys-clock; gem5 default 1GHz)",
    ),
    "--gpu-clock": ("gpu_clock_hz", frequency_arg, "GPU cache/TLB clock (--gpu-clock; gem5 default 1GHz)"),
    "--tcp-size": ("tcp_bytes", size_arg, "L1 data cache per CU (--tcp-size; gem5 default 16KiB)"),
    "--sqc-size": (
        "sqc_bytes",
        size_arg,
        "instruction/scalar cache per SQC (--sqc-size; gem5 default 32KiB)",
    ),
    "--tcc-size": ("tcc_bytes", size_arg, "L2 total over all TCCs (--tcc-size; gem5 default 256KiB)"),
    "--num-tccs": ("num_tccs", int, "L2 slices, a power of two (--num-tccs; gem5 default 1)"),
    "--dram-type": ("dram_type", str, "GPU DRAM class (--dgpu-mem-type; gem5 default HBM_1000_4H_1x128)"),
    "--dram-channels": ("dram_channels", int, "GPU memory channels (--dgpu-num-dirs; gem5 default 1)"),
    "--reg-alloc-policy": (
        "reg_alloc_policy",
        str.lower,
        "dynamic (layerlab default) or simple (gem5's: ONE workgroup per CU)",
    ),
    "--mfma-scale": ("mfma_scale", float, "scale MFMA matrix-core cycles (--mfma-scale; gem5 v25 line only)"),
    "--gpu-mem": ("gpu_mem_bytes", size_arg, "GPU memory (--dgpu-mem-size; must be 16GiB in gem5 v24/v25)"),
}


def add_gpu_knob_arguments(group: Any) -> None:
    """Add every GPU knob flag to a parser or argument group (default: the device's machine)."""
    for flag, (field, kind, help_text) in GPU_KNOBS.items():
        group.add_argument(flag, dest=f"knob_{field}", type=kind, default=None, help=help_text)


def gpu_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs a user gave, as ``Gem5GpuConfig`` field -> value."""
    out = {}
    for field, _kind, _help in GPU_KNOBS.values():
        value = getattr(args, f"knob_{field}", None)
        if value is not None:
            out[field] = value
    return out
