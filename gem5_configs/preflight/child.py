"""The preflight child: run one rendered gem5 config up to the C++ boundary, write a JSON result.

Started by ``engine.preflight`` as ``python child.py REQUEST.json`` in a fresh interpreter,
because a gem5 config owns its process: it rewrites ``sys.path`` and ``sys.argv``, registers
hundreds of SimObject classes in module globals, and may ``sys.exit``. Nothing of that may leak
into layerlab, and two checks must not see each other's classes. So this file imports only the
stdlib and the tree's own Python (plus ``standin.py`` by path), and talks back through the file
named in the request.

What happens, in gem5's own order (``m5.main.main``), minus the C++:
1. the ``_m5`` stand-in goes on ``sys.meta_path`` and the build folder first on ``sys.path``;
2. ``import m5`` (and so ``m5.objects``: every SimObject of the build), then the pybind enums
   ``m5.internal.params.enum_<Name>`` are rebuilt from ``m5.params.allEnums``;
3. gem5's binary options are parsed by the tree's ``m5.main.parse_options`` from the rendered
   argv; ``outdir`` is pointed at the preflight folder and ``config.ini``/``config.json`` dumps are
   switched on (stdout redirection is not: the parent keeps the child's output itself);
4. the script runs as ``__m5_main__`` with its own argv, from the run directory;
5. ``m5.instantiate()`` writes config.ini/config.json after unproxying every param, then calls
   ``stats.initSimStats()`` just before creating C++ objects: that call is replaced by a
   ``BaseException`` that ends the run there (a script's ``except Exception`` cannot swallow it).
   ``m5.simulate`` raises the same way, so a simulation can never start;
6. the deep check walks ``root.descendants()`` as ``getCCParams()`` would: every declared param
   must have a value and none may still be a proxy.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import re
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

MAX_TEXT = 400  # characters of an exception message kept in a finding


class ReachedBoundary(BaseException):
    """Raised in place of ``stats.initSimStats()``: the config got to the C++ boundary."""


class ReachedSimulate(BaseException):
    """Raised in place of ``m5.simulate()``: never simulate, even without instantiate."""


class Tee(io.TextIOBase):
    """Pass writes through to the real stream and keep the last ~64 KiB for error parsing."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.kept: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.kept.append(text)
        self.size += len(text)
        while self.size > 65536 and len(self.kept) > 1:
            self.size -= len(self.kept.pop(0))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return int(self.stream.fileno())

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        return "".join(self.kept)


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    out = " | ".join(lines)
    return out if len(out) <= MAX_TEXT else out[: MAX_TEXT - 3] + "..."


def _script_line(tb: TracebackType | None, script: Path) -> int | None:
    """The line of the deepest traceback frame that is in the rendered script itself."""
    line = None
    target = os.path.realpath(script)
    for frame, lineno in traceback.walk_tb(tb):
        if os.path.realpath(frame.f_code.co_filename) == target:
            line = lineno
    return line


def _finding(kind: str, name: str, message: str, script: Path, line: int | None) -> dict[str, Any]:
    return {"kind": kind, "name": name, "message": _one_line(message), "script": script.name, "line": line}


_NO_PARAM = re.compile(r"Class (\w+) has no parameter '?(\w+)'?")
_SETTING = re.compile(r"Error setting param (\w+)\.(\w+) to (.*)")
_UNPROXY = re.compile(r"Error in unproxying param '(\w+)' of (\S+)")
_UNRECOGNIZED = re.compile(r"error: unrecognized arguments: (.*)")
_NO_SUCH_OPTION = re.compile(r"error: no such option: (\S+)")
_BAD_VALUE = re.compile(r"error: (?:argument )?(-[-\w]+(?:/-[-\w]+)*): (invalid .*)")


def classify(
    exc: BaseException, stdout: str, stderr: str, script: Path, tb: TracebackType | None
) -> list[dict[str, Any]]:
    """Turn what ended the script into findings (see ``Finding.kind`` for the vocabulary)."""
    line = _script_line(tb, script)
    text = str(exc)
    if isinstance(exc, SystemExit):
        tail = stderr[-8000:]
        found: list[dict[str, Any]] = []
        for match in _UNRECOGNIZED.finditer(tail):
            for arg in match.group(1).split():
                if arg.startswith("-"):
                    option = arg.split("=", 1)[0]
                    found.append(
                        _finding("unknown_option", option, f"unrecognized argument {arg}", script, line)
                    )
        for match in _NO_SUCH_OPTION.finditer(tail):
            found.append(_finding("unknown_option", match.group(1), match.group(0), script, line))
        for match in _BAD_VALUE.finditer(tail):
            option = match.group(1).split("/")[-1]
            found.append(_finding("wrong_type", option, f"{option}: {match.group(2)}", script, line))
        if found:
            return found
        last = [ln for ln in tail.splitlines() if ln.strip()]
        why = last[-1] if last else "(no message)"
        return [
            _finding(
                "script_exit", "sys.exit", f"script exited with status {exc.code!r}: {why}", script, line
            )
        ]
    if isinstance(exc, ReachedSimulate):
        return [
            _finding(
                "script_error",
                "m5.simulate",
                "m5.simulate() was reached before m5.instantiate()",
                script,
                line,
            )
        ]
    if isinstance(exc, AttributeError) and (m := _NO_PARAM.search(text)):
        name = f"{m.group(1)}.{m.group(2)}"
        return [
            _finding("unknown_param", name, f"class {m.group(1)} has no parameter {m.group(2)}", script, line)
        ]
    if m := _SETTING.search(text):
        name = f"{m.group(1)}.{m.group(2)}"
        first = text.split("\n", 1)[0]
        return [_finding("wrong_type", name, f"{name} = {m.group(3).strip()}: {first}", script, line)]
    if m := _UNPROXY.search(stdout[-8000:] + "\n" + text):
        name = f"{m.group(2)}.{m.group(1)}"
        return [
            _finding(
                "unresolved_proxy", name, f"cannot resolve {name}: {type(exc).__name__}: {text}", script, line
            )
        ]
    if isinstance(exc, ImportError):
        name = exc.name or text
        return [_finding("import_error", name, f"{type(exc).__name__}: {text}", script, line)]
    if isinstance(exc, AttributeError):
        name = exc.name or text
        return [_finding("missing_attribute", str(name), f"AttributeError: {text}", script, line)]
    return [_finding("script_error", type(exc).__name__, f"{type(exc).__name__}: {text}", script, line)]


def deep_check(root: Any, script: Path) -> tuple[int, list[dict[str, Any]]]:
    """The Python half of ``getCCParams()`` over the whole tree: values set, no proxy left.

    Findings are grouped per ``Class.param`` (a missing param on a CU repeats on every CU);
    the message names the first object path and the count.
    """
    from m5.params import EthernetAddr
    from m5.proxy import isproxy

    objects = list(root.descendants())
    groups: dict[tuple[str, str], list[str]] = {}
    for obj in objects:
        for pname in sorted(obj._params.keys()):
            value = obj._values.get(pname)
            if value is None:
                kind = "unset_param"
            elif not isinstance(value, EthernetAddr) and (
                isproxy(value) or (isinstance(value, list) and any(isproxy(v) for v in value))
            ):
                kind = "unresolved_proxy"
            else:
                continue
            groups.setdefault((kind, f"{type(obj).__name__}.{pname}"), []).append(obj.path())
    findings = []
    for (kind, name), paths in sorted(groups.items()):
        what = "has no value and no default" if kind == "unset_param" else "is still a proxy"
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        findings.append(_finding(kind, name, f"{paths[0]}.{name.split('.')[1]} {what}{more}", script, None))
    return len(objects), findings


def _load_standin(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("_layerlab_preflight_standin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Everything from a clean interpreter to the result dict (never raises for script trouble)."""
    run_dir = Path(request["run_dir"])
    out_dir = Path(request["out_dir"])
    argv: list[str] = list(request["argv"])
    script = run_dir / request["script"]
    result: dict[str, Any] = {
        "reached_boundary": False,
        "findings": [],
        "sim_objects": 0,
        "config_ini": None,
        "config_json": None,
        "object_import_failures": {},
    }
    out = Tee(sys.stdout)
    err = Tee(sys.stderr)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]

    standin = _load_standin(request["standin"])
    standin.install(request["version"])
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [request["python_dir"]] + [p for p in sys.path if p and os.path.abspath(p) != here]

    # -- 2. gem5's Python, as the binary would have it embedded ---------------------------------
    try:
        import m5
        import m5.internal.params
        import m5.objects
        import m5.params
    except BaseException as exc:
        result["findings"] = [
            _finding(
                "import_error",
                getattr(exc, "name", None) or "m5",
                f"importing gem5's m5 package: {type(exc).__name__}: {exc}",
                script,
                None,
            )
        ]
        result["traceback"] = traceback.format_exc()
        return result
    result["object_import_failures"] = dict(getattr(m5.objects, "_preflight_failed", {}))
    for name, enum in m5.params.allEnums.items():
        setattr(m5.internal.params, f"enum_{name}", standin.enum_standin(name, list(enum.vals)))

    # -- 3. gem5's own options -------------------------------------------------------------------
    import m5.main

    gem5_main = sys.modules["m5.main"]  # the attribute m5.main is the function main()
    sys.argv = argv
    try:
        options, arguments = gem5_main.parse_options()
    except SystemExit as exc:
        result["findings"] = classify(exc, out.text(), err.text(), script, None)
        return result
    options.outdir = str(out_dir)
    options.dump_config = "config.ini"
    options.json_config = "config.json"
    options.redirect_stdout = False
    options.redirect_stderr = False
    m5.options = options
    sys.path[0:0] = list(options.path)
    try:
        m5.event.mainq = m5.event.getEventQueue(0)
        m5.event.setEventQueue(m5.event.mainq)
        m5.core.setOutputDir(options.outdir)
        m5.stats.addStatVisitor(options.stats_file)
    except BaseException as exc:  # an option gem5 would reject before running the script
        result["findings"] = classify(exc, out.text(), err.text(), script, exc.__traceback__)
        return result
    if not arguments:
        result["findings"] = [
            _finding("script_exit", "argv", "no config script in the gem5 argv", script, None)
        ]
        return result

    # -- 4./5. the script, stopped at the C++ boundary ---------------------------------------------
    def boundary(*_args: Any, **_kwargs: Any) -> None:
        raise ReachedBoundary()

    def no_simulate(*_args: Any, **_kwargs: Any) -> None:
        raise ReachedSimulate()

    m5.stats.initSimStats = boundary
    m5.simulate = no_simulate
    sys.modules["m5.simulate"].simulate = no_simulate  # type: ignore[attr-defined]

    sys.argv = list(arguments)
    os.chdir(run_dir)
    if not getattr(options, "P", False):
        sys.path.insert(0, os.path.dirname(os.path.abspath(arguments[0])))
    filename = arguments[0]
    try:
        with open(filename, "rb") as handle:
            code = compile(handle.read().decode("utf-8"), filename, "exec")
    except (OSError, SyntaxError) as exc:
        result["findings"] = [
            _finding("script_error", type(exc).__name__, str(exc), script, getattr(exc, "lineno", None))
        ]
        return result
    scope = {"__file__": filename, "__name__": "__m5_main__"}
    try:
        exec(code, scope)
    except ReachedBoundary:
        result["reached_boundary"] = True
    except BaseException as exc:
        result["findings"] = classify(exc, out.text(), err.text(), script, exc.__traceback__)
        result["traceback"] = "".join(traceback.format_exception(exc))[-8000:]
        return result
    else:
        result["findings"] = [
            _finding(
                "script_exit",
                "m5.instantiate",
                "the script ended without calling m5.instantiate()",
                script,
                None,
            )
        ]
        return result

    # -- 6. deep check ------------------------------------------------------------------------------
    root = m5.objects.Root.getInstance()
    count, findings = deep_check(root, script)
    result["sim_objects"] = count
    result["findings"] = findings
    for key, name in (("config_ini", "config.ini"), ("config_json", "config.json")):
        if (out_dir / name).is_file():
            result[key] = str(out_dir / name)
    return result


def main() -> int:
    request_path = Path(sys.argv[1])
    request = json.loads(request_path.read_text(encoding="utf-8"))
    try:
        result = run(request)
    except BaseException as exc:  # a bug here, or the tree breaking the set-up: report, not hang
        result = {
            "reached_boundary": False,
            "sim_objects": 0,
            "findings": [
                {
                    "kind": "script_error",
                    "name": type(exc).__name__,
                    "message": _one_line(f"preflight child: {exc}"),
                    "script": Path(request.get("script", "?")).name,
                    "line": None,
                }
            ],
            "traceback": traceback.format_exc(),
        }
    tmp = Path(request["result"] + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, request["result"])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip atexit hooks and interpreter teardown: a gem5 config may have registered exit-time
    # stats dumps (m5.simulate's atexit) that must not run against the stand-in.
    os._exit(0)


if __name__ == "__main__":
    main()
