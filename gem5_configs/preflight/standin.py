"""A stand-in for gem5's compiled ``_m5`` module, installed in the preflight child only.

gem5's Python imports ``_m5.core``, ``_m5.event``, ``_m5.stats``, ``_m5.drain`` ... at module
level, subclasses some of their classes (``PyEvent``) and calls a few functions while a config
builds its system; the C++ objects behind them are only needed from ``m5.instantiate()``'s
second half on, where the preflight stops. So every ``_m5`` name resolves to a permissive class:
any attribute exists, calling returns an instance, iterating yields nothing, subclassing works.

One piece must be real: the clock. ``m5.ticks`` converts every latency and frequency param
through ``_m5.core.getClockFrequency()`` (ticks per second, 10^12 unless a config changes it)
and ``fixGlobalFrequency`` flips ``clockFrequencyFixed``; a permissive answer there would turn
times into nonsense instead of failing. ``curTick`` is 0 (nothing has run), and
``gem5Version``/``compileDate`` are real strings because configs print and compare them.

This file is stdlib-only: it runs inside the tree's interpreter set-up, not layerlab's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, ClassVar


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _PermissiveMeta(type):
    """Metaclass: a stand-in class has every (non-dunder) attribute, each another stand-in class."""

    def __getattr__(cls, name: str) -> Any:
        if _is_dunder(name):
            raise AttributeError(name)
        made = make_class(name)
        type.__setattr__(cls, name, made)
        return made

    def __iter__(cls) -> Any:
        return iter(())

    def __len__(cls) -> int:
        return 0


class Permissive(metaclass=_PermissiveMeta):
    """An instance of any ``_m5`` class: accepts any call, has any attribute, holds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if _is_dunder(name):
            raise AttributeError(name)
        return make_class(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Permissive:
        return Permissive()

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __int__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 0

    def __float__(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"<_m5 stand-in {type(self).__name__}>"


def make_class(name: str) -> type:
    """A fresh subclassable stand-in class called ``name``."""
    return _PermissiveMeta(name, (Permissive,), {"__module__": "_m5"})


class StandinModule(types.ModuleType):
    """``_m5`` or one of its submodules: unknown names become stand-in classes, cached."""

    def __getattr__(self, name: str) -> Any:
        if _is_dunder(name):
            raise AttributeError(name)
        made = make_class(name)
        setattr(self, name, made)
        return made


class Clock:
    """The real part: ticks per second, as ``_m5.core`` keeps it (10^12 until a config sets it)."""

    DEFAULT: ClassVar[int] = 10**12

    def __init__(self) -> None:
        self.frequency = self.DEFAULT
        self.fixed = False

    def set(self, ticks_per_second: int) -> None:
        self.frequency = int(ticks_per_second)

    def get(self) -> int:
        return self.frequency

    def fix(self) -> None:
        self.fixed = True

    def is_fixed(self) -> bool:
        return self.fixed


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import _m5`` and ``import _m5.<anything>`` with stand-in modules."""

    def __init__(self, configure: Any) -> None:
        self.configure = configure

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "_m5" and not fullname.startswith("_m5."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        module = StandinModule(spec.name)
        module.__path__ = []
        self.configure(module)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install(gem5_version: str, compile_date: str = "preflight (no binary)") -> Clock:
    """Put the ``_m5`` stand-in on ``sys.meta_path``; return its clock for the checks."""
    clock = Clock()

    def configure(module: types.ModuleType) -> None:
        if module.__name__ == "_m5.core":
            core: Any = module
            core.setClockFrequency = clock.set
            core.getClockFrequency = clock.get
            core.fixClockFrequency = clock.fix
            core.clockFrequencyFixed = clock.is_fixed
            core.curTick = lambda: 0
            core.gem5Version = gem5_version
            core.compileDate = compile_date
            core.TRACING_ON = True
            core.MaxTick = 2**64 - 1
            core.setOutputDir = lambda path: None
        elif module.__name__ == "_m5.debug":
            dbg: Any = module
            dbg.allFlags = dict
            dbg.getAllFlagsVersion = lambda: 0
        elif module.__name__ == "_m5.stats":
            st: Any = module
            st.statsList = list

    sys.meta_path.insert(0, _Finder(configure))
    return clock


def enum_standin(name: str, vals: list[str]) -> type:
    """``m5.internal.params.enum_<Name>`` as pybind would make it: ``__members__`` name -> index."""
    members = {v: i for i, v in enumerate(vals)}
    namespace: dict[str, Any] = {"__members__": members, "__module__": "_m5"}
    namespace.update(members)
    namespace[f"Num_{name}"] = len(vals)
    return type(f"enum_{name}", (), namespace)
