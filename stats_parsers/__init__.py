"""Stats parsers: gem5's outputs as tidy tables.

In: ``stats.txt`` (any version; also ``h5://`` and pystats ``.json``), ``config.ini``/``config.json``,
stdout and debug logs, the events side-file. Out: a long stats table, the machine as configured,
a kernel timeline and the per-kernel cycle table.

Public API (what other stages import):

- ``read_stats(path, strict=True, description=False, cache=True)`` → ``StatsDumps`` (``.frame``
  polars, ``.table`` pandas, ``.truncated``, ``.skipped_lines``, ``.messages``).
- ``stat_across_dumps``, ``wide``, ``subtree``, ``grep`` — helpers over that table.
- ``read_config(path)`` → ``Gem5Config`` (``.clock_period_ticks(obj)``, ``.gpu()`` → ``GpuConfig``).
- ``config_to_stats`` / ``stats_to_config`` / ``detect_shader_prefix`` — the naming map.
- ``read_stdout``, ``kernel_timeline``, ``find_console`` — logs.
- ``kernel_table(run_dir)`` / ``kernel_metrics(stats, period)`` — the per-kernel table.
"""

import importlib
from typing import TYPE_CHECKING, Any

#: Where each public name lives. Imported on first use (PEP 562), so ``layerlab stats FILE``
#: loads the text parser only: no pandas, no config/kernels/logs machinery, no ``analytical``.
_EXPORTS = {
    "Gem5Config": "config",
    "GpuConfig": "config",
    "read_config": "config",
    "KERNEL_COLUMNS": "kernels",
    "kernel_metrics": "kernels",
    "kernel_table": "kernels",
    "find_console": "logs",
    "kernel_timeline": "logs",
    "read_stdout": "logs",
    "config_to_stats": "names",
    "detect_shader_prefix": "names",
    "stats_to_config": "names",
    "grep": "stats",
    "read_stats": "stats",
    "stat_across_dumps": "stats",
    "subtree": "stats",
    "wide": "stats",
    "COLUMNS": "stats_text",
    "StatsDumps": "stats_text",
}

if TYPE_CHECKING:
    from stats_parsers.config import Gem5Config, GpuConfig, read_config
    from stats_parsers.kernels import KERNEL_COLUMNS, kernel_metrics, kernel_table
    from stats_parsers.logs import find_console, kernel_timeline, read_stdout
    from stats_parsers.names import config_to_stats, detect_shader_prefix, stats_to_config
    from stats_parsers.stats import grep, read_stats, stat_across_dumps, subtree, wide
    from stats_parsers.stats_text import COLUMNS, StatsDumps


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stats_parsers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"stats_parsers.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "COLUMNS",
    "KERNEL_COLUMNS",
    "Gem5Config",
    "GpuConfig",
    "StatsDumps",
    "config_to_stats",
    "detect_shader_prefix",
    "find_console",
    "grep",
    "kernel_metrics",
    "kernel_table",
    "kernel_timeline",
    "read_config",
    "read_stats",
    "read_stdout",
    "stat_across_dumps",
    "stats_to_config",
    "subtree",
    "wide",
]
