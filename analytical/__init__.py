"""Analytical model: what one decoder layer should cost on a given machine.

In: a model config (from ``workloads``), a phase with shapes, an execution engine and a
``HardwareSpec`` (datasheet part or as-simulated gem5 machine). Out: a tidy table of ops with
FLOPs, bytes by class, arithmetic intensity, bound and estimated time per estimator.

Modules, in data-flow order: ``ops`` (per-op FLOPs/bytes, vectorised over shapes), ``hardware``
(spec types, gem5 DRAM table and MFMA timing by version, ``gem5_machine``), ``catalog``
(``get_hardware`` by name), ``estimators`` (roofline, notebook simple/tiling, cache, waves,
launch floor), ``calibration`` (YAML factors, fitting), ``notebook`` (the old chunked-prefill
approximation), ``pipeline`` (``estimate_layer``: one call to the CLI's table), ``plot``.
"""
