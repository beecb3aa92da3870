"""Where runs execute. One small interface (``Backend``: submit, poll, cancel, fetch) and one
module per kind; the conductor knows nothing else about a backend. This wave: ``local``."""

from __future__ import annotations

from orchestrator.backends.base import Backend, Poll


def make_backend(kind: str, settings: dict | None = None) -> Backend:
    from foundation.errors import InputError

    if kind == "local":
        from orchestrator.backends.local import LocalBackend

        return LocalBackend(**(settings or {}))
    raise InputError(
        f"backend.kind: {kind!r} is not available yet (this release runs 'local'; docker, ssh and slurm follow)"
    )


__all__ = ["Backend", "Poll", "make_backend"]
