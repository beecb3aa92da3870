"""Which sliced runs a report covers, and what each one is: its machine, its slice, its source.

A report compares gem5's cycles with the analytical model, so it needs runs that were sliced from
a census (``slice.json``: the census kernel map of exactly the kernels simulated) and dumped stats
per kernel. Arguments are run directories, directories holding them (a workspace), or one
experiment spec (every done sliced run in its store). A run with per-kernel dumps but no
``slice.json`` is bad input, never skipped: dropping it would make the report look complete.

Runs of the gem5 TEST DOUBLE (``tests/gem5_double``) are recognised by the banner the double
prints as gem5's first stdout line (``simout.txt``: "layerlab TEST DOUBLE -- not a simulator"),
or by the binary ``instantiation.json`` names (the double's docstring says "gem5 TEST DOUBLE"):
their cycles are a stand-in, and every page, table and plot built from them says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.rundir import INSTANTIATION_FILE, PARAMS_FILE, SLICE_FILE, is_run_dir, outdir_of, run_id_of

#: The one phrase that titles everything built from test-double runs.
SELFTEST_TITLE = "pipeline self-test — cycles from the gem5 test double, not from gem5"
#: ``source`` of rows from a real gem5 run, and of rows from the double.
SOURCE_GEM5 = "gem5"
SOURCE_DOUBLE = "gem5 test double (pipeline self-test, not gem5)"

_DOUBLE_BANNER = b"TEST DOUBLE"
_DOUBLE_BINARY = b"gem5 TEST DOUBLE"


@dataclass(frozen=True)
class RunInfo:
    """One sliced run as the report sees it."""

    run_dir: Path
    run_id: str
    label: str  # unique within the report: step1-layer1 (machine label prefixed where needed)
    step: int
    layer: int
    module: str | None
    params: Any  # gem5_configs.params.RenderParams
    record: dict[str, Any]  # slice.json
    machine: Any  # analytical.hardware.HardwareSpec (the simulated machine)
    machine_label: str
    double_evidence: str | None  # why this run is taken for the test double's, None for gem5

    @property
    def slice_label(self) -> str:
        """``step1-layer1`` (the slice alone, without the machine a unique label may carry)."""
        return f"step{self.step}-layer{self.layer}" + (f"-{self.module}" if self.module else "")

    @property
    def source(self) -> str:
        return SOURCE_DOUBLE if self.double_evidence else SOURCE_GEM5

    @property
    def machine_key(self) -> tuple:
        return (self.params.machine.profile, tuple(sorted(asdict(self.params.gpu).items())))


def _head(path: Path, size: int = 4096) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def gem5_double_evidence(run_dir: str | Path) -> str | None:
    """Why ``run_dir``'s outputs come from the gem5 test double (None: nothing says so)."""
    folder = Path(run_dir)
    outdir = outdir_of(folder)
    for path in (outdir / "simout.txt", folder / "logs" / "backend.out"):
        if _DOUBLE_BANNER in _head(path, 512):
            return f"{path}: the test double's banner"
    inst = folder / INSTANTIATION_FILE
    if inst.is_file():
        try:
            binary = json.loads(inst.read_text(encoding="utf-8")).get("gem5_binary")
        except (OSError, ValueError):
            binary = None
        if binary and _DOUBLE_BINARY in _head(Path(binary)):
            return f"{inst}: gem5_binary {binary} is the test double"
    return None


def _is_sliced_candidate(folder: Path) -> bool:
    """A run dir that wants a census map: it has one, or it dumped stats per kernel."""
    if (folder / SLICE_FILE).is_file():
        return True
    try:
        params = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    workload = params.get("workload") if isinstance(params, dict) else None
    return isinstance(workload, dict) and bool(workload.get("per_kernel_dumps"))


def find_run_dirs(paths: list[str]) -> list[Path]:
    """The sliced run directories named by ``paths`` (run dirs, or directories holding them)."""
    found: list[Path] = []
    for given in paths:
        folder = Path(given)
        if not folder.exists():
            raise InputError(f"{given}: no such directory")
        if not folder.is_dir():
            raise InputError(f"{given}: not a directory (a run directory, a folder of runs, or one spec)")
        if is_run_dir(folder):
            found.append(folder)
            continue
        below = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            here = Path(root)
            if PARAMS_FILE in files and _is_sliced_candidate(here):
                below.append(here)
                dirs[:] = []  # a run's own folders (m5out, logs, checkpoint) hold no runs
        if not below:
            raise InputError(f"{given}: not a run directory, and no sliced run lies under it")
        found += below
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _machine_label(params: Any, machine: Any) -> str:
    """``gem5-mi300x v24.0`` plus every knob that differs from gem5's stock machine."""
    from analytical.hardware import gem5_config
    from foundation.units import size_text

    stock = gem5_config(params.gpu.device, params.machine.profile)
    parts = [machine.name, params.machine.profile]
    for name, value in asdict(params.gpu).items():
        if name == "device" or value == getattr(stock, name):
            continue
        if name.endswith("_bytes"):
            parts.append(f"{name}={size_text(int(value))}")
        elif name.endswith("_hz"):
            parts.append(f"{name.removesuffix('_hz')}={value / 1e9:g}GHz")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def load_run(run_dir: Path) -> RunInfo:
    """A sliced run's params, slice record and simulated machine; bad input names the file."""
    from analytical.hardware import machine_of
    from foundation.rundir import read_json_record
    from gem5_configs.render import read_params

    if not is_run_dir(run_dir):
        raise InputError(f"{run_dir}: not a run directory (no {PARAMS_FILE})")
    params = read_params(run_dir)
    record_path = run_dir / SLICE_FILE
    if not record_path.is_file():
        raise InputError(
            f"{run_dir}: no {SLICE_FILE}, so no census kernel map to join its kernels on "
            "(render it with `layerlab render --from-census`)"
        )
    record = read_json_record(record_path)
    kernels = record.get("kernels")
    if not isinstance(kernels, list) or not kernels:
        raise InputError(f"{record_path}: no census kernel map ('kernels' is missing or empty)")
    for key in ("run_id", "census_run_id", "step", "layer"):
        if record.get(key) is None:
            raise InputError(f"{record_path}: no {key!r}")
    own = run_id_of(run_dir)
    if own is not None and str(record["run_id"]) != own:
        raise InputError(f"{record_path}: run_id {record['run_id']} is not this run's ({own}, {PARAMS_FILE})")
    machine = machine_of(params.gpu, params.machine.profile)
    step, layer = int(record["step"]), int(record["layer"])
    module = record.get("module")
    label = f"step{step}-layer{layer}" + (f"-{module}" if module else "")
    return RunInfo(
        run_dir=run_dir,
        run_id=str(record["run_id"]),
        label=label,
        step=step,
        layer=layer,
        module=module,
        params=params,
        record=record,
        machine=machine,
        machine_label=_machine_label(params, machine),
        double_evidence=gem5_double_evidence(run_dir),
    )


def load_runs(run_dirs: list[Path]) -> list[RunInfo]:
    """Every run loaded, labels made unique (machine label, then run_id, prefixed where needed)."""
    from dataclasses import replace

    runs = [load_run(Path(d)) for d in run_dirs]
    runs.sort(key=lambda r: (r.machine_label, r.step, r.layer, r.module or "", r.run_id))
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        runs = [replace(r, label=f"{r.machine_label} {r.label}") for r in runs]
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        runs = [replace(r, label=f"{r.label} {r.run_id[:8]}") for r in runs]
    return runs
