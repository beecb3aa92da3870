"""Disk images: derive a guest image with layerlab's drivers and a model baked in.

In: a base gem5-resources GPU image and the kernel extracted from it, and a recipe
(``images/*.yaml``). Out: a new image (the base is never modified) and its manifest, which later
stages name as their image (``manifest.read_manifest``). The steps, one module each:
``partitions`` (MBR/GPT) → ``e2fs`` (ext4 superblock, e2fsprogs on a byte range) → ``guest``
(OS/Python/ROCm/torch, generation, kernel pairing) → ``build`` (derive, grow, ``inject``, finish)
→ ``manifest``. ``fetch`` resolves URL sources (verified, resumable downloads), ``wheels`` stages
the guest's wheelhouse, and ``docker_access`` runs the e2fsprogs steps in a container on a host
without them. ``testimage`` makes small real images for tests and benchmarks.
"""
