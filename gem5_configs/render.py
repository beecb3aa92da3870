"""Render a run directory: the simulation's files, then this host's instantiation of it.

Simulation (the same on every host; ``run_id`` names it):
    ``gem5_config.py`` or ``gem5_config_stdlib.py``, ``guest_run.sh``, ``params.json``
    (machine, workload with input digests, gem5 identity, loop settings, ``run_id``).
Instantiation (per host):
    ``command.json`` (argv, cwd = the run directory, or a container spec), ``run.sh`` (runs it,
    like Accel-Sim's ``justrun.sh``), ``instantiation.json`` (host paths, binary, container).

Rendering is a pure function of ``RenderParams``: the same parameters give byte-identical files
(sorted keys, no timestamps, no temporary paths). Writing is atomic per file and happens only
after everything rendered, so bad input writes nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from foundation import atomic, events
from foundation.digests import text_digest
from foundation.errors import InputError
from foundation.rundir import (
    COMMAND_FILE,
    INSTANTIATION_FILE,
    PARAMS_FILE,
    RUN_SCHEMA,
    RUN_SCRIPT,
    read_json_record,
)
from gem5_configs.command import (
    CONFIG_SCRIPT,
    GUEST_SCRIPT,
    STDLIB_SCRIPT,
    Gem5Command,
    build_command,
    clock_text,
    option_defaults,
)
from gem5_configs.params import CHECKPOINT_ID_FILE, CPU_TYPES, RenderParams, params_from_json

RENDER_SCHEMA = RUN_SCHEMA
#: Files of the simulation (host-independent) and of one host's instantiation.
SIMULATION_FILES = frozenset({CONFIG_SCRIPT, STDLIB_SCRIPT, GUEST_SCRIPT, PARAMS_FILE})
INSTANTIATION_FILES = frozenset({COMMAND_FILE, RUN_SCRIPT, INSTANTIATION_FILE})
#: Every file name a render may write.
RENDER_FILES = SIMULATION_FILES | INSTANTIATION_FILES


def py_literal(value: Any, indent: int = 0) -> str:
    """A deterministic, readable Python literal (dicts sorted, one key per line)."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{key!r}: {py_literal(value[key], indent + 4)}," for key in sorted(value)]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(py_literal(v, indent) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, bool | int | str) or value is None:
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


@functools.cache
def _environment() -> jinja2.Environment:
    """One per process: it keeps the compiled templates (compiling them again for every run cost
    ~10 ms a render in a 1000-run experiment); jinja's auto_reload still sees an edited template."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gem5_configs", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["pyrepr"] = py_literal
    env.filters["shquote"] = shlex.quote
    return env


@dataclass(frozen=True)
class RenderedRun:
    """The files of one run (name → text), its command, ``run_id`` and content hash."""

    files: dict[str, str]
    command: Gem5Command
    content_hash: str
    run_id: str

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write every file atomically into ``out_dir``; return the paths written."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out: {out} exists and is not a directory")
        written = []
        for name in sorted(self.files):
            path = out / name
            # Rendered files are a pure function of the params and are compared (and rewritten)
            # before every run: atomic, but not fsynced (see foundation.atomic).
            atomic.write_text(path, self.files[name], durable=False)
            written.append(path)
        for name in (GUEST_SCRIPT, RUN_SCRIPT):
            if name in self.files:
                (out / name).chmod(0o755)
        # A re-render into the same directory must not leave a previous render's extra file behind.
        for name in RENDER_FILES - set(self.files):
            (out / name).unlink(missing_ok=True)
        return written


def template_digest() -> str:
    """Digest of layerlab's templates: a template change is a change of the simulation."""
    folder = Path(__file__).with_name("templates")
    parts = [f"{p.name}\0{p.read_text(encoding='utf-8')}" for p in sorted(folder.glob("*.j2"))]
    return text_digest(RENDER_SCHEMA, *parts)


def run_id_of(params: RenderParams) -> str:
    return params.run_id(template_digest())


def loop_settings(params: RenderParams, run_id: str) -> dict[str, Any]:
    """What the simulate loop needs beyond gem5's options (same for both script styles)."""
    return {
        "run_id": run_id,
        "checkpoint": params.workload.kind == "boot_checkpoint",
        "debug_at_gpu_task": -1 if params.debug_at_gpu_task is None else params.debug_at_gpu_task,
        "dump_per_kernel": params.per_kernel_dumps,
        "exit_after": -1 if params.exit_after is None else params.exit_after,
        "exit_at_task": -1 if params.exit_at_task is None else params.exit_at_task,
        "gem5_profile": params.profile,
        "kernel_exit_events": params.kernel_exit_events,
        "skip_until": params.skip_until,
        "tick_limit": params.tick_limit,
    }


def _schema_context() -> dict[str, Any]:
    """The events schema, taken from foundation.events so the loop cannot drift from it."""
    return {
        "schema": events.SCHEMA,
        "events_filename": events.FILENAME,
        "start_fields": tuple(events.START_FIELDS),
        "event_fields": tuple(events.EVENT_FIELDS),
        "end_fields": tuple(events.END_FIELDS),
        "cause_kinds": dict(events.CAUSE_KINDS),
        "checkpoint_id_file": CHECKPOINT_ID_FILE,
    }


def _guest_phase(params: RenderParams) -> str:
    return {"boot_checkpoint": "boot", "restore": "run", "plain": "full"}[params.workload.kind]


def _stdlib_machine(params: RenderParams) -> dict[str, Any]:
    """The machine the stdlib script builds (no host paths: they arrive as script options)."""
    version, gpu = params.version, params.gpu
    return {
        "clk_freq": clock_text(gpu.sys_clock_hz),
        "cpu_type": params.cpu_type,
        "gpu": {
            "num_cus": gpu.num_cus,
            "cu_per_sqc": gpu.cu_per_sqc,
            "tcp_size": version.size(gpu.tcp_bytes),
            "tcp_assoc": gpu.tcp_assoc,
            "sqc_size": version.size(gpu.sqc_bytes),
            "sqc_assoc": gpu.sqc_assoc,
            "scalar_size": version.size(gpu.sqc_bytes),
            "scalar_assoc": gpu.sqc_assoc,
            # ViperGPUCacheHierarchy sizes EACH TCC by tcc_size; --tcc-size (classic) is the total.
            "tcc_size": version.size(gpu.tcc_bytes // gpu.num_tccs),
            "tcc_assoc": gpu.tcc_assoc,
            "tcc_count": gpu.num_tccs,
        },
        "dram_type": gpu.dram_type,
        "dram_channels": gpu.dram_channels,
        "gpu_clock": clock_text(gpu.gpu_clock_hz),
        "wfs_per_simd": gpu.wfs_per_simd,
        "issue_period": gpu.issue_period,
        "gpu_mem_size": version.size(gpu.gpu_mem_bytes),
        "guest_script": GUEST_SCRIPT,
        "host_mem_size": version.size(params.host_mem_bytes),
        "mfma_scale": gpu.mfma_scale if version.has_mfma_scale else None,
        "num_cpus": params.num_cpus,
        "root_partition": re.sub(r"^\D+", "", params.root_partition),  # "/dev/sda1" -> "1"
    }


def render_run(params: RenderParams) -> RenderedRun:
    """Render every file of the run (nothing is written)."""
    version = params.version
    dev = version.device(params.device)
    env = _environment()
    command = build_command(params)
    run_id = run_id_of(params)
    settings = loop_settings(params, run_id)
    common = {"profile": version, "device": params.device, "dev": dev, **_schema_context()}
    files: dict[str, str] = {}

    if params.script_style == "stdlib":
        files[STDLIB_SCRIPT] = env.get_template("gpufs_stdlib.py.j2").render(
            **common,
            stdlib_script=STDLIB_SCRIPT,
            device_class=dev.stdlib_class,
            settings=settings,
            machine=_stdlib_machine(params),
        )
    else:
        files[CONFIG_SCRIPT] = env.get_template("gpufs_classic.py.j2").render(
            **common,
            config_script=CONFIG_SCRIPT,
            settings=settings,
            rendered_options=option_defaults(params),
        )
    argv = list(params.guest_command)
    files[GUEST_SCRIPT] = env.get_template("guest_run.sh.j2").render(
        **common,
        phase=_guest_phase(params),
        guest_env=list(params.guest_env),
        command_line=shlex.join(argv),
    )
    files[PARAMS_FILE] = _json(
        {
            "schema": RENDER_SCHEMA,
            "run_id": run_id,
            "describes": f"gem5's simulated {params.device} machine (--gpu-device {dev.gpu_device}), "
            "not the datasheet part",
            **params.simulation_json(),
            "gem5_ref": version.gem5_ref,
            "cpu_class": CPU_TYPES[params.cpu_type],
            "loop": settings,
        }
    )
    files[COMMAND_FILE] = _json({"run_id": run_id, **command.to_json()})
    files[INSTANTIATION_FILE] = _json({"run_id": run_id, **params.instantiation.to_json()})
    files[RUN_SCRIPT] = _run_script(command, run_id)
    return RenderedRun(files=files, command=command, content_hash=content_hash(files), run_id=run_id)


def _run_script(command: Gem5Command, run_id: str) -> str:
    """``run.sh``: the one command that runs this instantiation from its own directory."""
    lines = [
        "#!/bin/sh",
        f"# layerlab run {run_id}: runs gem5 from this directory (see command.json).",
        "set -e",
        'cd "$(dirname "$0")"',
    ]
    if command.container is None:
        lines.append("exec " + shlex.join(command.argv))
    else:
        c = command.container
        docker = ["docker", "run", "--rm", "--init", "-w", c.working_dir]
        for mount in c.mounts:
            host = "$PWD" if mount.host == "." else shlex.quote(mount.host)
            docker += ["-v", f"{host}:{mount.container}:{mount.mode}"]
        for device in c.devices:
            docker += ["--device", device]
        for opt in c.security_opt:
            docker += ["--security-opt", opt]
        quoted = [shlex.quote(a) if not a.startswith("$PWD") else f'"{a}"' for a in docker]
        # Run as the caller so outputs are not root-owned; the image needs no privileges.
        quoted += ['--user "$(id -u):$(id -g)"', shlex.quote(c.image), *map(shlex.quote, c.argv)]
        lines.append("exec " + " ".join(quoted))
    return "\n".join(lines) + "\n"


def _json(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def content_hash(files: dict[str, str]) -> str:
    """sha256 over (name, text) of every file in name order: the run's name."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def read_params(run_dir: str | Path) -> RenderParams:
    """The parameters of a rendered run directory (or its params.json): what was simulated.

    The instantiation is read too when ``instantiation.json`` lies beside it.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / PARAMS_FILE
    data = read_json_record(path, "was the run rendered by `layerlab render`?")
    if data.get("schema") != RENDER_SCHEMA:
        raise InputError(
            f"{path}: schema {data.get('schema')!r} is not {RENDER_SCHEMA!r} (re-render the run)"
        )
    inst_path = path.with_name(INSTANTIATION_FILE)
    inst = None
    if inst_path.is_file():
        inst = {k: v for k, v in read_json_record(inst_path).items() if k != "run_id"}
    return params_from_json(data, inst)


def render_to_dir(params: RenderParams, out_dir: str | Path) -> tuple[RenderedRun, list[Path]]:
    """Render, then write; a render error leaves ``out_dir`` untouched."""
    rendered = render_run(params)
    return rendered, rendered.write(out_dir)
