"""The conductor's helper process: where the work that follows a run is done.

Kernel maps and kernel tables are pandas and polars work. Done on a thread of the conductor, they
held the interpreter lock the loop needs to notice a run's end and start the next one: every
system call of the loop (a ``mkdir``, an ``open``, starting a process) gave the lock away and
waited up to a switch interval (5 ms) to get it back. In a process of their own they run on
another CPU, at a lower priority than the runs, and the loop stays quick.

The helper gets one task at a time, in order of urgency: a census's kernel map (slices wait for
it) before a slice's kernel table (nothing waits for that). It reads its tasks from its stdin, so
it ends when the conductor does, even one killed outright: the task in hand is finished (its
writes are atomic), the rest never started. It ignores Ctrl-C: the conductor, which has it,
decides what to cancel.

Protocol, one JSON line each way: ``{"id", "task", "args"}`` in; ``{"id", "ok": result}``,
``{"id", "input_error": message}`` or ``{"id", "error": traceback}`` out.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from foundation.errors import InputError

REPO = Path(__file__).resolve().parents[1]
#: The helper's niceness: the runs (and the loop that starts them) come first.
NICE = 10


class HelperEnded(InputError):
    """The helper process ended with a task in hand (killed, out of memory)."""


class Helper:
    """Tasks of ``orchestrator.followup.TASKS`` run in the helper process; each ``submit``
    returns a future the conductor polls. The process starts with the first task."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urgent: deque[tuple[str, tuple, Future]] = deque()
        self._later: deque[tuple[str, tuple, Future]] = deque()
        self._busy: tuple[int, Future, str] | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._ids = itertools.count()
        self._closing = False

    def submit(self, task: str, *args: Any, urgent: bool = False) -> Future:
        future: Future = Future()
        with self._lock:
            (self._urgent if urgent else self._later).append((task, args, future))
            if self._busy is None:
                self._send_next()
        return future

    def _start(self) -> subprocess.Popen:
        proc = spawn()
        self._reader = threading.Thread(
            target=self._read, args=(proc,), name="layerlab-helper-reader", daemon=True
        )
        self._reader.start()
        return proc

    def _send_next(self) -> None:
        """Hand the most urgent waiting task to the process (the lock is held)."""
        while (self._urgent or self._later) and not self._closing:
            task, args, future = (self._urgent or self._later).popleft()
            if not future.set_running_or_notify_cancel():
                continue
            if self._proc is None:
                self._proc = self._start()
            ident = next(self._ids)
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps({"id": ident, "task": task, "args": list(args)}) + "\n")
                self._proc.stdin.flush()
            except OSError:
                future.set_exception(HelperEnded(f"{task}: the helper process ended before it began"))
                self._proc = None
                continue
            self._busy = (ident, future, task)
            return

    def _read(self, proc: subprocess.Popen) -> None:
        """The reader thread of one helper process: settles each task as its answer comes."""
        stream: IO[str] = proc.stdout  # type: ignore[assignment]
        for line in stream:
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                busy, self._busy = self._busy, None
                if busy is None or busy[0] != answer.get("id"):
                    self._busy = busy
                    continue
                _ident, future, _task = busy
                if "ok" in answer:
                    future.set_result(answer["ok"])
                elif "input_error" in answer:
                    future.set_exception(InputError(answer["input_error"]))
                else:
                    future.set_exception(RuntimeError(f"in the helper process:\n{answer.get('error')}"))
                self._send_next()
        code = proc.wait()
        with self._lock:
            if self._proc is proc:
                self._proc = None
            busy, self._busy = self._busy, None
            if busy is not None:
                busy[1].set_exception(
                    HelperEnded(
                        f"{busy[2]}: the helper process ended (exit status {code}) before it finished"
                    )
                )
            self._send_next()  # a fresh process for what waits

    def close(self) -> None:
        """Cancel what waits, let the task in hand finish, and end the process."""
        with self._lock:
            self._closing = True
            for _task, _args, future in (*self._urgent, *self._later):
                future.cancel()
            self._urgent.clear()
            self._later.clear()
            proc, reader = self._proc, self._reader
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        if reader is not None:
            reader.join()
        proc.wait()


def spawn() -> subprocess.Popen:
    """A helper process with pipes to its stdin and stdout (text, line-buffered)."""
    env = dict(os.environ)
    # The same code as this conductor's, whichever tree or install it was started from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.helper"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        encoding="utf-8",
        bufsize=1,
    )


def main() -> int:
    """The helper process: answers tasks from stdin until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what a task prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    with contextlib.suppress(OSError):
        os.nice(NICE)
    import traceback

    from orchestrator.followup import TASKS

    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer: dict[str, Any] = {"ok": TASKS[request["task"]](*request["args"])}
        except InputError as exc:
            answer = {"input_error": str(exc)}
        except Exception:
            answer = {"error": traceback.format_exc()}
        answers.write(json.dumps({"id": request["id"], **answer}) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
