"""The run store: one SQLite file per workspace, the ledger every ``layerlab`` process shares.

States: ``queued -> running -> done | failed | timed_out | cancelled``. The store keys a run by its
``run_id`` (the simulation's identity, ``params.json``), records attempts, host, backend handle,
timestamps, exit code and cause, the failure digest and the results a status table shows. WAL
journaling lets the conductor, ``layerlab status`` and a second conductor read and write at once;
every write is one short transaction, so a crash loses at most the update it was making, and
the conductor reconciles the rest with the backends when it starts.
"""

from __future__ import annotations

import json
import sqlite3
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


class RunStore:
    """The ledger of one workspace (``<workspace>/layerlab-runs.sqlite``)."""

    def __init__(self, workspace: str | Path) -> None:
        self.path = Path(workspace) / STORE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

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
