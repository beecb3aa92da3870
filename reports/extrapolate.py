"""Whole-step and whole-request time from one simulated layer: N layers x that layer + non-layer ops.

gem5 simulates one decoder layer of one step, because a whole model would take weeks. What a
user wants to know is what the whole step (and the whole request: prefill + decode steps) would
cost on that machine, so this module scales the one layer up and says how:

* every decoder layer of a step costs what the simulated layer of that step did (the mean, when
  several layers of the step were simulated);
* a decode step without a simulated layer costs what the nearest simulated decode step's layer
  did (their KV context differs by a few tokens); a phase without any simulated layer gets the
  analytical model's layer time;
* the non-layer ops (embedding, final norm, LM head, ...) come from the analytical model on the
  same simulated machine (``analytical.hardware.machine_of`` of the run's own knobs), unless a
  simulated window for them is given;
* kernel time only: launch gaps, host time, blit copies and the step's own work outside every
  layer that the analytical model has no op for (the layer driver's rotary tables and mask) are
  not counted.

``Extrapolation.assumption`` says exactly which of these applied, in words to print verbatim
beside the numbers. Tables are long and tidy; every time is in seconds (``_s``).

The request is the guest driver's own plan (``workloads.drivers.common.plan_steps`` of the
run's command): warm-up passes are not part of it, the prefill is step ``warmup`` and decode
steps follow, each with its own KV context.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analytical.hardware import HardwareSpec
from foundation.errors import InputError
from workloads.models import ModelConfig

#: Non-layer op of the analytical model -> component name in the tables.
NON_LAYER_COMPONENTS: dict[str, str] = {
    "embed_tokens": "embedding",
    "embed_positions": "position_embedding",
    "embed_add": "embedding_add",
    "final_norm": "final_norm",
    "lm_head": "lm_head",
}
#: Census role of a simulated non-layer window -> component name.
ROLE_COMPONENTS: dict[str, str] = {
    "embed": "embedding",
    "pos_embed": "position_embedding",
    "final_norm": "final_norm",
    "lm_head": "lm_head",
}
SOURCES = ("simulated", "measured", "analytical")
COMPONENT_COLUMNS = (
    "step", "phase", "tokens", "context", "component", "source", "count", "unit_s", "time_s", "basis",
)  # fmt: skip
STEP_COLUMNS = (
    "step", "phase", "tokens", "context", "time_s", "observed_s", "analytical_s", "observed_share",
)  # fmt: skip
REQUEST_COLUMNS = (
    "prefill_s", "decode_steps", "decode_s", "decode_step_mean_s", "request_s", "observed_share",
)  # fmt: skip


@dataclass(frozen=True)
class DriverPlan:
    """What the ``layer`` guest driver ran: the model, its shapes and the steps in run order."""

    model: ModelConfig
    batch: int
    dtype: str
    layers_run: int  # --num-layers of the driver (the model itself may have more)
    steps: tuple[dict[str, Any], ...]  # plan_steps entries: step, phase, phase_index, tokens, context
    argv: tuple[str, ...] = ()

    def step(self, index: int) -> dict[str, Any]:
        for entry in self.steps:
            if entry["step"] == index:
                return entry
        raise InputError(f"step {index} is not in the driver's plan (steps {self.steps[0]['step']}..)")

    @property
    def request(self) -> list[dict[str, Any]]:
        """The steps of one request: the prefill (if run) and the decode steps, no warm-up."""
        return [s for s in self.steps if s["phase"] in ("prefill", "decode")]


def plan_ops(
    plan: DriverPlan,
    step: int,
    machine: HardwareSpec,
    layers: str = "0",
    estimator: str = "roofline",
    calibration: Any = None,
) -> pd.DataFrame:
    """The analytical ops of ``step`` of the driver's plan on ``machine``: the one place that turns
    the driver's run order (prefill tokens, decode contexts C, C+1, ...) into an estimate."""
    from analytical.pipeline import estimate_layer

    entry = plan.step(step)
    prefill = entry["phase"] != "decode"
    return estimate_layer(
        plan.model,
        machine,
        "prefill" if prefill else "decode",
        batch=plan.batch,
        seq=entry["tokens"] if prefill else None,
        context=entry["context"] if prefill else max(1, entry["context"]),
        dtype=plan.dtype,
        layers=layers,
        estimator=estimator,
        calibration=calibration,
    )


def driver_plan(guest_command: Sequence[str]) -> DriverPlan:
    """The plan of a ``layer`` driver command (``python3 .../layer.py ARGS`` or the bare ARGS).

    The model is the command's ``--config``: the file where it exists here, else the shipped
    config of the same name (a guest path such as ``/opt/layerlab/model_configs/x.json``).
    """
    from workloads.drivers import common, layer
    from workloads.models import load_model_config

    words = list(guest_command)
    if len(words) >= 2 and words[1].endswith("layer.py"):
        words = words[2:]
    elif words and words[0].endswith("layer.py"):
        words = words[1:]
    elif len(words) >= 2 and words[1].endswith(".py"):
        raise InputError(
            f"{words[1]}: only runs of the `layer` driver are extrapolated so far (hf/vllm next)"
        )
    parser = layer.parser()

    def refuse(message: str) -> None:  # argparse would print its usage block and exit
        raise InputError(f"guest command {' '.join(words)!r}: not a `layer` driver command line ({message})")

    parser.error = refuse  # type: ignore[method-assign]
    args = parser.parse_args(words)
    config = Path(args.config)
    model = load_model_config(config if config.is_file() else config.stem)
    prefill = args.phases in ("prefill", "both")
    decode = args.decode_steps if args.phases in ("decode", "both") else 0
    plan = common.plan_steps(args.warmup, args.prompt_len, decode, args.context, prefill=prefill)
    return DriverPlan(model, args.batch, args.dtype, args.num_layers, tuple(plan), tuple(words))


def step_ops(
    plan: DriverPlan,
    step: int,
    machine: HardwareSpec,
    estimator: str = "roofline",
    calibration: Any = None,
) -> pd.DataFrame:
    """``estimate_layer`` of one step of the plan, every layer and the non-layer ops (``layer`` -1)."""
    table = plan_ops(plan, step, machine, "all", estimator=estimator, calibration=calibration)
    return table[table["op"] != "total"].reset_index(drop=True)


def layer_seconds(joined: pd.DataFrame, clock_hz: float | None = None) -> float:
    """Kernel time of one layer from a joined table (``reports.join.join`` or ``join_times``).

    Takes ``time_s`` where the table has it, else ``sim_cycles`` at ``clock_hz`` (the machine's
    shader clock). Rows of every role count, matched or not; blits are not in a join.
    """
    if "time_s" in joined:
        return float(joined["time_s"].sum(skipna=True))
    if "sim_cycles" not in joined:
        raise InputError("joined table: no 'time_s' or 'sim_cycles' column (not a reports.join table)")
    if not clock_hz:
        raise InputError(
            "joined table has cycles only: give the machine's clock_hz to turn them into seconds"
        )
    return float(joined["sim_cycles"].sum(skipna=True)) / float(clock_hz)


@dataclass(frozen=True)
class LayerTime:
    """The simulated (or measured) kernel time of one whole decoder layer of one step."""

    step: int
    layer: int
    seconds: float
    basis: str = ""  # where it comes from, e.g. "run 11539698ea34f12c"


@dataclass(frozen=True)
class Extrapolation:
    """Per-step components, per-step totals, request totals, and the assumption in words."""

    components: pd.DataFrame  # COMPONENT_COLUMNS
    steps: pd.DataFrame  # STEP_COLUMNS
    request: pd.DataFrame  # REQUEST_COLUMNS, one row
    assumption: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records"))

        return {
            "assumption": self.assumption,
            "components": rows(self.components),
            "steps": rows(self.steps),
            "request": rows(self.request)[0] if len(self.request) else {},
        }


def _nearest(step: int, candidates: Iterable[int]) -> int | None:
    ordered = sorted(candidates, key=lambda s: (abs(s - step), s))
    return ordered[0] if ordered else None


def _steps_text(steps: Sequence[int]) -> str:
    return ", ".join(str(s) for s in steps)


def extrapolate(
    plan: DriverPlan,
    machine: HardwareSpec,
    layer_times: Sequence[LayerTime],
    *,
    estimator: str = "roofline",
    windows: Mapping[tuple[int, str], float] | None = None,
    stand_in: bool = False,
    source: str = "simulated",
) -> Extrapolation:
    """Whole-step and whole-request time of ``plan`` from its simulated (or measured) layers.

    ``layer_times`` are whole-layer kernel times (at least one). ``windows`` maps (step,
    component) to the seconds of a simulated non-layer window (component names of
    ``NON_LAYER_COMPONENTS``). ``stand_in`` says the times come from the gem5 test double (the
    assumption then says so). ``source`` is ``simulated`` (gem5) or ``measured`` (a hardware
    trace): the ``source`` of the rows those times give, and the word the assumption uses.
    """
    if source not in ("simulated", "measured"):
        raise InputError(f"source {source!r}: expected 'simulated' or 'measured'")
    time_word = source
    if not layer_times:
        raise InputError(f"extrapolation needs at least one {time_word} whole layer")
    request = plan.request
    if not request:
        raise InputError("the driver's plan has no prefill or decode step (warm-up only)")
    phase_of = {s["step"]: s["phase"] for s in plan.steps}
    by_step: dict[int, list[LayerTime]] = {}
    for item in layer_times:
        if item.step not in phase_of:
            raise InputError(f"{time_word} layer of step {item.step}: not a step of the driver's plan")
        if not 0 <= item.layer < plan.model.num_hidden_layers:
            raise InputError(
                f"{time_word} layer {item.layer}: outside the model's 0..{plan.model.num_hidden_layers - 1}"
            )
        by_step.setdefault(item.step, []).append(item)
    windows = dict(windows or {})
    n_layers = plan.model.num_hidden_layers
    rows: list[dict[str, Any]] = []
    borrowed: dict[int, int] = {}
    analytical_layers: list[int] = []
    for entry in request:
        step, phase = entry["step"], entry["phase"]
        ops = step_ops(plan, step, machine, estimator)
        source_step = step if step in by_step else None
        if source_step is None:
            same_phase = [s for s in by_step if phase_of[s] == phase]
            source_step = _nearest(step, same_phase)
            if source_step is not None:
                borrowed[step] = source_step
        base = {"step": step, "phase": phase, "tokens": entry["tokens"], "context": entry["context"]}
        if source_step is not None:
            items = by_step[source_step]
            unit = sum(i.seconds for i in items) / len(items)
            where = "; ".join(
                f"step {i.step} layer {i.layer}" + (f" ({i.basis})" if i.basis else "") for i in items
            )
            basis = f"{time_word}: {where}" + (
                "" if source_step == step else f" (step {step} not {time_word})"
            )
            rows.append({**base, "component": "layers", "source": source, "count": n_layers,
                         "unit_s": unit, "time_s": unit * n_layers, "basis": basis})  # fmt: skip
        else:
            analytical_layers.append(step)
            layer_ops = ops[ops["layer"] >= 0]
            unit = float(layer_ops["t_est_s"].sum()) / n_layers
            rows.append({**base, "component": "layers", "source": "analytical", "count": n_layers,
                         "unit_s": unit, "time_s": unit * n_layers,
                         "basis": f"analytical: {estimator} on {machine.name}"})  # fmt: skip
        model_ops = ops[ops["layer"] < 0]
        for op_name, group in model_ops.groupby("op", sort=False, observed=True):
            component = NON_LAYER_COMPONENTS.get(str(op_name), str(op_name))
            if (step, component) in windows:
                seconds, origin, basis = windows[(step, component)], source, f"{time_word} window"
            else:
                seconds = float(group["t_est_s"].sum())
                origin, basis = "analytical", f"analytical: {estimator} on {machine.name}"
            rows.append({**base, "component": component, "source": origin, "count": 1,
                         "unit_s": seconds, "time_s": seconds, "basis": basis})  # fmt: skip
    components = pd.DataFrame(rows, columns=list(COMPONENT_COLUMNS))
    steps = _step_totals(components)
    totals = _request_totals(steps)
    text = _assumption(
        plan, machine, estimator, layer_times, borrowed, analytical_layers, components, stand_in, time_word
    )
    return Extrapolation(components, steps, totals, text)


def _step_totals(components: pd.DataFrame) -> pd.DataFrame:
    keys = ["step", "phase", "tokens", "context"]
    observed = components["time_s"].where(components["source"] != "analytical", 0.0)
    frame = components.assign(observed_s=observed, analytical_s=components["time_s"] - observed)
    steps = frame.groupby(keys, sort=False, as_index=False)[["time_s", "observed_s", "analytical_s"]].sum()
    steps["observed_share"] = steps["observed_s"] / steps["time_s"]
    return steps[list(STEP_COLUMNS)]


def _request_totals(steps: pd.DataFrame) -> pd.DataFrame:
    prefill = steps.loc[steps["phase"] == "prefill", "time_s"].sum()
    decode = steps.loc[steps["phase"] == "decode", "time_s"]
    total = float(steps["time_s"].sum())
    row = {
        "prefill_s": float(prefill),
        "decode_steps": len(decode),
        "decode_s": float(decode.sum()),
        "decode_step_mean_s": float(decode.mean()) if len(decode) else float("nan"),
        "request_s": total,
        "observed_share": float(steps["observed_s"].sum()) / total if total else float("nan"),
    }
    return pd.DataFrame([row], columns=list(REQUEST_COLUMNS))


def _assumption(
    plan: DriverPlan,
    machine: HardwareSpec,
    estimator: str,
    layer_times: Sequence[LayerTime],
    borrowed: Mapping[int, int],
    analytical_layers: Sequence[int],
    components: pd.DataFrame,
    stand_in: bool,
    word: str,
) -> str:
    n = plan.model.num_hidden_layers
    model_ops = [c for c in dict.fromkeys(components["component"]) if c != "layers"]
    sim_ops = sorted(
        set(
            components.loc[
                (components["component"] != "layers") & (components["source"] != "analytical"), "component"
            ]
        )
    )
    parts = [
        f"Whole step = {n} decoder layers of {plan.model.name} x one layer's kernel time + the non-layer ops "
        f"({', '.join(model_ops).replace('_', ' ')}).",
        "Every layer of a step costs what the "
        + word
        + " layer of that step did ("
        + "; ".join(f"step {t.step} layer {t.layer}" for t in layer_times)
        + (
            ", their mean where a step has several"
            if len({t.step for t in layer_times}) < len(layer_times)
            else ""
        )
        + ").",
    ]
    if borrowed:
        by_source: dict[int, list[int]] = {}
        for step, source in borrowed.items():
            by_source.setdefault(source, []).append(step)
        for source, steps in by_source.items():
            span = max(abs(plan.step(s)["context"] - plan.step(source)["context"]) for s in steps)
            parts.append(
                f"Step{'s' if len(steps) > 1 else ''} {_steps_text(steps)} {'were' if len(steps) > 1 else 'was'} "
                f"not {word}: {'each' if len(steps) > 1 else 'it'} costs what step {source}'s layer did (KV context differs by up to {span} "
                f"token{'s' if span != 1 else ''})."
            )
    if analytical_layers:
        parts.append(
            f"Step{'s' if len(analytical_layers) > 1 else ''} {_steps_text(analytical_layers)} "
            f"{'have' if len(analytical_layers) > 1 else 'has'} no {word} layer of {'their' if len(analytical_layers) > 1 else 'its'} phase: "
            f"{'their' if len(analytical_layers) > 1 else 'its'} layers come from the analytical model ({estimator})."
        )
    where = machine.notes or machine.name
    if sim_ops:
        parts.append(
            f"Non-layer ops come from the analytical model ({estimator}) on the same machine ({where}), "
            f"except {', '.join(sim_ops).replace('_', ' ')} ({word})."
        )
    else:
        parts.append(
            f"Non-layer ops come from the analytical model ({estimator}) on the same machine ({where})."
        )
    parts.append(
        "Kernel time only: launch gaps, host time, blit copies and the step's own work outside every layer "
        "(rotary tables, masks) are not counted."
    )
    decode = sum(1 for s in plan.request if s["phase"] == "decode")
    has_prefill = any(s["phase"] == "prefill" for s in plan.request)
    parts.append(
        "Whole request = "
        + ("the prefill step + " if has_prefill else "")
        + f"{decode} decode step{'s' if decode != 1 else ''} of batch {plan.batch} (warm-up passes excluded)."
    )
    if plan.layers_run != n:
        parts.append(f"The guest ran {plan.layers_run} of the model's {n} layers; all {n} are counted.")
    if stand_in:
        parts.append(
            "The simulated times come from the gem5 TEST DOUBLE: a pipeline self-test whose cycles are a "
            "stand-in, not a simulation."
        )
    return " ".join(parts)


# -- from run directories -----------------------------------------------------------------------


def is_stand_in(run_dir: str | Path) -> bool:
    """True when the run's gem5 was layerlab's test double (its simout says so), not a simulator."""
    from foundation.rundir import outdir_of

    simout = outdir_of(Path(run_dir)) / "simout.txt"
    try:
        with simout.open(encoding="utf-8", errors="replace") as handle:
            return "TEST DOUBLE" in handle.readline()
    except OSError:
        return False


def machine_key(params: Any) -> tuple[str, str]:
    """(profile, knobs as JSON): two runs simulated the same machine iff their keys are equal."""
    from dataclasses import asdict

    return params.machine.profile, json.dumps(asdict(params.gpu), sort_keys=True)


def extrapolate_runs(run_dirs: Sequence[str | Path], estimator: str = "roofline") -> Extrapolation:
    """``extrapolate`` from sliced run directories of one census (same program, same machine).

    Whole-layer slices (``slice.json`` without a module) give layer times; non-layer module
    slices (embed, final_norm, lm_head) give simulated components; module slices of a layer are
    left out (listed in ``notes``).
    """
    from analytical.hardware import machine_of
    from foundation.rundir import SLICE_FILE
    from gem5_configs.render import read_params
    from reports.join import simulated_kernels

    if not run_dirs:
        raise InputError("extrapolation needs at least one sliced run directory")
    first = None
    layer_times: list[LayerTime] = []
    simulated: dict[tuple[int, str], float] = {}
    notes: list[str] = []
    doubles = []
    for run in map(Path, run_dirs):
        params = read_params(run)
        record_path = run / SLICE_FILE
        if not record_path.is_file():
            raise InputError(f"{run}: no {SLICE_FILE} (extrapolation needs runs sliced from a census)")
        record = json.loads(record_path.read_text(encoding="utf-8"))
        key = (machine_key(params), tuple(params.workload.guest_command))
        if first is None:
            first = (params, key)
        elif key != first[1]:
            what = "machine" if key[0] != first[1][0] else "guest command"
            raise InputError(f"{run}: another {what} than {run_dirs[0]}; extrapolate one census at a time")
        machine = machine_of(params.gpu, params.machine.profile)
        kernels = simulated_kernels(run)
        work = kernels[~kernels["blit"].astype(bool)] if "blit" in kernels else kernels
        seconds = float(work["gpu_cycles"].sum()) / machine.clock_hz
        doubles.append(is_stand_in(run))
        layer, module = record.get("layer"), record.get("module")
        if layer is not None and int(layer) >= 0 and module is None:
            layer_times.append(LayerTime(int(record["step"]), int(layer), seconds, f"run {record['run_id']}"))
        elif module in ROLE_COMPONENTS and (layer is None or int(layer) < 0):
            simulated[(int(record["step"]), ROLE_COMPONENTS[module])] = seconds
        else:
            notes.append(f"{run}: a slice of module {module} of layer {layer}, not a whole layer: left out")
    assert first is not None
    params = first[0]
    plan = driver_plan(params.workload.guest_command)
    machine = machine_of(params.gpu, params.machine.profile)
    result = extrapolate(
        plan, machine, layer_times, estimator=estimator, windows=simulated, stand_in=any(doubles)
    )
    return Extrapolation(result.components, result.steps, result.request, result.assumption, notes)
