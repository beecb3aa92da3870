"""Realistic GPU-FS run outputs for tests, since no public mi200/mi300 stats.txt exists.

Lines follow gem5 v24 ``src/base/stats/text.cc`` exactly (``gem5_gpufs.md`` §3.3): name padded
to 40 then a space, value ``%12s``, blank pdf/cdf ``%10s`` columns, `` # desc``, `` (Unit)``.
Stat names are the v24 names of §3.2 (shader ``system.cpu<N>``, unpadded ``CUs<i>``); GPU
compute stats are ``(Unspecified)``, DRAM stats carry units. Also writes the matching
``config.ini`` (``system.Shader``, zero-padded ``CUs00``) and events side-file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BEGIN = "\n---------- Begin Simulation Statistics ----------\n"
END = "\n---------- End Simulation Statistics   ----------\n"


def line(
    name: str, value: object, desc: str = "", unit: str = "Unspecified", pdf: str = "", cdf: str = ""
) -> str:
    text = f"{name:<40} {value!s:>12} {pdf:>10} {cdf:>10}"
    if desc:
        text += f" # {desc}"
    if unit:
        text += f" ({unit})"
    return text + "\n"


@dataclass
class Kernel:
    active_ticks: int
    insts_per_cu: list[int]
    blit: bool = False


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6f}"


def block(
    kernel: Kernel, shader: str = "system.cpu1", scale: int = 1, host_s: float = 1.5, sim_ticks: int = 0
) -> str:
    """One dump's worth of lines for a kernel; ``scale`` multiplies counters (cumulative runs)."""
    out = [line("simSeconds", f"{sim_ticks / 1e12:.6f}", "Number of seconds simulated", "Second")]
    out.append(line("simTicks", sim_ticks or kernel.active_ticks, "Number of ticks simulated", "Tick"))
    out.append(
        line(
            "finalTick",
            10**13 + sim_ticks,
            "Number of ticks from beginning of simulation (restored from checkpoints and never reset)",
            "Tick",
        )
    )
    out.append(line("simFreq", 10**12, "The number of ticks per simulated second", "(Tick/Second)"))
    out.append(line("hostSeconds", f"{host_s:.2f}", "Real time elapsed on the host", "Second"))
    out.append(line("system.clk_domain.clock", 1000, "Clock period in ticks", "Tick"))
    out.append(
        line(
            f"{shader}.shaderActiveTicks",
            kernel.active_ticks * scale,
            "Total ticks that any CU attached to this shader is active",
        )
    )
    out.append(
        line(
            f"{shader}.vectorInstSrcOperand::0", 10 * scale, "vector instruction source operand distribution"
        )
    )
    out.append(
        line(
            f"{shader}.vectorInstSrcOperand::1", 20 * scale, "vector instruction source operand distribution"
        )
    )
    # A one-line distribution, as the Shader latency dists are printed (flags pdf|oneline).
    out.append(line(f"{shader}.allLatencyDist::bucket_size", 10000, "All load latency distribution"))
    out.append(line(f"{shader}.allLatencyDist::min_bucket", 0, "All load latency distribution"))
    out.append(line(f"{shader}.allLatencyDist::max_bucket", 39999, "All load latency distribution"))
    out.append(line(f"{shader}.allLatencyDist::samples", 4 * scale, "All load latency distribution"))
    out.append(line(f"{shader}.allLatencyDist::mean", "15000", "All load latency distribution"))
    out.append(line(f"{shader}.allLatencyDist::stdev", "nan", "All load latency distribution"))
    cells = "".join(
        f" |{v * scale:>12} {p:>10} {c:>10}"
        for v, p, c in (
            (1, "25.00%", "25.00%"),
            (2, "50.00%", "75.00%"),
            (1, "25.00%", "100.00%"),
            (0, "0.00%", "100.00%"),
        )
    )
    out.append(f"{f'{shader}.allLatencyDist':<40}{cells} # All load latency distribution (Unspecified)\n")
    out.append(line(f"{shader}.allLatencyDist::total", 4 * scale, "All load latency distribution"))
    for cu, insts in enumerate(kernel.insts_per_cu):
        p = f"{shader}.CUs{cu}"
        cycles = kernel.active_ticks // 1000 - cu
        out.append(line(f"{p}.totalCycles", cycles * scale, "number of cycles the CU ran for"))
        out.append(line(f"{p}.numInstrExecuted", insts * scale, "number of instructions executed"))
        out.append(line(f"{p}.ipc", _fmt(insts / cycles) if cycles else "nan", "Instructions per cycle"))
        out.append(line(f"{p}.vALUInsts", insts // 2 * scale, "Number of vector ALU insts issued."))
        out.append(line(f"{p}.sALUInsts", insts // 4 * scale, "Number of scalar ALU insts issued."))
        out.append(
            line(
                f"{p}.numVecOpsExecuted", insts * 64 * scale, "number of vec ops executed (e.g. WF size/inst)"
            )
        )
        out.append(line(f"{p}.numVecOpsExecutedMFMA", insts * 8 * scale, "number of mfma vec ops executed"))
        out.append(
            line(f"{p}.numVecOpsExecutedMFMAF16", insts * 8 * scale, "number of f16 mfma vec ops executed")
        )
        out.append(line(f"{p}.vectorMemReads", insts // 8 * scale, "Number of vector mem reads"))
        out.append(line(f"{p}.vectorMemWrites", insts // 16 * scale, "Number of vector mem writes"))
        out.append(line(f"{p}.scalarMemReads", 3 * scale, "Number of scalar mem reads"))
        out.append(line(f"{p}.ldsNoFlatInsts", 5 * scale, "Number of LDS insts not including flat"))
        for key, value in (("samples", 2 * scale), ("mean", "3.500000"), ("stdev", "0.707107"),
                           ("underflows", 0), ("0-3", 1 * scale), ("4-7", 1 * scale), ("overflows", 0),
                           ("min_value", 3), ("max_value", 4), ("total", 2 * scale)):  # fmt: skip
            out.append(
                line(
                    f"{p}.waveLevelParallelism::{key}",
                    value,
                    "wave level parallelism: count of active waves at wave launch",
                )
            )
    out.append(
        line(
            "system.gpu_mem_ctrls.dram.bytesRead::cpu1.CUs0",
            4096 * scale,
            "Number of bytes read from this memory",
            "Byte",
        )
    )
    out.append(
        line(
            "system.gpu_mem_ctrls.dram.bytesRead::total",
            8192 * scale,
            "Number of bytes read from this memory",
            "Byte",
        )
    )
    out.append(
        line(
            "system.gpu_mem_ctrls.dram.bytesWritten::total",
            1024 * scale,
            "Number of bytes written to this memory",
            "Byte",
        )
    )
    out.append(
        line(
            "system.gpu_mem_ctrls.dram.avgRdBW",
            "-nan",
            "Average DRAM read bandwidth in MiBytes/s",
            "(Byte/Second)",
        )
    )
    for i in range(len(kernel.insts_per_cu)):
        for key, value in (("m_demand_hits", 90), ("m_demand_misses", 10), ("m_demand_accesses", 100)):
            out.append(
                line(
                    f"system.ruby.tcp_cntrl{i}.L1cache.{key}",
                    value * scale,
                    "Number of cache demand " + key[9:],
                    "Count",
                )
            )
    for key, value in (("m_demand_hits", 40), ("m_demand_misses", 60), ("m_demand_accesses", 100)):
        out.append(
            line(
                f"system.ruby.tcc_cntrl0.L2cache.{key}",
                value * scale,
                "Number of cache demand " + key[9:],
                "Count",
            )
        )
    return "".join(out)


CONFIG_INI = """[root]
type=Root
children=system
eventq_index=0
full_system=true
sim_quantum=0
time_sync_enable=false

[system]
type=System
children=Shader clk_domain cpu gpu_mem_ctrls ruby
clk_domain=system.clk_domain

[system.clk_domain]
type=SrcClockDomain
clock={clock}
domain_id=-1
init_perf_level=0
voltage_domain=system.voltage_domain

[system.cpu]
type=X86KvmCPU
clk_domain=system.clk_domain

[system.Shader]
type=Shader
children={cu_names}
CUs={cu_paths}
clk_domain=system.clk_domain
n_wf=10

{cus}
[system.gpu_mem_ctrls]
type=MemCtrl
children=dram
dram=system.gpu_mem_ctrls.dram

[system.gpu_mem_ctrls.dram]
type=HBM_1000_4H_1x128
device_size=17179869184

[system.ruby.clk_domain]
type=SrcClockDomain
clock=667
init_perf_level=0

[system.ruby.tcc_cntrl0]
type=TCC_Controller
L2cache=system.ruby.tcc_cntrl0.L2cache
clk_domain=system.ruby.clk_domain

[system.ruby.tcc_cntrl0.L2cache]
type=RubyCache
size=262144
assoc=16
"""


def config_ini(num_cus: int, clock: int = 1000) -> str:
    width = len(str(num_cus - 1)) if num_cus > 1 else 0
    names = [f"CUs{i:0{width}d}" if num_cus > 1 else "CUs" for i in range(num_cus)]
    cus = "".join(
        f"[system.Shader.{n}]\ntype=ComputeUnit\ncu_id={i}\nclk_domain=system.clk_domain\n\n"
        for i, n in enumerate(names)
    )
    return CONFIG_INI.format(
        clock=clock, cu_names=" ".join(names), cu_paths=" ".join(f"system.Shader.{n}" for n in names), cus=cus
    )


def write_run(
    run_dir: Path,
    kernels: list[Kernel],
    *,
    skip_until: int = 2,
    clock: int = 1000,
    reset: bool = True,
    with_events: bool = True,
    message: bool = False,
) -> Path:
    """A run dir: stats.txt (one dump per kernel), config.ini, layerlab_events.jsonl."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = []
    for i, kernel in enumerate(kernels):
        scale = 1
        if not reset:
            scale = i + 1  # cumulative counters: simple multiples (kernels identical in tests)
        begin = BEGIN if not message else BEGIN.replace(" ----------\n", f" : kernel {i} ----------\n", 1)
        text.append(begin + block(kernel, scale=scale, sim_ticks=kernel.active_ticks + 5000) + END)
    (run_dir / "stats.txt").write_text("".join(text))
    (run_dir / "config.ini").write_text(config_ini(len(kernels[0].insts_per_cu), clock))
    if with_events:
        records = [
            {
                "kind": "start",
                "schema": "layerlab-events/1",
                "skip_until": skip_until,
                "exit_after": -1,
                "exit_at_task": -1,
                "dump_per_kernel": True,
                "gem5_profile": "v24.0",
                "tick": 0,
            }
        ]
        kernel_index, tasks = skip_until, skip_until
        for seq, kernel in enumerate(kernels):
            tasks += 1
            kind = "blit" if kernel.blit else "kernel"
            records.append(
                {
                    "kind": kind,
                    "seq": seq,
                    "cause": "GPU Blit Kernel Completed" if kernel.blit else "GPU Kernel Completed",
                    "exit_code": 0,
                    "tick": 10**9 * (seq + 1),
                    "kernel_index": None if kernel.blit else kernel_index,
                    "kernels_done": kernel_index + (0 if kernel.blit else 1),
                    "tasks_done": tasks,
                    "dump": seq,
                    "dump_suppressed": False,
                    "reset": reset,
                }
            )
            if not kernel.blit:
                kernel_index += 1
        (run_dir / "layerlab_events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir
