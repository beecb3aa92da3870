"""Where runs execute. One small interface (``Backend``: submit, poll, cancel, fetch) and one
module per kind; the conductor knows nothing else about a backend.

Each backend takes its settings (the spec's ``backend.settings``) as keyword arguments, plus
``workspace`` (the experiment's workspace folder, where it may keep state) and ``resources``
(``backend.cpus_per_run``, ``backend.mem_gib_per_run``), and refuses unknown
or malformed settings with an ``InputError`` naming ``backend.settings.<key>``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from orchestrator.backends.base import Backend, Poll

#: kind → (module, class). Imported only when used: the docker SDK and fabric are slow to import.
KINDS: dict[str, tuple[str, str]] = {
    "local": ("orchestrator.backends.local", "LocalBackend"),
    "docker": ("orchestrator.backends.docker", "DockerBackend"),
    "ssh": ("orchestrator.backends.ssh", "SshBackend"),
    "slurm": ("orchestrator.backends.slurm", "SlurmBackend"),
}


def make_backend(
    kind: str,
    settings: dict[str, Any] | None = None,
    workspace: Path | None = None,
    resources: tuple[int, float] = (1, 4.0),
) -> Backend:
    """The backend of ``kind`` with the spec's settings; ``workspace`` is where it may keep state;
    ``resources`` is what one run reserves, (CPUs, memory GiB), for a scheduler to ask for."""
    from foundation.errors import InputError

    if kind not in KINDS:
        raise InputError(f"backend.kind: {kind!r} is not one of {', '.join(KINDS)}")
    module_name, class_name = KINDS[kind]
    cls = getattr(importlib.import_module(module_name), class_name)
    options = dict(settings or {})
    for reserved in ("workspace", "resources"):
        if reserved in options:
            raise InputError(f"backend.settings.{reserved}: not a setting (it comes from the experiment)")
    try:
        return cls(workspace=workspace, resources=resources, **options)
    except TypeError as exc:
        # An unknown keyword: name it the way the spec spells it.
        import re

        raise InputError("backend.settings: " + re.sub(r"[\w.]+\.__init__\(\)", kind, str(exc))) from None


__all__ = ["KINDS", "Backend", "Poll", "make_backend"]
