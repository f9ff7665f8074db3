"""Where the agent listens, and how the CLI asks it: ``firstwatch status`` (standard library
only, so the command starts fast and never needs the daemon's dependencies)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from typing import Any

EXAMPLE = "e.g. 127.0.0.1:9464 or [::1]:9464"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def parse_listen(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> (host, port); an IPv6 address goes in brackets: ``[::1]:9464``.

    Raises ValueError with a message for the user (the caller adds where it came from)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r} ({EXAMPLE})")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address ({EXAMPLE})") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT, got {text!r} ({EXAMPLE})")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: [{host}]:{port_text}")
        if not _HOSTNAME.match(host):
            raise ValueError(f"{host!r} is not a host name or IP address ({EXAMPLE})")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"the port must be a number from 0 to 65535, got {port_text!r} ({EXAMPLE})")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port}")
    return host, port


def instance_id(state_dir: str) -> str:
    """A short, stable name for the agent that keeps its state in ``state_dir`` (the path itself
    is not published on the port): two agents answer alike only if they share their state."""
    return hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:16]


class StatusUnavailable(Exception):
    """The running agent could not be asked (not running, endpoint off, or it answered an error)."""


def fetch_status(listen: str, timeout: float = 5.0) -> dict[str, Any]:
    """GET /status from the agent listening on ``listen`` (a wildcard address is asked on loopback)."""
    import urllib.error  # here, not at the top: loading a config (parse_listen) never needs urllib
    import urllib.request

    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/status"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=timeout) as resp:
            doc = json.loads(resp.read(16 * 1024 * 1024))
    except urllib.error.HTTPError as exc:
        raise StatusUnavailable(f"{url}: the agent answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusUnavailable(f"cannot reach the agent at {url}: {reason} (is `firstwatch run` running?)") from None
    if not isinstance(doc, dict):
        raise StatusUnavailable(f"{url}: not a status document")
    return doc
