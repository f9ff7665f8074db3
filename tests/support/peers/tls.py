"""TLS for test servers: a test CA (trustme) and its PEM file as fixtures, and a server context.

The fixtures reach every test through ``pytest_plugins`` in ``tests/conftest.py``; a module that
needs another scope or CA defines its own ``ca``/``ca_file`` and pytest uses that one.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority, one per test module."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The CA's certificate as a PEM file, what a check or sink is given as ``ca_file``."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(leaf: trustme.LeafCert, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A server-side context presenting ``leaf`` (e.g. ``ca.issue_cert("127.0.0.1", "localhost")``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx
