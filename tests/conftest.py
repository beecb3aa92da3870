"""Shared test setup: where the real fixtures live, and the real-gem5 switch.

Real gem5 outputs and kernel traces live in ``../shared/fixtures`` beside the checkout (the
workplace keeps them there for every clone, CI's included); ``LAYERLAB_FIXTURES`` overrides.
Tests marked ``gem5`` run only when ``LAYERLAB_GEM5`` names a gem5 binary and
``LAYERLAB_GEM5_SRC`` a gem5 source tree with ``configs/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LAYERLAB_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"real fixtures not found at {FIXTURES}; set LAYERLAB_FIXTURES", pytrace=False)
    return FIXTURES


def pytest_configure(config: pytest.Config) -> None:
    # Tests must not fill the user's stats cache (~/.cache/layerlab); each session gets its own.
    if "LAYERLAB_CACHE_DIR" not in os.environ:
        config._layerlab_cache = tempfile.mkdtemp(prefix="layerlab-test-cache-")  # type: ignore[attr-defined]
        os.environ["LAYERLAB_CACHE_DIR"] = config._layerlab_cache  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    if cache := getattr(config, "_layerlab_cache", None):
        shutil.rmtree(cache, ignore_errors=True)
        os.environ.pop("LAYERLAB_CACHE_DIR", None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    have_gem5 = bool(os.environ.get("LAYERLAB_GEM5")) and bool(os.environ.get("LAYERLAB_GEM5_SRC"))
    skip = pytest.mark.skip(reason="real gem5 not configured (set LAYERLAB_GEM5 and LAYERLAB_GEM5_SRC)")
    for item in items:
        if "gem5" in item.keywords and not have_gem5:
            item.add_marker(skip)
