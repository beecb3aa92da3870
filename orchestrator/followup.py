"""The work that follows a finished run: a census's kernel map, a slice's kernel table, a
slice's analytical cycles.

Each task reads and writes only its run's own files, takes and returns plain JSON values, and
raises ``InputError`` when the outputs cannot be used, so the conductor can hand it to its helper
process (``orchestrator.helper``) by name: the tables are pandas and polars work, and in the
conductor's own process they would take the interpreter lock from the loop that starts the runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from foundation.rundir import KERNEL_MAP_FILE

KERNELS_FILE = "kernels.parquet"


def ensure_kernel_map(run_dir: str, run_id: str | None) -> None:
    """The census's kernel map, built from its outputs unless the saved one is this run's."""
    if kernel_map_run_id(Path(run_dir)) != run_id:
        from workloads.census import build_kernel_map, save_kernel_map

        save_kernel_map(build_kernel_map(Path(run_dir)), Path(run_dir))


def kernel_map_run_id(run_dir: Path) -> str | None:
    try:
        with (run_dir / KERNEL_MAP_FILE).open(encoding="utf-8") as handle:
            return json.load(handle).get("meta", {}).get("run_id")
    except (OSError, ValueError):
        return None


def table_cycles(run_dir: str) -> float | None:
    """Write a slice's per-kernel table; its GPU cycles (blits apart) for the store."""
    table = collect_table(Path(run_dir))
    if "gpu_cycles" not in table:
        return None
    return float(table.loc[~table["blit"].astype(bool), "gpu_cycles"].sum())


def collect_table(run_dir: Path):  # -> pd.DataFrame
    from foundation import atomic
    from reports.join import simulated_kernels

    table = simulated_kernels(run_dir)
    atomic.write_with(run_dir / KERNELS_FILE, lambda tmp: table.to_parquet(tmp, index=False))
    return table


def collect_run(run_dir: Path) -> Path:
    """The per-kernel table of a sliced run, joined with its census labels, as parquet."""
    collect_table(run_dir)
    return run_dir / KERNELS_FILE


#: window_cycles by what decides them: every layer of a step on one machine has the same estimate.
_WINDOW_CYCLES: dict[tuple, float] = {}


def window_cycles(run_dir: str, model: str, shape: dict[str, Any]) -> float | None:
    """Analytical GPU cycles of a slice's window: the roofline estimate of its layer's ops
    (``shape``: phase, batch, seq, context of the slice's step)."""
    try:
        from gem5_configs.render import read_params

        params = read_params(Path(run_dir))
        key = (json.dumps(params.machine.to_json(), sort_keys=True), model, *shape.values())
        if key not in _WINDOW_CYCLES:
            from analytical.hardware import machine_of
            from analytical.pipeline import estimate_layer
            from workloads.models import load_model_config

            machine = machine_of(params.gpu, params.machine.profile)
            sizes = {name: value for name, value in shape.items() if name != "phase"}
            table = estimate_layer(
                load_model_config(model),
                machine,
                shape["phase"],
                **sizes,
                layers="0",  # the analytical model's decoder layers are all alike
            )
            _WINDOW_CYCLES[key] = float(table["est_cycles"].sum())
        return _WINDOW_CYCLES[key]
    except Exception:  # a prediction is a convenience: never let it stop a run
        return None


#: What the helper process may be asked to do, by name.
TASKS = {
    "kernel_map": ensure_kernel_map,
    "kernel_table": table_cycles,
    "window_cycles": window_cycles,
}
