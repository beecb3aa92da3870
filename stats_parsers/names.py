"""The one place that maps gem5's two naming schemes for the same GPU objects.

config.ini, config.json and debug traces use SimObject paths: the shader is ``system.Shader``
and vector children are zero-padded (``CUs00`` .. ``CUs39`` when there are 40). stats.txt
names come from the stats hierarchy instead: the shader is ``system.cpu<N>`` (its index in
``system.cpu``, i.e. the number of CPUs) and indices are not padded (``CUs0``). Facts:
``gem5_gpufs.md`` §3.1. Old SE configs (2016-2020) already call the shader ``system.cpu1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PADDED = re.compile(r"(?<=[A-Za-z_])0+(?=\d)")
_SHADER_STAT = re.compile(r"^(system\.cpu\d+)\.(?:shaderActiveTicks|CUs\d+\.|CUs\d+$)")
_CU = re.compile(r"^CUs0*(\d+)$")


def unpad(segment: str) -> str:
    """``CUs07`` → ``CUs7``, ``wavefronts00`` → ``wavefronts0``: stats names never pad."""
    return _PADDED.sub("", segment)


def config_to_stats(path: str, shader_config: str, shader_stats: str) -> str:
    """A config/trace object path → its stats.txt prefix (``system.Shader.CUs07`` →
    ``system.cpu1.CUs7``). Paths outside the shader only lose their index padding."""
    if path == shader_config or path.startswith(shader_config + "."):
        path = shader_stats + path[len(shader_config) :]
    return ".".join(unpad(part) for part in path.split("."))


def stats_to_config(path: str, shader_config: str, shader_stats: str, config_paths: Iterable[str]) -> str:
    """A stats.txt object prefix → the config/trace path (re-adds the padding the config has)."""
    if path == shader_stats or path.startswith(shader_stats + "."):
        path = shader_config + path[len(shader_stats) :]
    known = set(config_paths)
    if path in known:
        return path
    by_unpadded = {".".join(unpad(p) for p in c.split(".")): c for c in known}
    return by_unpadded.get(path, path)


def cu_index(segment: str) -> int | None:
    """``CUs07`` or ``CUs7`` → 7; anything else → None."""
    match = _CU.match(segment)
    return int(match.group(1)) if match else None


def detect_shader_prefix(stat_names: Iterable[str]) -> str | None:
    """The shader's stats prefix (``system.cpu<N>``) from the names in a stats file, or None.

    Found by what the object holds (``shaderActiveTicks``, ``CUs<i>`` children), not by a fixed N:
    N is the number of CPUs in the run.
    """
    counts: dict[str, int] = {}
    for name in stat_names:
        match = _SHADER_STAT.match(name)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda k: counts[k])
