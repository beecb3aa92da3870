"""Workloads: what runs inside the guest, and which kernels belong to which layer.

In: a model's HF ``config.json`` (shipped as data for common models), a phase and shapes.
Out: guest driver scripts (HF transformers, vLLM, a synthetic single layer) that emit m5
markers; from a census run's events, a kernel map and the exact kernel *window* for
"layer L of step T".

The words every stage shares (errors, atomic writes, kernel index, window, events schema) live
in ``foundation``, the package below this one.
"""
