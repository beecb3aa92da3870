"""Loop logic: the rendered simulate loop driven by a fake ``m5`` that replays recorded exit causes.

The fake keeps gem5's real same-tick rule for ``m5.stats.dump()`` (``lastDump`` starts at 0; a
second global dump in one tick is dropped), so the test checks that the loop's own bookkeeping
(dump indices, ``dump_suppressed``, ``tail_dump``) matches what gem5 would actually write.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from gem5_configs_support import FAKE_SRC, params

from foundation.events import read_events
from gem5_configs.command import CONFIG_SCRIPT, STDLIB_SCRIPT
from gem5_configs.render import loop_settings, render_run, run_id_of

SKIP, KERNEL, BLIT = "Skipping GPU Kernel", "GPU Kernel Completed", "GPU Blit Kernel Completed"
EXIT, FAIL, LIMIT = (
    "m5_exit instruction encountered",
    "m5_fail instruction encountered",
    "simulate() limit reached",
)


class ReplayM5:
    """A fake ``m5``: ``simulate`` returns the next recorded (cause, code, tick)."""

    MaxTick = 2**64 - 1

    def __init__(self, recorded: list[tuple[str, int, int]]) -> None:
        self.recorded = list(recorded)
        self.tick = 0
        self.last_dump = 0
        self.log: list[tuple[str, int]] = []  # ("dump"|"reset"|"checkpoint"|"trace_on"|"trace_off", tick)
        self.stats = types.SimpleNamespace(
            dump=self._dump, reset=lambda: self.log.append(("reset", self.tick))
        )
        self.trace = types.SimpleNamespace(
            enable=lambda: self.log.append(("trace_on", self.tick)),
            disable=lambda: self.log.append(("trace_off", self.tick)),
        )

    def curTick(self) -> int:
        return self.tick

    def _dump(self) -> None:
        if self.tick == self.last_dump:
            return  # gem5 drops it silently
        self.last_dump = self.tick
        self.log.append(("dump", self.tick))

    def checkpoint(self, path: str) -> None:
        self.log.append(("checkpoint", self.tick))

    def simulate(self, ticks: int = MaxTick) -> Any:
        cause, code, tick = self.recorded.pop(0)
        assert tick >= self.tick
        self.tick = tick
        return types.SimpleNamespace(getCause=lambda: cause, getCode=lambda: code)

    @property
    def dumps(self) -> list[int]:
        return [t for kind, t in self.log if kind == "dump"]


def _loop_namespace(tmp_path: Path, script: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exec the rendered script's definitions (not main) with stub gem5 modules."""
    import sys

    p = params(tmp_path, "v24.1", **options)
    text = render_run(p).files[script]
    stubs = {
        name: types.ModuleType(name)
        for name in (
            "m5",
            "m5.objects",
            "m5.util",
            "runfs",
            "amd",
            "common",
            "ruby",
            "system",
            "system.system",
        )
    }
    stubs["m5.objects"].Root = object
    stubs["m5.util"].addToPath = lambda path: None
    for pkg, attr in (
        ("amd", "AmdGPUOptions"),
        ("ruby", "Ruby"),
        ("common", "GPUTLBOptions"),
        ("common", "ObjectList"),
        ("common", "Options"),
    ):
        setattr(stubs[pkg], attr, types.ModuleType(attr))
    stubs["system.system"].makeGpuFSSystem = None
    saved = {k: sys.modules.get(k) for k in stubs}
    saved_path = list(sys.path)
    sys.modules.update(stubs)
    sys.path.insert(0, str(FAKE_SRC / "configs"))  # what gem5's --path does for the real script
    try:
        namespace: dict[str, Any] = {"__name__": "layerlab_loop_test"}
        exec(compile(text, script, "exec"), namespace)
    finally:
        sys.path[:] = saved_path
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return namespace, loop_settings(p, run_id_of(p))


def _run(
    tmp_path: Path, recorded: list[tuple[str, int, int]], checkpoint_dir: str | None = None, **options: Any
) -> tuple[int, ReplayM5, Any]:
    if checkpoint_dir is not None:
        options["checkpoint_dir"] = checkpoint_dir
    namespace, settings = _loop_namespace(tmp_path, CONFIG_SCRIPT, **options)
    m5 = ReplayM5(recorded)
    outdir = tmp_path / "m5out"
    outdir.mkdir(exist_ok=True)
    status = namespace["layerlab_simulate"](m5, settings, m5.MaxTick, checkpoint_dir, str(outdir))
    return status, m5, read_events(outdir)


#: skips 0,1; blits; kernel 2 + a blit in the same tick; kernels 3,4; markers; then m5 exit.
RECORDED = [
    (BLIT, 0, 1_000),
    (SKIP, 0, 1_000),
    (SKIP, 0, 1_000),
    (BLIT, 0, 2_000),
    ("workbegin", 7, 2_500),
    (KERNEL, 0, 10_000),
    (BLIT, 0, 10_000),  # same tick as kernel 2: gem5 would drop this dump
    (KERNEL, 0, 20_000),
    ("workend", 7, 25_000),
    (KERNEL, 0, 30_000),
    (KERNEL, 0, 40_000),
    (EXIT, 0, 50_000),
]


def test_per_kernel_window_dumps_resets_and_side_file(tmp_path: Path) -> None:
    status, m5, (start, table, end) = _run(
        tmp_path, RECORDED, skip_until=2, exit_after=4, per_kernel_dumps=True
    )
    assert status == 0
    # The blit after the last skip is in the window (dump 0); kernel 2 (dump 1); the blit in
    # kernel 2's tick is suppressed; kernels 3, 4; the run stops after dumping kernel 4.
    assert m5.dumps == [2_000, 10_000, 20_000, 30_000]
    # resets: the pre-window blit, 2 skips, then after every in-window completion (5)
    assert [k for k, _ in m5.log].count("reset") == 8
    assert start["skip_until"] == 2 and start["exit_after"] == 4 and start["dump_per_kernel"] is True
    assert list(table["kind"]) == [
        "blit",
        "skip",
        "skip",
        "blit",
        "workbegin",
        "kernel",
        "blit",
        "kernel",
        "workend",
        "kernel",
    ]
    kernels = table[table.kind == "kernel"]
    assert list(kernels.kernel_index) == [2, 3, 4] and list(kernels.dump) == [1, 2, 3]
    same_tick = table.iloc[6]
    assert same_tick.dump_suppressed and same_tick.dump is pd_na() and same_tick.reset
    skips = table[table.kind == "skip"]
    assert list(skips.kernel_index) == [0, 1] and skips.reset.all()
    assert table[table.kind == "workbegin"].exit_code.tolist() == [7]
    assert list(table.seq) == list(range(len(table)))
    assert end["cause"] == KERNEL and end["expected"] and end["tail_dump"] is None  # at-exit dump suppressed
    assert end["kernels_done"] == 5 and end["tasks_done"] == 8


def pd_na() -> Any:
    import pandas as pd

    return pd.NA


def test_window_without_per_kernel_dumps_gives_one_block(tmp_path: Path) -> None:
    status, m5, (_, table, end) = _run(tmp_path, RECORDED, skip_until=2, exit_after=4)
    assert status == 0 and m5.dumps == [30_000]  # one block: last skip → end of kernel 4
    assert table[table.kind == "kernel"].dump.tolist()[-1] == 0
    assert table[table.kind == "blit"].dump.isna().all()
    assert end["tail_dump"] is None


def test_per_kernel_dumps_without_window_run_to_m5_exit(tmp_path: Path) -> None:
    status, m5, (_, _table, end) = _run(tmp_path, RECORDED, skip_until=2, per_kernel_dumps=True)
    assert status == 0
    assert m5.dumps == [2_000, 10_000, 20_000, 30_000, 40_000]  # the in-window blit after the skips dumps too
    assert end["cause"] == EXIT and end["expected"] and end["tail_dump"] == 5
    assert end["kernels_done"] == 6


def test_exit_condition_checked_after_dump_so_last_kernel_is_kept(tmp_path: Path) -> None:
    recorded = [(KERNEL, 0, 5_000), (KERNEL, 0, 9_000), (EXIT, 0, 12_000)]
    status, m5, (_, table, end) = _run(tmp_path, recorded, exit_after=1, per_kernel_dumps=True)
    assert m5.dumps == [5_000, 9_000] and end["tick"] == 9_000 and status == 0
    assert table.kernel_index.tolist() == [0, 1]


def test_dump_at_tick_zero_is_suppressed_like_gem5(tmp_path: Path) -> None:
    recorded = [(BLIT, 0, 0), (KERNEL, 0, 0), (EXIT, 0, 0)]
    _, m5, (_, table, end) = _run(tmp_path, recorded, per_kernel_dumps=True)
    assert m5.dumps == [] and table.dump_suppressed.all() and end["tail_dump"] is None


@pytest.mark.parametrize(
    ("cause", "code", "expected_status"), [(FAIL, 3, 1), ("user interrupt received", 0, 1)]
)
def test_unexpected_end_gives_nonzero_status(
    tmp_path: Path, cause: str, code: int, expected_status: int
) -> None:
    status, _, (_, _, end) = _run(tmp_path, [(KERNEL, 0, 5_000), (cause, code, 6_000)], per_kernel_dumps=True)
    assert status == expected_status and end["expected"] is False and end["exit_code"] == code


def test_tick_limit_is_expected_only_when_asked(tmp_path: Path) -> None:
    status, _, (_, _, end) = _run(tmp_path, [(LIMIT, 0, 1_000)], tick_limit=1_000)
    assert status == 0 and end["expected"]


def test_checkpoint_written_then_run_ends(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    status, m5, (_, table, end) = _run(
        tmp_path, [("checkpoint", 0, 7_000), (EXIT, 0, 8_000)], checkpoint_dir=str(ckpt), guest_command=()
    )
    assert status == 0 and ("checkpoint", 7_000) in m5.log
    assert table.kind.tolist() == ["checkpoint"] and end["cause"] == "checkpoint" and end["expected"]


def test_unknown_causes_continue_and_are_recorded(tmp_path: Path) -> None:
    status, _, (_, table, _) = _run(tmp_path, [("max vALU insts", 0, 10), (EXIT, 0, 20)])
    assert status == 0 and table.kind.tolist() == ["other"] and table.cause.tolist() == ["max vALU insts"]


def test_exit_at_task_and_debug_at_task(tmp_path: Path) -> None:
    recorded = [(BLIT, 0, 10), (KERNEL, 0, 20), (BLIT, 0, 30), (KERNEL, 0, 40), (EXIT, 0, 50)]
    status, m5, (_, _, end) = _run(tmp_path, recorded, exit_at_task=3, debug_at_gpu_task=2)
    assert status == 0 and end["tick"] == 30 and end["tasks_done"] == 3
    assert ("trace_off", 0) in m5.log and ("trace_on", 20) in m5.log


def test_stdlib_script_has_the_same_loop(tmp_path: Path) -> None:
    classic = render_run(params(tmp_path, "v24.1")).files[CONFIG_SCRIPT]
    stdlib = render_run(params(tmp_path, "v24.1", script_style="stdlib", host_mem_bytes=3 << 30)).files[
        STDLIB_SCRIPT
    ]

    def loop_of(text: str) -> str:
        body = text[text.index("EVENTS_FILENAME = ") : text.index("    return 0 if expected else 1")]
        return body.replace(run_id_of_text(text), "<run_id>")

    assert loop_of(classic) == loop_of(stdlib)


def run_id_of_text(text: str) -> str:
    import re

    return re.search(r"'run_id': '([0-9a-f]+)'", text).group(1)
