"""Resolve a recipe source to a local file: a path as given, or a verified download in the cache.

Downloads go to ``$LAYERLAB_CACHE_DIR/downloads/``: resumed from a ``.part`` file with an HTTP
Range request, checked against the recipe's sha256 (of the file as served), then decompressed
when the URL ends in ``.gz``. Only a verified file gets the final name, so a finished download
is reused by name, without re-hashing. A connection cut mid-file keeps what arrived
(``http.client`` returns a short body without an error, so the length is checked against
Content-Length / Content-Range); a wrong checksum removes the ``.part`` (a resume cannot fix it).
A server that ignores Range (200) restarts the file from byte 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import http.client
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
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


def _name_of(url: str) -> str:
    """The file name a URL serves (query and fragment left out: ``x.gz?sig=…`` is ``x.gz``)."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1]) or "download"


def _total_of(url: str, response: http.client.HTTPResponse, have: int, resumed: bool) -> int | None:
    """The whole file's size from the response (Content-Range on a 206, Content-Length else)."""
    if resumed:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            raise InputError(
                f"download {url}: the server resumed at the wrong place "
                f"(Content-Range {response.headers.get('Content-Range')!r}, asked for byte {have})"
            )
        return int(match.group(3)) if match.group(3) != "*" else None
    return getattr(response, "length", None)  # None for a file: URL


def _fetch(url: str, part: Path, progress: Callable[[str, int | None], Callable[[int], None]] | None) -> None:
    """Fill ``part`` with the file at ``url``, resuming after what it already holds.

    A cut connection keeps what arrived (``InputError``: run again to resume); a ``.part`` that
    is already whole (the server answers 416 to a range past its end) is left for verification.
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    name = _name_of(url)
    got = 0
    total: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = response.status == 206
            total = _total_of(url, response, have, resumed)
            start = have if resumed else 0
            advance = progress(f"download {name}", total) if progress else None
            if advance and start:
                advance(start)
            with part.open("ab" if resumed else "wb") as out:
                got = start
                while block := response.read(CHUNK):
                    out.write(block)
                    got += len(block)
                    if advance:
                        advance(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is whole (or wrong: the sha says)
            return
        raise InputError(f"download {url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise InputError(f"download {url}: {exc or type(exc).__name__} (run again to resume)") from None
    if total is not None and got < total:
        raise InputError(
            f"download {url}: the connection was cut after {got} of {total} bytes (run again to resume)"
        )


def download(
    url: str, sha256: str, progress: Callable[[str, int | None], Callable[[int], None]] | None = None
) -> Path:
    """The verified (and, for ``.gz``, decompressed) file at ``url``, from the cache when there."""
    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    name = _name_of(url)
    raw = folder / f"{sha256[:16]}-{name}"
    final = raw.with_name(raw.name.removesuffix(".gz")) if name.endswith(".gz") else raw
    if final.is_file():  # only a verified download (and its decompressed form) gets this name
        return final
    with _locked(raw.with_name(raw.name + ".lock")):
        if final.is_file():  # another build finished it while we waited
            return final
        if not raw.is_file():
            part = raw.with_name(raw.name + ".part")
            _fetch(url, part, progress)
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One download of a file at a time (two builds naming the same URL share one ``.part``)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
