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

from stats_parsers.config import Gem5Config, GpuConfig, read_config
from stats_parsers.kernels import KERNEL_COLUMNS, kernel_metrics, kernel_table
from stats_parsers.logs import find_console, kernel_timeline, read_stdout
from stats_parsers.names import config_to_stats, detect_shader_prefix, stats_to_config
from stats_parsers.stats import grep, read_stats, stat_across_dumps, subtree, wide
from stats_parsers.stats_text import COLUMNS, StatsDumps

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
