"""`layerlab run`: run an experiment spec to the end (boot, census, slices, collect), resuming."""

from __future__ import annotations

import argparse
import sys

from orchestrator.commands import SUMMARIES

DESCRIPTION = """\
Run an experiment spec: a boot checkpoint per machine, a census that skips every kernel with the
driver's markers on, then one sliced run per (step, layer[, module]) the spec asks for, each with
per-kernel stats dumps, and the per-kernel table of each slice (kernels.parquet beside it).

Resume is the default: runs whose outputs are complete and belong to their render are skipped, so
running the same spec again after a crash, a Ctrl-C or an edit runs only what is missing or
changed. Runs, states and results are kept in <workspace>/layerlab-runs.sqlite (see `layerlab
status`). Every run is preflighted against the gem5 source tree first when the spec names one."""

EPILOG = """\
examples:
  layerlab run experiments/selftest.yaml              # the whole pipeline on the gem5 test double
  layerlab run experiments/llama-3.2-1b-decode-mi300x.yaml --jobs 4
  layerlab run SPEC --retry-failed                     # run again what failed or timed out
  layerlab run SPEC --force                            # run everything again
  layerlab status SPEC                                 # states and results, as a table"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help=SUMMARIES["run"], description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("spec", metavar="SPEC", help="experiment spec (YAML)")
    parser.add_argument(
        "--workspace", metavar="DIR", help="where runs go (default: runs/<name> beside the spec)"
    )
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="runs at once (default: the spec's backend.jobs)"
    )
    parser.add_argument("--force", action="store_true", help="run every run again, complete or not")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run failed, timed-out and cancelled runs again"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true", help="print the final status records as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.conductor import Conductor

    def say(message: str) -> None:
        if not args.quiet:
            print(f"layerlab run: {message}", file=sys.stderr, flush=True)

    progress = _progress(args.quiet)
    conductor = Conductor(
        args.spec, workspace=args.workspace, jobs=args.jobs, force=args.force,
        retry_failed=args.retry_failed, reporter=progress.say if progress else say,
        progress=progress.update if progress else _plain_progress(args.quiet),
    )  # fmt: skip
    try:
        code = conductor.run()
    finally:
        if progress:
            progress.stop()
    from orchestrator.commands.status import print_status

    print_status(conductor.store, conductor.spec.name, "json" if args.json else "table")
    return code


class _Bars:
    """rich progress bars on a terminal: one per running run, kernels done of those expected."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[tick]}"), TimeElapsedColumn(), console=self.console, transient=False,
        )  # fmt: skip
        self.tasks: dict[str, int] = {}
        self.bars.start()

    def say(self, message: str) -> None:
        self.bars.console.print(f"layerlab run: {message}", highlight=False)

    def update(self, label: str, kernels: int, expected: int | None, tick: int, finished: bool) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bars.add_task(label, total=expected, tick="")
        self.bars.update(self.tasks[label], completed=kernels, total=expected, tick=f"tick {tick:,}")
        if finished:
            self.bars.update(self.tasks[label], total=kernels)

    def stop(self) -> None:
        self.bars.stop()


def _progress(quiet: bool) -> _Bars | None:
    return _Bars() if not quiet and sys.stderr.isatty() else None


def _plain_progress(quiet: bool):
    """Not on a terminal: one line per run when its kernel count moved, at most every 10 s."""
    import time

    last: dict[str, tuple[float, int]] = {}

    def update(label: str, kernels: int, expected: int | None, tick: int, finished: bool) -> None:
        if quiet:
            return
        when, seen = last.get(label, (0.0, -1))
        if kernels != seen and (finished or time.monotonic() - when >= 10):
            last[label] = (time.monotonic(), kernels)
            total = f"/{expected}" if expected else ""
            print(
                f"layerlab run: {label}: {kernels}{total} kernels, tick {tick:,}", file=sys.stderr, flush=True
            )

    return update
