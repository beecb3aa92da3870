"""`layerlab calibrate`: per-op-class efficiency factors from simulated layers, for `estimate --calibration`.

The factors (``analytical.calibration``: achieved / ideal, one compute and one bandwidth factor
per op class) are fitted by ``fit_calibration`` on one row per role: the role's simulated time
beside its ops' ideal compute and memory sides. Only roles whose ops share one op class can say
what that class achieves, so roles mixing classes (HF eager attention: rope, softmax, GEMMs) and
the catch-all census roles are left out, and listed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from orchestrator.commands import SUMMARIES

EPILOG = """\
examples:
  layerlab calibrate runs/selftest/llama-3.2-1b/*/*/step1-layer1 -o calibration.yaml
  layerlab calibrate experiments/llama-3.2-1b-decode-mi300x.yaml -o calibration.yaml --estimator waves
  layerlab calibrate report/ops.parquet -o calibration.yaml --json
  layerlab estimate --model llama-3.2-1b --hardware gem5-mi300x --phase decode --context 1024 \\
      --calibration calibration.yaml

Inputs (any mix, pooled; all of one simulated machine):
  RUN_DIR     a sliced run (slice.json, per-kernel stats): its kernels joined with its own ops
  SPEC.yaml   every done sliced run of an experiment (--workspace as for `layerlab status`)
  TABLE       .parquet or .csv, one row per role: role, op_class (or op_classes), t_compute_s,
              t_memory_s (the roofline's sides) and a time: time_s, sim_time_s, measured_s, or
              sim_cycles with clock_hz (a report's ops table, or reports.hardware.fit_rows)

--estimator: the factors are fitted against that estimator's own compute and memory sides, so
`estimate --estimator E --calibration` reproduces the fit (tables hold the roofline's sides only).
-o writes the YAML atomically ('-': stdout, the summary then goes to stderr)."""

TIME_COLUMNS = ("time_s", "sim_time_s", "measured_s")
CYCLE_COLUMNS = ("sim_cycles", "cycles")
#: ``fit_calibration`` clips every factor to these bounds.
CLIP_BOUNDS = (1e-3, 10.0)


def register(subparsers: argparse._SubParsersAction) -> None:
    from analytical.estimators import ESTIMATORS
    from orchestrator.output import output_path

    parser = subparsers.add_parser(
        "calibrate", help=SUMMARIES["calibrate"],
        description="Fit per-op-class calibration factors from simulated layers (or report tables) and "
        "write the YAML that `layerlab estimate --calibration` reads.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("inputs", nargs="+", metavar="RUN_DIR|SPEC|TABLE", help="sliced runs, a spec, tables")
    parser.add_argument(
        "-o", "--output", required=True, metavar="YAML", type=output_path, help="YAML to write"
    )
    parser.add_argument(
        "--estimator", type=str.lower, choices=ESTIMATORS, default="roofline",
        help="the estimator the factors are for (default roofline; simple takes no factors)",
    )  # fmt: skip
    parser.add_argument(
        "--workspace", metavar="DIR", help="a spec's workspace (default: runs/<name> beside it)"
    )
    parser.add_argument("--json", action="store_true", help="print the fit's summary as JSON")
    parser.set_defaults(func=run)


# -- inputs -------------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    from foundation.errors import InputError

    if path.is_dir():
        return "run"
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "spec"
    if suffix in (".parquet", ".pq", ".csv"):
        return "table"
    raise InputError(
        f"{path}: expected a sliced run directory, an experiment spec (.yaml) or a table (.parquet, .csv)"
    )


def _spec_runs(spec: Path, workspace: str | None) -> list[Path]:
    from orchestrator.store import done_slices

    return [Path(r.run_dir) for r in done_slices(spec, workspace)[2]]


def _run_rows(run: Path, estimator: str) -> tuple[Any, tuple, str]:
    """(fit rows, machine identity, machine name) of one sliced run."""
    from analytical.hardware import machine_of
    from foundation.errors import InputError
    from foundation.rundir import PARAMS_FILE, SLICE_FILE
    from gem5_configs.render import read_params
    from reports.extrapolate import driver_plan, is_stand_in, machine_key
    from reports.hardware import estimator_sides, fit_rows, join_times
    from reports.join import estimated_ops, simulated_kernels

    if not (run / PARAMS_FILE).is_file():
        raise InputError(f"{run}: not a run directory (no {PARAMS_FILE})")
    if not (run / SLICE_FILE).is_file():
        raise InputError(f"{run}: no {SLICE_FILE} (calibrate needs runs sliced from a census)")
    params = read_params(run)
    machine = machine_of(params.gpu, params.machine.profile)
    plan = driver_plan(params.workload.guest_command)
    ops = estimator_sides(estimated_ops(run, estimator), plan.model, machine, estimator)
    source = "gem5-test-double" if is_stand_in(run) else "gem5"
    timed = join_times(simulated_kernels(run), ops, source)
    rows = fit_rows(timed, ops)
    rows.insert(0, "input", str(run))
    return rows, machine_key(params), machine.name


def _read_table(path: Path) -> Any:
    import pandas as pd

    from foundation.errors import InputError

    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        kind = "CSV" if path.suffix.lower() == ".csv" else "parquet"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reason = reason.split(f"'{path}': ", 1)[-1]  # pyarrow repeats the path
        raise InputError(f"{path}: not a readable {kind} table ({reason[:160]})") from None
    except Exception as exc:  # pyarrow raises its own types for garbage bytes
        if type(exc).__module__.startswith(("pyarrow", "fastparquet")):
            raise InputError(f"{path}: not a readable parquet table ({type(exc).__name__})") from None
        raise


def _numeric(path: Path, table: Any, column: str) -> Any:
    import pandas as pd

    from foundation.errors import InputError

    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() & table[column].notna()
    if bad.any():
        index = int(bad.to_numpy().nonzero()[0][0])
        where = f"line {index + 2}" if path.suffix.lower() == ".csv" else f"row {index}"
        raise InputError(f"{path}: {where}: column {column!r} is not a number: {table[column].iloc[index]!r}")
    return values.astype(float)


def _table_rows(path: Path, estimator: str) -> tuple[Any, tuple | None, str | None]:
    """Fit rows from a saved table (a report's ops table, fit_rows, or join + sides)."""
    import numpy as np
    import pandas as pd

    from analytical.ops import OP_CLASSES
    from analytical.roles import WHOLE_ROLES
    from foundation.errors import InputError

    if estimator != "roofline":
        raise InputError(
            f"{path}: a table holds the roofline's sides (t_compute_s, t_memory_s) only; --estimator "
            f"{estimator} needs sliced run directories or a spec"
        )
    table = _read_table(path)
    if not isinstance(table, pd.DataFrame) or table.empty:
        raise InputError(f"{path}: the table has no rows")
    columns = set(table.columns)
    for needed in ("role", "t_compute_s", "t_memory_s"):
        if needed not in columns:
            hint = (
                " (a bare reports.join.join table has no ideal times: give run dirs or a spec)"
                if needed != "role"
                else ""
            )
            raise InputError(f"{path}: missing column {needed!r}{hint}")
    class_column = "op_classes" if "op_classes" in columns else "op_class" if "op_class" in columns else None
    if class_column is None:
        raise InputError(f"{path}: missing column 'op_class' (or 'op_classes')")
    time_column = next((c for c in TIME_COLUMNS if c in columns), None)
    if time_column is not None:
        seconds = _numeric(path, table, time_column)
    else:
        cycles = next((c for c in CYCLE_COLUMNS if c in columns), None)
        if cycles is None or "clock_hz" not in columns:
            raise InputError(
                f"{path}: missing column 'time_s' (or sim_time_s, measured_s, or sim_cycles with clock_hz)"
            )
        seconds = _numeric(path, table, cycles) / _numeric(path, table, "clock_hz")
    sides = {c: _numeric(path, table, c) for c in ("t_compute_s", "t_memory_s")}
    classes = table[class_column].astype("string").fillna("")
    mixed = classes.str.contains(",") | (classes == "mixed")
    known = (*OP_CLASSES, "mixed", "total", "")
    unknown = ~mixed & ~classes.isin(known)
    if unknown.any():
        index = int(unknown.to_numpy().nonzero()[0][0])
        where = f"line {index + 2}" if path.suffix.lower() == ".csv" else f"row {index}"
        raise InputError(
            f"{path}: {where}: column {class_column!r}: unknown op class {classes.iloc[index]!r} "
            f"(known: {', '.join(OP_CLASSES)})"
        )
    role = table["role"].astype("string")
    matched = table["matched"].astype(bool) if "matched" in columns else role.notna()
    if "compare_at" in columns:
        matched &= table["compare_at"].astype("string").fillna("unmatched") != "unmatched"
    whole = role.isin(WHOLE_ROLES).fillna(False)
    usable = matched & ~mixed & (classes != "") & ~whole & (seconds > 0)
    if "usable" in columns:
        usable &= table["usable"].astype(bool)
    why = np.select(
        [~matched, whole, mixed, classes == "", ~(seconds > 0)],
        ["unmatched (no kernel or no op)", "catch-all census role (work no op models)",
         "op classes " + classes.str.replace(",", ", ") + " under one role", "no op class", "no measured time"],
        default="",
    )  # fmt: skip
    rows = pd.DataFrame(
        {
            "input": str(path),
            "role": role.fillna("(none)").to_numpy(),
            "op_class": np.where(mixed, "mixed", classes),
            "t_compute_s": sides["t_compute_s"].to_numpy(),
            "t_memory_s": sides["t_memory_s"].to_numpy(),
            "time_s": seconds.to_numpy(),
            "source": table["source"].astype(str).to_numpy() if "source" in columns else "table",
            "machine": table["machine"].astype(str).to_numpy() if "machine" in columns else "",
            "usable": usable.to_numpy(),
            "why": why,
        }
    )
    if "est_s" in columns:
        rows["est_s"] = _numeric(path, table, "est_s").to_numpy()
    elif "est_cycles_roofline" in columns and "clock_hz" in columns:  # a report's ops table
        rows["est_s"] = (
            _numeric(path, table, "est_cycles_roofline") / _numeric(path, table, "clock_hz")
        ).to_numpy()
    names = sorted({m for m in rows["machine"] if m})
    if len(names) > 1:
        raise InputError(
            f"{path}: rows of {len(names)} machines ({', '.join(names[:3])}): calibrate one machine at a time"
        )
    return rows, None, (names[0] if names else None)


# -- the fit ------------------------------------------------------------------------------------


def _selftest(sources: Any) -> bool:
    return any("double" in str(s).lower() for s in sources)


def _yaml_text(factors: Any, machine: str, estimator: str, rows: Any, inputs: int, selftest: bool) -> str:
    import yaml

    head = [
        "# layerlab calibrate: per-op-class efficiency factors (achieved / ideal) for "
        "`layerlab estimate --calibration`",
        f"# fitted against the {estimator} estimator's sides from {len(rows)} role(s) of {inputs} input(s)",
    ]
    if selftest:
        head.append(
            "# PIPELINE SELF-TEST: the times come from the gem5 test double, a stand-in, not a simulation"
        )
    body = {
        "hardware": machine,
        "estimator": estimator,
        "source": ", ".join(sorted(set(map(str, rows["source"])))),
        "factors": {
            name: {"compute": float(c), "bandwidth": float(b)}
            for name, (c, b) in sorted(factors.factors.items())
        },
    }
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _mape(estimate: Any, reference: Any) -> float:
    from reports.metrics import mape

    return mape(list(map(float, estimate)), list(map(float, reference)))


def _summary(factors: Any, used: Any) -> list[dict[str, Any]]:
    from reports.hardware import calibrated_s

    after = calibrated_s(used, factors)
    work = used.assign(after_s=after)
    out = []
    for name, group in work.groupby("op_class", sort=True):
        compute, bandwidth = factors.factors[str(name)]
        before = group["est_s"] if "est_s" in group else float("nan")
        out.append(
            {
                "op_class": str(name),
                "roles": len(group),
                "compute": compute,
                "bandwidth": bandwidth,
                "mape_before_pct": _mape(before, group["time_s"]) if "est_s" in group else math.nan,
                "mape_after_pct": _mape(group["after_s"], group["time_s"]),
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from analytical.calibration import fit_calibration
    from foundation.errors import InputError
    from orchestrator.output import dumps_json, emit, json_float, write_output

    if args.output == "-" and args.json:
        raise InputError(
            "-o - writes the YAML to stdout; --json would print the summary there too: choose one"
        )
    if args.estimator == "simple":
        raise InputError(
            "--estimator simple ignores calibration factors (the notebook's roofline); "
            "pick roofline, tiling, cache, waves or full"
        )
    frames, identities, names = [], set(), set()
    sources: list[tuple[Path, str]] = []
    for given in args.inputs:
        path = Path(given)
        kind = _kind(path)
        runs = [path] if kind == "run" else _spec_runs(path, args.workspace) if kind == "spec" else []
        for run_dir in runs:
            rows, identity, name = _run_rows(run_dir, args.estimator)
            frames.append(rows)
            sources.append((run_dir, name))
            identities.add(identity)
            names.add(name)
            if len(identities) > 1 or len(names) > 1:
                raise InputError(
                    f"{run_dir}: another simulated machine than {sources[0][0]}; calibrate one machine at a time"
                )
        if kind == "table":
            rows, _, name = _table_rows(path, args.estimator)
            frames.append(rows)
            if name:
                names.add(name)
                sources.append((path, name))
                if len(names) > 1:
                    raise InputError(
                        f"{path}: machine {name} differs from {sources[0][1]}; calibrate one machine at a time"
                    )
    table = pd.concat(frames, ignore_index=True)
    used = table[table["usable"].astype(bool)].reset_index(drop=True)
    left = table[~table["usable"].astype(bool)]
    if used.empty:
        reasons = "; ".join(f"{r.role}: {r.why}" for r in left.head(4).itertuples())
        raise InputError(f"{args.inputs[0]}: no role to fit (every role left out: {reasons})")
    factors = fit_calibration(used, measured_column="time_s")
    machine = next(iter(names)) if names else ""
    selftest = _selftest(table["source"])
    text = _yaml_text(factors, machine, args.estimator, used, len(args.inputs), selftest)
    classes = _summary(factors, used)
    left_out = [{"input": r.input, "role": r.role, "why": r.why} for r in left.itertuples()]
    clipped = [
        f"{name} {side} factor at the fit's bound {value:g} (the times are far from that roofline side)"
        for name, pair in sorted(factors.factors.items())
        for side, value in zip(("compute", "bandwidth"), pair, strict=True)
        if value in CLIP_BOUNDS
    ]
    write_output(args.output, text)
    payload = {
        "output": args.output,
        "hardware": machine,
        "estimator": args.estimator,
        "selftest": selftest,
        "roles_fitted": len(used),
        "factors": {k: {"compute": c, "bandwidth": b} for k, (c, b) in sorted(factors.factors.items())},
        "classes": [{k: json_float(v) if isinstance(v, float) else v for k, v in c.items()} for c in classes],
        "left_out": left_out,
        "clipped": clipped,
    }
    if args.json:
        sys.stdout.write(dumps_json(payload))
        return 0
    stream = sys.stderr if args.output == "-" else sys.stdout
    title = (
        f"calibration for {machine or 'the tables machine'} ({args.estimator}), {len(used)} role(s) fitted"
        + (" | PIPELINE SELF-TEST: times from the gem5 test double, not a simulation" if selftest else "")
    )
    frame = pd.DataFrame(classes)
    if stream is sys.stdout:
        emit(frame, "table", None, title=title)
    else:
        from orchestrator.output import render_table

        stream.write(render_table(frame, title=title))
    for item in left_out:
        print(f"left out: {item['role']} ({item['why']})", file=stream)
    for line in clipped:
        print(f"note: {line}", file=stream)
    if args.output != "-":
        print(f"wrote {args.output}", file=stream)
    return 0
