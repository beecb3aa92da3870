"""The run store: one SQLite file per workspace, the ledger every ``layerlab`` process shares.

States: ``queued -> running -> done | failed | timed_out | cancelled``. The store keys a run by its
``run_id`` (the simulation's identity, ``params.json``), records attempts, host, backend handle,
timestamps, exit code and cause, the failure digest and the results a status table shows. WAL
journaling lets the conductor, ``layerlab status`` and a second conductor read and write at once;
every write is one short transaction, so a crash loses at most the update it was making, and
the conductor reconciles the rest with the backends when it starts.

A store keeps one connection per thread open (opening one costs more than most queries), and
``batch()`` folds many writes into one transaction where losing them all together is harmless.

The ``renders`` table is the resume's memory: per run label, a key of everything the run's
``run_id`` depends on (the plan's options, the input files' identities, the renderer's code)
and the ``run_id`` that rendered from it. A resume whose key matches skips the render; it is a
cache, so a lost or stale row only costs a render.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORE_FILE = "layerlab-runs.sqlite"
STATES = ("queued", "running", "done", "failed", "timed_out", "cancelled")
FINAL = ("done", "failed", "timed_out", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    kind TEXT NOT NULL,
    experiment TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '',
    run_dir TEXT NOT NULL,
    parent TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    backend TEXT,
    host TEXT,
    handle TEXT,
    queued_at REAL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    exit_cause TEXT,
    digest TEXT,
    expected_kernels INTEGER,
    kernels_done INTEGER,
    sim_ticks INTEGER,
    gpu_cycles REAL,
    host_seconds REAL,
    predicted_s REAL,
    machine TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, label);
CREATE TABLE IF NOT EXISTS renders (
    experiment TEXT NOT NULL,
    label TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    outdir TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (experiment, label)
);
"""


@dataclass
class RunRecord:
    run_id: str
    label: str
    kind: str  # boot | census | slice
    experiment: str
    run_dir: str
    variant: str = ""
    parent: str | None = None
    state: str = "queued"
    attempts: int = 0
    backend: str | None = None
    host: str | None = None
    handle: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_cause: str | None = None
    digest: dict[str, Any] | None = None
    expected_kernels: int | None = None
    kernels_done: int | None = None
    sim_ticks: int | None = None
    gpu_cycles: float | None = None
    host_seconds: float | None = None
    predicted_s: float | None = None
    machine: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in _COLUMNS}
        return data


_COLUMNS = [
    "run_id", "label", "kind", "experiment", "variant", "run_dir", "parent", "state", "attempts",
    "backend", "host", "handle", "queued_at", "started_at", "ended_at", "exit_code", "exit_cause",
    "digest", "expected_kernels", "kernels_done", "sim_ticks", "gpu_cycles", "host_seconds",
    "predicted_s", "machine",
]  # fmt: skip


@dataclass(frozen=True)
class Render:
    """What a run label last rendered to: the key it was rendered from, its run_id and outdir,
    and the identities (``size:mtime_ns:inode``) of files the resume trusts without reading."""

    key: str
    run_id: str
    outdir: str
    files: dict[str, str]


class RunStore:
    """The ledger of one workspace (``<workspace>/layerlab-runs.sqlite``)."""

    def __init__(self, workspace: str | Path) -> None:
        self.path = Path(workspace) / STORE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.depth = 0
        yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes inside as one transaction (nested: the outermost commits)."""
        with self._conn() as conn:
            self._local.depth += 1
            if self._local.depth == 1:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._local.depth == 1:
                    conn.execute("ROLLBACK")
                raise
            else:
                if self._local.depth == 1:
                    conn.execute("COMMIT")
            finally:
                self._local.depth -= 1

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _row(row: sqlite3.Row | tuple) -> RunRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        if data["digest"]:
            data["digest"] = json.loads(data["digest"])
        return RunRecord(**data)

    def get(self, run_id: str) -> RunRecord | None:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else self._row(row)

    def all(self, experiment: str | None = None) -> list[RunRecord]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args: tuple = ()
        if experiment is not None:
            query += " WHERE experiment=?"
            args = (experiment,)
        with self._conn() as conn:
            rows = conn.execute(query + " ORDER BY label", args).fetchall()
        return [self._row(r) for r in rows]

    def states(self, experiment: str) -> dict[str, str]:
        """run_id -> state of an experiment's runs (the exit status needs no more)."""
        with self._conn() as conn:
            rows = conn.execute("SELECT run_id, state FROM runs WHERE experiment=?", (experiment,)).fetchall()
        return dict(rows)

    def put(self, record: RunRecord) -> None:
        """Insert or replace a whole record (one transaction)."""
        values = [getattr(record, c) for c in _COLUMNS]
        values[_COLUMNS.index("digest")] = json.dumps(record.digest) if record.digest is not None else None
        with self._conn() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                values,
            )

    def update(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        bad = set(fields) - set(_COLUMNS)
        if bad:
            raise KeyError(f"unknown run-store field(s): {sorted(bad)}")
        if "digest" in fields and fields["digest"] is not None:
            fields["digest"] = json.dumps(fields["digest"])
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"unknown state {fields['state']!r}")
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._conn() as conn:
            conn.execute(f"UPDATE runs SET {sets} WHERE run_id=?", (*fields.values(), run_id))

    def slice_rates(self, experiment: str, machine: str) -> list[float]:
        """Host seconds per GPU cycle of the done slices of one machine (for predictions)."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT host_seconds, gpu_cycles FROM runs WHERE experiment=? AND kind='slice' "
                "AND state='done' AND machine=? AND host_seconds > 0 AND gpu_cycles > 0",
                (experiment, machine),
            ).fetchall()
        return [seconds / cycles for seconds, cycles in rows]

    # -- the resume's memory
    def renders(self, experiment: str) -> dict[str, Render]:
        """Every label's last render of an experiment."""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT label, key, run_id, outdir, files FROM renders WHERE experiment=?", (experiment,)
            ).fetchall()
        return {
            label: Render(key, run_id, outdir, json.loads(files))
            for label, key, run_id, outdir, files in rows
        }

    def remember(self, experiment: str, renders: dict[str, Render]) -> None:
        """Record labels' renders (one transaction for all of them)."""
        if not renders:
            return
        rows = [
            (experiment, label, r.key, r.run_id, r.outdir, json.dumps(r.files, sort_keys=True))
            for label, r in renders.items()
        ]
        with self.batch(), self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO renders VALUES (?, ?, ?, ?, ?, ?)", rows)


def now() -> float:
    return time.time()


def open_workspace(spec_path: str | Path, workspace: str | Path | None):  # -> (Experiment, Path, RunStore)
    """The spec, its workspace and its store, for commands that read an experiment's runs."""
    from foundation.errors import InputError
    from orchestrator.conductor import default_workspace
    from orchestrator.spec import load_spec

    spec, _ = load_spec(spec_path)
    folder = Path(workspace) if workspace else default_workspace(Path(spec_path), spec)
    if not (folder / STORE_FILE).is_file():
        raise InputError(f"{folder}: no runs yet (no {STORE_FILE}); `layerlab run {spec_path}` first")
    return spec, folder, RunStore(folder)


def done_slices(spec_path: str | Path, workspace: str | Path | None):  # -> (Experiment, Path, [RunRecord])
    """The done sliced runs of an experiment (what collect, report and calibrate read), or one
    line saying none is done yet."""
    from foundation.errors import InputError

    spec, folder, store = open_workspace(spec_path, workspace)
    records = [r for r in store.all(spec.name) if r.kind == "slice" and r.state == "done"]
    if not records:
        raise InputError(f"{spec_path}: no sliced run is done yet (see `layerlab status {spec_path}`)")
    return spec, folder, records
