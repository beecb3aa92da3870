"""The backend interface: what the conductor asks of any place a run can execute.

A backend gets a rendered run directory on this host (``run.sh``, ``command.json`` and the
simulation files) and makes the run happen somewhere: here (local), in a container (docker), on
another host (ssh) or through a batch scheduler (slurm). The instantiation is the backend's to
make: a remote host gets paths of its own, a container gets mounts. Whatever a run writes must
be back under the run directory on this host once ``fetch`` returns, so that the conductor reads
every run's outputs the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Poll:
    """A run's state as its backend sees it.

    ``state``: ``running``; ``exited`` with a code (None: unknown); or ``lost`` (the backend no
    longer knows the run: a recycled pid, a vanished container or job). ``detail`` is the
    backend's own structured word on how it ended (``slurm: CANCELLED by 0``, ``docker: OOM
    killed``); the failure digest puts it before any log pattern.
    """

    state: str  # "running" | "exited" | "lost"
    exit_code: int | None = None
    timed_out: bool = False
    detail: str | None = None


class Backend(Protocol):
    name: str

    def submit(self, run_dir: Path, env: dict[str, str], timeout_s: float) -> str:
        """Start the run of ``run_dir``; return a handle the backend can find it by later.

        ``env`` holds only the experiment's own variables (``gem5.env``), never this process's
        whole environment: what a remote host or a container needs is the backend's to add.
        ``timeout_s`` is the run's deadline, enforced by the backend (the whole run ends).
        """
        ...

    def poll(self, handle: str) -> Poll: ...

    def cancel(self, handle: str) -> None:
        """Stop the run and everything it started; idempotent."""
        ...

    def fetch(self, handle: str, run_dir: Path) -> None:
        """Bring the run's outputs into ``run_dir`` (no-op where the backend writes there).

        Called while the run is going too (for live progress: at least the events side-file),
        and once after it ended, before its outputs are read.
        """
        ...

    def host(self) -> str: ...

    # Optional, looked up with getattr by the conductor:
    #   adopt(handle, run_dir)  -> None   know a run an earlier conductor started
    #   capacity()              -> (cpus, mem_gib) | None   what runs at once may use (admission)
    #   stage(run_dir)          -> None   make what submit needs ahead, while another run goes
    #   close()                 -> None   release connections and threads at the end
