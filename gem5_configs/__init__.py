"""gem5 configs: render the GPU-FS run for one window on one as-simulated machine.

In: a ``Gem5GpuConfig`` (from ``analytical.hardware``), a gem5 version profile, a kernel
window and the guest workload command. Out: a rendered gem5 config script, the guest run
script, ``params.json`` and ``command.json`` (an argv list, never a shell string).
"""
