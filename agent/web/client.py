"""Where the agent listens, and how the CLI asks it: ``firstwatch status`` (the standard library
and the config loader only, so the command starts fast and never needs the daemon's dependencies).

``firstwatch status`` answers only for the agent of its config: the name in /status must be the
config's ``agent.name``, and the ``agent.instance`` (a hash of the state directory) must match
when the agent publishes one. Anything else (nothing listening, a timeout, a peer that is not
HTTP or not firstwatch, another agent) is one line ``UNKNOWN: ...`` and exit 3. ``firstwatch slo``
(:mod:`agent.web.slos`) asks the same way and answers with the same lines and codes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from typing import cast

from agent.config.settings import parse_listen
from agent.core.errors import StatusUnavailable
from agent.web.snapshot import Snapshot


def instance_id(state_dir: str) -> str:
    """A short, stable name for the agent that keeps its state in ``state_dir`` (the path itself
    is not published on the port): two agents answer alike only if they share their state."""
    return hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:16]


MAX_BODY = 16 * 1024 * 1024


def fetch_status(listen: str, timeout: float = 5.0) -> Snapshot:
    """GET /status from the agent listening on ``listen`` (a wildcard address is asked on loopback).

    All of it, connect to the last byte, ends within ``timeout`` seconds. Raises
    :class:`StatusUnavailable` with one line that never quotes what the peer sent. The answer is
    checked at its top (``agent.name`` is text, ``summary`` an object); the rest is the peer's
    and is read forgivingly (:mod:`agent.web.page`)."""
    import http.client  # here, not at the top: loading a config (parse_listen) never needs it
    import socket
    import threading

    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    where = f"{f'[{host}]' if ':' in host else host}:{port}"
    url = f"http://{where}/status"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    expired = threading.Event()

    def expire() -> None:  # a peer that drips bytes would otherwise reset every socket timeout
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        conn.request("GET", "/status", headers={"Accept": "application/json", "User-Agent": "firstwatch-status"})
        resp = conn.getresponse()
        status, server = resp.status, resp.getheader("Server", "")
        body = resp.read(MAX_BODY + 1)
    except ConnectionRefusedError:
        raise StatusUnavailable(
            f"cannot reach the agent at {url}: connection refused (is `firstwatch run` running?)"
        ) from None
    except (TimeoutError, http.client.HTTPException, OSError) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            raise StatusUnavailable(f"the agent at {url} did not answer within {timeout:g}s") from None
        if isinstance(exc, http.client.RemoteDisconnected):
            raise StatusUnavailable(
                f"{where} closed the connection without an answer (not a firstwatch agent?)"
            ) from None
        if isinstance(exc, http.client.HTTPException):
            raise StatusUnavailable(f"{where} does not speak HTTP: not a firstwatch agent") from None
        why = exc.strerror or type(exc).__name__
        raise StatusUnavailable(f"cannot reach the agent at {url}: {why} (is `firstwatch run` running?)") from None
    finally:
        timer.cancel()
        conn.close()
    if expired.is_set():  # cut short: what was read is not the whole answer
        raise StatusUnavailable(f"the agent at {url} did not answer within {timeout:g}s")
    if status != 200:
        if server == "firstwatch":
            raise StatusUnavailable(f"the agent at {url} answered HTTP {status}")
        raise StatusUnavailable(f"{url} is not a firstwatch agent (it answered HTTP {status})")
    try:
        if len(body) > MAX_BODY:
            raise ValueError("too large")
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise StatusUnavailable(f"{url} is not a firstwatch agent (its answer is not a status document)") from None
    agent = doc.get("agent") if isinstance(doc, dict) else None
    if not (isinstance(agent, dict) and isinstance(agent.get("name"), str) and isinstance(doc.get("summary"), dict)):
        raise StatusUnavailable(f"{url} is not a firstwatch agent (its answer is not a status document)")
    return cast(Snapshot, dict(doc))


def _expected(config: str) -> tuple[str, str, str]:
    """(listen, agent name, state directory) of ``config``: validated when it loads; else read
    leniently, so that a config broken elsewhere (a missing secret) still finds its agent."""
    import socket

    from agent.config.load import load_config
    from agent.config.settings import DEFAULT_LISTEN, agent_setting, state_dir_of
    from agent.core.errors import ConfigError

    try:
        cfg = load_config(config)
        return cfg.listen, cfg.agent_name, cfg.state_dir
    except ConfigError:
        if not os.path.isfile(config):
            raise StatusUnavailable(f"cannot read the config {config}") from None
    listen = agent_setting(config, "listen")
    name = agent_setting(config, "name") or socket.gethostname()
    return (
        (DEFAULT_LISTEN if listen is None else listen),
        name,
        state_dir_of(agent_setting(config, "state_dir") or ""),
    )


def ask(config: str, timeout: float = 5.0) -> Snapshot:
    """The status document of the agent of ``config``, and only of that agent: its name must
    match, and so must its state directory when the agent publishes one (``agent.instance``)."""
    listen, name, state_dir = _expected(config)
    listen = listen.strip()
    if not listen:
        raise StatusUnavailable(f"the status endpoint is off in {config} (agent.listen is empty)")
    try:
        doc = fetch_status(listen, timeout)
    except ValueError as exc:  # a bad listen address in a config that did not validate
        raise StatusUnavailable(f"agent.listen in {config}: {exc}") from None
    agent = doc["agent"]
    if agent["name"] != name:
        raise StatusUnavailable(
            f"the agent at {listen} is {agent['name']!r}, not {name!r} of {config}: another agent's port?"
        )
    instance = agent.get("instance")
    if instance is not None and instance != instance_id(state_dir):
        raise StatusUnavailable(
            f"the agent {name!r} at {listen} keeps its state elsewhere than {state_dir} ({config}): another agent?"
        )
    return doc


def unknown(fmt: str, why: StatusUnavailable) -> int:
    """No answer to show: one line ``UNKNOWN: WHY`` (JSON ``{"status": "unknown", "error": WHY}``
    with ``--format json``, so a script reading JSON gets JSON here too); returns exit code 3."""
    from agent.core.safe_text import printable

    if fmt == "json":
        print(json.dumps({"status": "unknown", "error": str(why)}))
    else:
        print(printable(f"UNKNOWN: {why}"))  # one line, whatever it says
    return 3


def show(text: str) -> None:
    """Print what an agent said, each line escaped (:func:`agent.core.safe_text.printable`)."""
    from agent.core.safe_text import printable

    print("\n".join(printable(line) for line in text.splitlines()))


def exit_code(worst: object) -> int:
    """The exit code of the worst severity open or firing: 2 major or critical, 1 medium or
    minor, 0 none."""
    return 2 if worst in ("critical", "major") else 1 if worst else 0


def cmd_status(config: str, fmt: str, timeout: float = 5.0) -> int:
    """``firstwatch status``: 0 no open incident, 1 the worst is medium or minor, 2 major or
    critical, 3 UNKNOWN (no agent of this config answered) with one line saying why."""
    try:
        doc = ask(config, timeout)
    except StatusUnavailable as exc:
        return unknown(fmt, exc)
    if fmt == "json":
        text = json.dumps(doc, indent=2)
    else:
        from agent.web.text import render_text

        text = render_text(doc)
    show(text)
    return exit_code(doc["summary"].get("worst"))  # fetch_status saw an object
