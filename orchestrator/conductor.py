"""The conductor: turns an experiment into runs, submits them when their inputs exist, resumes.

Each run is rendered when the run it depends on is done (a census needs the boot checkpoint, a
slice needs the census's kernel map), so the graph grows as results arrive. Before a run is
submitted it is preflighted against the gem5 source tree when the spec names a real one; a
preflight failure stops that branch with its message, and so does a census whose kernel map
cannot be built (markers missing): the branch fails with a digest naming the cause, the other
branches go on. Resume is the default: a run whose outputs validate (the events side-file
starts with the render's ``run_id`` and ends with an expected end record) is not run again --
``force`` re-runs everything, ``retry_failed`` re-runs what failed. Ctrl-C cancels the running
runs (their process groups end) and records them as cancelled; a conductor that crashed loses
nothing: on start, runs the store says are running are looked up again by their backend handle
and either followed or settled from their outputs.

Resume is fast because it need not render: the store remembers, per run label, a key of
everything the run's ``run_id`` depends on -- the plan's options, the identity (size, mtime,
inode) of each input file the render digests, the checkpoint record it restores, the census a
slice comes from, and the renderer's own code (``renderer_stamp``) -- and the ``run_id`` it
rendered to. A run whose key matches, whose record is done, whose ``params.json`` is the one
that render wrote and whose events file's first and last lines say complete is skipped after a
few ``stat`` calls and two small reads. Any difference falls back to the full render, which is
the judge; the key is computed before that render, so a file changing meanwhile can only make
a later key miss, never match wrongly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.rundir import (
    EVENTS_FILENAME,
    INSTANTIATION_FILE,
    KERNEL_MAP_FILE,
    PARAMS_FILE,
    move_aside,
    outdir_of,
    run_id_of,
)
from orchestrator.followup import KERNELS_FILE
from orchestrator.plan import RunPlan, gem5_source, root_runs, slice_runs
from orchestrator.spec import Experiment, load_spec, variants
from orchestrator.store import Render, RunRecord, RunStore, now

#: The longest wait between two polls of the running runs; a child process that ends (a local
#: run) wakes the conductor sooner (``_ChildWakeup``).
POLL_S = 0.2
#: How long a run that ended badly waits for its verdict: ``layerlab cancel`` ends a run before
#: it records it as cancelled, and the run's end must not be called a failure meanwhile.
SETTLE_S = 1.0
#: The boot run's checkpoint record (gem5_configs.params.CHECKPOINT_ID_FILE; not imported: the
#: resume must not load the renderer).
CHECKPOINT_RECORD = "layerlab_checkpoint.json"
#: How much of an events file's start and end the resume reads (a record is ~300 bytes).
TAIL_BYTES = 4096
REPO = Path(__file__).resolve().parents[1]
#: The code a render runs: a change in any of these files changes every resume key once.
CODE_ROOTS = (
    REPO / "analytical",
    REPO / "foundation",
    REPO / "gem5_configs",
    REPO / "workloads",
    REPO / "orchestrator" / "plan.py",
    REPO / "orchestrator" / "knobs.py",
    REPO / "orchestrator" / "spec.py",
    REPO / "orchestrator" / "conductor.py",
)


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


@dataclass(eq=False)
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
    #: The resume key (None: not computed yet, or this run cannot be keyed).
    key: str | None = None
    #: Queued for a slot; rendered and checked already (``_prepare``), with its record.
    queued: bool = False
    record: RunRecord | None = None


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


def _validity(start: dict | None, end: dict | None, run_id: str) -> tuple[bool, str]:
    if start is None:
        return False, "no events side-file"
    if start.get("run_id") != run_id:
        return False, f"outputs belong to run {start.get('run_id')}"
    if end is None:
        return False, "no end record (the run did not finish)"
    if not end.get("expected"):
        return False, f"ended by {end.get('cause')!r}"
    return True, "complete"


def outputs_valid(run_dir: Path, run_id: str) -> tuple[bool, str]:
    """Whether a run directory holds this render's complete outputs (resume skips it then)."""
    start, end, _ = read_end(outdir_of(run_dir))
    return _validity(start, end, run_id)


def events_complete(outdir: Path, run_id: str) -> bool:
    """The resume's check, two small reads however long the file: the first record starts
    ``run_id`` and the last one is an expected end. Anything else (a partial last line, another
    run's start) is left to ``outputs_valid``, which reads the whole file."""
    try:
        fd = os.open(outdir / EVENTS_FILENAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, TAIL_BYTES, 0)
        tail = head if size <= TAIL_BYTES else os.pread(fd, TAIL_BYTES, size - TAIL_BYTES)
    except OSError:
        return False
    finally:
        os.close(fd)
    first, newline, _ = head.partition(b"\n")
    lines = tail.rstrip(b"\n").rsplit(b"\n", 1)
    if not newline or (len(lines) < 2 and size > TAIL_BYTES):
        return False  # a first or last line longer than a read: not an events file we know
    try:
        start, end = json.loads(first), json.loads(lines[-1])
    except ValueError:
        return False
    return (
        isinstance(start, dict)
        and isinstance(end, dict)
        and start.get("kind") == "start"
        and start.get("run_id") == run_id
        and end.get("kind") == "end"
        and bool(end.get("expected"))
    )


# ------------------------------------------------------------------------------ resume keys
def file_identity(path: str | os.PathLike[str]) -> str:
    """``path:size:mtime_ns:inode`` (the digest cache's own key), or ``path:missing``."""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def renderer_stamp(roots: Iterable[Path] = CODE_ROOTS) -> str:
    """Identity of the code a render runs: size and mtime of every file under ``roots`` (a
    template, an option table, a default, the digest rules), and the Python that runs it."""
    parts = [sys.version]

    def walk(path: str) -> None:
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name == "__pycache__" or entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    walk(entry.path)
                elif entry.is_file():
                    st = entry.stat()
                    parts.append(f"{entry.path}:{st.st_size}:{st.st_mtime_ns}")

    for root in roots:
        if root.is_dir():
            walk(str(root))
        else:
            parts.append(file_identity(root))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


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
        # The store last: a spec or backend setting that is refused leaves no workspace behind.
        self.store = RunStore(self.workspace)
        self.nodes: list[Node] = []
        #: Every node of the graph so far, in the order it was made.
        self.every: list[Node] = []
        #: Nodes whose inputs exist, waiting for a slot, in order.
        self.queue: deque[Node] = deque()
        self.running: dict[str, Node] = {}
        self.done_this_call: set[str] = set()
        self._cancelled = False
        #: The code a render runs, once per conductor (before any render: see the module doc).
        self.stamp = renderer_stamp()
        #: The store's records when the conductor started (what the resume trusts) and each
        #: label's last render; new renders are written in one transaction per step.
        self.records: dict[str, RunRecord] = {}
        self.known: dict[str, Render] = {}
        self._pending: dict[str, Render] = {}
        self._which: dict[str, str] = {}
        #: Identities of the input files many runs share, taken once per conductor: an
        #: identity taken before a render can only make a later key miss (the module doc).
        self._inputs: dict[str, str] = {}
        #: Background work in flight: future -> (node, done, failed); see ``_background``.
        self.after: dict[Any, tuple[Node, Any, Any]] = {}
        #: Runs that ended badly, waiting for their verdict (``_settle_ended``).
        self.settling: dict[str, tuple[Node, RunRecord, Any, float]] = {}
        self._helper: Any = None
        self._wakeup = _ChildWakeup()

    # -- graph
    def _roots(self) -> list[Node]:
        nodes: list[Node] = []
        memo: dict = {}
        for variant, spec in variants(self.spec):
            plans = root_runs(spec, self.base, self.workspace, variant, memo)
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

    # -- resume keys
    def _input_identity(self, path: str | os.PathLike[str]) -> str:
        key = str(path)
        if key not in self._inputs:
            self._inputs[key] = file_identity(key)
        return self._inputs[key]

    def _binary_identity(self, binary: str) -> str:
        if "/" not in binary:
            if binary not in self._which:
                self._which[binary] = shutil.which(binary) or binary
            binary = self._which[binary]
        return self._input_identity(binary)

    def _key(self, node: Node) -> str | None:
        """Everything the run's ``run_id`` depends on, hashed (None: only a render can tell)."""
        plan = node.plan
        if plan.kind == "slice":
            census = node.parent
            if census is None or census.key is None or census.run_id is None:
                return None
            folder = census.plan.run_dir
            parts = [
                "slice", census.key, census.run_id, json.dumps(plan.slice_at),
                *(file_identity(folder / name) for name in (PARAMS_FILE, INSTANTIATION_FILE, KERNEL_MAP_FILE)),
            ]  # fmt: skip
        else:
            options = plan.options
            parts = [plan.kind, json.dumps(options, sort_keys=True, default=str)]
            parts += [
                self._input_identity(options[n]) for n in ("kernel", "disk", "second_disk") if options.get(n)
            ]
            parts.append(self._binary_identity(str(options.get("gem5_binary") or "gem5.opt")))
            source = options.get("gem5_src")
            if not source:
                return None
            tree = Path(source)
            parts += [
                self._input_identity(tree / "src" / "base" / "version.cc"),
                self._input_identity(tree / "configs" / "example" / "gpufs" / "runfs.py"),
            ]
            if options.get("restore_dir"):
                record = Path(options["restore_dir"]) / CHECKPOINT_RECORD
                if not record.is_file():
                    return None  # identified by its m5.cpt files' content: the render reads them
                parts.append(file_identity(record))
        parts.append(self.stamp)
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def _remember(self, node: Node, outdir: str | None = None, **files: str) -> None:
        """Note the node's render (and files the resume may trust unread) for the next flush."""
        label = node.plan.label
        if node.key is None or node.run_id is None:
            return
        known = self.known.get(label)
        same = known is not None and known.key == node.key and known.run_id == node.run_id
        kept = dict(known.files) if same else {}
        kept.update(files)
        render = Render(node.key, node.run_id, outdir or (known.outdir if same else "m5out"), kept)
        if render != known:
            self.known[label] = self._pending[label] = render

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            self.store.remember(self.spec.name, pending)

    def _resume(self, node: Node) -> bool:
        """Skip a done run without rendering it when its key, record, params.json and events
        file all say it is this render's and complete (the module doc); False: look closer."""
        node.key = self._key(node)
        if self.force:
            return False
        known = self.known.get(node.plan.label)
        if node.key is None or known is None or known.key != node.key:
            return False
        record = self.records.get(known.run_id)
        run_dir = node.plan.run_dir
        if (
            record is None
            or record.state != "done"
            or known.files.get(PARAMS_FILE) != file_identity(run_dir / PARAMS_FILE)
            or not events_complete(run_dir / known.outdir, known.run_id)
        ):
            return False
        node.run_id = known.run_id
        self._after_done(node, record)
        return True

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

            atomic.write_text(  # rendered with the run (see RenderedRun.write): not fsynced
                run_dir / SLICE_FILE,
                json.dumps({"run_id": rendered.run_id, **record}, indent=2) + "\n",
                durable=False,
            )
        return rendered.run_id

    # -- the loop
    def run(self) -> int:
        """Run the experiment to the end; the exit status (0: every run done)."""
        self.records = {r.run_id: r for r in self.store.all(self.spec.name)}
        self.known = self.store.renders(self.spec.name)
        self.nodes = self._roots()
        self.every = list(self.nodes)
        self._reconcile()
        previous = signal.signal(signal.SIGINT, self._interrupt)
        term = signal.signal(signal.SIGTERM, self._interrupt)
        try:
            with self._wakeup as wakeup:
                self._make_ready([n for n in self.nodes if n.parent is None])
                while True:
                    progressed = self._step()
                    if self._cancelled:
                        self._cancel_all()
                        return 130
                    busy = self.running or self.after or self.settling
                    if not busy and not progressed:
                        break
                    if busy:
                        # After a quiet step, forget the wake-ups its own polls caused.
                        wakeup.wait(POLL_S, fresh=not progressed, ready=self._settled)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, term)
            with contextlib.suppress(Exception):
                self._flush()
            self.close()
        states = self.store.states(self.spec.name)
        ids = [n.run_id for n in self.every if n.run_id]
        return 0 if ids and all(states.get(i) == "done" for i in ids) else 1

    def _settled(self) -> bool:
        return any(future.done() for future in self.after)

    def _interrupt(self, signum: int, frame: Any) -> None:
        self._cancelled = True

    def _make_ready(self, nodes: list[Node]) -> None:
        """Nodes whose inputs now exist: skipped at once when complete (what they make possible
        is made ready in turn, by ``_after_done``), else queued for a slot."""
        for node in nodes:
            if node.run_id is not None or node.queued:
                continue  # followed from an earlier conductor (``_reconcile``), or queued
            if not self._resume(node):
                node.queued = True
                self.queue.append(node)

    def _step(self) -> bool:
        """Poll the running runs, take in finished background work, start what fits.

        The run at the head of the queue is rendered and checked (``_prepare``) even while
        every slot is taken, so that its render and preflight happen while the others run and
        it starts the moment a slot frees.
        """
        progressed = self._settle()
        for node in list(self.running.values()):
            progressed |= self._poll(node)
        progressed |= self._settle_ended(time.monotonic()) | self._settle()
        while self.queue and not self._cancelled:
            node = self.queue[0]
            if node.record is None and not self._prepare(node):
                self.queue.popleft()  # settled without a slot: complete, failed before, followed
                progressed = True
                continue
            if len(self.running) >= self.jobs or not self._admits(node):
                break
            self.queue.popleft()
            progressed = True
            self._submit(node)
        self._flush()
        return progressed

    # -- background work
    def _background(
        self, node: Node, task: str, args: tuple, done: Any, failed: Any, urgent: bool = False
    ) -> None:
        """Have the helper process (``orchestrator.helper``) do ``task`` of
        ``orchestrator.followup`` (a kernel map, a kernel table, a prediction: reading and
        writing the run's own files only); ``done(result)`` or ``failed(InputError)`` follow
        on this thread, so the store and the graph are touched here only. ``urgent``: runs
        wait for it (a census's kernel map), so it goes before the tables."""
        if self._helper is None:
            from orchestrator.helper import Helper

            self._helper = Helper()
        future = self._helper.submit(task, *args, urgent=urgent)
        self.after[future] = (node, done, failed)
        future.add_done_callback(lambda _future: self._wakeup.poke())

    def _settle(self) -> bool:
        """Apply the background work that has finished; whether there was any."""
        finished = [future for future in self.after if future.done()]
        for future in finished:
            _node, done, failed = self.after.pop(future)
            try:
                result = future.result()
            except InputError as exc:
                failed(exc)
            else:
                done(result)
        return bool(finished)

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

    def _prepare(self, node: Node) -> bool:
        """Render the run and check what it needs; False when it is settled without running
        (complete, failed before, followed, cannot render), True when it waits for a slot."""
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
            return False
        node.run_id = run_id
        outdir = outdir_of(node.plan.run_dir)
        self._remember(
            node,
            str(outdir.relative_to(node.plan.run_dir)),
            **{PARAMS_FILE: file_identity(node.plan.run_dir / PARAMS_FILE)},
        )
        record = self._record(node, run_id)
        start, end, _ = read_end(outdir)
        valid, why = _validity(start, end, run_id)
        if valid and not self.force:
            if record.state != "done":
                self._finish(node, record, exit_code=0, timed_out=False, resumed=True)
            else:
                self._after_done(node, record)
            return False
        if record.state == "running" and record.handle and not self.force:
            # An earlier conductor started it and died before this node was in its graph.
            adopt = getattr(self.backend, "adopt", None)
            if adopt is not None:
                adopt(record.handle, node.plan.run_dir)
            self.running[run_id] = node
            self.report(f"{node.plan.label}: following the run an earlier conductor started ({run_id})")
            return False
        if record.state == "failed" and not (self.retry_failed or self.force) and record.attempts:
            self.report(
                f"{node.plan.label}: failed before ({(record.digest or {}).get('cause')}); --retry-failed to run it again"
            )
            return False
        if (
            record.state in ("timed_out", "cancelled")
            and not (self.retry_failed or self.force)
            and record.attempts
        ):
            self.report(f"{node.plan.label}: {record.state} before; --retry-failed to run it again")
            return False
        if not self._preflight(node, record):
            return False
        if outdir.is_dir() and any(outdir.iterdir()):
            # A previous attempt's or another render's outputs: never mix them with this run's.
            target = move_aside(outdir)
            self.report(f"{node.plan.label}: earlier outputs ({why}) moved aside to {target.name}")
        stage = getattr(self.backend, "stage", None)
        if stage is not None:
            stage(node.plan.run_dir)
        node.record = record
        return True

    def _submit(self, node: Node) -> None:
        record, run_id = node.record, node.run_id
        assert record is not None and run_id is not None
        env = self._env(node.spec)
        expected = _expected_kernels(node.plan.run_dir) if node.plan.kind == "slice" else None
        try:
            handle = self.backend.submit(node.plan.run_dir, env, node.plan.timeout_s)
        except InputError as exc:
            # The backend refused the run (sbatch said no, a host lacks a path map entry): a
            # setting of the spec is wrong, so the run is recorded failed with the backend's
            # words and `layerlab run` stops with that one line (exit 2); runs already going
            # keep going and the next `layerlab run` follows them.
            self.store.update(
                run_id,
                state="failed",
                attempts=record.attempts + 1,
                ended_at=now(),
                exit_cause="submit",
                digest={"cause": "backend", "detail": str(exc), "hint": f"the {self.backend.name} backend could not start the run", "evidence": None},
            )  # fmt: skip
            raise
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
            predicted_s=None,
            expected_kernels=expected,
        )
        node.tail = None
        self.running[run_id] = node
        self.report(f"{node.plan.label}: started ({run_id})")
        self._predict(node)

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
        if not polled.timed_out and not events_complete(outdir_of(node.plan.run_dir), record.run_id):
            self.settling[record.run_id] = (node, record, polled, time.monotonic() + SETTLE_S)
            return False
        self._finish(node, record, polled.exit_code, polled.timed_out, detail=polled.detail)
        return True

    def _settle_ended(self, now_s: float | None = None) -> bool:
        """Give the runs that ended badly their verdict: cancelled if ``layerlab cancel`` said
        so meanwhile, else (after ``SETTLE_S``) whatever their outputs say."""
        progressed = False
        for run_id, (node, record, polled, deadline) in list(self.settling.items()):
            current = self.store.get(run_id)
            if current is not None and current.state == "cancelled":
                del self.settling[run_id]
                self.report(f"{node.plan.label}: cancelled")  # by `layerlab cancel`
                progressed = True
            elif now_s is None or now_s >= deadline:
                del self.settling[run_id]
                self._finish(node, record, polled.exit_code, polled.timed_out, detail=polled.detail)
                progressed = True
        return progressed

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
        outdir = outdir_of(run_dir)
        start, end, kernels = read_end(outdir)
        valid, _why = _validity(start, end, record.run_id)
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
            self.report(f"{node.plan.label}: done" + (" (outputs already complete)" if resumed else ""))
            self._after_done(node, None)
            return
        fields["state"] = "timed_out" if timed_out else "failed"
        fields["digest"] = digest(
            run_dir, outdir, exit_code, end, node.spec.gem5.profile, timed_out, backend_detail=detail
        )
        self.store.update(record.run_id, **fields)
        self.report(
            f"{node.plan.label}: {fields['state']}: {fields['digest']['cause']}: {fields['digest']['detail']}"
        )

    def _after_done(self, node: Node, record: RunRecord | None) -> None:
        """What a finished run makes possible: a census's kernel map and slices; a slice's table.

        Both are made in the helper process (a real kernel table takes minutes; the other runs
        go on meanwhile). One that cannot be made (``InputError``: markers missing, stats
        unreadable) fails that run with a digest naming the cause; other branches go on.
        """
        plan = node.plan
        if plan.kind == "boot":
            self._make_ready(node.children)
        elif plan.kind == "census" and not node.expanded:
            known = self.known.get(plan.label)
            if (
                known is not None
                and known.run_id == node.run_id
                and known.files.get(KERNEL_MAP_FILE) == file_identity(plan.run_dir / KERNEL_MAP_FILE)
            ):
                self._expand(node)
                return
            self._background(
                node,
                "kernel_map",
                (str(plan.run_dir), node.run_id),
                lambda _result: self._expand(node),
                lambda exc: self._fail_after(
                    node, "kernel_map", f"the census ran but its kernel map cannot be built: {exc}",
                    "run the guest driver with its gem5 markers on (--markers gem5) in a config that "
                    "exits on work items; `layerlab census RUN_DIR` shows the same error",
                    EVENTS_FILENAME,
                ),
                urgent=True,
            )  # fmt: skip
        elif plan.kind == "slice":
            if record is None:
                record = self.store.get(node.run_id)  # type: ignore[arg-type]
            if (
                (plan.run_dir / KERNELS_FILE).is_file()
                and record is not None
                and record.gpu_cycles is not None
            ):
                return
            self._background(
                node,
                "kernel_table",
                (str(plan.run_dir),),
                lambda cycles: self.store.update(node.run_id, gpu_cycles=cycles),  # type: ignore[arg-type]
                lambda exc: self._fail_after(
                    node, "kernel_table", f"the run ended but its per-kernel table cannot be made: {exc}",
                    "`layerlab stats RUN_DIR --kernels` shows the same error", KERNELS_FILE,
                ),
            )  # fmt: skip

    def _expand(self, node: Node) -> None:
        """A census's kernel map is its run's: remember it, and make its slices ready."""
        self._remember(node, **{KERNEL_MAP_FILE: file_identity(node.plan.run_dir / KERNEL_MAP_FILE)})
        for plan in slice_runs(node.spec, node.plan):
            child = Node(plan, node.spec, node.variant, parent=node)
            node.children.append(child)
            self.every.append(child)
        node.expanded = True
        self._make_ready(node.children)

    def _fail_after(self, node: Node, cause: str, detail: str, hint: str, evidence: str) -> None:
        """A run that ended well whose outputs cannot be used: failed, with a digest; its
        branch stops there (no children are made ready)."""
        self.store.update(
            node.run_id,  # type: ignore[arg-type]
            state="failed",
            digest={"cause": cause, "detail": detail, "hint": hint, "evidence": evidence},
        )
        self.report(f"{node.plan.label}: failed: {cause}: {detail}")

    def _predict(self, node: Node) -> None:
        """Host seconds a slice will take, from the measured rate of done slices of the same
        machine and the analytical cycles of its window (in the helper process: a convenience,
        it never delays a run)."""
        if node.plan.kind != "slice":
            return
        rates = self.store.slice_rates(self.spec.name, node.plan.label.split("/")[-2])
        if not rates:
            return
        rate, run_id = sum(rates) / len(rates), node.run_id

        def done(cycles: float | None) -> None:
            if cycles is not None:
                self.store.update(run_id, predicted_s=rate * cycles)  # type: ignore[arg-type]

        args = (str(node.plan.run_dir), node.spec.model, _window_shape(node))
        self._background(node, "window_cycles", args, done, lambda exc: None, urgent=True)

    # -- recovery and cancel
    def _reconcile(self) -> None:
        """Runs an earlier conductor left 'running': follow them, or settle them from their outputs."""
        by_label = {n.plan.label: n for n in self.every}
        for record in self.records.values():
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
        self._settle_ended()
        for run_id, node in list(self.running.items()):
            record = self.store.get(run_id)
            if record and record.handle:
                self.backend.cancel(record.handle)
            self.store.update(run_id, state="cancelled", ended_at=now(), exit_cause="cancelled by the user")
            self.report(f"{node.plan.label}: cancelled")
        self.running.clear()

    def close(self) -> None:
        if self._helper is not None:
            self._helper.close()
            self._helper = None
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


class _ChildWakeup:
    """Sleep until a poll is due or a child process ends (SIGCHLD), whichever comes first: a
    local run's end is seen at once, not at the next poll.

    Signals write to a pipe (``signal.set_wakeup_fd``) the wait selects on. A wait after a
    step that changed nothing drains the pipe first (``fresh``), so the processes a backend's
    poll starts itself (``ssh``, ``squeue``) cannot keep waking the loop; after a step that
    changed something, an end seen meanwhile wakes the next wait at once. Outside the main
    thread (no signals there) it only sleeps.
    """

    def __init__(self) -> None:
        self.pipe: tuple[int, int] | None = None

    def __enter__(self) -> _ChildWakeup:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        try:
            self.previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
            self.previous_chld = signal.signal(signal.SIGCHLD, _ignore_signal)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return self
        self.pipe = (read, write)
        return self

    def wait(self, seconds: float, fresh: bool = True, ready: Any = None) -> None:
        """Sleep up to ``seconds``; ``ready()`` (checked after draining) skips the sleep."""
        if self.pipe is None:
            if not (ready and ready()):
                time.sleep(seconds)
            return
        if fresh:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while os.read(self.pipe[0], 4096):
                    pass
        if ready and ready():
            return
        readable, _, _ = select.select([self.pipe[0]], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(self.pipe[0], 4096)

    def poke(self) -> None:
        """Wake the wait (any thread): background work has finished."""
        pipe = self.pipe
        if pipe is not None:
            with contextlib.suppress(OSError):
                os.write(pipe[1], b"\0")

    def __exit__(self, *exc: object) -> None:
        if self.pipe is None:
            return
        signal.signal(signal.SIGCHLD, self.previous_chld)
        signal.set_wakeup_fd(self.previous_fd)
        for fd in self.pipe:
            os.close(fd)
        self.pipe = None


def _ignore_signal(signum: int, frame: Any) -> None:
    """SIGCHLD's handler: nothing to do, the wake-up pipe has the news."""


def _window_shape(node: Node) -> dict[str, Any]:
    """The phase and sizes of a slice's step, as the analytical model takes them."""
    shapes = node.spec.shapes
    step, _layer, _module = node.plan.slice_at  # type: ignore[misc]
    prefill = step == 0 and shapes.phases in ("prefill", "both")
    context = shapes.context + (shapes.prompt_len if shapes.phases == "both" else 0) + max(0, step - 1)
    return {
        "phase": "prefill" if prefill else "decode",
        "batch": shapes.batch,
        "seq": shapes.prompt_len if prefill else None,
        "context": shapes.context if prefill else max(1, context),
    }


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


def _same_files(run_dir: Path, files: dict[str, str]) -> bool:
    for name, text in files.items():
        try:
            if (run_dir / name).read_text(encoding="utf-8") != text:
                return False
        except OSError:
            return False
    return True
