"""The conductor's helper process (orchestrator.helper): answers, errors, its end, Ctrl-C.

Real processes throughout: the helper is started as the conductor starts it.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from foundation.errors import InputError
from orchestrator.helper import Helper, HelperEnded, spawn


@pytest.fixture
def helper():
    made = Helper()
    yield made
    made.close()


def _wait_for(predicate, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_answers_and_input_errors(helper: Helper, tmp_path: Path) -> None:
    # A census folder without outputs: the kernel map cannot be built -> the InputError's words.
    failed = helper.submit("kernel_map", str(tmp_path), "0123", urgent=True)
    with pytest.raises(InputError) as caught:
        failed.result(timeout=60)
    assert not isinstance(caught.value, HelperEnded)
    assert str(tmp_path) in str(caught.value)
    # A prediction that cannot be made is None, never an error.
    assert (
        helper.submit("window_cycles", str(tmp_path), "llama-3.2-1b", {"phase": "decode"}).result(60) is None
    )


def test_a_bug_keeps_its_traceback(helper: Helper) -> None:
    future = helper.submit("no_such_task")
    with pytest.raises(RuntimeError, match="KeyError: 'no_such_task'"):
        future.result(timeout=60)


def test_a_killed_helper_fails_its_task_and_a_fresh_one_follows(helper: Helper, tmp_path: Path) -> None:
    helper.submit("window_cycles", str(tmp_path), "llama-3.2-1b", {}).result(timeout=60)
    first = helper._proc
    assert first is not None
    first.kill()
    _wait_for(lambda: helper._proc is None)
    # The next task starts a new helper process.
    assert helper.submit("window_cycles", str(tmp_path), "llama-3.2-1b", {}).result(timeout=60) is None
    assert helper._proc is not None and helper._proc.pid != first.pid


def test_a_task_in_hand_when_the_helper_dies_is_failed_not_lost(tmp_path: Path) -> None:
    made = Helper()
    try:
        made.submit("window_cycles", str(tmp_path), "m", {}).result(timeout=60)
        proc = made._proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)  # hold it, so the next task is surely in hand when it dies
        future = made.submit("window_cycles", str(tmp_path), "m", {})
        proc.kill()
        with pytest.raises(HelperEnded, match="helper process ended"):
            future.result(timeout=60)
    finally:
        made.close()


def test_ctrl_c_does_not_reach_it_and_stdin_closing_ends_it(tmp_path: Path) -> None:
    proc = spawn()  # as the conductor starts it
    try:
        assert proc.stdin is not None and proc.stdout is not None
        request = {"id": 7, "task": "window_cycles", "args": [str(tmp_path), "m", {}]}
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"id": 7, "ok": None}
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the whole group
        proc.stdin.write(json.dumps({**request, "id": 8}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"id": 8, "ok": None}
        proc.stdin.close()  # the conductor ended (or was killed): the helper ends too
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_close_cancels_what_waits(tmp_path: Path) -> None:
    made = Helper()
    made.submit("window_cycles", str(tmp_path), "m", {}).result(timeout=60)
    proc = made._proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    in_hand = made.submit("window_cycles", str(tmp_path), "m", {})
    waiting = made.submit("window_cycles", str(tmp_path), "m", {})
    closing = threading.Thread(target=made.close)
    closing.start()
    _wait_for(lambda: made._closing)
    proc.send_signal(signal.SIGCONT)  # the task in hand is finished; the waiting one never starts
    closing.join(timeout=60)
    assert in_hand.result(timeout=1) is None
    assert waiting.cancelled()
    assert proc.poll() == 0
