"""A gem5 source tree as the preflight sees it: where it is, which version, what it hashes to.

The preflight runs a rendered config against the *Python* half of a real gem5 tree, so the tree
must have that half: ``src/python/m5`` (the SimObject machinery), ``src/base/version.cc`` (the
only place that names the release), ``src/mem/slicc`` with ``ext/ply`` and ``build_tools`` (to
generate the Ruby protocol controllers) and ``configs/example/gpufs/runfs.py`` (what every
rendered GPU-FS script imports). Anything less is bad input, not a finding.

The digest keys the build cache (``build.py``). It covers exactly what the build reads, so a
changed SConscript or ``.sm`` file gives a new cache entry, while ``configs/`` (read live by the
script on every run) stays out of it. Hashing those ~10 MB costs well under a second; a small
stat-keyed memo next to the cache makes repeat calls nearly free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from foundation import atomic
from foundation.errors import InputError

#: Paths (relative to the tree root) that must exist for the tree to be usable at all.
REQUIRED = (
    "src/base/version.cc",
    "src/python/m5/__init__.py",
    "src/python/SConscript",
    "src/mem/slicc/parser.py",
    "src/mem/ruby/protocol/GPU_VIPER.slicc",
    "ext/ply",
    "build_tools/code_formatter.py",
)
RUNFS = "configs/example/gpufs/runfs.py"

#: The parts of the tree the build products are made from (the digest covers these).
DIGEST_ROOTS = ("src", "build_tools", "ext/ply")
DIGEST_SUFFIXES = (".py", ".sm", ".slicc", ".cc", "SConscript", "SConsopts")

_VERSION = re.compile(r'gem5Version\s*=\s*"([^"]+)"')


@dataclass(frozen=True)
class Gem5Tree:
    """A validated gem5 source tree (read-only: nothing here ever writes into it)."""

    root: Path
    version: str  # as src/base/version.cc spells it: "24.1.0.3", "DEVELOP-FOR-25.0"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def configs(self) -> Path:
        return self.root / "configs"


def tree_version(gem5_src: str | os.PathLike[str]) -> str:
    """The version string in ``src/base/version.cc``; InputError when the file or string is missing."""
    path = Path(gem5_src) / "src" / "base" / "version.cc"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the gem5 version ({exc.strerror or exc})") from exc
    match = _VERSION.search(text)
    if not match:
        raise InputError(f"{path}: no gem5Version string found; is this a gem5 source tree?")
    return match.group(1)


def open_tree(gem5_src: str | os.PathLike[str]) -> Gem5Tree:
    """Check that ``gem5_src`` is a gem5 tree the preflight can use, and read its version."""
    root = Path(gem5_src).expanduser()
    if not root.is_dir():
        raise InputError(f"--gem5-src {root}: no such directory")
    root = root.resolve()
    missing = [rel for rel in REQUIRED if not (root / rel).exists()]
    if missing:
        raise InputError(
            f"--gem5-src {root}: not a gem5 source tree with its Python side (missing {', '.join(missing)})"
        )
    if not (root / RUNFS).is_file():
        raise InputError(f"--gem5-src {root}: no {RUNFS}; this gem5 tree has no GPU full-system configs")
    return Gem5Tree(root=root, version=tree_version(root))


def _digest_files(tree: Gem5Tree) -> list[Path]:
    files: list[Path] = []
    for rel in DIGEST_ROOTS:
        base = tree.root / rel
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            files.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(DIGEST_SUFFIXES))
    return files


def _stat_key(tree: Gem5Tree, files: list[Path]) -> str:
    """Cheap fingerprint of the file listing: path, size and mtime of every digested file."""
    h = hashlib.sha256()
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(tree.root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def tree_digest(tree: Gem5Tree, memo_dir: Path | None = None) -> str:
    """SHA-256 over the relative path and content of every file the build reads.

    ``memo_dir`` (the cache's folder) holds ``digest-memo.json``: stat key -> content digest, so a
    second call on an unchanged tree only stats files. A wrong memo can only come from a file
    changed with its size and mtime kept, which nobody does to a source tree by accident.
    """
    files = _digest_files(tree)
    memo_path = memo_dir / "digest-memo.json" if memo_dir else None
    key = ""
    memo: dict[str, str] = {}
    if memo_path is not None:
        key = f"{tree.root}:{_stat_key(tree, files)}"
        try:
            memo = json.loads(memo_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            memo = {}
        if isinstance(memo.get(key), str):
            return memo[key]
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(tree.root)).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    digest = h.hexdigest()
    if memo_path is not None:
        # Keep the memo small: only entries for this tree's root survive besides the new one.
        kept = {k: v for k, v in memo.items() if not k.startswith(f"{tree.root}:")}
        kept[key] = digest
        with contextlib.suppress(OSError):  # a read-only cache only costs the next call a re-hash
            atomic.write_text(memo_path, json.dumps(kept, indent=1, sort_keys=True))
    return digest
