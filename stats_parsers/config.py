"""gem5 ``config.ini`` / ``config.json`` → an object tree, clock periods and the GPU as built.

Why read the config rather than trust the command line: ``mi200.py``/``mi300.py`` overwrite
options after parsing (``gem5_gpufs.md`` §1.6), so only the config gem5 wrote says what ran.
GPU cycles need the shader's clock period in ticks, which lives in its clock domain
(``SrcClockDomain clock=<period>``, or a ``DerivedClockDomain`` dividing another) — §1.7.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation import units
from foundation.errors import InputError
from stats_parsers import names


@dataclass(frozen=True)
class GpuConfig:
    """The GPU as gem5 built it; ``*_stats`` fields are the stats.txt spellings."""

    shader_path: str
    shader_stats_prefix: str
    num_cus: int
    cu_paths: tuple[str, ...]
    clock_period_ticks: int
    tcc_count: int
    tcc_size_bytes: int | None
    dram_type: str | None
    dram_channels: int | None
    notes: tuple[str, ...] = ()

    @property
    def clock_hz(self) -> float:
        return 1e12 / self.clock_period_ticks


@dataclass
class Gem5Config:
    """Objects by SimObject path; each is a dict of parameter name → text (``type`` included)."""

    objects: dict[str, dict[str, str]]
    source: Path
    _gpu: GpuConfig | None = field(default=None, repr=False)

    def __contains__(self, path: str) -> bool:
        return path in self.objects

    def params(self, path: str) -> dict[str, str]:
        try:
            return self.objects[path]
        except KeyError:
            raise InputError(f"{self.source}: no object {path!r} in the config") from None

    def param(self, path: str, name: str) -> str | None:
        return self.params(path).get(name)

    def of_type(self, *types: str) -> list[str]:
        return sorted(p for p, o in self.objects.items() if o.get("type") in types)

    def children(self, path: str) -> list[str]:
        prefix = path + "."
        return sorted(p for p in self.objects if p.startswith(prefix) and "." not in p[len(prefix) :])

    def clock_period_ticks(self, path: str) -> int:
        """Clock period (ticks) of any object: its ``clk_domain``, followed through derived
        domains; an object without one inherits its parent's, as gem5's ``Parent.clk_domain``."""
        seen: set[str] = set()
        current = path
        while True:
            if current in seen:
                raise InputError(f"{self.source}: clock domain loop at {current!r}")
            seen.add(current)
            obj = self.params(current)
            kind = obj.get("type", "")
            if kind == "SrcClockDomain":
                clocks = obj.get("clock", "").split()
                if not clocks:
                    raise InputError(f"{self.source}: [{current}] has no clock=")
                level = int(obj.get("init_perf_level", "0") or 0)
                return int(float(clocks[min(level, len(clocks) - 1)]))
            if kind == "DerivedClockDomain":
                divider = int(obj.get("clk_divider", "1"))
                return divider * self.clock_period_ticks(self._ref(current, "clk_domain"))
            domain = obj.get("clk_domain")
            if domain:
                current = domain
                continue
            if "." not in current:
                raise InputError(f"{self.source}: {path!r} has no clock domain")
            current = current.rsplit(".", 1)[0]

    def _ref(self, path: str, name: str) -> str:
        value = self.param(path, name)
        if not value or value not in self.objects:
            raise InputError(f"{self.source}: [{path}] {name}={value!r} does not name an object")
        return value

    def gpu(self) -> GpuConfig:
        if self._gpu is None:
            self._gpu = _find_gpu(self)
        return self._gpu


def read_config(path: str | os.PathLike[str]) -> Gem5Config:
    """Read ``config.ini`` or ``config.json`` (a run directory picks whichever exists)."""
    source = Path(path)
    if source.is_dir():
        for name in ("config.ini", "config.json"):
            if (source / name).is_file():
                source = source / name
                break
        else:
            raise InputError(f"{source}: no config.ini or config.json (gem5 --dump-config/--json-config)")
    if not source.is_file():
        raise InputError(f"{source}: config file not found")
    if source.suffix == ".json":
        return Gem5Config(_objects_from_json(source), source)
    return Gem5Config(_objects_from_ini(source), source)


def _objects_from_ini(source: Path) -> dict[str, dict[str, str]]:
    parser = configparser.RawConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # parameter names are case-sensitive
    try:
        parser.read_string(source.read_text(encoding="utf-8"), source=str(source))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not a gem5 config.ini ({str(exc).splitlines()[0]})") from None
    objects = {section: dict(parser.items(section)) for section in parser.sections()}
    if not objects or "root" not in objects:
        raise InputError(f"{source}: not a gem5 config.ini (no [root] section)")
    return objects


def _objects_from_json(source: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "type" not in data:
        raise InputError(f"{source}: not a gem5 config.json (no root object)")
    objects: dict[str, dict[str, str]] = {}

    def is_object(value: Any) -> bool:
        return isinstance(value, dict) and "type" in value and "path" in value

    def visit(obj: dict[str, Any], path: str) -> None:
        params: dict[str, str] = {}
        for key, value in obj.items():
            if key in ("path", "name", "cxx_class"):
                continue
            if is_object(value):
                visit(value, value["path"])
                params[key] = value["path"]
            elif isinstance(value, list) and value and all(is_object(v) for v in value):
                for item in value:
                    visit(item, item["path"])
                params[key] = " ".join(item["path"] for item in value)
            elif isinstance(value, list):
                params[key] = " ".join(_scalar(v) for v in value)
            else:
                params[key] = _scalar(value)
        objects[path] = params

    visit(data, data.get("path", "root"))
    return objects


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "Null"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def parse_size(text: str | None) -> int | None:
    """``262144`` or ``256KiB`` → bytes (``foundation.units``, gem5's binary kB/MB); None if not a size."""
    if not text:
        return None
    try:
        return units.parse_size(text)
    except InputError:
        return None


def _find_gpu(config: Gem5Config) -> GpuConfig:
    shaders = config.of_type("Shader")
    if not shaders:
        raise InputError(
            f"{config.source}: no GPU in this config (no object of type Shader); was it a GPU run?"
        )
    shader = shaders[0]
    notes: list[str] = []
    cu_paths = tuple(config.param(shader, "CUs").split()) if config.param(shader, "CUs") else ()
    if not cu_paths:
        cu_paths = tuple(p for p in config.of_type("ComputeUnit") if p.startswith(shader + "."))
    cu_paths = tuple(sorted(cu_paths, key=lambda p: names.cu_index(p.rsplit(".", 1)[-1]) or 0))
    # v24.1+ prefix controller types with the protocol (GPU_VIPER_TCC_Controller).
    tccs = sorted(p for p, o in config.objects.items() if str(o.get("type", "")).endswith("TCC_Controller"))
    tcc_size = None
    if tccs:
        cache = config.param(tccs[0], "L2cache")
        tcc_size = parse_size(config.param(cache, "size")) if cache in config else None
    dram_type, channels = _gpu_dram(config, notes)
    return GpuConfig(
        shader_path=shader,
        shader_stats_prefix=_shader_stats_prefix(config, shader),
        num_cus=len(cu_paths),
        cu_paths=cu_paths,
        clock_period_ticks=config.clock_period_ticks(shader),
        tcc_count=len(tccs),
        tcc_size_bytes=tcc_size,
        dram_type=dram_type,
        dram_channels=channels,
        notes=tuple(notes),
    )


def _shader_stats_prefix(config: Gem5Config, shader: str) -> str:
    """``system.cpu<N>``: the shader sits after the N CPUs in ``system.cpu`` (§3.1).

    The stdlib ViperBoard keeps it in one place only (``board.gpus.shader``): that is its prefix.
    """
    if re.fullmatch(r"system\.cpu\d+", shader) or not shader.startswith("system."):
        return shader
    cpus = [p for p in config.objects if re.fullmatch(r"system\.cpu\d*", p) and p != shader]
    return f"system.cpu{len(cpus)}"


#: GPU memory controllers: classic ``system.gpu_mem_ctrls[N]``, stdlib ``board.gpus[N].memory.mem_ctrl[N]``.
_GPU_MEM_CTRL = re.compile(r"system\.gpu_mem_ctrls\d*|board\.gpus\d*\.memory\.mem_ctrl\d*")


def gpu_memory_controllers(config: Gem5Config) -> list[str]:
    def key(path: str) -> tuple[int, str]:
        match = re.search(r"(\d+)$", path)
        return (int(match.group(1)) if match else -1, path)

    return sorted((p for p in config.objects if _GPU_MEM_CTRL.fullmatch(p)), key=key)


def _gpu_dram(config: Gem5Config, notes: list[str]) -> tuple[str | None, int | None]:
    ctrls = gpu_memory_controllers(config)
    if not ctrls:
        notes.append("no system.gpu_mem_ctrls: the GPU shares host memory (SE/APU config)")
        return None, None
    kinds = set()
    for ctrl in ctrls:
        dram = config.param(ctrl, "dram")
        kinds.add(dram_class(config, dram) if dram and dram in config else config.param(ctrl, "type"))
    return ", ".join(sorted(k for k in kinds if k)), len(ctrls)


def dram_class(config: Gem5Config, dram: str) -> str | None:
    """The gem5 DRAM class whose timing a ``DRAMInterface`` object has (config.ini drops the name).

    A config that names the class itself (the gem5 test double's, old configs) is taken as is.
    """
    # Imported here: reading a config for the shader clock (``layerlab stats --kernels``) must
    # not load the analytical models.
    from analytical.hardware import GEM5_DRAM_TYPES

    named = config.param(dram, "type")
    if named in GEM5_DRAM_TYPES:
        return named
    width = int_param(config, dram, "device_bus_width")
    burst = int_param(config, dram, "burst_length")
    per_rank = int_param(config, dram, "devices_per_rank")
    t_burst = int_param(config, dram, "tBURST")
    for name, d in GEM5_DRAM_TYPES.items():
        if (width, burst, per_rank) == (d.device_bus_width_bits, d.burst_length, d.devices_per_rank) and (
            t_burst is not None and abs(t_burst - d.t_burst_s * 1e12) <= 1
        ):
            return name
    kind = config.param(dram, "type")
    return None if kind is None else f"{kind}(width={width},burst={burst},tBURST={t_burst})"


def int_param(config: Gem5Config, path: str, name: str) -> int | None:
    value = config.param(path, name) if path in config else None
    try:
        return int(str(value).split()[0]) if value is not None else None
    except ValueError:
        return None
