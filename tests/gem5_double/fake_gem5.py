"""The gem5 TEST DOUBLE: runs a layerlab-rendered gem5 config with fake gem5 modules.

NOT a simulator. It lets tests (and later stages: census, per-kernel stats) exercise the real
rendered config scripts and their simulate loop end to end without gem5. See README.md for the
command line and the scenario format. Only the Python standard library is used, so any Python
3.11 can run it.

What is faked, and how faithfully:
  * ``m5``: ``curTick``, ``simulate`` (replays the scenario), ``instantiate`` (optionally from a
    checkpoint written by ``checkpoint``), ``MaxTick``, ``options.outdir``, ``stats.dump`` /
    ``stats.reset`` (gem5's rule kept: a second global dump in one tick -- or a dump at tick 0 --
    is silently dropped), ``trace.enable/disable``.
  * gem5's GPU behaviour: non-blit kernels with index < ``target_non_blit_kernel_id`` exit with
    "Skipping GPU Kernel" and take no time; executed kernels/blits exit with "GPU Kernel
    Completed" / "GPU Blit Kernel Completed" only when the dispatcher's ``kernel_exit_events`` is
    set; markers exit as "workbegin"/"workend" (code = id) only with ``exit_on_work_items``.
  * configs modules (``runfs``, ``common.*``, ``amd.AmdGPUOptions``, ``ruby.Ruby``,
    ``system.system.makeGpuFSSystem``): the option functions define exactly the options of the
    script's gem5 version table (``gem5_configs/profiles/<v>.yaml``), so an option the table lacks
    fails like real argparse would; makeGpuFSSystem checks the 16 GiB / 2 GiB rules.
  * stdlib modules (``gem5.*``) for the ViperBoard script, with v24.1's constructor signatures.
  * outputs in ``--outdir``: stats.txt (blocks whose lines come from the real fixtures in
    ../shared/fixtures, with simTicks/finalTick/shaderActiveTicks/numKernelLaunched set from the
    replay), config.ini / config.json, simout.txt / simerr.txt (with -r / -e), and the events
    side-file the rendered loop itself writes.
  * config.ini / config.json are NOT faked where a real gem5 tree is on this host: at
    ``m5.instantiate()`` they come from a preflight of this very run against the real tree of
    the script's profile (``real_config.py``, cached per machine), so they hold gem5's real
    object tree; a config real gem5's Python rejects fails the run (exit 1). Without a tree, a
    synthetic config.ini and a note on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import re
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _sibling(name: str) -> types.ModuleType:
    """A module beside this file, by path (whatever sys.path holds)."""
    qualified = f"layerlab_gem5_double_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]


real_config = _sibling("real_config")
REPO = HERE.parents[1]
FIXTURES = Path(os.environ.get("LAYERLAB_FIXTURES", REPO.parent / "shared" / "fixtures"))
PROFILES = REPO / "gem5_configs" / "profiles"
MAX_TICK = 2**64 - 1
SCENARIO_SCHEMA = "layerlab-gem5-double/1"

DEFAULT_SCENARIO: dict[str, Any] = {
    "schema": SCENARIO_SCHEMA,
    "events": [
        {"type": "host", "ticks": 5_000_000_000, "note": "boot + driver load"},
        {"type": "blit", "ticks": 2_000_000},
        {"type": "kernel", "ticks": 10_000_000},
        {"type": "blit", "ticks": 2_000_000},
        {"type": "kernel", "ticks": 12_000_000},
        {"type": "kernel", "ticks": 14_000_000},
        {"type": "exit", "ticks": 1_000_000},
    ],
}

DEFAULT_TICKS = {
    "host": 1_000_000,
    "kernel": 10_000_000,
    "blit": 1_000_000,
    "marker": 1_000,
    "checkpoint": 1_000,
    "exit": 1_000,
    "fail": 1_000,
    "writefile": 1_000,
    "sleep": 0,
    "console": 0,
    "panic": 0,
    "crash": 0,
}


class DoubleError(RuntimeError):
    """The double was misused (bad scenario, bad command line)."""


# ------------------------------------------------------------------------------ option tables
def option_table(profile: str | None) -> dict[str, str]:
    """flag -> type from a profile YAML (a regex read: no PyYAML needed); all profiles if unknown."""
    files = [PROFILES / f"{profile}.yaml"] if profile else sorted(PROFILES.glob("*.yaml"))
    table: dict[str, str] = {}
    for path in files:
        in_script = False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("script_options:"):
                in_script = True
                continue
            if line and not line.startswith(" "):
                in_script = False
            match = re.match(r'^\s+"(-[^"]+)":\s*(\w+)', line)
            if in_script and match:
                table[match.group(1)] = match.group(2)
    return table


def _add_table_options(parser: argparse.ArgumentParser, table: dict[str, str]) -> None:
    by_dest: dict[str, list[str]] = {}
    for flag in table:
        if flag.startswith("--"):
            by_dest.setdefault(flag[2:].replace("-", "_"), []).append(flag)
    short = {"-n": "--num-cpus", "-u": "--num-compute-units", "-m": "--abs-max-tick"}
    for dest, flags in by_dest.items():
        kind = table[flags[0]]
        names = flags + [s for s, long in short.items() if long in flags and s in table]
        if kind == "flag":
            parser.add_argument(*names, dest=dest, action="store_true", default=False)
        elif kind == "count":
            parser.add_argument(*names, dest=dest, action="count", default=0)
        elif kind == "append":
            parser.add_argument(*names, dest=dest, action="append")
        elif kind == "nargs":
            parser.add_argument(*names, dest=dest, nargs="*")
        else:
            conv = {"int": int, "float": float}.get(kind, str)
            parser.add_argument(*names, dest=dest, type=conv, default=None)
    parser.set_defaults(abs_max_tick=MAX_TICK, num_cpus=1, checkpoint_dir=None, restore_dir=None)


# ------------------------------------------------------------------------------ fake SimObjects
class FakeSimObject:
    """Accepts any parameter, like a SimObject before instantiate()."""

    def __init__(self, **params: Any) -> None:
        for key, value in params.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class FakeDispatcher(FakeSimObject):
    kernel_exit_events = False


class FakeCommandProcessor(FakeSimObject):
    target_non_blit_kernel_id = 0


class FakeSystem(FakeSimObject):
    exit_on_work_items = False
    readfile = ""


class ExitEvent:
    def __init__(self, cause: str, code: int = 0) -> None:
        self._cause, self._code = cause, code

    def getCause(self) -> str:
        return self._cause

    def getCode(self) -> int:
        return self._code


def _clock_period_ticks(clock: str) -> int:
    match = re.match(r"^([\d.]+)\s*(GHz|MHz|kHz|Hz)$", str(clock))
    if not match:
        return 1000
    hz = float(match.group(1)) * {"GHz": 1e9, "MHz": 1e6, "kHz": 1e3, "Hz": 1.0}[match.group(2)]
    return round(1e12 / hz)


def _size_bytes(text: str) -> int:
    match = re.match(r"^(\d+)\s*(GiB|GB|MiB|MB|KiB|kB|B)?$", str(text))
    if not match:
        raise DoubleError(f"bad memory size {text!r}")
    scale = {"GiB": 2**30, "GB": 2**30, "MiB": 2**20, "MB": 2**20, "KiB": 1024, "kB": 1024, "B": 1, None: 1}
    return int(match.group(1)) * scale[match.group(2)]


# ------------------------------------------------------------------------------ the engine
class Engine:
    """Replays a scenario as gem5's exit events, and owns the fake stats state."""

    def __init__(self, scenario: dict[str, Any], outdir: Path, stats_file: str) -> None:
        if scenario.get("schema", SCENARIO_SCHEMA) != SCENARIO_SCHEMA:
            raise DoubleError(f"scenario schema {scenario.get('schema')!r} is not {SCENARIO_SCHEMA!r}")
        self.events = list(scenario["events"])
        for i, ev in enumerate(self.events):
            if ev.get("type") not in DEFAULT_TICKS:
                raise DoubleError(f"scenario event {i}: unknown type {ev.get('type')!r}")
        self.outdir = outdir
        self.stats_path = outdir / stats_file
        self.tick = 0
        self.pos = 0
        self.spent = 0  # ticks already spent on events[pos] (a tick limit can cut an event)
        self.non_blit = 0
        self.last_dump = 0  # gem5's m5.stats.lastDump starts at 0
        self.reset_tick = 0
        self.active_ticks = 0
        self.launched = 0
        self.dumps = 0
        self.instantiated = False
        self.trace_enabled = True
        self.system: Any = None
        self.dispatcher: FakeDispatcher | None = None
        self.cmd_proc: FakeCommandProcessor | None = None
        self.checkpoints: list[str] = []
        self.on_instantiate: Any = None  # set by run(): writes the config files
        self.rejected = False  # real gem5's Python rejected the config: no outputs
        self._stats_handle = self.stats_path.open("w", encoding="utf-8")

    # -- m5 API
    def cur_tick(self) -> int:
        return self.tick

    def instantiate(self, ckpt_dir: str | None = None) -> None:
        if self.instantiated:
            raise DoubleError("m5.instantiate() called twice")
        if self.on_instantiate is not None:
            self.on_instantiate()  # gem5 writes config.ini/config.json here; may exit like fatal()
        self.instantiated = True
        if ckpt_dir is not None:
            state = json.loads((Path(ckpt_dir) / "m5.cpt").read_text(encoding="utf-8"))
            if state.get("double") != SCENARIO_SCHEMA:
                raise DoubleError(f"{ckpt_dir}/m5.cpt was not written by the gem5 test double")
            self.tick, self.pos, self.non_blit = state["tick"], state["pos"], state["non_blit"]
            self.reset_tick = self.last_dump = self.tick

    def checkpoint(self, ckpt_dir: str) -> None:
        path = Path(ckpt_dir)
        path.mkdir(parents=True, exist_ok=True)
        state = {"double": SCENARIO_SCHEMA, "tick": self.tick, "pos": self.pos, "non_blit": self.non_blit}
        (path / "m5.cpt").write_text(json.dumps(state, sort_keys=True) + "\n", encoding="utf-8")
        self.checkpoints.append(str(path))

    def simulate(self, ticks: int = MAX_TICK) -> ExitEvent:
        if not self.instantiated:
            raise DoubleError("m5.simulate() before m5.instantiate()")
        limit = min(MAX_TICK, self.tick + max(0, int(ticks)))
        exits = bool(self.dispatcher and self.dispatcher.kernel_exit_events)
        target = int(self.cmd_proc.target_non_blit_kernel_id) if self.cmd_proc else 0
        work_items = bool(self.system is not None and getattr(self.system, "exit_on_work_items", False))
        while self.pos < len(self.events):
            ev = self.events[self.pos]
            kind = ev["type"]
            if kind == "kernel" and self.non_blit < target:
                self.pos, self.non_blit = self.pos + 1, self.non_blit + 1
                return ExitEvent("Skipping GPU Kernel")
            duration = int(ev.get("ticks", DEFAULT_TICKS[kind]))
            left = duration - self.spent
            if self.tick + left > limit:
                self.spent += limit - self.tick
                self.tick = limit
                return ExitEvent("simulate() limit reached")
            self.tick += left
            self.spent = 0
            self.pos += 1
            if kind in ("kernel", "blit"):
                self.active_ticks += duration
                self.launched += 1
                if kind == "kernel":
                    self.non_blit += 1
                if exits:
                    return ExitEvent(
                        "GPU Kernel Completed" if kind == "kernel" else "GPU Blit Kernel Completed"
                    )
            elif kind == "marker":
                if ev.get("op") not in ("workbegin", "workend"):
                    raise DoubleError(f"scenario marker needs op workbegin|workend, got {ev.get('op')!r}")
                if work_items:
                    return ExitEvent(ev["op"], int(ev.get("id", 0)))
            elif kind == "sleep":
                # Host wall-clock time (a slow simulation, or a hang with a large `seconds`).
                time.sleep(float(ev.get("seconds", 1)))
            elif kind == "console":
                # The guest's serial console, where gem5 writes it (system.pc.com_1.device).
                with (self.outdir / "system.pc.com_1.device").open("a", encoding="utf-8") as console:
                    console.write(str(ev.get("text", "")) + "\n")
            elif kind == "panic":
                # gem5's panic()/fatal(): the message on stderr, then exit status 1 (fatal) or abort.
                print(str(ev.get("message", "panic: test double panic")), file=sys.stderr, flush=True)
                raise SystemExit(1)
            elif kind == "crash":
                # A segfault-like death: no end record, no at-exit stats dump.
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL if ev.get("signal") == "KILL" else signal.SIGSEGV)
            elif kind == "writefile":
                # The guest's `m5 writefile HOSTFILE NAME`: gem5 writes NAME into its outdir.
                name = Path(str(ev["name"])).name
                (self.outdir / name).write_text(str(ev.get("text", "")), encoding="utf-8")
            elif kind == "checkpoint":
                return ExitEvent("checkpoint")
            elif kind == "exit":
                return ExitEvent("m5_exit instruction encountered")
            elif kind == "fail":
                return ExitEvent("m5_fail instruction encountered", int(ev.get("code", 1)))
        return ExitEvent("m5_exit instruction encountered")  # the guest script's trailing `m5 exit`

    # -- m5.stats
    def stats_dump(self) -> None:
        if self.tick == self.last_dump:  # gem5: no two global dumps in one tick
            return
        self.last_dump = self.tick
        self._stats_handle.write(self._block())
        self._stats_handle.flush()
        self.dumps += 1

    def stats_reset(self) -> None:
        self.reset_tick = self.tick
        self.active_ticks = 0
        self.launched = 0

    def close(self) -> None:
        self._stats_handle.close()

    def _block(self) -> str:
        sim_ticks = self.tick - self.reset_tick
        # gem5 names stats by SimObject path: the classic shader is also system.cpu<N>; the
        # stdlib ViperBoard's lives only at board.gpus.shader.
        stdlib = getattr(self.system, "layerlab_args", None) is None and self.system is not None
        shader = "board.gpus.shader" if stdlib else f"system.cpu{self._shader_index()}"
        lines = ["", "---------- Begin Simulation Statistics ----------"]
        values = {
            "simSeconds": f"{sim_ticks / 1e12:.6f}",
            "simTicks": str(sim_ticks),
            "finalTick": str(self.tick),
        }
        for line in _fixture_root_lines():
            name = line.split()[0]
            if name in values:
                line = _set_value(line, values[name])
            lines.append(line)
        lines.append(
            _stat_line(
                f"{shader}.shaderActiveTicks",
                self.active_ticks,
                "Total ticks that any CU attached to this shader is active (Unspecified)",
            )
        )
        lines.append(
            _stat_line(
                f"{shader}.gpu_cmd_proc.dispatcher.numKernelLaunched",
                self.launched,
                "number of kernel launched (Unspecified)",
            )
        )
        lines.extend(_fixture_gpu_lines())
        lines += ["", "---------- End Simulation Statistics   ----------", ""]
        return "\n".join(lines)

    def _shader_index(self) -> int:
        args = getattr(self.system, "layerlab_args", None)
        return int(getattr(args, "num_cpus", 1) or 1)


def _stat_line(name: str, value: Any, desc: str) -> str:
    return f"{name:<40} {value!s:>12} {'':>10} {'':>10} # {desc}"


def _set_value(line: str, value: str) -> str:
    name, rest = line.split(None, 1)
    tail = rest[rest.index("#") :]
    return f"{name:<40} {value:>12}                       {tail}"


_FIXTURE_CACHE: dict[str, list[str]] = {}


def _fixture_root_lines() -> list[str]:
    """Root stats (simSeconds ... hostOpRate) of a real gem5 v24 stats.txt."""
    if "root" not in _FIXTURE_CACHE:
        path = FIXTURES / "gem5_cpu_stats" / "gem5-v24_bootcamp2024_simpoint0-run_2dumps_stats.txt"
        out: list[str] = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines()[2:]:
                if line.startswith("board.") or line.startswith("---") or not line:
                    break
                out.append(line)
        else:  # no fixtures: a minimal, well-formed root block
            out = [
                _stat_line("simSeconds", 0, "Number of seconds simulated (Second)"),
                _stat_line("simTicks", 0, "Number of ticks simulated (Tick)"),
                _stat_line("finalTick", 0, "Number of ticks from beginning of simulation (Tick)"),
                _stat_line("simFreq", 10**12, "The number of ticks per simulated second ((Tick/Second))"),
            ]
        _FIXTURE_CACHE["root"] = out
    return _FIXTURE_CACHE["root"]


def _fixture_gpu_lines() -> list[str]:
    """GPU (CU, Ruby TCP/TCC/SQC) lines of a real gem5 GPU_VIPER stats.txt, values as recorded."""
    if "gpu" not in _FIXTURE_CACHE:
        path = FIXTURES / "gem5_gpu_stats" / "gem5-2016_04gpu_GPU_VIPER_stats.txt"
        out = []
        if path.is_file():
            out = [
                ln
                for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.startswith(("system.cpu1.CUs", "system.ruby.tc", "system.ruby.sqc"))
            ]
        _FIXTURE_CACHE["gpu"] = out
    return _FIXTURE_CACHE["gpu"]


# ------------------------------------------------------------------------------ fake modules
def _no_attr(name: str) -> Any:
    raise AttributeError(name)


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def _fake_modules(engine: Engine, table: dict[str, str], outdir: Path) -> dict[str, types.ModuleType]:
    def make_system(args: argparse.Namespace) -> FakeSystem:
        if _size_bytes(args.mem_size) < 2 * 2**30:
            raise SystemExit("panic: Need at least 2GB of system memory to load amdgpu module")
        if _size_bytes(args.dgpu_mem_size) != 16 * 2**30:
            raise SystemExit("fatal: GPU memory must be 16GiB (amdgpu_device.cc)")
        dispatcher = FakeDispatcher(
            kernel_exit_events=args.exit_at_gpu_task > -1 or args.exit_after_gpu_kernel > -1
        )
        cmd = FakeCommandProcessor(
            target_non_blit_kernel_id=args.skip_until_gpu_kernel, dispatcher=dispatcher
        )
        shader = FakeSimObject(
            dispatcher=dispatcher,
            gpu_cmd_proc=cmd,
            CUs=[FakeSimObject() for _ in range(args.num_compute_units)],
        )
        system = FakeSystem(
            cpu=[FakeSimObject(type=args.cpu_type) for _ in range(args.num_cpus)], layerlab_args=args
        )
        system.cpu.append(shader)
        engine.system, engine.dispatcher, engine.cmd_proc = system, dispatcher, cmd
        return system

    class Root(FakeSimObject):
        pass

    class ObjectListKind:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def get(self, name: str) -> str:
            return name

    def is_kvm_cpu(cls: Any) -> bool:
        return "Kvm" in str(cls)

    m5 = _module(
        "m5",
        curTick=engine.cur_tick,
        simulate=engine.simulate,
        instantiate=engine.instantiate,
        checkpoint=engine.checkpoint,
        MaxTick=MAX_TICK,
    )
    m5.__path__ = []  # a package, so `import m5.objects` works
    m5.options = types.SimpleNamespace(outdir=str(outdir))
    m5.stats = _module("m5.stats", dump=engine.stats_dump, reset=engine.stats_reset)

    def trace_set(on: bool) -> None:
        engine.trace_enabled = on

    m5.trace = _module("m5.trace", enable=lambda: trace_set(True), disable=lambda: trace_set(False))
    m5.objects = _module("m5.objects", Root=Root)
    # Any other SimObject class a script names (DRAM interfaces, ...) is a plain fake object.
    m5.objects.__getattr__ = lambda name: FakeSimObject if name[:1].isupper() else _no_attr(name)
    m5.util = _module("m5.util", addToPath=lambda path: None)

    common = _module("common", __path__=[])
    common.Options = _module("common.Options", addCommonOptions=lambda parser, *a, **k: None)
    common.GPUTLBOptions = _module("common.GPUTLBOptions", tlb_options=lambda parser: None)
    common.ObjectList = _module("common.ObjectList", is_kvm_cpu=is_kvm_cpu, cpu_list=ObjectListKind("cpu"))
    amd = _module("amd", __path__=[])
    amd.AmdGPUOptions = _module("amd.AmdGPUOptions", addAmdGPUOptions=lambda parser: None)
    ruby = _module("ruby", __path__=[])
    ruby.Ruby = _module("ruby.Ruby", define_options=lambda parser: None)
    system_pkg = _module("system", __path__=[])
    system_pkg.system = _module("system.system", makeGpuFSSystem=make_system)
    runfs = _module("runfs", addRunFSOptions=lambda parser: _add_table_options(parser, table))

    modules = {
        "m5": m5,
        "m5.stats": m5.stats,
        "m5.trace": m5.trace,
        "m5.objects": m5.objects,
        "m5.util": m5.util,
        "common": common,
        "common.Options": common.Options,
        "common.GPUTLBOptions": common.GPUTLBOptions,
        "common.ObjectList": common.ObjectList,
        "amd": amd,
        "amd.AmdGPUOptions": amd.AmdGPUOptions,
        "ruby": ruby,
        "ruby.Ruby": ruby.Ruby,
        "system": system_pkg,
        "system.system": system_pkg.system,
        "runfs": runfs,
    }
    modules.update(_fake_stdlib(engine))
    return modules


def _fake_stdlib(engine: Engine) -> dict[str, types.ModuleType]:
    """gem5 stdlib pieces the ViperBoard script imports (v24.1 signatures, PR #1636)."""

    class BaseViperGPU(FakeSimObject):
        """v24.1.0.3 / develop-2025-05 signatures: gpu_memory required, no memory-channel knob."""

        def __init__(
            self,
            gpu_memory: Any,
            num_cus: int = 40,
            cu_per_sqc: int = 4,
            tcp_size: str = "16KiB",
            tcp_assoc: int = 16,
            sqc_size: str = "32KiB",
            sqc_assoc: int = 8,
            scalar_size: str = "32KiB",
            scalar_assoc: int = 8,
            tcc_size: str = "256KiB",
            tcc_assoc: int = 16,
            tcc_count: int = 16,
            cache_line_size: int = 64,
        ) -> None:
            dispatcher = FakeDispatcher(kernel_exit_events=False)  # ViperShader: GPUDispatcher()
            cmd = FakeCommandProcessor(dispatcher=dispatcher)
            # ViperCU: 4 SIMDs, 8 wavefront slots each (viper_shader.py).
            cus = [FakeSimObject(num_SIMDs=4, n_wf=8, wavefronts=[]) for _ in range(num_cus)]
            self.set_shader(FakeSimObject(dispatcher=dispatcher, gpu_cmd_proc=cmd, CUs=cus))
            # ViperGPUCacheHierarchy (made when the board connects): its own 1801MHz domain.
            self.gpu_caches = FakeSimObject(clk_domain=FakeSimObject(clock="1801MHz"))
            self.gpu_memory = gpu_memory
            self.num_cus = num_cus
            engine.dispatcher, engine.cmd_proc = dispatcher, cmd

        def set_shader(self, shader: Any) -> None:
            self.shader = shader

    class MI300X(BaseViperGPU):
        pass

    class MI210(BaseViperGPU):
        pass

    class Core:
        def __init__(self, kvm: bool) -> None:
            self._kvm, self._obj = kvm, FakeSimObject()

        def is_kvm_core(self) -> bool:
            return self._kvm

        def get_simobject(self) -> FakeSimObject:
            return self._obj

    class SimpleProcessor(FakeSimObject):
        def __init__(self, cpu_type: str, isa: str, num_cores: int) -> None:
            self.cores = [Core(cpu_type == "kvm") for _ in range(num_cores)]

    class ViperBoard(FakeSystem):
        def set_kernel_disk_workload(
            self,
            kernel: Any,
            disk_image: Any,
            readfile: str | None = None,
            readfile_contents: str | None = None,
        ) -> None:
            self.readfile = readfile

        def _pre_instantiate(self, full_system: bool | None = None) -> FakeSimObject:
            engine.system = self
            return FakeSimObject(board=self)

        def _post_instantiate(self) -> None:
            pass

    class Resource(FakeSimObject):
        def __init__(self, local_path: str, **kw: Any) -> None:
            if not Path(local_path).exists():
                raise SystemExit(f"fatal: resource not found: {local_path}")
            super().__init__(local_path=local_path, **kw)

    names = {
        "gem5.components.devices.gpus.amdgpu": {"MI300X": MI300X, "MI210": MI210},
        "gem5.components.memory.single_channel": {"SingleChannelDDR4_2400": FakeSimObject},
        "gem5.components.memory.hbm": {"HBM2Stack": FakeSimObject},
        "gem5.components.memory.memory": {"ChanneledMemory": lambda *a, **k: FakeSimObject(**k)},
        "gem5.components.processors.cpu_types": {
            "CPUTypes": types.SimpleNamespace(KVM="kvm", ATOMIC="atomic")
        },
        "gem5.components.processors.simple_processor": {"SimpleProcessor": SimpleProcessor},
        "gem5.isas": {"ISA": types.SimpleNamespace(X86="x86")},
        "gem5.prebuilt.viper.board": {"ViperBoard": ViperBoard},
        "gem5.prebuilt.viper.cpu_cache_hierarchy": {"ViperCPUCacheHierarchy": FakeSimObject},
        "gem5.resources.resource": {"DiskImageResource": Resource, "KernelResource": Resource},
    }
    modules: dict[str, types.ModuleType] = {}
    for full, attrs in names.items():
        parts = full.split(".")
        for i in range(1, len(parts)):
            pkg = ".".join(parts[:i])
            modules.setdefault(pkg, _module(pkg, __path__=[]))
        modules[full] = _module(full, **attrs)
    return modules


# ------------------------------------------------------------------------------ command line
def parse_gem5_argv(argv: list[str]) -> tuple[argparse.Namespace, str, list[str]]:
    """Split gem5's own options from the config script and its options, as gem5 does."""
    parser = argparse.ArgumentParser(prog="gem5.opt (layerlab test double)", add_help=False)
    parser.add_argument("-d", "--outdir", default="m5out")
    parser.add_argument("-r", "--redirect-stdout", action="store_true")
    parser.add_argument("-e", "--redirect-stderr", action="store_true")
    parser.add_argument("--stdout-file", default="simout.txt")
    parser.add_argument("--stderr-file", default="simerr.txt")
    parser.add_argument("--stats-file", default="stats.txt")
    parser.add_argument("--dump-config", default="config.ini")
    parser.add_argument("--json-config", default="config.json")
    parser.add_argument("--debug-flags", action="append", default=[])
    parser.add_argument("--debug-file", default="")
    parser.add_argument("--debug-start", default=None)
    parser.add_argument("--debug-end", default=None)
    parser.add_argument("--listener-mode", default="auto")
    parser.add_argument("-q", "--quiet", action="count", default=0)
    parser.add_argument("-p", "--path", action="append", default=[])
    split = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if split is None:
        raise DoubleError("no config script on the command line")
    opts = parser.parse_args(argv[:split])
    return opts, argv[split], argv[split + 1 :]


def _profile_of(script_text: str) -> str | None:
    match = re.search(r"^# layerlab-profile: (\S+)$", script_text, re.M)
    return match.group(1) if match else None


def _style_of(script_text: str) -> str:
    match = re.search(r"^# layerlab-style: (\S+)$", script_text, re.M)
    return match.group(1) if match else "classic"


def _note(console: Any, message: str) -> None:
    """A line on the double's stderr (simerr.txt with -e) and on the terminal it was started from."""
    print(message, file=sys.stderr)
    if sys.stderr is not console:
        print(message, file=console)


def _write_config(
    engine: Engine,
    opts: argparse.Namespace,
    gem5_options: list[str],
    script: str,
    script_args: list[str],
    text: str,
    run_dir: Path,
    console: Any,
) -> None:
    """What gem5's ``m5.instantiate()`` dumps: the REAL config of this run, else a synthetic one.

    With the real gem5 tree of the script's profile on this host, ``--dump-config`` /
    ``--json-config`` get what real gem5 writes for this very argv (``real_config.py``: a preflight
    against that tree, cached per machine). A config real gem5's Python rejects ends the run
    here with exit status 1 and the findings, before any stats. Without the tree, the synthetic
    config.ini of ``_write_config_ini``, and a note on stderr.
    """
    if engine.system is None or not (opts.dump_config or opts.json_config):
        return
    profile = _profile_of(text)
    tree = real_config.find_tree(profile)
    outdir = Path(opts.outdir)
    if tree is None:
        name = real_config.reference_tree_name(profile) or f"<no reference tree for profile {profile}>"
        _note(
            console,
            "gem5 test double: no real gem5 tree; config.ini is synthetic "
            f"(looked for {real_config.gem5_src_dir() / name}; set {real_config.GEM5_SRC_ENV})",
        )
        if opts.dump_config:
            _write_config_ini(engine, outdir, opts.dump_config)
        return
    try:
        got = real_config.real_config(
            gem5_options, script, script_args, text, run_dir, profile, _style_of(text), tree
        )
    except real_config.Rejected as exc:
        engine.rejected = True
        findings = "\n".join(f"  {finding}" for finding in exc.findings)
        _note(console, f"gem5 test double: {exc} (preflight); no outputs written:\n{findings}")
        raise SystemExit(1) from None
    except real_config.Unavailable as exc:
        engine.rejected = True
        _note(console, f"gem5 test double: cannot take config.ini from the real tree {tree}: {exc}")
        raise SystemExit(1) from None
    if opts.dump_config:
        (outdir / opts.dump_config).write_bytes(got.ini)
    if opts.json_config and got.json is not None:
        (outdir / opts.json_config).write_bytes(got.json)
    how = "cached" if got.cache_hit else "preflight"
    print(f"gem5 test double: config from real gem5 {tree.name} ({how}, {got.elapsed_s:.2f} s)")


def _write_config_ini(engine: Engine, outdir: Path, path: str) -> None:
    """A SYNTHETIC config.ini (no real gem5 tree on this host): the objects and parameters
    layerlab's readers look at, under real gem5's SimObject paths."""
    system = engine.system
    args = getattr(system, "layerlab_args", None)
    get = lambda name, default: getattr(args, name, default) if args is not None else default  # noqa: E731
    n_cpu = int(get("num_cpus", 1) or 1)
    n_cu = (
        len(engine.system.cpu[-1].CUs) if hasattr(engine.system, "cpu") else int(get("num_compute_units", 4))
    )
    n_tcc = int(get("num_tccs", 1) or 1)
    n_dir = int(get("dgpu_num_dirs", 1) or 1)
    sections: list[tuple[str, dict[str, Any]]] = [
        ("root", {"type": "Root", "full_system": "true"}),
        (
            "system",
            {
                "type": "System",
                "exit_on_work_items": str(bool(system.exit_on_work_items)).lower(),
                "readfile": getattr(system, "readfile", "") or "",
            },
        ),
        (
            "system.clk_domain",
            {"type": "SrcClockDomain", "clock": _clock_period_ticks(get("sys_clock", "1GHz"))},
        ),
    ]

    def vector(base: str, count: int) -> list[str]:
        """gem5's SimObjectVector naming: bare for one, zero-padded to ceil(log10(n)) otherwise."""
        if count == 1:
            return [base]
        width = math.ceil(math.log10(count))
        return [f"{base}{i:0{width}d}" for i in range(count)]

    for cpu in vector("system.cpu", n_cpu):
        sections.append((cpu, {"type": str(get("cpu_type", "X86KvmCPU")), "clk_domain": "system.clk_domain"}))
    cus = vector("system.Shader.CUs", n_cu)
    sections.append(
        (
            "system.Shader",
            {
                "type": "Shader",
                "CUs": " ".join(cus),
                "clk_domain": "system.clk_domain",
                "n_wf": get("wfs_per_simd", 10),
            },
        )
    )
    sections += [(cu, {"type": "ComputeUnit"}) for cu in cus]
    target = engine.cmd_proc.target_non_blit_kernel_id if engine.cmd_proc else 0
    exits = bool(engine.dispatcher and engine.dispatcher.kernel_exit_events)
    sections.append(
        ("system.Shader.gpu_cmd_proc", {"type": "GPUCommandProcessor", "target_non_blit_kernel_id": target})
    )
    sections.append(
        (
            "system.Shader.gpu_cmd_proc.dispatcher",
            {"type": "GPUDispatcher", "kernel_exit_events": str(exits).lower()},
        )
    )
    tcc_bytes = _size_bytes(get("tcc_size", "256kB")) // n_tcc
    for i in range(n_tcc):
        ctrl = f"system.ruby.tcc_cntrl{i}"
        sections.append((ctrl, {"type": "TCC_Controller", "L2cache": f"{ctrl}.L2cache"}))
        sections.append((f"{ctrl}.L2cache", {"type": "RubyCache", "size": tcc_bytes}))
    for ctrl in (
        ["system.gpu_mem_ctrls"] if n_dir == 1 else [f"system.gpu_mem_ctrls{i}" for i in range(n_dir)]
    ):
        sections.append((ctrl, {"type": "MemCtrl", "dram": f"{ctrl}.dram"}))
        sections.append((f"{ctrl}.dram", {"type": str(get("dgpu_mem_type", "HBM_1000_4H_1x128"))}))
    lines = []
    for name, params in sorted(sections):  # gem5 sorts sections by path "for easier diffing"
        lines.append(f"[{name}]")
        lines += [f"{key}={value}" for key, value in params.items()]
        lines.append("")
    (outdir / path).write_text("\n".join(lines), encoding="utf-8")


def run(argv: list[str], scenario: dict[str, Any] | None = None, cwd: str | Path | None = None) -> int:
    """Run the double in-process (tests) and return gem5's exit status. Restores sys state."""
    old_cwd = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    saved_modules = dict(sys.modules)
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    try:
        opts, script, script_args = parse_gem5_argv(argv)
        if scenario is None:
            env_path = os.environ.get("LAYERLAB_GEM5_DOUBLE_SCENARIO")
            scenario = (
                json.loads(Path(env_path).read_text(encoding="utf-8")) if env_path else DEFAULT_SCENARIO
            )
        outdir = Path(opts.outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        stats_file = re.sub(r"^\w+://", "", opts.stats_file).split("?")[0]
        engine = Engine(scenario, outdir, stats_file)
        text = Path(script).read_text(encoding="utf-8")
        gem5_options = argv[: len(argv) - len(script_args) - 1]
        console, run_dir = sys.stderr, Path.cwd()
        engine.on_instantiate = lambda: _write_config(
            engine, opts, gem5_options, script, script_args, text, run_dir, console
        )
        modules = _fake_modules(engine, option_table(_profile_of(text)), outdir)
        out = open(outdir / opts.stdout_file, "w", encoding="utf-8") if opts.redirect_stdout else None  # noqa: SIM115
        err = open(outdir / opts.stderr_file, "w", encoding="utf-8") if opts.redirect_stderr else None  # noqa: SIM115
        status = 0
        with contextlib.ExitStack() as stack:
            if out:
                stack.enter_context(contextlib.redirect_stdout(out))
                stack.callback(out.close)
            if err:
                stack.enter_context(contextlib.redirect_stderr(err))
                stack.callback(err.close)
            print("gem5 Simulator System.  https://www.gem5.org  (layerlab TEST DOUBLE -- not a simulator)")
            print("command line: gem5.opt " + " ".join(argv))
            sys.modules.update(modules)
            # gem5's main.py: -p/--path entries (':'-separated) go first, then the script's dir.
            entries = [e for value in opts.path for e in value.split(":") if e]
            sys.path[0:0] = [str(Path(script).resolve().parent), *entries]
            sys.argv = [script, *script_args]
            try:
                code = compile(text, script, "exec")
                exec(code, {"__name__": "__m5_main__", "__file__": script})
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            if engine.instantiated:
                engine.stats_dump()  # gem5's atexit dump (dropped if it falls in the last dump's tick)
            engine.close()
            if engine.rejected:  # real gem5 would have stopped before writing any stats
                engine.stats_path.unlink(missing_ok=True)
            sys.stdout.flush()
        return status
    finally:
        sys.modules.clear()
        sys.modules.update(saved_modules)
        sys.path[:], sys.argv[:] = saved_path, saved_argv
        os.chdir(old_cwd)


def main() -> int:
    try:
        return run(sys.argv[1:])
    except DoubleError as exc:
        print(f"gem5 test double: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT_SCENARIO", "SCENARIO_SCHEMA", "DoubleError", "Engine", "option_table", "run"]
