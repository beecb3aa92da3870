"""Why a run failed, as data: structured signals first, then log patterns with a one-line fix.

Order of evidence: the events side-file's end record (gem5's exit cause and whether the run
asked for it), the process exit status, the guest's ``m5 fail`` code (``GUEST_FAIL_CODES``), and
only then the known log patterns of ``failure_patterns.yaml`` (per gem5 profile), searched in
the run's logs and gem5's simout/simerr/terminal files. The digest is a small dict the store
keeps and ``layerlab status`` shows.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: ``m5 fail <code>`` of layerlab's guest script (gem5_configs/templates/guest_run.sh.j2): 3 is the
#: script's own (no amdgpu DKMS module for the running kernel, checked before modprobe); any other
#: code is the workload's exit status, passed through.
GUEST_FAIL_CODES: dict[int, str] = {
    3: "no amdgpu DKMS module for the guest kernel (disk and vmlinux are not a pair), or the workload exited 3",
}

_LOG_GLOBS = (
    "logs/backend.err",
    "logs/backend.out",
    "*/simerr.txt",
    "*/simout.txt",
    "*/simerr",
    "*/simout",
    "*/*.com_1.device",
    "*/board.pc.com_1.device",
)


@functools.cache
def patterns() -> list[dict[str, Any]]:
    text = resources.files("orchestrator").joinpath("failure_patterns.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return list(data["patterns"])


def _tail(path: Path, limit: int = 256 * 1024) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def digest(
    run_dir: Path,
    outdir: Path,
    exit_code: int | None,
    end: dict[str, Any] | None,
    profile: str | None = None,
    timed_out: bool = False,
    backend_detail: str | None = None,
) -> dict[str, Any]:
    """The failure digest of one run (``cause``, ``detail``, ``hint``, ``evidence``).

    ``backend_detail`` is the backend's own word on how the run ended when it explains the end
    (a Slurm job cancelled from outside, a container killed for memory, a vanished job): it is
    structured, so it comes before the log patterns.
    """
    if timed_out:
        return {
            "cause": "timeout",
            "detail": "the run passed its deadline and was killed",
            "hint": "raise timeouts.* in the spec, or simulate a smaller window",
            "evidence": None,
        }
    if backend_detail:
        return {
            "cause": "backend",
            "detail": backend_detail,
            "hint": "the backend ended the run (or lost it) before gem5 finished; "
            "`layerlab run --retry-failed` runs it again",
            "evidence": "logs/backend.json",
        }
    texts = {str(p.relative_to(run_dir)): _tail(p) for g in _LOG_GLOBS for p in sorted(run_dir.glob(g))}
    for rule in patterns():
        if rule.get("profiles") and profile not in rule["profiles"]:
            continue
        regex = re.compile(rule["regex"], re.M)
        for name, text in texts.items():
            match = regex.search(text)
            if match:
                return {
                    "cause": rule["cause"],
                    "detail": match.group(0).strip()[:300],
                    "hint": rule["hint"],
                    "evidence": name,
                }
    if end is not None and not end.get("expected"):
        cause = str(end.get("cause"))
        if cause == "m5_fail instruction encountered":
            code = int(end.get("exit_code") or 0)
            return {
                "cause": "guest_fail",
                "detail": f"m5 fail {code}: {GUEST_FAIL_CODES.get(code, f'the workload exited with status {code}')}",
                "hint": "look at the guest console (terminal file) for the workload's error",
                "evidence": "layerlab_events.jsonl",
            }
        return {
            "cause": "unexpected_exit",
            "detail": cause,
            "hint": "gem5 stopped for a reason the run did not ask for",
            "evidence": "layerlab_events.jsonl",
        }
    if end is None:
        return {
            "cause": "no_end_record",
            "detail": f"gem5 exited ({exit_code}) without the loop's end record",
            "hint": "gem5 crashed or was killed; see logs/backend.err and simerr.txt",
            "evidence": None,
        }
    return {
        "cause": "exit_status",
        "detail": f"exit status {exit_code}",
        "hint": "see logs/backend.err",
        "evidence": None,
    }
