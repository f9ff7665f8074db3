"""Settings read on their own: the ``agent.listen`` address format, and ``agent.*`` keys read
leniently (``firstwatch status``, ``timeline``, ``note`` work with a config that is broken
elsewhere).
"""

from __future__ import annotations

import ipaddress
import os
import re

from agent.config.yaml_source import load_yaml, read_config
from agent.core.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:9464"  # /healthz, /status, /metrics and the status page
EXAMPLE = f"e.g. {DEFAULT_LISTEN} or [::1]:9464"
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


def state_dir_of(configured: str) -> str:
    """``agent.state_dir``, else systemd's ``$STATE_DIRECTORY``, else ``./state``."""
    return configured or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "./state"


def agent_setting(config_path: str, key: str) -> str | None:
    """``agent.KEY`` from the config, read leniently (the rest of it may be broken)."""
    try:
        data = load_yaml(read_config(config_path), config_path).data
    except ConfigError:
        return None
    agent = data.get("agent") if isinstance(data, dict) else None
    value = agent.get(key) if isinstance(agent, dict) else None
    return value if isinstance(value, str) else None


def state_dir_for(config_path: str) -> str:
    return state_dir_of(agent_setting(config_path, "state_dir") or "")
