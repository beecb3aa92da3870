"""The backend interface: what the conductor asks of any place a run can execute."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Poll:
    """A run's state as its backend sees it: ``running``, or ``exited`` with a code (None: unknown)."""

    state: str  # "running" | "exited" | "lost"
    exit_code: int | None = None
    timed_out: bool = False


class Backend(Protocol):
    name: str

    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        """Start the run of ``run_dir`` (its run.sh); return a handle the backend can find it by."""
        ...

    def poll(self, handle: str) -> Poll: ...

    def cancel(self, handle: str) -> None:
        """Stop the run and everything it started; idempotent."""
        ...

    def fetch(self, handle: str, run_dir: Path) -> None:
        """Bring the run's outputs into ``run_dir`` (no-op where the backend writes there)."""
        ...

    def host(self) -> str: ...
