"""Simulated kernels joined with the analytical ops of the same layer on the same simulated machine.

The join key is the role vocabulary of the run contract: the census labels every kernel with the
module marker around it (``census_module``), and every estimated op carries a ``role`` in the same
words (``analytical/roles.py``). Where exactly one op has a role the join is per op; otherwise
(attention: rope, kv_store, qk, softmax, pv under one marker) it is per role, and the table says
which. Kernels and ops that find no partner are kept, never dropped. Blit kernels are shown apart.

The analytical side is built from the run's own ``params.json``: its ``Gem5GpuConfig`` and gem5
profile (``analytical.hardware.machine_of``), its guest command's shapes, and the slice's step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from foundation.errors import InputError
from foundation.rundir import SLICE_FILE, outdir_of

#: Kernel tables already built in this process, by the signature of the files they come from: a
#: report reads each run's table several times (tables, extrapolation), and parsing stats.txt and
#: config.ini is most of its cost.
_MEMO: dict[tuple, pd.DataFrame] = {}
_MEMO_SIZE = 32


def _signature(folder: Path) -> tuple | None:
    from foundation.rundir import EVENTS_FILENAME

    outdir = outdir_of(folder)
    parts: list[object] = [str(folder.resolve())]
    for path in (outdir / "stats.txt", outdir / "config.ini", outdir / EVENTS_FILENAME, folder / SLICE_FILE):
        try:
            info = path.stat()
        except OSError:
            return None  # let kernel_table say what is missing
        parts.append((info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(parts)


def simulated_kernels(run_dir: str | Path) -> pd.DataFrame:
    """The per-kernel table of a sliced run with each kernel's census labels (step, layer, module)."""
    folder = Path(run_dir)
    key = _signature(folder)
    if key is not None and key in _MEMO:
        return _MEMO[key].copy()
    table = _simulated_kernels(folder)
    if key is not None:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = table.copy()
    return table


def _simulated_kernels(folder: Path) -> pd.DataFrame:
    from stats_parsers import kernel_table

    table = kernel_table(outdir_of(folder))
    record_path = folder / SLICE_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        labels = pd.DataFrame(record["kernels"]).rename(
            columns={"step": "census_step", "layer": "census_layer", "module": "census_module"}
        )
        if not labels.empty and "kernel_index" in table:
            table = table.merge(labels, on="kernel_index", how="left")
        table["run_id"] = record["run_id"]
        table["census_run_id"] = record["census_run_id"]
    return table


def _driver_args(guest_command: list[str]) -> Any:
    """The guest driver's own parse of the run's command (the shapes it really ran)."""
    from workloads.drivers import layer

    if len(guest_command) < 2 or not guest_command[1].endswith("/layer.py"):
        raise InputError("reports: only runs of the `layer` driver are joined so far (hf/vllm next)")
    return layer.parser().parse_args(guest_command[2:])


def estimated_ops(run_dir: str | Path, estimator: str = "roofline") -> pd.DataFrame:
    """The analytical ops of the slice's layer on the machine the run simulated."""
    from analytical.hardware import machine_of
    from gem5_configs.render import read_params

    folder = Path(run_dir)
    params = read_params(folder)
    record_path = folder / SLICE_FILE
    if not record_path.is_file():
        raise InputError(f"{folder}: no {SLICE_FILE} (join needs a run sliced from a census)")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    _driver_args(list(params.workload.guest_command))  # only the layer driver, said clearly
    from reports.extrapolate import driver_plan, plan_ops

    # The driver's own run order: warm-up steps, prefill, decode contexts C, C+1, ...
    plan = driver_plan(params.workload.guest_command)
    machine = machine_of(params.gpu, params.machine.profile)
    return plan_ops(plan, int(record["step"]), machine, "0", estimator=estimator)


def join(kernels: pd.DataFrame, ops: pd.DataFrame) -> pd.DataFrame:
    """One row per role: simulated cycles (non-blit kernels) beside estimated cycles, error in %.

    Columns: ``role``, ``join`` (op | role), ``ops``, ``kernels``, ``sim_cycles``, ``est_cycles``,
    ``error_pct`` (estimate vs simulation), ``calibration`` (the factor that closes the gap),
    ``matched`` (both sides present). Unmatched roles keep the side they have.
    """
    work = kernels[~kernels["blit"].astype(bool)] if "blit" in kernels else kernels
    sim = (
        work.groupby("census_module", dropna=False)
        .agg(kernels=("kernel_index", "count"), sim_cycles=("gpu_cycles", "sum"))
        .reset_index()
        .rename(columns={"census_module": "role"})
    )
    est = (
        ops[ops["op"] != "total"]
        .groupby("role")
        .agg(ops=("op", lambda s: ",".join(s)), est_cycles=("est_cycles", "sum"), join=("join", "first"))
        .reset_index()
    )
    table = sim.merge(est, on="role", how="outer")
    table["matched"] = table["sim_cycles"].notna() & table["est_cycles"].notna()
    table["error_pct"] = (table["est_cycles"] - table["sim_cycles"]) / table["sim_cycles"] * 100.0
    table["calibration"] = table["sim_cycles"] / table["est_cycles"]
    return table[
        ["role", "join", "ops", "kernels", "sim_cycles", "est_cycles", "error_pct", "calibration", "matched"]
    ].sort_values("role", na_position="last", ignore_index=True)
