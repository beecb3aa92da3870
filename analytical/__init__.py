"""Analytical model: what one decoder layer should cost on a given machine.

In: a model config (from ``workloads``), a phase with shapes, an execution engine and a
``HardwareSpec`` (datasheet part or as-simulated gem5 machine). Out: a tidy table of ops with
FLOPs, bytes by class, arithmetic intensity, bound and estimated time per estimator.
"""
