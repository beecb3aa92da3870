"""Shared helpers for the gem5_configs tests: inputs on disk, the fake gem5 tree, normalising."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOUBLE_DIR = REPO / "tests" / "gem5_double"
DOUBLE_BIN = DOUBLE_DIR / "gem5.opt"
FAKE_SRC = DOUBLE_DIR / "fake_gem5_src"
SCENARIOS = DOUBLE_DIR / "scenarios"
GOLDEN = REPO / "tests" / "golden" / "gem5_configs"
GUEST = ("python3", "/opt/layerlab/drivers/layer.py", "--model", "llama-3.2-1b", "--prompt", "it's a test")

if str(DOUBLE_DIR) not in sys.path:
    sys.path.insert(0, str(DOUBLE_DIR))


def inputs(tmp: Path) -> dict[str, Path]:
    """A kernel and two disk images (empty files: gem5 never reads them in these tests)."""
    folder = tmp / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("vmlinux-gpu-ml", "x86-ubuntu-gpu-ml", "data.img"):
        (folder / name).write_bytes(b"")
        out[name] = folder / name
    return out


def params(tmp: Path, profile: str = "v24.0", device: str = "mi300x", **options: Any):
    from gem5_configs.params import make_params

    files = inputs(tmp)
    options.setdefault("gem5_src", str(FAKE_SRC))
    options.setdefault("guest_command", GUEST)
    return make_params(
        profile=profile,
        device=device,
        kernel=files["vmlinux-gpu-ml"],
        disk=files["x86-ubuntu-gpu-ml"],
        **options,
    )


def normalise(text: str, tmp: Path) -> str:
    """Machine-specific absolute paths → placeholders, so goldens match on any checkout."""
    return text.replace(str(FAKE_SRC.resolve()), "<GEM5_SRC>").replace(str(tmp.resolve()), "<TMP>")


def load_double():
    """The test double's module (tests/gem5_double/fake_gem5.py)."""
    import fake_gem5

    return fake_gem5
