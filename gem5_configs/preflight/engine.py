"""The preflight: run a rendered run directory's gem5 config against a real gem5 tree's Python.

``preflight(run_dir, gem5_src)`` reads ``command.json`` for the argv gem5 would get, builds (or
finds in the cache) the tree's embedded Python, and runs the script in a fresh child interpreter
(``child.py``) up to the C++ boundary. Everything the script gets wrong that gem5's Python can
see -- an option the tree's parser does not have, a SimObject param the tree does not declare, a
value of the wrong type, a ``configs/`` attribute that moved, an unset param, a proxy left
unresolved -- comes back as a ``Finding``; ``config.ini``/``config.json`` are written as the real
``m5.instantiate()`` would write them, under ``RUN_DIR/preflight/`` by default.

Findings are results, not errors: only bad input (no run dir, no command.json, not a gem5 tree)
raises ``InputError``. A child that crashes, hangs past ``timeout_s`` or leaves no result becomes
a finding too, with the tail of its stderr, so a broken tree never hangs a caller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from foundation.errors import InputError

from .build import ensure_built
from .tree import open_tree

FindingKind = Literal[
    "unknown_option",
    "unknown_param",
    "wrong_type",
    "unset_param",
    "unresolved_proxy",
    "import_error",
    "missing_attribute",
    "script_error",
    "script_exit",
]
Style = Literal["classic", "stdlib"]
CHILD = Path(__file__).with_name("child.py")
STANDIN = Path(__file__).with_name("standin.py")
RESULT_SCHEMA = "layerlab-preflight/1"


@dataclass(frozen=True)
class Finding:
    """One thing gem5's Python would reject (or could not check) in the rendered script."""

    kind: FindingKind
    name: str  # "--mfma-scale", "GPUDispatcher.kernel_exit_eventz", "_shader", ...
    message: str  # one line, for humans
    script: str  # the rendered script's file name
    line: int | None  # line in the rendered script (deepest traceback frame there), if any

    def __str__(self) -> str:
        where = f"{self.script}:{self.line}" if self.line is not None else self.script
        return f"{where}: {self.kind} {self.name}: {self.message}"


@dataclass
class PreflightResult:
    """What one preflight found; ``ok`` means the system built completely and the deep check is clean."""

    ok: bool
    findings: list[Finding]
    sim_objects: int
    gem5_version: str
    gem5_src: Path
    run_dir: Path
    out_dir: Path
    style: Style
    script: str
    argv: list[str]
    config_ini: Path | None
    config_json: Path | None
    elapsed_s: float
    build_s: float  # time spent building the tree's Python this call (0 on a warm cache)
    reached_boundary: bool
    log: Path | None = None  # the child's stdout+stderr
    details: dict[str, Any] = field(default_factory=dict)  # traceback, object import failures

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA,
            "ok": self.ok,
            "gem5_version": self.gem5_version,
            "gem5_src": str(self.gem5_src),
            "run_dir": str(self.run_dir),
            "out_dir": str(self.out_dir),
            "style": self.style,
            "script": self.script,
            "argv": list(self.argv),
            "sim_objects": self.sim_objects,
            "reached_boundary": self.reached_boundary,
            "config_ini": str(self.config_ini) if self.config_ini else None,
            "config_json": str(self.config_json) if self.config_json else None,
            "elapsed_s": round(self.elapsed_s, 3),
            "build_s": round(self.build_s, 3),
            "log": str(self.log) if self.log else None,
            "findings": [asdict(f) for f in self.findings],
        }


def _read_command(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run directory not found")
    path = run_dir / "command.json"
    try:
        command = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found; is {run_dir} a rendered run (layerlab render)?") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the run's command ({exc})") from exc
    if not isinstance(command, dict) or not isinstance(command.get("argv"), list) or not command["argv"]:
        raise InputError(f"{path}: no 'argv' list")
    return command


def _choose_argv(command: dict[str, Any], style: Style | None, path: Path) -> tuple[Style, list[str]]:
    declared = command.get("style", "classic")
    chosen = style or declared
    if chosen not in ("classic", "stdlib"):
        raise InputError(f"{path}: style {chosen!r}; choose classic or stdlib")
    if chosen == declared:
        return chosen, [str(a) for a in command["argv"]]
    alternative = (command.get("alternatives") or {}).get(chosen)
    if not alternative:
        raise InputError(
            f"{path}: this run was rendered in the {declared} style; render it with --script-style {chosen}"
        )
    return chosen, [str(a) for a in alternative]


def _script_of(argv: list[str], path: Path) -> str:
    """The config script in a gem5 argv: the first argument after the binary that ends in .py."""
    for arg in argv[1:]:
        if not arg.startswith("-") and arg.endswith(".py"):
            return arg
    raise InputError(f"{path}: no config script (*.py) in argv")


def _gem5_src_from_params(run_dir: Path) -> str:
    """The tree this host's instantiation of the run names (instantiation.json)."""
    try:
        inst = json.loads((run_dir / "instantiation.json").read_text(encoding="utf-8"))
        src = inst["gem5_src"]
    except (OSError, ValueError, KeyError, TypeError):
        src = None
    if not src:
        raise InputError(f"{run_dir}: give --gem5-src (instantiation.json names no gem5 source tree)")
    return str(src)


def _with_tree_path(argv: list[str], configs: Path) -> list[str]:
    """The argv with gem5's ``--path`` pointing at the checked tree's configs/ (not the render's)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if i > 0 and (arg.startswith("--path=") or arg.startswith("-p=")):
            continue
        if i > 0 and arg in ("--path", "-p"):
            skip = True
            continue
        out.append(arg)
        if i == 0:
            out.append(f"--path={configs}")
    return out


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in text.splitlines()[-lines:] if ln.strip())


def preflight(
    run_dir: str | os.PathLike[str],
    gem5_src: str | os.PathLike[str] | None = None,
    style: Style | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = 300,
) -> PreflightResult:
    """Check a rendered run against a gem5 tree's Python, up to the C++ boundary.

    ``gem5_src`` defaults to the tree named in the run's params.json. ``style`` None runs what
    command.json runs; "stdlib" runs ``alternatives["stdlib"]`` (v24.1+ renders). Outputs go to
    ``out_dir`` (default ``RUN_DIR/preflight``): config.ini, config.json, preflight.log,
    preflight.json.
    """
    start = time.perf_counter()
    run = Path(run_dir).expanduser()
    command = _read_command(run)
    run = run.resolve()
    chosen, argv = _choose_argv(command, style, run / "command.json")
    script = _script_of(argv, run / "command.json")
    if not (run / script).is_file():
        raise InputError(f"{run / script}: the run's config script is missing")
    tree = open_tree(gem5_src if gem5_src is not None else _gem5_src_from_params(run))
    argv = _with_tree_path(argv, Path(tree.root) / "configs")
    built = ensure_built(tree)

    out = Path(out_dir).expanduser().resolve() if out_dir is not None else run / "preflight"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("config.ini", "config.json", "preflight.child.json"):
        (out / stale).unlink(missing_ok=True)
    result_path = out / "preflight.child.json"
    request_path = out / "preflight.request.json"
    request = {
        "python_dir": str(built.python_dir),
        "standin": str(STANDIN),
        "version": tree.version,
        "run_dir": str(run),
        "out_dir": str(out),
        "argv": argv,
        "script": script,
        "result": str(result_path),
    }
    request_path.write_text(json.dumps(request, indent=1), encoding="utf-8")
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(var, None)
    # Bytecode goes to the cache, never next to the tree's (read-only) configs/.
    env["PYTHONPYCACHEPREFIX"] = str(built.folder.parent / "pycache")
    env["PYTHONUNBUFFERED"] = "1"
    log = out / "preflight.log"
    timed_out = False
    with log.open("w", encoding="utf-8") as handle:
        try:
            proc = subprocess.run(
                [sys.executable, "-X", "utf8", str(CHILD), str(request_path)],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=str(run),
                env=env,
                timeout=timeout_s,
                check=False,
            )
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            timed_out, returncode = True, -1

    raw: dict[str, Any] = {}
    if result_path.is_file():
        try:
            raw = json.loads(result_path.read_text(encoding="utf-8"))
        except ValueError:
            raw = {}
    if timed_out:
        findings = [
            Finding("script_error", "timeout", f"preflight did not finish in {timeout_s:g} s", script, None)
        ]
    elif not raw:
        why = _tail(log) or f"exit status {returncode}"
        findings = [
            Finding("script_error", "child", f"preflight child died without a result: {why}", script, None)
        ]
    else:
        findings = [Finding(**f) for f in raw.get("findings", [])]

    def existing(key: str) -> Path | None:
        value = raw.get(key)
        return Path(value) if value and Path(value).is_file() else None

    reached = bool(raw.get("reached_boundary"))
    res = PreflightResult(
        ok=reached and not findings,
        findings=findings,
        sim_objects=int(raw.get("sim_objects") or 0),
        gem5_version=tree.version,
        gem5_src=tree.root,
        run_dir=run,
        out_dir=out,
        style=chosen,
        script=script,
        argv=argv,
        config_ini=existing("config_ini"),
        config_json=existing("config_json"),
        elapsed_s=time.perf_counter() - start,
        build_s=built.build_s if built.built_now else 0.0,
        reached_boundary=reached,
        log=log,
        details={
            "traceback": raw.get("traceback"),
            "object_import_failures": raw.get("object_import_failures", {}),
            "build_folder": str(built.folder),
        },
    )
    (out / "preflight.json").write_text(json.dumps(res.to_json(), indent=1), encoding="utf-8")
    return res
