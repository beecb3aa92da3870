"""Sources of ``make image`` that are not local files: URL downloads and the guest's wheelhouse.

Downloads run for real against a loopback HTTP server started here (``http.server`` in a
thread, with a small handler that honours Range and can cut a connection mid-file, ignore
Range, or answer a resume with the wrong bytes). Ground truth is the served bytes and the
requests the server saw. Wheels are built here as real wheel files (zip + dist-info) and
installed by real pip from a local wheel file and a local "simple" index named in a recipe,
then injected into a real test image and read back with debugfs; the guest's Python version
tag decides which wheel goes in. Only ``wheels.packages`` from PyPI and ``model.hf_repo`` need
the network, and nothing here uses it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from disk_images import build, e2fs, fetch, testimage, wheels
from foundation.errors import InputError

REPO = Path(__file__).resolve().parents[1]
needs_tools = pytest.mark.skipif(
    bool(e2fs.missing_host_tools()) or not (shutil.which("sgdisk") and shutil.which("sfdisk")),
    reason="needs e2fsprogs, sfdisk and sgdisk (.ci/install-image-tools.sh)",
)


# ----------------------------------------------------------------------------- the server


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; ``server.mode`` scripts one fault for the next request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        server = self.server
        path = self.path.split("?", 1)[0]
        server.seen.append((path, self.headers.get("Range")))  # type: ignore[attr-defined]
        body = server.files.get(path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        mode = server.mode  # type: ignore[attr-defined]
        server.mode = None  # type: ignore[attr-defined]
        start = 0
        wanted = self.headers.get("Range")
        if wanted and mode != "ignore-range":
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            shown = start + 1 if mode == "wrong-range" else start
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {shown}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        try:
            if isinstance(mode, int):  # cut the connection after this many bytes
                self.wfile.write(rest[:mode])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(rest)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a refused resume)
            self.close_connection = True


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.seen, httpd.mode = {}, [], None  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("LAYERLAB_CACHE_DIR", str(folder))
    return folder / "downloads"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- downloads


def test_cut_connection_resumes_from_the_part_file(server, cache: Path) -> None:
    body = os.urandom(3 << 20)
    server.files["/x/base.img"] = body
    url = f"{server.url}/x/base.img"
    server.mode = 1 << 20  # the first answer stops after 1 MiB
    with pytest.raises(InputError, match=rf"cut after {1 << 20} of {3 << 20} bytes \(run again to resume\)"):
        fetch.download(url, _sha(body))
    part = cache / f"{_sha(body)[:16]}-base.img.part"
    assert part.stat().st_size == 1 << 20 and not part.with_suffix("").exists()
    bars: list[tuple[str, int | None]] = []
    moved: list[int] = []

    def progress(label: str, total: int | None):
        bars.append((label, total))
        return moved.append

    got = fetch.download(url, _sha(body), progress)
    assert got.read_bytes() == body and got.name == f"{_sha(body)[:16]}-base.img"
    assert server.seen[-1] == ("/x/base.img", f"bytes={1 << 20}-")  # resumed, not restarted
    assert bars == [("download base.img", 3 << 20)] and sum(moved) == 3 << 20
    assert not part.exists()
    asked = len(server.seen)
    assert fetch.download(url, _sha(body)) == got and len(server.seen) == asked  # reused, no request


@pytest.mark.parametrize("mode", ["ignore-range", "whole-part"])
def test_resume_edge_cases(server, cache: Path, mode: str) -> None:
    body = os.urandom(1 << 20)
    server.files["/k"] = body
    part = cache / f"{_sha(body)[:16]}-k.part"
    cache.mkdir(parents=True)
    if mode == "ignore-range":  # the server answers 200 to a Range: start again from byte 0
        part.write_bytes(body[:1000])
        server.mode = "ignore-range"
    else:  # killed after the last byte, before the check: 416, then verified as it is
        part.write_bytes(body)
    assert fetch.download(f"{server.url}/k", _sha(body)).read_bytes() == body
    assert server.seen[-1][1] == ("bytes=1000-" if mode == "ignore-range" else f"bytes={1 << 20}-")


def test_resume_at_the_wrong_place_is_refused(server, cache: Path) -> None:
    body = os.urandom(1 << 20)
    server.files["/k"] = body
    cache.mkdir(parents=True)
    (cache / f"{_sha(body)[:16]}-k.part").write_bytes(body[:5000])
    server.mode = "wrong-range"
    with pytest.raises(InputError, match=r"resumed at the wrong place .*asked for byte 5000"):
        fetch.download(f"{server.url}/k", _sha(body))


def test_gz_is_verified_then_decompressed(server, cache: Path, tmp_path: Path) -> None:
    kernel = testimage.make_kernel(tmp_path / "vmlinux").read_bytes()
    packed = gzip.compress(kernel)
    server.files["/dist/vmlinux-gpu-ml.gz"] = packed
    got = fetch.download(f"{server.url}/dist/vmlinux-gpu-ml.gz?sig=abc&t=1", _sha(packed))
    assert got.name == f"{_sha(packed)[:16]}-vmlinux-gpu-ml" and got.read_bytes() == kernel
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [got.name]


def test_http_error_and_missing_sha_are_one_line(server, cache: Path) -> None:
    with pytest.raises(InputError, match=r"download http://127.0.0.1:\d+/nothing: HTTP 404"):
        fetch.download(f"{server.url}/nothing", "0" * 64)
    with pytest.raises(InputError, match="no base image: the recipe names none; pass BASE=PATH"):
        fetch.resolve_source("base image", None, None, None, Path("."))


def _cli_build(recipe: Path, out: Path, env_cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "image", "build", str(recipe), "--out", str(out),
         "--access", "rootless"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "LAYERLAB_CACHE_DIR": str(env_cache)},
    )  # fmt: skip


@needs_tools
def test_wrong_checksum_exits_2_and_keeps_nothing(server, cache: Path, tmp_path: Path) -> None:
    body = os.urandom(256 << 10)
    server.files["/base.img"] = body
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nbase: {{url: {server.url}/base.img, sha256: {'ab' * 32}}}\n")
    done = _cli_build(recipe, tmp_path / "out", cache.parent)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"sha256 {_sha(body)} is not the recipe's {'ab' * 32}; removed it" in done.stderr
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@needs_tools
def test_build_from_urls(server, cache: Path, tmp_path: Path) -> None:
    """A base image and kernel served as .gz, downloaded, verified, unpacked and built on."""
    img = testimage.make_image(tmp_path / "served.img", layout="gpt", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "served-vmlinux")
    files = {
        "/base.img.gz": gzip.compress(img.read_bytes(), 1),
        "/vmlinux.gz": gzip.compress(kernel.read_bytes()),
    }
    server.files.update(files)
    recipe = tmp_path / "u.yaml"
    recipe.write_text(
        "name: u\nheadroom_mib: 8\n"
        f"base: {{url: {server.url}/base.img.gz, sha256: {_sha(files['/base.img.gz'])}}}\n"
        f"kernel: {{url: {server.url}/vmlinux.gz, sha256: 'sha256:{_sha(files['/vmlinux.gz'])}'}}\n"
    )
    done = _cli_build(recipe, tmp_path / "out", cache.parent)
    assert done.returncode == 0, done.stderr
    manifest = (tmp_path / "out/u.manifest.json").read_text()
    base_copy = cache / f"{_sha(files['/base.img.gz'])[:16]}-base.img"
    assert base_copy.read_bytes() == img.read_bytes() and str(base_copy) in manifest
    again = _cli_build(recipe, tmp_path / "out", cache.parent)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert len(server.seen) == 2  # one request per file, none for the no-op rebuild


# ----------------------------------------------------------------------------- wheels


def make_wheel(folder: Path, name: str, version: str, tag: str, text: str, requires: str = "") -> Path:
    """A real wheel file: the module, METADATA, WHEEL with ``tag``, and a RECORD with hashes."""
    files = {
        f"{name}/__init__.py": text.encode(),
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + (f"Requires-Dist: {requires}\n" if requires else "")
        ).encode(),
        f"{name}-{version}.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: layerlab-test\nRoot-Is-Purelib: {str(tag.startswith('py3')).lower()}\n"
            f"Tag: {tag}\n"
        ).encode(),
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    files[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    wheel = folder / f"{name}-{version}-{tag}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def _simple_index(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 "simple" folder: one page per project linking its wheel files."""
    for wheel in wheels:
        project = root / wheel.name.split("-")[0]
        project.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, project / wheel.name)
        page = project / "index.html"
        links = page.read_text() if page.exists() else ""
        page.write_text(links + f'<a href="{wheel.name}">{wheel.name}</a>\n')
    return root


@pytest.fixture(scope="module")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("wheels")
    tag = "{py}-{py}-manylinux_2_17_x86_64"
    wheels = [
        make_wheel(built, "tinyext", "1.0", tag.format(py=py), f"BUILT_FOR = {py!r}\n")
        for py in ("cp310", "cp312")
    ]
    wheels.append(make_wheel(built, "tinydep", "2.0", "py3-none-any", "X = 1\n"))
    wheels.append(make_wheel(built, "onlycp311", "1.0", tag.format(py="cp311"), "Y = 1\n"))
    return _simple_index(built / "simple", wheels)


@needs_tools
def test_wheels_from_a_local_index_into_the_guest(tmp_path: Path, wheel_index: Path) -> None:
    """The whole build: a 2024 guest (Python 3.10) gets the cp310 wheel, a local file and its dependency."""
    base = testimage.make_image(tmp_path / "base.img", layout="mbr", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    local = make_wheel(tmp_path / "own", "ownpkg", "0.1", "py3-none-any", "OWN = True\n", requires="tinydep")
    recipe = tmp_path / "w.yaml"
    rel_index = os.path.relpath(wheel_index, tmp_path)  # a path relative to the recipe
    recipe.write_text(
        f"name: w\nheadroom_mib: 8\nwheels:\n  packages: [tinyext]\n  files: [own/{local.name}]\n"
        f"  index_url: {rel_index}\n  find_links: [{rel_index}/tinydep]\n"
    )
    result = build.build(
        recipe, base=str(base), kernel=str(kernel), out_dir=tmp_path / "out", access="rootless"
    )
    site = "/usr/local/lib/python3.10/dist-packages"
    start = result.record["root"]["start_bytes"]
    read = lambda guest: e2fs.read_file(result.image, start, f"{site}/{guest}")  # noqa: E731
    assert read("tinyext/__init__.py") == "BUILT_FOR = 'cp310'\n"
    assert "Tag: cp310-cp310-manylinux_2_17_x86_64" in read("tinyext-1.0.dist-info/WHEEL")
    assert read("ownpkg/__init__.py") == "OWN = True\n" and read("tinydep/__init__.py") == "X = 1\n"
    assert read("torch/__init__.py")  # the base's own packages are still there
    wheels_record = result.record["payload"]["wheels"]
    assert wheels_record["guest_dir"] == site and wheels_record["spec"]["packages"] == ["tinyext"]
    assert e2fs.list_dir(result.image, start, f"{site}/bin") is None  # no host-interpreter scripts


def test_wheelhouse_follows_the_guest_python(tmp_path: Path, wheel_index: Path) -> None:
    """A 2025 guest (Python 3.12) gets the cp312 build of the same package."""
    from disk_images.guest import GuestFacts
    from disk_images.recipe import Wheels

    facts = GuestFacts(None, "24.04", None, "3.12", None, "6.4.0", ())
    spec = Wheels(packages=("tinyext",), index_url=wheel_index.as_uri())
    tree = wheels.stage(spec, tmp_path, facts, tmp_path / "scratch", lambda _m: None)
    assert (tree / "tinyext/__init__.py").read_text() == "BUILT_FOR = 'cp312'\n"


@needs_tools
def test_wheel_for_another_python_is_one_line(tmp_path: Path, wheel_index: Path) -> None:
    base = testimage.make_image(tmp_path / "base.img", layout="mbr", size_mib=64)
    kernel = testimage.make_kernel(tmp_path / "vmlinux")
    recipe = tmp_path / "w.yaml"
    recipe.write_text(f"name: w\nwheels: {{packages: [onlycp311], index_url: {wheel_index.as_uri()}}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "image", "build", str(recipe), "--base", str(base),
         "--kernel", str(kernel), "--out", str(tmp_path / "out"), "--access", "rootless"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]  # after the build's log
    assert len(errors) == 1 and errors == done.stderr.splitlines()[-1:] and "Traceback" not in done.stderr
    assert "pip download failed" in errors[0] and "No matching distribution found for onlycp311" in errors[0]
    assert list((tmp_path / "out").iterdir()) == []
