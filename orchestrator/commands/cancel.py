"""`layerlab cancel`: stop an experiment's running runs (their whole process groups) and record it."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab cancel experiments/selftest.yaml --workspace runs/selftest
  layerlab cancel SPEC --label 'llama-3.2-1b/*/step1-layer3'     # only runs whose label matches

Cancelled runs are kept (state cancelled); `layerlab run SPEC --retry-failed` starts them again."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cancel", help=SUMMARIES["cancel"], description="Cancel an experiment's running runs.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("spec", metavar="SPEC", help="experiment spec (YAML)")
    parser.add_argument(
        "--workspace", metavar="DIR", help="the workspace (default: runs/<name> beside the spec)"
    )
    parser.add_argument("--label", metavar="GLOB", help="only runs whose label matches this glob")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import fnmatch

    from orchestrator.backends import make_backend
    from orchestrator.store import now, open_workspace

    spec, workspace, store = open_workspace(args.spec, args.workspace)
    backend = make_backend(
        spec.backend.kind,
        spec.backend.settings,
        workspace,
        (spec.backend.cpus_per_run, spec.backend.mem_gib_per_run),
    )
    cancelled = 0
    for record in store.all(spec.name):
        if record.state not in ("running", "queued") or (
            args.label and not fnmatch.fnmatch(record.label, args.label)
        ):
            continue
        if record.handle:
            adopt = getattr(backend, "adopt", None)
            if adopt is not None:
                adopt(record.handle, Path(record.run_dir))
            backend.cancel(record.handle)
        store.update(
            record.run_id, state="cancelled", ended_at=now(), exit_cause="cancelled by `layerlab cancel`"
        )
        print(f"cancelled {record.label} ({record.run_id})")
        cancelled += 1
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    if not cancelled:
        print("nothing running")
    return 0
