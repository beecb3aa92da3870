"""Workloads: what runs inside the guest, and which kernels belong to which layer.

In: a model's HF ``config.json`` (shipped as data for common models), a phase and shapes.
Out: guest driver scripts (HF transformers, vLLM, a synthetic single layer) that emit m5
markers; from a census run's events, a kernel map and the exact kernel *window* for
"layer L of step T".

``errors``, ``atomic`` and ``vocabulary`` hold the few things every later stage shares (the
input-error type, atomic writes, the words kernel index / dump / window); they live here
because this is the first stage and may be imported by all others. ``events`` is the schema
of the gem5 loop's side-file.
"""
