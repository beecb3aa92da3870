"""The ground floor every stage stands on: one input-error type, atomic writes, the run vocabulary
(kernel index, window, devices, gem5 versions, sizes and clocks) and the events side-file schema.

It is a package of its own, below ``workloads``, so that every stage may import it without
breaking the layering rule (a package imports only packages before it). Guest drivers do not
import it: they run inside the disk image with the standard library and torch only.
"""
