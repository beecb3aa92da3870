"""A sliced run from a census run: the census's simulation with the window of one layer set.

The guest command is the census's, unchanged: gem5's kernel indices are only valid for the
identical program, so nothing about the guest may be retyped. The machine is the census's too
unless knobs are given (a program's kernel sequence does not depend on the GPU model's timing,
so one census serves a sweep of machines). ``render --from-census`` and the orchestrator both
come through here, and both write the returned record as ``slice.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.rundir import run_id_of
from gem5_configs.params import RenderParams, make_params
from gem5_configs.render import read_params
from workloads.census import load_kernel_map, window_of


def _plain(value: Any) -> Any:
    """A JSON-ready scalar (pandas NA / numpy numbers -> None / Python numbers)."""
    try:
        if value is None or value != value or str(value) == "<NA>":
            return None
    except (TypeError, ValueError):
        return None
    return value.item() if hasattr(value, "item") else value


def params_from_census(
    census_dir: str | Path,
    step: int,
    layer: int,
    module: str | None = None,
    *,
    kernel: str | Path | None = None,
    disk: str | Path | None = None,
    gpu_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[RenderParams, dict[str, Any]]:
    """The parameters of the slice and its ``slice.json`` record (without the slice's own run_id)."""
    folder = Path(census_dir)
    census = read_params(folder)
    if census.workload.kind == "boot_checkpoint":
        raise InputError(f"--from-census: {folder} is a boot-checkpoint run, not a census")
    kernel_map = load_kernel_map(folder)
    recorded = run_id_of(folder)
    outputs_of = kernel_map.meta.get("run_id")
    if outputs_of and recorded and outputs_of != recorded:
        raise InputError(
            f"{folder}: its outputs come from run {outputs_of}, but the directory was re-rendered as "
            f"{recorded}; re-run the census before slicing it"
        )
    win = window_of(kernel_map, step, layer, module)
    inst, machine = census.instantiation, census.machine
    base: dict[str, Any] = {
        "guest_command": census.workload.guest_command,
        "guest_env": census.workload.guest_env,
        "root_partition": machine.root_partition,
        "host_mem_bytes": machine.host_mem_bytes,
        "cpu_type": machine.cpu_type,
        "num_cpus": machine.num_cpus,
        "script_style": machine.script_style,
        "per_kernel_dumps": True,
        "gem5_src": inst.gem5_src,
        "gem5_binary": inst.gem5_binary,
        "docker_image": inst.docker_image,
        "kvm_perf": inst.kvm_perf,
        "second_disk": inst.second_disk,
        "restore_dir": inst.restore_dir,
        "outdir": inst.outdir,
    }
    base.update(options)
    base.update(skip_until=win.skip_until, exit_after=win.exit_after)
    params = make_params(
        profile=machine.profile,
        device=machine.device,
        kernel=kernel or inst.kernel,
        disk=disk or inst.disk,
        gpu=machine.gpu,
        gpu_overrides=gpu_overrides,
        **{k: v for k, v in base.items() if v is not None},
    )
    same_inputs = (params.workload.kernel_digest, params.workload.disk_digest) == (
        census.workload.kernel_digest,
        census.workload.disk_digest,
    )
    if not same_inputs:
        raise InputError(
            f"--from-census: the kernel or disk differs from the census run's ({folder}/params.json); "
            "kernel indices are only valid for the identical guest"
        )
    record = {
        "census_run_id": recorded or outputs_of,
        "census_dir": str(folder.resolve()),
        "step": step,
        "layer": layer,
        "module": module,
        "skip_until": win.skip_until,
        "exit_after": win.exit_after,
        "expected_kernels": win.num_kernels,
        "kernels": [
            {k: _plain(row[k]) for k in ("kernel_index", "step", "layer", "module")}
            for row in kernel_map.kernel_records
            if win.skip_until <= row["kernel_index"] <= win.exit_after
        ],
    }
    return params, record
