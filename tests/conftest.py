"""Shared test helpers: tests that need an outside binary skip on a plain machine, fail in CI."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator

import pytest

from tests.support.peers.fleet import Fleet

pytest_plugins = ["tests.support.peers.tls"]  # the ca and ca_file fixtures


def require_binary(name: str, package: str) -> str:
    """The path of ``name``; skips with a reason when missing, but fails when ``CI`` is set
    (CI installs every package the tests need, so a missing one is a broken CI)."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} not installed (apt-get install -y {package})"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def needs_browser() -> str:
    """Chromium's path; skips without it or without the playwright package (fails under CI)."""
    chromium = require_binary("chromium", "chromium")
    if importlib.util.find_spec("playwright") is None:
        reason = "the playwright package is not installed (pip install 'firstwatch[browser]')"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return chromium


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    f = Fleet()
    await f.start()
    yield f
    for r in f.runners:
        await r.cleanup()
