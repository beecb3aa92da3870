"""The conductor: turns an experiment into runs, submits them when their inputs exist, resumes.

Each run is rendered when the run it depends on is done (a census needs the boot checkpoint, a
slice needs the census's kernel map), so the graph grows as results arrive. Before a run is
submitted it is preflighted against the gem5 source tree when the spec names a real one; a
preflight failure stops that branch with its message. Resume is the default: a run whose outputs
validate (the events end record is there, expected, and its ``run_id`` is the render's) is not
run again -- ``force`` re-runs everything, ``retry_failed`` re-runs what failed. Ctrl-C cancels
the running runs (their process groups end) and records them as cancelled; a conductor that
crashed loses nothing: on start, runs the store says are running are looked up again by their
backend handle and either followed or settled from their outputs.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.rundir import EVENTS_FILENAME, move_aside, outdir_of, run_id_of
from orchestrator.plan import RunPlan, gem5_source, root_runs, slice_runs
from orchestrator.spec import Experiment, load_spec, variants
from orchestrator.store import RunRecord, RunStore, now

POLL_S = 0.2
KERNELS_FILE = "kernels.parquet"


class EventsTail:
    """Follows a growing events side-file from where it last read (gem5 appends and flushes)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.kernels, self.skips, self.tick, self.partial = path, 0, 0, 0, 0, b""

    def read(self) -> tuple[int, int, int]:
        """(kernels completed in detail, kernels skipped, latest tick) so far."""
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return self.kernels, self.skips, self.tick
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("kind") == "kernel":
                self.kernels += 1
            elif record.get("kind") == "skip":
                self.skips += 1
            self.tick = int(record.get("tick") or self.tick)
        return self.kernels, self.skips, self.tick


@dataclass
class Node:
    plan: RunPlan
    spec: Experiment
    variant: str
    run_id: str | None = None
    parent: Node | None = None
    expanded: bool = False
    children: list[Node] = field(default_factory=list)
    tail: EventsTail | None = None
    expected: int | None = None


def default_workspace(spec_path: Path, spec: Experiment) -> Path:
    return spec_path.resolve().parent / "runs" / spec.name


# ------------------------------------------------------------------------------ outputs
def read_end(outdir: Path) -> tuple[dict | None, dict | None, int]:
    """(start, end, kernels completed in detail) of an outdir's events file (partial lines skipped)."""
    start = end = None
    kernels = 0
    try:
        with (outdir / EVENTS_FILENAME).open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                kind = record.get("kind")
                if kind == "start":
                    start = record
                elif kind == "end":
                    end = record
                elif kind == "kernel":
                    kernels += 1
    except OSError:
        pass
    return start, end, kernels


def outputs_valid(run_dir: Path, run_id: str) -> tuple[bool, str]:
    """Whether a run directory holds this render's complete outputs (resume skips it then)."""
    outdir = outdir_of(run_dir)
    start, end, _ = read_end(outdir)
    if start is None:
        return False, "no events side-file"
    if start.get("run_id") != run_id:
        return False, f"outputs belong to run {start.get('run_id')}"
    if end is None:
        return False, "no end record (the run did not finish)"
    if not end.get("expected"):
        return False, f"ended by {end.get('cause')!r}"
    return True, "complete"


# ------------------------------------------------------------------------------ the conductor
class Conductor:
    def __init__(
        self,
        spec_path: str | Path,
        workspace: str | Path | None = None,
        jobs: int | None = None,
        force: bool = False,
        retry_failed: bool = False,
        reporter: Any = None,
        progress: Any = None,
    ) -> None:
        self.spec_path = Path(spec_path)
        self.spec, self.base = load_spec(self.spec_path)
        self.workspace = (
            Path(workspace) if workspace else default_workspace(self.spec_path, self.spec)
        ).resolve()
        self.store = RunStore(self.workspace)
        self.jobs = jobs or self.spec.backend.jobs
        self.force = force
        self.retry_failed = retry_failed
        self.report = reporter or (lambda message: None)
        #: progress(label, kernels_done, kernels_expected | None, tick, finished: bool)
        self.progress = progress or (lambda *args: None)
        from orchestrator.backends import make_backend

        self.backend = make_backend(
            self.spec.backend.kind,
            self.spec.backend.settings,
            self.workspace,
            (self.spec.backend.cpus_per_run, self.spec.backend.mem_gib_per_run),
        )
        capacity = getattr(self.backend, "capacity", None)
        #: (CPUs, memory GiB) that runs at once may reserve; None: the backend admits on its own.
        self.capacity: tuple[float, float] | None = capacity() if capacity else None
        self.nodes: list[Node] = []
        self.running: dict[str, Node] = {}
        self.done_this_call: set[str] = set()
        self._cancelled = False

    # -- graph
    def _roots(self) -> list[Node]:
        nodes = []
        for variant, spec in variants(self.spec):
            plans = root_runs(spec, self.base, self.workspace, variant)
            parent = None
            for plan in plans:
                node = Node(plan, spec, variant, parent=parent)
                if parent is not None:
                    parent.children.append(node)
                nodes.append(node)
                parent = node
        return nodes

    def _env(self, spec: Experiment) -> dict[str, str]:
        """The experiment's own variables only; each backend adds what its host needs."""
        return {
            key: os.path.expandvars(value).replace("{spec_dir}", str(self.base))
            for key, value in spec.gem5.env.items()
        }

    # -- rendering
    def _render(self, node: Node) -> str:
        from gem5_configs.params import make_params
        from gem5_configs.render import render_run

        plan = node.plan
        if plan.kind == "slice":
            kept = _kept_slice(plan, node.parent.run_id)  # type: ignore[union-attr]
            if kept is not None:
                return kept
            from gem5_configs.slicing import params_from_census

            step, layer, module = plan.slice_at  # type: ignore[misc]
            params, record = params_from_census(node.parent.plan.run_dir, step, layer, module)  # type: ignore[union-attr]
        else:
            params, record = make_params(**plan.options), None
        rendered = render_run(params)
        run_dir = plan.run_dir
        if run_id_of(run_dir) != rendered.run_id:
            from foundation.rundir import stale_outputs

            if stale_outputs(run_dir, rendered.run_id, params.outdir):
                target = move_aside(run_dir / params.outdir)
                self.report(f"{plan.label}: outputs of an earlier render moved aside to {target.name}")
        if not _same_files(run_dir, rendered.files):
            rendered.write(run_dir)
        if record is not None:
            from foundation import atomic
            from foundation.rundir import SLICE_FILE

            atomic.write_text(
                run_dir / SLICE_FILE, json.dumps({"run_id": rendered.run_id, **record}, indent=2) + "\n"
            )
        return rendered.run_id

    # -- the loop
    def run(self) -> int:
        """Run the experiment to the end; the exit status (0: every run done)."""
        self.nodes = self._roots()
        self._reconcile()
        previous = signal.signal(signal.SIGINT, self._interrupt)
        term = signal.signal(signal.SIGTERM, self._interrupt)
        try:
            while True:
                progressed = self._step()
                if self._cancelled:
                    self._cancel_all()
                    return 130
                if not self.running and not progressed:
                    break
                if self.running:
                    time.sleep(POLL_S)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, term)
            self.close()
        records = [self.store.get(n.run_id) for n in self._all() if n.run_id]
        return 0 if records and all(r is not None and r.state == "done" for r in records) else 1

    def _all(self) -> list[Node]:
        out, todo = [], [n for n in self.nodes if n.parent is None]
        while todo:
            node = todo.pop(0)
            out.append(node)
            todo.extend(node.children)
        return out

    def _interrupt(self, signum: int, frame: Any) -> None:
        self._cancelled = True

    def _ready(self, node: Node) -> bool:
        if node.run_id is not None:
            return False
        if node.parent is None:
            return True
        parent = self.store.get(node.parent.run_id) if node.parent.run_id else None
        return parent is not None and parent.state == "done"

    def _step(self) -> bool:
        progressed = False
        for node in list(self.running.values()):
            progressed |= self._poll(node)
        for node in self._all():
            if self._cancelled:
                break
            if not self._ready(node):
                continue
            if len(self.running) >= self.jobs or not self._admits(node):
                break
            progressed = True
            self._start(node)
        return progressed

    def _admits(self, node: Node) -> bool:
        """Admission by the CPUs and memory each run reserves (``backend.cpus_per_run``,
        ``mem_gib_per_run``); one run is always admitted, however large, so nothing starves."""
        if self.capacity is None or not self.running:
            return True
        cpus, mem = self.capacity
        want = node.spec.backend
        used_cpus = sum(n.spec.backend.cpus_per_run for n in self.running.values())
        used_mem = sum(n.spec.backend.mem_gib_per_run for n in self.running.values())
        return used_cpus + want.cpus_per_run <= cpus and used_mem + want.mem_gib_per_run <= mem

    def _record(self, node: Node, run_id: str) -> RunRecord:
        record = self.store.get(run_id)
        if record is None:
            record = RunRecord(
                run_id=run_id,
                label=node.plan.label,
                kind=node.plan.kind,
                experiment=self.spec.name,
                run_dir=str(node.plan.run_dir),
                variant=node.variant,
                parent=node.parent.run_id if node.parent else None,
                queued_at=now(),
                machine=node.plan.label.split("/")[-2]
                if node.plan.kind != "boot"
                else node.plan.label.split("/")[-1],
            )
            self.store.put(record)
        return record

    def _start(self, node: Node) -> None:
        try:
            run_id = self._render(node)
        except InputError as exc:
            node.run_id = f"unrendered:{node.plan.label}"
            self.store.put(
                RunRecord(run_id=node.run_id, label=node.plan.label, kind=node.plan.kind, experiment=self.spec.name,
                          run_dir=str(node.plan.run_dir), variant=node.variant, state="failed",
                          digest={"cause": "render", "detail": str(exc), "hint": "fix the spec or its inputs", "evidence": None})
            )  # fmt: skip
            self.report(f"{node.plan.label}: cannot render: {exc}")
            return
        node.run_id = run_id
        record = self._record(node, run_id)
        valid, why = outputs_valid(node.plan.run_dir, run_id)
        if valid and not self.force:
            if record.state != "done":
                self._finish(node, record, exit_code=0, timed_out=False, resumed=True)
            else:
                self._after_done(node)
            return
        if record.state == "failed" and not (self.retry_failed or self.force) and record.attempts:
            self.report(
                f"{node.plan.label}: failed before ({(record.digest or {}).get('cause')}); --retry-failed to run it again"
            )
            return
        if (
            record.state in ("timed_out", "cancelled")
            and not (self.retry_failed or self.force)
            and record.attempts
        ):
            self.report(f"{node.plan.label}: {record.state} before; --retry-failed to run it again")
            return
        if not self._preflight(node, record):
            return
        outdir = outdir_of(node.plan.run_dir)
        if outdir.is_dir() and any(outdir.iterdir()):
            # A previous attempt's or another render's outputs: never mix them with this run's.
            target = move_aside(outdir)
            self.report(f"{node.plan.label}: earlier outputs ({why}) moved aside to {target.name}")
        env = self._env(node.spec)
        expected = _expected_kernels(node.plan.run_dir) if node.plan.kind == "slice" else None
        handle = self.backend.submit(node.plan.run_dir, env, node.plan.timeout_s)
        self.store.update(
            run_id,
            state="running",
            attempts=record.attempts + 1,
            backend=self.backend.name,
            host=self.backend.host(),
            handle=handle,
            started_at=now(),
            ended_at=None,
            exit_code=None,
            exit_cause=None,
            digest=None,
            predicted_s=self._predict(node),
            expected_kernels=expected,
        )
        node.tail = None
        self.running[run_id] = node
        self.report(f"{node.plan.label}: started ({run_id})")

    def _preflight(self, node: Node, record: RunRecord) -> bool:
        spec = node.spec
        source, real = gem5_source(spec, self.base)
        if not (spec.gem5.preflight and real):
            return True
        from orchestrator.commands.preflight import check_run

        report = check_run(node.plan.run_dir, source)
        if report["ok"]:
            return True
        first = (report["findings"] or report["machine_mismatches"] or [{}])[0]
        detail = (
            first.get("message")
            or f"{first.get('knob')}: run {first.get('expected')!r}, built {first.get('built')!r}"
        )
        self.store.update(
            record.run_id,
            state="failed",
            attempts=record.attempts + 1,
            ended_at=now(),
            exit_cause="preflight",
            digest={"cause": "preflight", "detail": f"{first.get('name', first.get('knob'))}: {detail}", "hint": "the rendered config does not build in this gem5 tree; see preflight/preflight.log", "evidence": "preflight/layerlab_preflight.json"},
        )  # fmt: skip
        self.report(f"{node.plan.label}: preflight failed: {detail}")
        return False

    def _poll(self, node: Node) -> bool:
        record = self.store.get(node.run_id)  # type: ignore[arg-type]
        assert record is not None and record.handle is not None
        if node.tail is None:
            node.tail = EventsTail(outdir_of(node.plan.run_dir) / EVENTS_FILENAME)
        simulated, skipped, tick = node.tail.read()
        kernels = skipped if node.plan.kind == "census" else simulated
        if kernels != record.kernels_done:
            self.store.update(record.run_id, kernels_done=kernels)
        self.progress(node.plan.label, kernels, record.expected_kernels, tick, False)
        polled = self.backend.poll(record.handle)
        if polled.state == "running":
            self.backend.fetch(record.handle, node.plan.run_dir)  # the events file, for progress
            return False
        del self.running[record.run_id]
        self.backend.fetch(record.handle, node.plan.run_dir)
        self.progress(node.plan.label, kernels, record.expected_kernels, tick, True)
        self._finish(node, record, polled.exit_code, polled.timed_out, detail=polled.detail)
        return True

    def _finish(
        self,
        node: Node,
        record: RunRecord,
        exit_code: int | None,
        timed_out: bool,
        resumed: bool = False,
        detail: str | None = None,
    ) -> None:
        from orchestrator.failures import digest

        run_dir = node.plan.run_dir
        current = self.store.get(record.run_id)
        if current is not None and current.state == "cancelled":
            self.report(f"{node.plan.label}: cancelled")  # by `layerlab cancel` from another process
            return
        valid, _why = outputs_valid(run_dir, record.run_id)
        outdir = outdir_of(run_dir)
        start, end, kernels = read_end(outdir)
        if node.plan.kind == "census" and end is not None:
            kernels = int(end.get("kernels_done") or 0)  # a census counts the kernels it skipped
        fields: dict[str, Any] = {
            "ended_at": record.ended_at if resumed and record.ended_at else now(),
            "exit_code": exit_code,
            "kernels_done": kernels,
            "sim_ticks": int(end["tick"]) - int((start or {}).get("tick") or 0) if end else None,
            "exit_cause": end.get("cause") if end else None,
        }
        if record.started_at and not resumed:
            fields["host_seconds"] = fields["ended_at"] - record.started_at
        if valid and not timed_out and (exit_code in (0, None)):
            fields["state"] = "done"
            fields["digest"] = None
            self.store.update(record.run_id, **fields)
            self._after_done(node)
            self.report(f"{node.plan.label}: done" + (" (outputs already complete)" if resumed else ""))
            return
        fields["state"] = "timed_out" if timed_out else "failed"
        fields["digest"] = digest(
            run_dir, outdir, exit_code, end, node.spec.gem5.profile, timed_out, backend_detail=detail
        )
        self.store.update(record.run_id, **fields)
        self.report(
            f"{node.plan.label}: {fields['state']}: {fields['digest']['cause']}: {fields['digest']['detail']}"
        )

    def _after_done(self, node: Node) -> None:
        """What a finished run makes possible: a census's kernel map and slices; a slice's table."""
        record = self.store.get(node.run_id)  # type: ignore[arg-type]
        if node.plan.kind == "census" and not node.expanded:
            if _kernel_map_run_id(node.plan.run_dir) != node.run_id:
                from workloads.census import build_kernel_map, save_kernel_map

                save_kernel_map(build_kernel_map(node.plan.run_dir), node.plan.run_dir)
            for plan in slice_runs(node.spec, node.plan):
                child = Node(plan, node.spec, node.variant, parent=node)
                node.children.append(child)
            node.expanded = True
        elif node.plan.kind == "slice":
            self._collect(node, record)

    def _collect(self, node: Node, record: RunRecord | None) -> None:
        target = node.plan.run_dir / KERNELS_FILE
        if target.is_file() and record is not None and record.gpu_cycles is not None:
            return
        collect_run(node.plan.run_dir)
        import pandas as pd

        table = pd.read_parquet(target)
        cycles = (
            float(table.loc[~table["blit"].astype(bool), "gpu_cycles"].sum())
            if "gpu_cycles" in table
            else None
        )
        self.store.update(node.run_id, gpu_cycles=cycles)  # type: ignore[arg-type]

    def _predict(self, node: Node) -> float | None:
        """Host seconds predicted from the measured rate of done slices of the same machine."""
        if node.plan.kind != "slice":
            return None
        rates = [
            r.host_seconds / r.gpu_cycles
            for r in self.store.all(self.spec.name)
            if r.kind == "slice"
            and r.state == "done"
            and r.host_seconds
            and r.gpu_cycles
            and r.machine == node.plan.label.split("/")[-2]
        ]
        cycles = window_cycles(node)
        if not rates or cycles is None:
            return None
        return sum(rates) / len(rates) * cycles

    # -- recovery and cancel
    def _reconcile(self) -> None:
        """Runs an earlier conductor left 'running': follow them, or settle them from their outputs."""
        by_label = {n.plan.label: n for n in self._all()}
        for record in self.store.all(self.spec.name):
            if record.state != "running" or record.handle is None:
                continue
            node = by_label.get(record.label)
            if node is None:
                continue
            if node.parent is not None and node.parent.run_id is None:
                node.parent.run_id = record.parent
            adopt = getattr(self.backend, "adopt", None)
            if adopt is not None:
                adopt(record.handle, Path(record.run_dir))
            node.run_id = record.run_id
            self.running[record.run_id] = node
            self.report(f"{record.label}: following the run an earlier conductor started ({record.run_id})")

    def _cancel_all(self) -> None:
        for run_id, node in list(self.running.items()):
            record = self.store.get(run_id)
            if record and record.handle:
                self.backend.cancel(record.handle)
            self.store.update(run_id, state="cancelled", ended_at=now(), exit_cause="cancelled by the user")
            self.report(f"{node.plan.label}: cancelled")
        self.running.clear()

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def collect_run(run_dir: Path) -> Path:
    """The per-kernel table of a sliced run, joined with its census labels, as parquet."""
    from foundation import atomic
    from reports.join import simulated_kernels

    table = simulated_kernels(run_dir)
    target = run_dir / KERNELS_FILE
    atomic.write_with(target, lambda tmp: table.to_parquet(tmp, index=False))
    return target


def window_cycles(node: Node) -> float | None:
    """Analytical GPU cycles of a slice's window: the roofline estimate of its layer's ops."""
    try:
        from analytical.hardware import machine_of
        from analytical.pipeline import estimate_layer
        from gem5_configs.render import read_params
        from workloads.models import load_model_config

        params = read_params(node.plan.run_dir)
        machine = machine_of(params.gpu, params.machine.profile)
        spec = node.spec
        step, _layer, _module = node.plan.slice_at  # type: ignore[misc]
        prefill = step == 0 and spec.shapes.phases in ("prefill", "both")
        context = (
            spec.shapes.context
            + (spec.shapes.prompt_len if spec.shapes.phases == "both" else 0)
            + max(0, step - 1)
        )
        table = estimate_layer(
            load_model_config(spec.model),
            machine,
            "prefill" if prefill else "decode",
            batch=spec.shapes.batch,
            seq=spec.shapes.prompt_len if prefill else None,
            context=spec.shapes.context if prefill else max(1, context),
            layers="0",  # the analytical model's decoder layers are all alike
        )
        return float(table["est_cycles"].sum())
    except Exception:  # a prediction is a convenience: never let it stop a run
        return None


def _expected_kernels(run_dir: Path) -> int | None:
    from foundation.rundir import SLICE_FILE

    try:
        return int(json.loads((run_dir / SLICE_FILE).read_text(encoding="utf-8"))["expected_kernels"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _kept_slice(plan: RunPlan, census_run_id: str | None) -> str | None:
    """The run_id of a slice rendered before from this very census run (no re-render needed:
    the census's run_id covers the machine, the guest and the templates)."""
    from foundation.rundir import SLICE_FILE

    try:
        record = json.loads((plan.run_dir / SLICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    at = (record.get("step"), record.get("layer"), record.get("module"))
    same_census = census_run_id and record.get("census_run_id") == census_run_id and at == plan.slice_at
    if same_census and run_id_of(plan.run_dir) == record.get("run_id"):
        return str(record["run_id"])
    return None


def _kernel_map_run_id(run_dir: Path) -> str | None:
    from foundation.rundir import KERNEL_MAP_FILE

    try:
        with (run_dir / KERNEL_MAP_FILE).open(encoding="utf-8") as handle:
            return json.load(handle).get("meta", {}).get("run_id")
    except (OSError, ValueError):
        return None


def _same_files(run_dir: Path, files: dict[str, str]) -> bool:
    for name, text in files.items():
        try:
            if (run_dir / name).read_text(encoding="utf-8") != text:
                return False
        except OSError:
            return False
    return True
