"""The option tables of a gem5 release, read from its real tree's Python (not typed by hand).

``profiles/<name>.yaml`` carries two tables the command builder trusts: ``gem5_options`` (the
gem5 binary's own options, ``src/python/m5/main.py``) and ``script_options`` (every option the
classic GPU-FS script's parser accepts). ``option_tables(gem5_src)`` computes both by running, in
a fresh child interpreter with the tree's built Python and the ``_m5`` stand-in (the preflight's
``ensure_built`` cache and set-up), the tree's ``m5.main.parse_options`` and an argparse parser
built exactly as ``templates/gpufs_classic.py.j2`` builds it. Each option string (short and
long) is a key; the value is its ``profiles.OPTION_TYPES`` type.

A new release is one command (rewrites the YAML's tables and their provenance comment in place,
atomically; every other field and comment is kept)::

    python -m gem5_configs.preflight.options --write v25 ../shared/gem5_src/v25.0.0.0
    python -m gem5_configs.preflight.options --check v24.1 ../shared/gem5_src/v24.1.0.3
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from foundation import atomic
from foundation.errors import InputError

from .build import ensure_built
from .tree import open_tree

OPTIONS_CHILD = Path(__file__).with_name("options_child.py")
STANDIN = Path(__file__).with_name("standin.py")
PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
TABLES = ("gem5_options", "script_options")
#: First line of the generated part of a profile YAML (it runs from here to the end of the file).
MARKER = "# --- Option tables: generated from a gem5 tree"


@dataclass(frozen=True)
class OptionReading:
    """What one tree's Python defines, in definition order, with where it came from."""

    gem5_src: Path
    version: str  # src/base/version.cc
    ref: str | None  # the tree's GEM5_REF line ("v24.1.0.3 <commit> <date>"), if it has one
    gem5_options: dict[str, str]
    script_groups: list[tuple[str, dict[str, str]]]  # (gem5 function, its options)
    elapsed_s: float
    build_s: float  # building the tree's Python this call (0 on a warm cache)

    @property
    def script_options(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for _label, options in self.script_groups:
            out.update(options)
        return out

    def tables(self) -> dict[str, dict[str, str]]:
        return {"gem5_options": dict(self.gem5_options), "script_options": self.script_options}


def flag_order(flag: str) -> tuple[bool, str, str]:
    """How the tables sort: long options first, then case-insensitively (``-P`` before ``-p``)."""
    return (not flag.startswith("--"), flag.lower(), flag)


def _pairs(rows: list[list[str]], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for flag, kind in rows:
        if flag in out and out[flag] != kind:
            raise InputError(f"{what}: option {flag} defined twice ({out[flag]} and {kind})")
        out[flag] = kind
    return out


def _tree_ref(root: Path) -> str | None:
    try:
        return (root / "GEM5_REF").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def read_options(gem5_src: str | os.PathLike[str], timeout_s: float = 300) -> OptionReading:
    """Run the option-reading child against ``gem5_src``; InputError if the tree cannot be read."""
    start = time.perf_counter()
    tree = open_tree(gem5_src)
    built = ensure_built(tree)
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(var, None)
    env["PYTHONPYCACHEPREFIX"] = str(built.folder.parent / "pycache")  # never next to the tree
    env["PYTHONUNBUFFERED"] = "1"
    with tempfile.TemporaryDirectory(prefix="layerlab-options-") as tmp:
        work = Path(tmp)
        request = {
            "python_dir": str(built.python_dir),
            "standin": str(STANDIN),
            "version": tree.version,
            "configs": str(tree.configs),
            "work_dir": str(work),
            "result": str(work / "result.json"),
        }
        (work / "request.json").write_text(json.dumps(request, indent=1), encoding="utf-8")
        try:
            proc = subprocess.run(
                [sys.executable, "-X", "utf8", str(OPTIONS_CHILD), str(work / "request.json")],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                cwd=str(work),
                env=env,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InputError(f"{tree.root}: reading the option tables took over {timeout_s:g} s") from None
        try:
            raw: dict[str, Any] = json.loads((work / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
            raise InputError(
                f"{tree.root}: the option-reading child left no result (exit {proc.returncode}): {tail}"
            ) from None
    if not raw.get("ok"):
        raise InputError(
            f"{tree.root}: reading the option tables failed: {raw.get('error')}\n{raw.get('traceback', '')}"
        )
    groups = [(g["label"], _pairs(g["options"], f"{tree.root} {g['label']}")) for g in raw["script_groups"]]
    _pairs([[f, k] for _label, opts in groups for f, k in opts.items()], f"{tree.root} script options")
    return OptionReading(
        gem5_src=tree.root,
        version=tree.version,
        ref=_tree_ref(tree.root),
        gem5_options=_pairs(raw["gem5_options"], f"{tree.root} m5.main"),
        script_groups=[(label, opts) for label, opts in groups if opts],
        elapsed_s=time.perf_counter() - start,
        build_s=built.build_s if built.built_now else 0.0,
    )


def option_tables(gem5_src: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``{"gem5_options": {flag: type}, "script_options": {flag: type}}`` of a real gem5 tree."""
    return read_options(gem5_src).tables()


# ---------------------------------------------------------------------------------------------
# The profile YAML's generated part
# ---------------------------------------------------------------------------------------------


def _provenance(reading: OptionReading, profile: str) -> list[str]:
    from foundation.gem5_names import GEM5_VERSIONS

    name = reading.gem5_src.name
    parts = (reading.ref or "").split()
    if len(parts) >= 3:
        source = f"{parts[0]} (commit {parts[1]}, {parts[2][:10]})"
    else:
        source = f"{name} (version.cc {reading.version}; no GEM5_REF file)"
    lines = [
        f"{MARKER}; do not edit by hand, regenerate with",
        f"#   python -m gem5_configs.preflight.options --write {profile} <gem5_src>/{name}",
        f"# Read from gem5_src/{name} = {source}",
        "# by running the tree's own Python: gem5_options is the parser of m5.main.parse_options(),",
        "# script_options the argparse parser the classic template builds (runfs, Options, Ruby,",
        "# AmdGPUOptions, GPUTLBOptions).",
    ]
    facts = GEM5_VERSIONS.get(profile)
    if facts is not None and facts.reference_is_stand_in:
        lines += [
            f"# {name} is a develop tree standing in for {profile} (no {profile} release tree",
            "# here): regenerate from the release tree when there is one.",
        ]
    return lines


def tables_text(reading: OptionReading, profile: str) -> str:
    """The generated part of a profile YAML: provenance comment, then both tables."""
    lines = _provenance(reading, profile)
    lines.append(
        "gem5_options:  # gem5 binary options (src/python/m5/main.py); they go before the config script"
    )
    lines += [
        f"  {json.dumps(f)}: {reading.gem5_options[f]}" for f in sorted(reading.gem5_options, key=flag_order)
    ]
    lines.append(
        "script_options:  # options the config script accepts, by the gem5 function that defines them"
    )
    for label, options in reading.script_groups:
        lines.append(f"  # {label}")
        lines += [f"  {json.dumps(f)}: {options[f]}" for f in sorted(options, key=flag_order)]
    return "\n".join(lines) + "\n"


def rewrite_profile_text(text: str, reading: OptionReading, profile: str, where: str = "profile") -> str:
    """``text`` with its generated part (marker or ``gem5_options:`` to the end) regenerated."""
    lines = text.splitlines(keepends=True)
    cut = next(
        (i for i, ln in enumerate(lines) if ln.startswith(MARKER) or ln.startswith("gem5_options:")), None
    )
    if cut is None:
        raise InputError(f"{where}: no gem5_options table to rewrite")
    old = yaml.safe_load(text) or {}
    new_text = "".join(lines[:cut]) + tables_text(reading, profile)
    new = yaml.safe_load(new_text)
    kept_old = {k: v for k, v in old.items() if k not in TABLES}
    kept_new = {k: v for k, v in new.items() if k not in TABLES}
    if kept_old != kept_new:
        lost = sorted(set(kept_old) ^ set(kept_new))
        raise InputError(f"{where}: fields after the option tables would be lost ({', '.join(lost)})")
    if {k: new[k] for k in TABLES} != reading.tables():
        raise InputError(f"{where}: the regenerated tables do not read back as generated")
    return new_text


def profile_path(profile: str) -> Path:
    from foundation.gem5_names import gem5_profile

    path = PROFILES_DIR / f"{gem5_profile(profile)}.yaml"
    if not path.is_file():
        raise InputError(f"{path}: no such profile")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gem5_configs.preflight.options",
        description="Read a gem5 tree's option tables; --write/--check a profile YAML's tables against it.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite PROFILE's tables in place (atomic)")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 and show a diff if PROFILE's tables differ"
    )
    parser.add_argument("profile", metavar="PROFILE", help="v24.0, v24.1, v25 (any release spelling)")
    parser.add_argument("gem5_src", metavar="TREE", help="a gem5 source tree (Python side)")
    parser.add_argument(
        "--any-tree", action="store_true", help="allow a tree whose version.cc belongs to another profile"
    )
    args = parser.parse_args(argv)
    try:
        from foundation.gem5_names import gem5_profile, profile_of_tree_version

        profile = gem5_profile(args.profile)
        path = profile_path(profile)
        tree_profile = profile_of_tree_version(open_tree(args.gem5_src).version)
        if tree_profile != profile and not args.any_tree:
            raise InputError(
                f"{args.gem5_src} is a {tree_profile} tree, not {profile} (--any-tree to use it anyway)"
            )
        reading = read_options(args.gem5_src)
        old = path.read_text(encoding="utf-8")
        new = rewrite_profile_text(old, reading, profile, str(path))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    took = f"{reading.elapsed_s:.1f} s (build {reading.build_s:.1f} s)"
    counts = f"{len(reading.gem5_options)} gem5 options, {len(reading.script_options)} script options"
    if args.write:
        if new != old:
            atomic.write_text(path, new)
        print(f"{path}: {'rewritten' if new != old else 'unchanged'}; {counts}; {took}")
        return 0
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path), "regenerated"))
    if args.check:
        if diff:
            sys.stdout.write(diff)
            return 1
        print(f"{path}: tables match {reading.gem5_src.name}; {counts}; {took}")
        return 0
    sys.stdout.write(tables_text(reading, profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
