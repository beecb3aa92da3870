"""The option-reading child: list every option a gem5 tree's Python defines, write them as JSON.

Started by ``options.read_options`` as ``python options_child.py REQUEST.json`` in a fresh
interpreter (the configs register SimObjects and edit ``sys.path`` at import). It sets up the
tree's embedded Python exactly as ``child.py`` does (the ``_m5`` stand-in, the build folder first
on ``sys.path``, ``m5.objects`` imported, pybind enums rebuilt), then reads:

1. gem5's own options: the optparse parser that the tree's ``m5.main.parse_options`` builds;
2. the GPU-FS script's options: an argparse parser built exactly as the classic template builds
   it (``runfs.addRunFSOptions``, ``Options.addCommonOptions``, ``Ruby.define_options``,
   ``AmdGPUOptions.addAmdGPUOptions``, ``GPUTLBOptions.tlb_options``) with ``configs/`` and
   ``configs/example/gpufs`` first on ``sys.path``. Each option is credited to the innermost
   gem5 function that added it (``Network.define_options`` and the protocol's
   ``define_options`` are called from ``Ruby.define_options``).

Only the stdlib and the tree's own Python are imported here (``child.py`` and ``standin.py``
are loaded by path).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import optparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def argparse_type(action: argparse.Action) -> str | None:
    """An argparse action's option type (``profiles.OPTION_TYPES``); None for --help/--version."""
    if isinstance(action, argparse._HelpAction | argparse._VersionAction):
        return None
    if isinstance(
        action,
        argparse._StoreTrueAction
        | argparse._StoreFalseAction
        | argparse._StoreConstAction
        | argparse.BooleanOptionalAction,
    ):
        return "flag"
    if isinstance(action, argparse._CountAction):
        return "count"
    if isinstance(action, argparse._AppendAction | argparse._AppendConstAction | argparse._ExtendAction):
        return "append"
    if action.nargs is not None and action.nargs != "?":
        return "nargs"  # "+", "*", N (the --list-* actions take nargs=0)
    if action.type is int:
        return "int"
    if action.type is float:
        return "float"
    return "str"


def optparse_type(option: optparse.Option) -> str | None:
    """An optparse option's type; gem5's ``split=`` appends are callbacks to ``options.splitter``."""
    action = option.action
    if action in ("help", "version"):
        return None
    if action in ("store_true", "store_false", "store_const"):
        return "flag"
    if action == "count":
        return "count"
    if action in ("append", "append_const"):
        return "append"
    if action == "callback" and type(option.callback).__name__ == "splitter":
        return "append"
    if not option.takes_value():
        return "flag"  # a callback that takes no value (--stats-help)
    if option.nargs is not None and option.nargs != 1:
        return "nargs"
    if option.type == "int":
        return "int"
    if option.type == "float":
        return "float"
    return "str"


def gem5_options(gem5_main: Any) -> tuple[Any, list[list[str]]]:
    """The tree's ``m5.main.parse_options()`` result and every option string of its parser."""
    sys.argv = ["gem5", "layerlab_options.py"]
    options, _arguments = gem5_main.parse_options()
    out: list[list[str]] = []
    for option in options._optparse._get_all_options():
        kind = optparse_type(option)
        if kind is not None:
            out.extend([flag, kind] for flag in option._short_opts + option._long_opts)
    return options, out


class Recorder:
    """Credit each option added to ``parser`` to the innermost wrapped function that added it."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.groups: list[dict[str, Any]] = []
        self.stack: list[dict[str, Any]] = []
        self.seen: set[int] = set()

    def _take(self) -> list[list[str]]:
        new = []
        for action in self.parser._actions:
            if id(action) in self.seen:
                continue
            self.seen.add(id(action))
            kind = argparse_type(action)
            if kind is not None:
                new.extend([flag, kind] for flag in action.option_strings)
        return new

    def call(self, label: str, func: Any, *args: Any) -> Any:
        if self.stack:
            self.stack[-1]["options"].extend(self._take())
        group: dict[str, Any] = {"label": label, "options": []}
        self.groups.append(group)
        self.stack.append(group)
        try:
            return func(*args)
        finally:
            group["options"].extend(self._take())
            self.stack.pop()

    def wrap(self, module: Any, name: str, label: str) -> None:
        original = getattr(module, name)

        def wrapped(*args: Any) -> Any:
            return self.call(label, original, *args)

        setattr(module, name, wrapped)


def script_options(configs: str, protocol: str) -> list[dict[str, Any]]:
    for path in (configs, os.path.join(configs, "example", "gpufs")):
        sys.path.insert(0, path)
    import runfs  # the template imports these the same way (gpufs first on sys.path)
    from amd import AmdGPUOptions
    from common import GPUTLBOptions, Options
    from ruby import Ruby

    parser = argparse.ArgumentParser(description="layerlab option reading")
    rec = Recorder(parser)
    rec._take()  # -h/--help: not an option of any gem5 function
    network = sys.modules.get("network.Network")
    if network is not None:
        rec.wrap(network, "define_options", "Network.define_options (via Ruby.define_options)")
    try:
        proto = importlib.import_module(f"ruby.{protocol}")
    except ImportError:
        proto = None
    if proto is not None and hasattr(proto, "define_options"):
        rec.wrap(proto, "define_options", f"{protocol}.define_options (via Ruby.define_options)")
    rec.call("runfs.addRunFSOptions", runfs.addRunFSOptions, parser)
    rec.call("Options.addCommonOptions", Options.addCommonOptions, parser)
    rec.call("Ruby.define_options", Ruby.define_options, parser)
    rec.call("AmdGPUOptions.addAmdGPUOptions", AmdGPUOptions.addAmdGPUOptions, parser)
    rec.call("GPUTLBOptions.tlb_options", GPUTLBOptions.tlb_options, parser)
    leftover = rec._take()
    if leftover:
        rec.groups.append({"label": "(outside the gem5 option functions)", "options": leftover})
    return rec.groups


def run(request: dict[str, Any]) -> dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))
    child = _load("_layerlab_preflight_child", os.path.join(here, "child.py"))
    standin = child._load_standin(request["standin"])
    standin.install(request["version"])
    sys.path[:] = [request["python_dir"]] + [p for p in sys.path if p and os.path.abspath(p) != here]

    import m5
    import m5.internal.params
    import m5.objects
    import m5.params

    for name, enum in m5.params.allEnums.items():
        setattr(m5.internal.params, f"enum_{name}", standin.enum_standin(name, list(enum.vals)))
    import m5.main
    from m5.defines import buildEnv

    gem5_main = sys.modules["m5.main"]  # the attribute m5.main is the function main()
    m5.options, found = gem5_options(gem5_main)
    groups = script_options(request["configs"], str(buildEnv["PROTOCOL"]))
    return {"ok": True, "gem5_options": found, "script_groups": groups}


def main() -> int:
    request = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    os.chdir(request["work_dir"])
    try:
        result = run(request)
    except BaseException as exc:  # SystemExit from a config included: report, never hang
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    tmp = Path(request["result"] + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, request["result"])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit hooks or teardown against the stand-in (as child.py)


if __name__ == "__main__":
    main()
