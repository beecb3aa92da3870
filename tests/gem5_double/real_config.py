"""Real ``config.ini`` / ``config.json`` for the gem5 TEST DOUBLE, taken from a preflight.

The double (``fake_gem5.py``) fakes gem5's objects, so a config.ini it synthesised itself could
drift from gem5's real object tree. Instead, at ``m5.instantiate()`` (where real gem5 writes
its config), it asks this module for the config real gem5 would write for the same run:

1. the script's profile (``# layerlab-profile: v24.0``) names a reference gem5 source tree
   (``foundation.gem5_names.GEM5_VERSIONS[profile].reference_tree``) under
   ``$LAYERLAB_GEM5_SRC_DIR`` (default ``<repo>/../shared/gem5_src``);
2. a temporary copy of the run directory (symlinks to its files, plus a ``command.json`` whose
   argv is the double's own argv with ``--path`` pointed at the REAL tree's ``configs/``) is
   preflighted against that tree (``gem5_configs.preflight``: the rendered script runs on the
   tree's own Python up to the C++ boundary; that writes config.ini/config.json exactly as
   ``m5.instantiate()`` does);
3. the two files are cached under ``$LAYERLAB_CACHE_DIR/gem5_double_config/<key>/`` with the
   run's host paths (run directory, ``--kernel``/``--disk-image``/... values) replaced by
   placeholders. The key hashes the profile, style, script text without its ``run_id`` line,
   the script options without host-path values, the tree and the preflight's own sources, so
   a second run of the same machine costs no preflight at all.

The preflight needs the repository's Python environment (``gem5_configs`` imports pandas), which
the double itself (standard library only) may not have; so it runs in a helper process: this
file run as a script, by ``$LAYERLAB_GEM5_DOUBLE_PYTHON``, the double's own interpreter or
``<repo>/.venv/bin/python``, whichever first imports ``gem5_configs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE_SCHEMA = "layerlab-gem5-double-config/1"
GEM5_SRC_ENV = "LAYERLAB_GEM5_SRC_DIR"
PYTHON_ENV = "LAYERLAB_GEM5_DOUBLE_PYTHON"
#: Script options that name host paths (``gem5_configs.command.PATH_OPTIONS``; a test keeps them equal).
PATH_OPTIONS = ("--kernel", "--disk-image", "--second-disk", "--checkpoint-dir", "--restore-dir")
RUN_DIR_MARK = "@@gem5-double:run-dir@@"
NO_IMPORT = 3  # the helper's exit status when its interpreter cannot import gem5_configs
_RUN_ID_LINE = re.compile(r"""^\s*['"]run_id['"]\s*:\s*['"][^'"\n]*['"],?[ \t]*\n""", re.M)


class Rejected(Exception):
    """Real gem5's Python rejects the rendered config (the preflight found something)."""

    def __init__(self, tree: Path, findings: list[str]) -> None:
        super().__init__(f"real gem5 ({tree.name}) rejects this config")
        self.tree, self.findings = tree, findings


class Unavailable(Exception):
    """A real tree is there, but the preflight could not be run (no usable Python, a crash)."""


@dataclass
class RealConfig:
    """The config files of one run, as real gem5 writes them, and where they came from."""

    ini: bytes
    json: bytes | None
    tree: Path
    key: str
    cache_hit: bool
    elapsed_s: float
    details: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ the tree
def gem5_src_dir() -> Path:
    return Path(os.environ.get(GEM5_SRC_ENV) or REPO.parent / "shared" / "gem5_src")


def reference_tree_name(profile: str | None) -> str | None:
    """``v24.0`` → ``v24.0.0.1`` (foundation.gem5_names); None for an unknown profile."""
    if not profile:
        return None
    added = str(REPO) not in sys.path
    if added:
        sys.path.insert(0, str(REPO))
    try:
        from foundation.gem5_names import GEM5_VERSIONS  # standard library only
    finally:
        if added:
            sys.path.remove(str(REPO))
    facts = GEM5_VERSIONS.get(profile)
    return facts.reference_tree if facts else None


def find_tree(profile: str | None) -> Path | None:
    """The real gem5 source tree of ``profile``, or None where it is not on this host."""
    name = reference_tree_name(profile)
    if name is None:
        return None
    tree = gem5_src_dir() / name
    if (tree / "configs").is_dir() and (tree / "src" / "python" / "m5").is_dir():
        return tree.resolve()
    return None


# ------------------------------------------------------------------------------ host paths, key
def host_paths(script_args: list[str]) -> tuple[list[str], list[str]]:
    """(script options with absolute host-path values as ``<host path i>``, the distinct values).

    ``i`` numbers distinct values, so two options naming one file stay one placeholder.
    """
    canon: list[str] = []
    values: list[str] = []

    def mark(value: str) -> str:
        if not value.startswith("/"):
            return value  # relative: the same on every host, part of the key as is
        if value not in values:
            values.append(value)
        return f"<host path {values.index(value)}>"

    i = 0
    while i < len(script_args):
        arg = script_args[i]
        name, eq, value = arg.partition("=")
        if name in PATH_OPTIONS and eq:
            canon.append(f"{name}={mark(value)}")
        elif arg in PATH_OPTIONS and i + 1 < len(script_args):
            canon += [arg, mark(script_args[i + 1])]
            i += 1
        else:
            canon.append(arg)
        i += 1
    return canon, values


def _digest_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()


def cache_key(
    profile: str | None, style: str, script: str, script_text: str, options: list[str], tree: Path
) -> str:
    preflight_src = sorted((REPO / "gem5_configs" / "preflight").glob("*.py"))
    payload = {
        "schema": CACHE_SCHEMA,
        "profile": profile,
        "style": style,
        "script": Path(script).name,
        "text": _RUN_ID_LINE.sub("", script_text),
        "options": options,
        "tree": str(tree),
        "tree_version": _digest_files([tree / "src" / "base" / "version.cc"]),
        "preflight": _digest_files(preflight_src),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def cache_dir() -> Path:
    base = os.environ.get("LAYERLAB_CACHE_DIR") or str(Path.home() / ".cache" / "layerlab")
    return Path(base) / "gem5_double_config"


def _marks(run_dir: Path, values: list[str], as_json: bool) -> list[tuple[str, str]]:
    """(placeholder, text as it appears in the file) for the run directory and each host path."""
    pairs = [(RUN_DIR_MARK, str(run_dir))] + [
        (f"@@gem5-double:host-path-{i}@@", v) for i, v in enumerate(values)
    ]
    if as_json:
        pairs = [(mark, json.dumps(value)[1:-1]) for mark, value in pairs]
    return pairs


def to_template(data: bytes, run_dir: Path, values: list[str], as_json: bool) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    for mark, value in sorted(_marks(run_dir, values, as_json), key=lambda p: -len(p[1])):
        text = text.replace(value, mark)
    return text.encode("utf-8", "surrogateescape")


def from_template(data: bytes, run_dir: Path, values: list[str], as_json: bool) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    for mark, value in _marks(run_dir, values, as_json):
        text = text.replace(mark, value)
    return text.encode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------ the preflight
def _pythons() -> list[str]:
    out: list[str] = []
    for candidate in (os.environ.get(PYTHON_ENV), sys.executable, str(REPO / ".venv" / "bin" / "python")):
        if candidate and candidate not in out and Path(candidate).exists():
            out.append(candidate)
    return out


def _stage_run_dir(run_dir: Path, stage: Path, argv: list[str], style: str) -> None:
    """``stage``: the run directory's entries as symlinks, and a command.json with ``argv``."""
    for entry in run_dir.iterdir():
        if entry.name not in ("command.json", "preflight"):
            (stage / entry.name).symlink_to(entry)
    command = {"argv": argv, "style": style, "note": "gem5 test double: preflight of its own argv"}
    (stage / "command.json").write_text(json.dumps(command, indent=1) + "\n", encoding="utf-8")


def run_preflight(
    run_dir: Path, argv: list[str], style: str, tree: Path, timeout_s: float = 300
) -> tuple[bytes, bytes | None, Path, dict[str, Any]]:
    """Preflight ``argv`` (a gem5 argv, argv[0] the binary) from a staged copy of ``run_dir``.

    Returns (config.ini bytes, config.json bytes or None, the staged run dir's resolved path,
    the helper's result). Raises Rejected or Unavailable.
    """
    with tempfile.TemporaryDirectory(prefix="gem5-double-preflight-") as tmp:
        stage = Path(tmp).resolve() / "run"
        stage.mkdir()
        _stage_run_dir(run_dir, stage, argv, style)
        out = Path(tmp).resolve() / "out"
        request = Path(tmp) / "request.json"
        result_path = Path(tmp) / "result.json"
        request.write_text(
            json.dumps(
                {
                    "run_dir": str(stage),
                    "gem5_src": str(tree),
                    "style": style,
                    "out_dir": str(out),
                    "timeout_s": timeout_s,
                    "result": str(result_path),
                }
            ),
            encoding="utf-8",
        )
        tried: list[str] = []
        for python in _pythons():
            done = subprocess.run(
                [python, str(Path(__file__).resolve()), str(request)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=tmp,
                timeout=timeout_s + 60,
                check=False,
            )
            if done.returncode == NO_IMPORT:
                tried.append(f"{python}: {done.stderr.strip().splitlines()[-1:]}")
                continue
            if done.returncode != 0 or not result_path.is_file():
                tail = (done.stdout + done.stderr).strip()[-2000:]
                raise Unavailable(f"preflight helper ({python}) failed with status {done.returncode}: {tail}")
            result = json.loads(result_path.read_text(encoding="utf-8"))
            if not result["ok"]:
                raise Rejected(tree, result["findings"] or ["the preflight did not reach the C++ boundary"])
            ini = Path(result["config_ini"]).read_bytes()
            js = Path(result["config_json"]).read_bytes() if result.get("config_json") else None
            return ini, js, stage, result
        raise Unavailable(
            "no Python here imports gem5_configs (set "
            f"{PYTHON_ENV} to the repository's environment); tried: {'; '.join(tried) or 'none'}"
        )


def real_config(
    gem5_options: list[str],
    script: str,
    script_args: list[str],
    script_text: str,
    run_dir: Path,
    profile: str | None,
    style: str,
    tree: Path,
) -> RealConfig:
    """The config.ini/config.json real gem5 writes for this run: from the cache, else a preflight.

    ``gem5_options`` are the double's own gem5 options (``--path`` is replaced by the real tree's
    ``configs/``); ``run_dir`` is the double's working directory.
    """
    start = time.perf_counter()
    run_dir = run_dir.resolve()
    options, values = host_paths(script_args)
    key = cache_key(profile, style, script, script_text, options, tree)
    entry = cache_dir() / key
    details: dict[str, Any] = {}
    hit = (entry / "config.ini").is_file()
    if not hit:
        kept, skip = [], False
        for arg in gem5_options:
            if skip:
                skip = False
            elif arg in ("-p", "--path"):
                skip = True
            elif not arg.startswith(("--path=", "-p=")):
                kept.append(arg)
        argv = ["gem5.opt", f"--path={tree / 'configs'}", *kept, script, *script_args]
        reused = _preflight_beside(run_dir, argv, tree)
        if reused is not None:  # `layerlab preflight` already ran this very argv here
            ini, js = reused
            stage, details = run_dir, {"reused": str(run_dir / "preflight")}
        else:
            ini, js, stage, details = run_preflight(run_dir, argv, style, tree)
        _store(entry, to_template(ini, stage, values, False), js and to_template(js, stage, values, True))
    ini_t = (entry / "config.ini").read_bytes()
    js_t = (entry / "config.json").read_bytes() if (entry / "config.json").is_file() else None
    return RealConfig(
        ini=from_template(ini_t, run_dir, values, False),
        json=from_template(js_t, run_dir, values, True) if js_t is not None else None,
        tree=tree,
        key=key,
        cache_hit=hit,
        elapsed_s=time.perf_counter() - start,
        details=details,
    )


def _preflight_beside(run_dir: Path, argv: list[str], tree: Path) -> tuple[bytes, bytes | None] | None:
    """The config files of a clean preflight of the same argv and tree in ``run_dir/preflight``."""
    folder = run_dir / "preflight"
    try:
        report = json.loads((folder / "preflight.json").read_text(encoding="utf-8"))
        same = report.get("ok") and [str(a) for a in report.get("argv", [])][1:] == argv[1:]
        if not same or Path(report.get("gem5_src", "")).resolve() != tree.resolve():
            return None
        ini = (folder / "config.ini").read_bytes()
    except (OSError, ValueError):
        return None
    js = (folder / "config.json").read_bytes() if (folder / "config.json").is_file() else None
    return ini, js


def _store(entry: Path, ini: bytes, js: bytes | None) -> None:
    """Write a cache entry atomically (a folder renamed into place; a racing writer's copy wins)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    (tmp / "config.ini").write_bytes(ini)
    if js is not None:
        (tmp / "config.json").write_bytes(js)
    try:
        os.replace(tmp, entry)
    except OSError:  # another run stored the same entry first
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ helper process
def _helper(request_path: str) -> int:
    """Run one preflight for the double (needs the repository's Python environment)."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    sys.path.insert(0, str(REPO))
    try:
        from foundation.errors import InputError
        from gem5_configs.preflight import preflight
    except ImportError as exc:
        print(f"cannot import gem5_configs.preflight: {exc}", file=sys.stderr)
        return NO_IMPORT
    try:
        res = preflight(
            request["run_dir"],
            request["gem5_src"],
            style=request["style"],
            out_dir=request["out_dir"],
            timeout_s=request["timeout_s"],
        )
    except InputError as exc:
        result: dict[str, Any] = {"ok": False, "findings": [f"preflight input: {exc}"]}
    else:
        result = {
            "ok": res.ok,
            "findings": [str(f) for f in res.findings],
            "config_ini": str(res.config_ini) if res.config_ini else None,
            "config_json": str(res.config_json) if res.config_json else None,
            "gem5_version": res.gem5_version,
            "sim_objects": res.sim_objects,
            "elapsed_s": round(res.elapsed_s, 3),
            "build_s": round(res.build_s, 3),
        }
        if res.ok and not res.config_ini:
            result.update(ok=False, findings=["the preflight wrote no config.ini"])
    Path(request["result"]).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1]))
