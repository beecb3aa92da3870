"""Build, once per tree, the importable Python that a compiled gem5 would have embedded.

SCons normally does three things the preflight must redo without a compiler:

1. run SLICC over ``GPU_VIPER.slicc`` to generate the Ruby controller SimObjects
   (``TCP_Controller`` ... on v24.0, ``GPU_VIPER_TCP_Controller`` ... on v24.1+);
2. embed every ``PySource(package, file)`` of ``src/python/SConscript`` under its *package*
   name, which is not always its folder (v24.1+ ``gem5_default_config.py`` is
   ``gem5.gem5_default_config``), and every ``SimObject('X.py', ...)`` of every SConscript
   under ``src/`` as ``m5.objects.X``;
3. generate ``m5/defines.py`` (``buildEnv`` of a VEGA_X86 build) and ``m5/info.py``.

The result lives in ``$LAYERLAB_CACHE_DIR/gem5py/<version>-<digest>/python``. It is built in a
temporary sibling folder and renamed into place, so two preflights racing on a cold cache both
end up with one complete folder and never see a half-written one. SLICC runs in a subprocess
(it calls ``sys.exit`` on a parse error and PLY writes its parser tables next to its module),
on a scratch copy of ``src/mem/slicc`` so the read-only tree is never written.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import InputError

from .tree import Gem5Tree, tree_digest

#: Bump when the layout of a build folder changes, so old cache entries are not reused.
BUILD_SCHEMA = "layerlab-gem5py/2"
PROTOCOL = "GPU_VIPER"
SLICC_RUNNER = Path(__file__).with_name("slicc_runner.py")

#: SConscript tags a VEGA_X86 build compiles; anything tagged otherwise belongs to another ISA
#: or an optional library we do not model (fast models, arm kvm).
ACCEPTED_TAGS = frozenset({"x86 isa", "x86 kvm", "kvm", "isa", "protobuf"})
#: Folders under src/ that a VEGA_X86 build leaves out entirely.
EXCLUDED_DIRS = (
    "systemc",
    "sst",
    "arch/arm",
    "arch/riscv",
    "arch/mips",
    "arch/power",
    "arch/sparc",
    "arch/null",
)
#: SimObject modules that need SystemC/TLM at import time and are irrelevant to GPU-FS.
EXCLUDED_MODULES = frozenset({"DRAMSim2", "DRAMSys"})

#: ``buildEnv`` keys of a VEGA_X86 build that configs read; any other key defaults to False.
BUILD_ENV: dict[str, object] = {
    "USE_X86_ISA": True,
    "BUILD_GPU": True,
    "VEGA_GPU_ISA": True,
    "GCN3_GPU_ISA": False,
    "RUBY": True,
    "PROTOCOL": PROTOCOL,
    f"RUBY_PROTOCOL_{PROTOCOL}": True,
    "USE_KVM": True,
    "KVM_ISA": "x86",
    "TARGET_ISA": "x86",
    "TARGET_GPU_ISA": "vega",
    "HAVE_PERF_ATTR_EXCLUDE_HOST": True,
    "USE_ARM_ISA": False,
    "USE_RISCV_ISA": False,
    "USE_MIPS_ISA": False,
    "USE_POWER_ISA": False,
    "USE_SPARC_ISA": False,
    "USE_NULL_ISA": False,
    "USE_SYSTEMC": False,
    "USE_ARM_FASTMODEL": False,
    "HAVE_PROTOBUF": False,
    "HAVE_HDF5": False,
    "HAVE_PNG": False,
    "HAVE_DRAMSIM": False,
    "HAVE_DRAMSIM3": False,
    "HAVE_DRAMSYS": False,
    "HAVE_TUNTAP": False,
    "USE_EFENCE": False,
    "USE_POSIX_CLOCK": True,
    "USE_FENV": True,
    "USE_PNG": False,
    "SLICC_HTML": False,
    "NUMBER_BITS_PER_SET": 64,
    "BUILD_ISA": True,
    "USE_PYTHON": True,
    "BUILD_TLM": False,
    "USE_TEST_OBJECTS": False,
    "USE_CAPSTONE": False,
    "RUBY_PROTOCOL_CHI": False,
    "PROTOC_GRPC": False,
    "CONF": {},
}


@dataclass(frozen=True)
class BuiltTree:
    """A finished build folder for one tree: ``python/`` goes first on the child's sys.path."""

    folder: Path
    python_dir: Path
    manifest: dict[str, object]
    built_now: bool  # True when this call did the (cold) build
    build_s: float

    @property
    def object_modules(self) -> list[str]:
        return list(self.manifest["object_modules"])  # type: ignore[call-overload]


def cache_root() -> Path:
    """``$LAYERLAB_CACHE_DIR/gem5py`` (``~/.cache/layerlab/gem5py`` when unset)."""
    base = os.environ.get("LAYERLAB_CACHE_DIR") or str(Path.home() / ".cache" / "layerlab")
    return Path(base) / "gem5py"


# ---------------------------------------------------------------------------------------------
# Reading the SConscripts (as data: their calls' literal arguments, never executing them)
# ---------------------------------------------------------------------------------------------


def _env_key(node: ast.expr) -> str | None:
    """``env['X']`` or ``env['CONF']['X']`` -> ``"X"``; anything else -> None."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        inner = node.value
        if isinstance(inner, ast.Name) and inner.id == "env":
            return str(node.slice.value)
        if _env_key(inner) == "CONF":
            return str(node.slice.value)
    return None


def _condition(test: ast.expr) -> bool | None:
    """Evaluate an SConscript ``if`` on build options against BUILD_ENV; None when unknown."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _condition(test.operand)
        return None if inner is None else not inner
    key = _env_key(test)
    if key is None or key not in BUILD_ENV:
        return None
    return bool(BUILD_ENV[key])


def _calls(path: Path, func: str) -> list[ast.Call]:
    """Calls of ``func`` in an SConscript, skipping branches a VEGA_X86 build does not take.

    SConscripts are read as data, never executed: only ``if env['X']:`` / ``if not
    env['CONF']['X']: Return()`` shapes are understood, and any other branch is kept.
    """
    try:
        module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return []
    found: list[ast.Call] = []

    def visit(body: list[ast.stmt]) -> bool:
        """Collect from ``body``; False once an unconditional ``Return()`` ends the file."""
        for stmt in body:
            if isinstance(stmt, ast.If):
                taken = _condition(stmt.test)
                branches = (
                    [stmt.body, stmt.orelse] if taken is None else [stmt.body if taken else stmt.orelse]
                )
                for branch in branches:
                    if not visit(branch) and taken is not None:
                        return False
                continue
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Name)
                and stmt.value.func.id == "Return"
            ):
                return False
            for node in ast.walk(stmt):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == func:
                    found.append(node)
        return True

    visit(module.body)
    return found


def _tags(call: ast.Call) -> set[str]:
    for kw in call.keywords:
        if kw.arg == "tags":
            try:
                value = ast.literal_eval(kw.value)
            except ValueError:
                return {"<dynamic>"}
            return {value} if isinstance(value, str) else {str(v) for v in value}
    return set()


def _wanted(call: ast.Call) -> bool:
    tags = _tags(call)
    return not tags or tags <= ACCEPTED_TAGS


def simobject_sources(tree: Gem5Tree) -> list[Path]:
    """Every ``SimObject('X.py', ...)`` file a VEGA_X86 build embeds as ``m5.objects.X``."""
    found: list[Path] = []
    for sconscript in sorted(tree.src.rglob("SConscript")):
        rel = sconscript.parent.relative_to(tree.src).as_posix()
        if any(rel == d or rel.startswith(d + "/") for d in EXCLUDED_DIRS):
            continue
        for call in _calls(sconscript, "SimObject"):
            if not call.args or not isinstance(call.args[0], ast.Constant) or not _wanted(call):
                continue  # the protocol SConscript's SimObject(f) is SLICC output, handled apart
            source = sconscript.parent / str(call.args[0].value)
            if source.stem not in EXCLUDED_MODULES and source.is_file():
                found.append(source)
    return found


def pysource_map(tree: Gem5Tree) -> list[tuple[str, Path]]:
    """``(module name, file)`` for every ``PySource(package, file)`` in ``src/python/SConscript``."""
    sconscript = tree.src / "python" / "SConscript"
    out: list[tuple[str, Path]] = []
    for call in _calls(sconscript, "PySource"):
        if len(call.args) < 2 or not all(isinstance(a, ast.Constant) for a in call.args[:2]):
            continue
        if not _wanted(call):
            continue
        package, rel = str(call.args[0].value), str(call.args[1].value)
        source = sconscript.parent / rel
        if not source.is_file():
            continue
        parts = [p for p in package.split(".") if p]
        if source.stem != "__init__":
            parts.append(source.stem)
        if parts:
            out.append((".".join(parts), source))
    return out


# ---------------------------------------------------------------------------------------------
# Assembling the folder
# ---------------------------------------------------------------------------------------------


def _place(python_dir: Path, module: str, source: Path, is_package: bool) -> None:
    parts = module.split(".")
    target = (
        python_dir.joinpath(*parts, "__init__.py")
        if is_package
        else python_dir.joinpath(*parts[:-1], parts[-1] + ".py")
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _ensure_packages(python_dir: Path, top: str) -> None:
    """SCons embeds packages even when a level has no ``__init__.py`` of its own; give them one."""
    for dirpath, _dirs, files in os.walk(python_dir / top):
        if "__init__.py" not in files:
            (Path(dirpath) / "__init__.py").write_text("")


def run_slicc(tree: Gem5Tree, out_dir: Path, scratch: Path, timeout_s: float = 300) -> list[str]:
    """Generate the protocol's C++ and ``*_Controller.py`` into ``out_dir``; return the .py names."""
    work = scratch / "slicc-src"
    shutil.copytree(tree.src / "mem" / "slicc", work / "slicc", ignore=shutil.ignore_patterns("__pycache__"))
    request = {
        "tree": str(tree.root),
        "slicc_parent": str(work),
        "protocol": PROTOCOL,
        "out_dir": str(out_dir),
    }
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run(
            [sys.executable, str(SLICC_RUNNER), json.dumps(request)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=str(scratch),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(f"{tree.root}: SLICC on {PROTOCOL} did not finish in {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise InputError(f"{tree.root}: SLICC failed on {PROTOCOL}.slicc: " + " | ".join(tail))
    # v24.1+ writes under <out>/<protocol>/; v24.0 flat. Collect from wherever it went.
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*_Controller.py"))


def _defines_text(tree: Gem5Tree) -> str:
    env = dict(BUILD_ENV)
    env["gem5Version"] = tree.version
    return (
        "# Generated by layerlab preflight: the buildEnv of a VEGA_X86 (GPU_VIPER) build.\n"
        "import collections\n\n"
        f"_KNOWN = {env!r}\n\n"
        "buildEnv = collections.defaultdict(bool, _KNOWN)\n"
    )


def _info_text(tree: Gem5Tree) -> str:
    lines = ["# Generated by layerlab preflight: the tree's top-level texts, as m5.info has them."]
    for name in ("COPYING", "LICENSE", "README.md"):
        path = tree.root / name
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        lines.append(f"{name.split('.')[0]} = {text!r}")
    return "\n".join(lines) + "\n"


def _objects_init(modules: list[str]) -> str:
    """``m5.objects`` as the gem5 binary builds it: import every SimObject module, star-export it.

    The tree's own ``__init__`` walks ``__spec__.loader_state`` (gem5's embedded importer's
    module list), which a plain folder does not have; this one names the same list. A module
    that fails to import is recorded, not fatal: the script then fails where it needs it.
    """
    return (
        "# Generated by layerlab preflight (the tree's m5/objects/__init__.py needs gem5's importer).\n"
        "import importlib as _importlib\n\n"
        f"_MODULES = {modules!r}\n"
        "_preflight_failed = {}\n"
        "for _name in _MODULES:\n"
        "    try:\n"
        "        _mod = _importlib.import_module('m5.objects.' + _name)\n"
        "    except Exception as _exc:  # recorded for the report; the script fails where it matters\n"
        "        _preflight_failed[_name] = f'{type(_exc).__name__}: {_exc}'\n"
        "        continue\n"
        "    _public = getattr(_mod, '__all__', None) or [n for n in vars(_mod) if not n.startswith('_')]\n"
        "    for _attr in _public:\n"
        "        globals()[_attr] = getattr(_mod, _attr)\n"
        "del _name, _attr, _public\n"
    )


def assemble(tree: Gem5Tree, dest: Path, scratch: Path) -> dict[str, object]:
    """Write the whole build folder into ``dest`` (a fresh directory); return its manifest."""
    python_dir = dest / "python"
    python_dir.mkdir(parents=True)
    pysources = pysource_map(tree)
    for module, source in pysources:
        _place(python_dir, module, source, source.name == "__init__.py")
    for top in {m.split(".")[0] for m, _ in pysources}:
        _ensure_packages(python_dir, top)

    objects_dir = python_dir / "m5" / "objects"
    objects_dir.mkdir(parents=True, exist_ok=True)
    modules: list[str] = []
    for source in simobject_sources(tree):
        if source.stem in modules:
            continue  # same basename twice would clash in m5.objects, as in SCons
        shutil.copyfile(source, objects_dir / source.name)
        modules.append(source.stem)

    slicc_out = scratch / "slicc-out"
    slicc_out.mkdir()
    controllers = run_slicc(tree, slicc_out, scratch)
    for rel in controllers:
        src = slicc_out / rel
        shutil.copyfile(src, objects_dir / src.name)
        modules.append(src.stem)

    # Keep the tree's own m5/objects/SimObject.py shim, replace the importer-driven __init__.
    (objects_dir / "__init__.py").write_text(_objects_init(modules))
    (python_dir / "m5" / "defines.py").write_text(_defines_text(tree))
    (python_dir / "m5" / "info.py").write_text(_info_text(tree))
    return {
        "schema": BUILD_SCHEMA,
        "tree": str(tree.root),
        "version": tree.version,
        "pysources": len(pysources),
        "object_modules": modules,
        "controllers": [Path(c).stem for c in controllers],
    }


def ensure_built(tree: Gem5Tree) -> BuiltTree:
    """The tree's build folder from the cache, building it first on a cold cache."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{root}: cannot create the preflight build cache ({exc.strerror or exc})") from exc
    digest = tree_digest(tree, memo_dir=root)
    folder = root / f"{tree.version}-{digest[:16]}"
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("schema") == BUILD_SCHEMA:
            return BuiltTree(folder, folder / "python", manifest, built_now=False, build_s=0.0)
    start = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        scratch = staging / "scratch"
        scratch.mkdir()
        dest = staging / "build"
        manifest = assemble(tree, dest, scratch)
        manifest["digest"] = digest
        manifest["build_s"] = round(time.perf_counter() - start, 3)
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        try:
            os.rename(dest, folder)
        except OSError:
            # Another preflight won the race (or an old, stale folder is in the way).
            if not (folder / "manifest.json").is_file():
                stale = root / f".stale-{folder.name}-{os.getpid()}"
                with contextlib.suppress(OSError):
                    os.rename(folder, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                os.rename(dest, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return BuiltTree(folder, folder / "python", manifest, built_now=True, build_s=time.perf_counter() - start)
