"""Preflight: check a rendered gem5 config against a real gem5 tree's Python, no binary needed.

A gem5 config is Python that builds SimObjects from gem5's own Python declarations; only the
C++ half of ``m5.instantiate()`` and ``m5.simulate()`` need the compiled binary. So a rendered
run can be executed against the real tree up to that boundary and every option, param name,
type, default and proxy checked -- minutes before a cluster job would have found the same
mistake. See ``engine.py`` for the flow and ``child.py`` for what runs inside the child.

    from gem5_configs.preflight import preflight
    res = preflight("runs/r1", "/path/to/gem5")
    res.ok, res.findings, res.sim_objects, res.config_ini
"""

from __future__ import annotations

from .engine import Finding, FindingKind, PreflightResult, Style, preflight
from .tree import Gem5Tree, open_tree, tree_version

__all__ = [
    "Finding",
    "FindingKind",
    "Gem5Tree",
    "PreflightResult",
    "Style",
    "open_tree",
    "preflight",
    "tree_version",
]
