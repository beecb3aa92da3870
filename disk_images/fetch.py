"""Resolve a recipe source to a local file: a path as given, or a verified download in the cache.

Downloads go to ``$LAYERLAB_CACHE_DIR/downloads/``: resumed from a ``.part`` file with an HTTP
Range request, checked against the recipe's sha256 (of the file as served), then decompressed
when the URL ends in ``.gz``. A finished download is reused without re-hashing (the digest
cache knows it).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from foundation.digests import cache_dir
from foundation.errors import InputError

CHUNK = 4 << 20


def resolve_source(
    what: str,
    path: str | None,
    url: str | None,
    sha256: str | None,
    base_dir: Path,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
) -> Path:
    """The local file for a source (``what`` names it in errors: "base image", "kernel")."""
    if path:
        file = Path(path).expanduser()
        file = file if file.is_absolute() else base_dir / file
        if not file.is_file():
            raise InputError(f"{what} {file}: file not found")
        return file.resolve()
    if not url:
        flag = "BASE" if what == "base image" else "KERNEL"
        raise InputError(
            f"no {what}: the recipe names none; pass {flag}=PATH to make image "
            f"(or --{flag.lower()} PATH to layerlab image build)"
        )
    return download(url, (sha256 or "").removeprefix("sha256:"), progress)


def download(
    url: str, sha256: str, progress: Callable[[str, int | None], Callable[[int], None]] | None = None
) -> Path:
    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "download"
    raw = folder / f"{sha256[:16]}-{name}"
    final = raw.with_name(raw.name.removesuffix(".gz")) if name.endswith(".gz") else raw
    if final.is_file():  # only a verified download (and its decompressed form) gets this name
        return final
    if not raw.is_file():
        part = raw.with_name(raw.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                resumed = response.status == 206
                total = response.length
                advance = (
                    progress(f"download {name}", (total + have) if total and resumed else total)
                    if progress
                    else None
                )
                if advance and resumed:
                    advance(have)
                with part.open("ab" if resumed else "wb") as out:
                    while block := response.read(CHUNK):
                        out.write(block)
                        if advance:
                            advance(len(block))
        except OSError as exc:
            raise InputError(f"download {url}: {exc} (run again to resume)") from None
        digest = hashlib.sha256()
        with part.open("rb") as handle:
            while block := handle.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() != sha256:
            part.unlink()
            raise InputError(
                f"download {url}: sha256 {digest.hexdigest()} is not the recipe's {sha256}; removed it"
            )
        os.replace(part, raw)
    if final != raw:
        tmp = final.with_name(final.name + ".part")
        try:
            with gzip.open(raw, "rb") as fin, tmp.open("wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
        except (OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"decompress {raw}: {exc}") from None
        os.replace(tmp, final)
        raw.unlink()
    return final
