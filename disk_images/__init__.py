"""Disk images: derive a guest image with layerlab's drivers and a model baked in.

In: a base gem5-resources GPU image and its kernel. Out: a new image (the base is never
modified) and a manifest. Arrives with the disk-image issue.
"""
