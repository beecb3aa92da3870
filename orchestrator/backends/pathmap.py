"""The instantiation of a rendered run on another host: the same argv with that host's paths.

A run's ``command.json`` names host paths in a few places only: the gem5 binary (``argv[0]``),
gem5's ``--path`` (the tree's ``configs/``) and the script's path options (kernel, disks,
checkpoint and restore folders). Everything else is relative to the run directory, so the
simulation files travel unchanged and the ``run_id`` stays the same; a backend that runs on
another host (ssh) or through a scheduler whose nodes mount things elsewhere (slurm) maps just
these. A mapping is a dict of path prefixes, this host's → the other host's, matched on whole
path components, longest first (``/data/images`` → ``/scratch/me/images``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from foundation.errors import InputError
from gem5_configs.command import PATH_OPTIONS

#: argv options whose value is a host path (besides argv[0], the binary).
HOST_PATH_FLAGS = (*PATH_OPTIONS, "--path")


class PathMap:
    """Host path prefixes → the same things' paths on another host."""

    def __init__(
        self, mapping: dict[str, str] | None = None, where: str = "backend.settings.path_map"
    ) -> None:
        self.pairs: list[tuple[PurePosixPath, PurePosixPath]] = []
        for local, remote in (mapping or {}).items():
            if not (isinstance(local, str) and isinstance(remote, str)):
                raise InputError(f"{where}: give 'this-host prefix: other-host prefix' strings")
            if not (local.startswith("/") and remote.startswith("/")):
                raise InputError(f"{where}.{local}: both prefixes must be absolute paths")
            self.pairs.append((PurePosixPath(local), PurePosixPath(remote)))
        self.pairs.sort(key=lambda pair: len(pair[0].parts), reverse=True)

    def map(self, path: str) -> str | None:
        """The other host's path for ``path``, or None when no prefix covers it."""
        pure = PurePosixPath(path)
        for local, remote in self.pairs:
            if pure == local or local in pure.parents:
                return str(remote / pure.relative_to(local))
        return None

    def __bool__(self) -> bool:
        return bool(self.pairs)


def read_command(run_dir: Path) -> dict[str, Any]:
    from foundation.rundir import COMMAND_FILE

    path = run_dir / COMMAND_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the run's command ({exc}); re-render the run") from None


def host_paths(argv: list[str]) -> list[tuple[int, str, str]]:
    """(argv index, flag, path) of every host path in ``argv``; the binary's flag is ``""``."""
    found = [(0, "", argv[0])] if argv and argv[0].startswith("/") else []
    for index, item in enumerate(argv[1:], start=1):
        flag, sep, value = item.partition("=")
        if sep and flag in HOST_PATH_FLAGS and value.startswith("/"):
            found.append((index, flag, value))
    return found


def instantiate(argv: list[str], resolve: Callable[[str, str], str]) -> list[str]:
    """``argv`` with each host path replaced by ``resolve(flag, path)`` (flag ``""``: the binary)."""
    out = list(argv)
    for index, flag, path in host_paths(argv):
        new = resolve(flag, path)
        out[index] = new if index == 0 else f"{flag}={new}"
    return out


def run_script(argv: list[str], run_id: str, note: str) -> str:
    """A ``run.sh`` for another host: ``cd`` to its own folder, then exec gem5 (no shell words)."""
    return "\n".join(
        [
            "#!/bin/sh",
            f"# layerlab run {run_id}: {note} (see command.json for this host's instantiation).",
            "set -e",
            'cd "$(dirname "$0")"',
            "exec " + shlex.join(argv),
            "",
        ]
    )
