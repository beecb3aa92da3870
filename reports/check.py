"""Is the machine estimated the machine simulated? The run's knobs against the config gem5 built.

The analytical side of a report is built from the run's ``params.json`` (its ``Gem5GpuConfig``),
so a report is only meaningful if gem5 built that machine. ``mi200.py``/``mi300.py`` overwrite
options after parsing, so the only witness is the ``config.ini`` gem5 wrote (in the outdir), or
the one preflight wrote from the same script (``preflight/config.ini``); the knobs are read
back from it (``stats_parsers.machine``) and any difference is bad input naming the knob.

A report also compares one machine unless told otherwise (``--allow-mixed``): errors of runs on
different machines do not average into anything a reader can use.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from foundation.errors import InputError
from foundation.rundir import outdir_of
from reports.runs import RunInfo

PREFLIGHT_CONFIG = Path("preflight") / "config.ini"


def config_ini_of(run_dir: Path) -> Path:
    """gem5's own config.ini of the run, else preflight's; neither is bad input."""
    for path in (outdir_of(run_dir) / "config.ini", run_dir / PREFLIGHT_CONFIG):
        if path.is_file():
            return path
    raise InputError(
        f"{run_dir}: no config.ini (neither {outdir_of(run_dir).name}/config.ini from gem5 nor "
        f"{PREFLIGHT_CONFIG} from `layerlab preflight`), so the simulated machine cannot be checked"
    )


#: Knobs read back per config.ini file (path, size, mtime, inode): parsing gem5's multi-MB
#: config.ini costs about a second, and a session may report the same run more than once.
_BUILT: dict[tuple, object] = {}


def _config(path: Path):
    from stats_parsers.config import read_config

    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
    if key not in _BUILT:
        if len(_BUILT) >= 32:
            _BUILT.pop(next(iter(_BUILT)))
        _BUILT[key] = read_config(path)
    return _BUILT[key]


def check_machine(run: RunInfo) -> tuple[Path, int]:
    """The config.ini checked and how many knobs agree; a mismatch raises naming the knob."""
    from stats_parsers.machine import CHECKED_KNOBS, compare_machine

    path = config_ini_of(run.run_dir)
    mismatches = compare_machine(_config(path), run.params.gpu)
    if mismatches:
        first = mismatches[0]
        more = f" (and {len(mismatches) - 1} more knob(s))" if len(mismatches) > 1 else ""
        raise InputError(
            f"{path}: the machine gem5 built is not the run's: {first}{more}; the estimate would "
            f"describe another machine ({run.run_dir / 'params.json'})"
        )
    return path, len(CHECKED_KNOBS)


def check_one_machine(runs: list[RunInfo], allow_mixed: bool) -> None:
    """All runs on one simulated machine, unless ``allow_mixed``; else name the knob they differ in."""
    if allow_mixed or not runs:
        return
    first = runs[0]
    for other in runs[1:]:
        if other.machine_key == first.machine_key:
            continue
        if other.params.machine.profile != first.params.machine.profile:
            what = f"gem5 profile {first.params.machine.profile} vs {other.params.machine.profile}"
        else:
            a, b = asdict(first.params.gpu), asdict(other.params.gpu)
            knob = next(k for k in a if a[k] != b[k])
            what = f"gpu.{knob} {a[knob]!r} vs {b[knob]!r}"
        raise InputError(
            f"{other.run_dir}: simulated on another machine than {first.run_dir} ({what}); "
            "pass --allow-mixed to report them side by side"
        )
