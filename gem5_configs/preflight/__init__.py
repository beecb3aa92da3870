"""Preflight: check a rendered gem5 config against a real gem5 tree's Python, no binary needed.

A gem5 config is Python that builds SimObjects from gem5's own Python declarations; only the
C++ half of ``m5.instantiate()`` and ``m5.simulate()`` need the compiled binary. So a rendered
run can be executed against the real tree up to that boundary and every option, param name,
type, default and proxy checked -- minutes before a cluster job would have found the same
mistake. See ``engine.py`` for the flow and ``child.py`` for what runs inside the child.

    from gem5_configs.preflight import preflight
    res = preflight("runs/r1", "/path/to/gem5")
    res.ok, res.findings, res.sim_objects, res.config_ini

``option_tables(gem5_src)`` reads the same tree's option tables (``options.py``), which is where
``profiles/*.yaml``'s ``gem5_options``/``script_options`` come from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import Finding, FindingKind, PreflightResult, Style, preflight
from .tree import Gem5Tree, open_tree, tree_version

if TYPE_CHECKING:
    from .options import OptionReading, option_tables, read_options

_LAZY = ("OptionReading", "option_tables", "read_options")


def __getattr__(name: str) -> Any:
    # options.py is also ``python -m gem5_configs.preflight.options``: importing it here eagerly
    # would make runpy warn that the module was already imported before it ran as __main__.
    if name in _LAZY:
        from . import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Finding",
    "FindingKind",
    "Gem5Tree",
    "OptionReading",
    "PreflightResult",
    "Style",
    "open_tree",
    "option_tables",
    "preflight",
    "read_options",
    "tree_version",
]
