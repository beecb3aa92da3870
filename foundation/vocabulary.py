"""One concept, one name: the words every stage uses for gem5's kernel bookkeeping.

kernel index
    gem5's 0-based counter of *non-blit* kernels (``non_blit_kernel_id`` in the GPU command
    processor). Skipped kernels count; blit kernels do not. ``--skip-until-gpu-kernel`` and
    ``--exit-after-gpu-kernel`` both speak in kernel indices.
task id
    gem5's 0-based ``dynamic_task_id``: every dispatch, blit or not, skipped or not.
blit kernel
    a dispatch whose AQL packet carries a completion signal (gem5's only test). Blits are never
    skipped; they always execute in detail.
dump
    one ``Begin/End Simulation Statistics`` block of ``stats.txt``, numbered from 0 in file order.
window
    ``(skip_until, exit_after)``: kernels ``skip_until .. exit_after`` (inclusive) execute in
    detail; kernels before ``skip_until`` are skipped (not executed); the run stops when kernel
    ``exit_after`` completes. One kernel is simulated with ``skip_until == exit_after``.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation.errors import InputError

#: A ``skip_until`` beyond any real program: every non-blit kernel is skipped (a census run).
SKIP_ALL = 1_000_000_000


@dataclass(frozen=True, order=True)
class Window:
    """Kernel indices ``skip_until .. exit_after`` (inclusive) run in detail; see module doc."""

    skip_until: int
    exit_after: int

    def __post_init__(self) -> None:
        if self.skip_until < 0:
            raise InputError(f"window: skip_until must be >= 0, got {self.skip_until}")
        if self.exit_after < self.skip_until:
            raise InputError(
                f"window: exit_after ({self.exit_after}) is before skip_until ({self.skip_until}); "
                "the run would stop before the first simulated kernel"
            )

    @property
    def num_kernels(self) -> int:
        return self.exit_after - self.skip_until + 1

    def contains(self, kernel_index: int) -> bool:
        return self.skip_until <= kernel_index <= self.exit_after

    def gem5_options(self) -> list[str]:
        """The gem5 GPU-FS script options that realise this window."""
        return [f"--skip-until-gpu-kernel={self.skip_until}", f"--exit-after-gpu-kernel={self.exit_after}"]
