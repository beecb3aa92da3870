"""Placeholder so layerlab accepts this tree as a gem5 source tree in tests.

The gem5 test double injects fake ``runfs``/``common``/... modules before the rendered script
runs, so nothing here is imported.
"""
