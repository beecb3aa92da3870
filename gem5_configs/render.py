"""Render a run directory: config script(s), guest script, params.json, command.json.

Rendering is a pure function of ``RenderParams``: the same parameters give byte-identical files
(sorted keys, no timestamps, no temporary paths), so ``content_hash`` can name the run. Writing
is atomic per file and happens only after everything rendered, so bad input writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from gem5_configs.command import (
    CONFIG_SCRIPT,
    GUEST_SCRIPT,
    STDLIB_SCRIPT,
    Gem5Command,
    build_command,
    clock_text,
    gem5_configs_dir,
    option_defaults,
)
from gem5_configs.params import CPU_TYPES, RenderParams, params_from_json
from workloads import atomic, events
from workloads.errors import InputError

PARAMS_FILE = "params.json"
COMMAND_FILE = "command.json"
RENDER_SCHEMA = "layerlab-render/1"
#: Every file name a render may write.
RENDER_FILES = frozenset({CONFIG_SCRIPT, STDLIB_SCRIPT, GUEST_SCRIPT, PARAMS_FILE, COMMAND_FILE})


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


def _environment() -> jinja2.Environment:
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
    """The files of one run (name → text), its command and content hash."""

    files: dict[str, str]
    command: Gem5Command
    content_hash: str

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write every file atomically into ``out_dir``; return the paths written."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out: {out} exists and is not a directory")
        written = []
        for name in sorted(self.files):
            path = out / name
            atomic.write_text(path, self.files[name])
            written.append(path)
        for name in (GUEST_SCRIPT,):
            if name in self.files:
                (out / name).chmod(0o755)
        # A re-render into the same directory must not leave a previous render's extra file behind.
        for name in RENDER_FILES - set(self.files):
            (out / name).unlink(missing_ok=True)
        return written


def loop_settings(params: RenderParams) -> dict[str, Any]:
    """What the simulate loop needs beyond gem5's options (same for both script styles)."""
    return {
        "checkpoint": params.checkpoint_dir is not None,
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
    """The events schema, taken from workloads.events so the loop cannot drift from it."""
    return {
        "schema": events.SCHEMA,
        "events_filename": events.FILENAME,
        "start_fields": tuple(events.START_FIELDS),
        "event_fields": tuple(events.EVENT_FIELDS),
        "end_fields": tuple(events.END_FIELDS),
        "cause_kinds": dict(events.CAUSE_KINDS),
    }


def _guest_phase(params: RenderParams) -> str:
    if params.checkpoint_dir is not None:
        return "boot"
    if params.restore_dir is not None:
        return "run"
    return "full"


def _stdlib_machine(params: RenderParams) -> dict[str, Any]:
    version, gpu = params.version, params.gpu
    in_container = params.docker_image is not None
    # Inside a container the kernel/disk are at the command builder's mount points.
    command = build_command(params)
    mounts = {m.host: m.container for m in command.container.mounts} if command.container else {}

    def seen(path: str | None) -> str | None:
        return None if path is None else (mounts.get(path, path) if in_container else path)

    return {
        "checkpoint_dir": seen(params.checkpoint_dir),
        "clk_freq": clock_text(gpu.sys_clock_hz),
        "cpu_type": params.cpu_type,
        "disk": seen(params.disk),
        "gpu": {
            "num_cus": gpu.num_cus,
            "cu_per_sqc": gpu.cu_per_sqc,
            "tcp_size": version.size(gpu.tcp_bytes),
            "tcp_assoc": gpu.tcp_assoc,
            "sqc_size": version.size(gpu.sqc_bytes),
            "sqc_assoc": gpu.sqc_assoc,
            "scalar_size": version.size(gpu.sqc_bytes),
            "scalar_assoc": gpu.sqc_assoc,
            "tcc_size": version.size(gpu.tcc_bytes),
            "tcc_assoc": gpu.tcc_assoc,
            "tcc_count": gpu.num_tccs,
            "num_memory_channels": gpu.dram_channels,
        },
        "gpu_mem_size": version.size(gpu.gpu_mem_bytes),
        "guest_script": GUEST_SCRIPT,
        "host_mem_size": version.size(params.host_mem_bytes),
        "kernel": seen(params.kernel),
        "kvm_perf": params.kvm_perf,
        "mfma_scale": gpu.mfma_scale if version.mfma_timing_table else None,
        "num_cpus": params.num_cpus,
        "restore_dir": seen(params.restore_dir),
        "root_partition": re.sub(r"^\D+", "", params.root_partition),  # "/dev/sda1" -> "1"
    }


def render_run(params: RenderParams) -> RenderedRun:
    """Render every file of the run (nothing is written)."""
    version = params.version
    dev = version.device(params.device)
    env = _environment()
    command = build_command(params)
    settings = loop_settings(params)
    common = {"profile": version, "device": params.device, "dev": dev, **_schema_context()}
    files: dict[str, str] = {}

    files[CONFIG_SCRIPT] = env.get_template("gpufs_classic.py.j2").render(
        **common,
        config_script=CONFIG_SCRIPT,
        gem5_configs=gem5_configs_dir(params),
        settings=settings,
        rendered_options=option_defaults(params, paths_in_container=params.docker_image is not None),
    )
    if version.stdlib_gpu_board:
        files[STDLIB_SCRIPT] = env.get_template("gpufs_stdlib.py.j2").render(
            **common,
            stdlib_script=STDLIB_SCRIPT,
            device_class=dev.stdlib_class,
            settings=settings,
            machine=_stdlib_machine(params),
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
            "params": params.to_json(),
            "gem5": {"ref": version.gem5_ref, "cpu_class": CPU_TYPES[params.cpu_type]},
            "loop": settings,
        }
    )
    files[COMMAND_FILE] = _json(command.to_json())
    return RenderedRun(files=files, command=command, content_hash=content_hash(files))


def _json(payload: Any) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def content_hash(files: dict[str, str]) -> str:
    """sha256 over (name, text) of every file in name order: the run's name."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def read_params(run_dir: str | Path) -> RenderParams:
    """The parameters of a rendered run directory (or its params.json): what was simulated."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / PARAMS_FILE
    if not path.is_file():
        raise InputError(f"{path}: not found (was the run rendered by `layerlab render`?)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if data.get("schema") != RENDER_SCHEMA:
        raise InputError(f"{path}: schema {data.get('schema')!r} is not {RENDER_SCHEMA!r}")
    return params_from_json(data["params"])


def render_to_dir(params: RenderParams, out_dir: str | Path) -> tuple[RenderedRun, list[Path]]:
    """Render, then write; a render error leaves ``out_dir`` untouched."""
    rendered = render_run(params)
    return rendered, rendered.write(out_dir)
