"""The daemon as operations sees it: reload, shutdown with dead sinks, crash recovery of the
outbox, heartbeat, and the systemd watchdog. Real processes, real signals, short intervals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.agent import read_events, start_agent, wait_for_events
from tests.support.peers.fleet import Fleet


def config(tmp_path: Path, checks: str, sinks: str = "", agent: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
agent: {{name: ops, state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0"{agent}}}
checks:
{checks}
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
{sinks}
"""
    )
    return str(path)


def tcp_check(name: str, port: int, extra: str = "") -> str:
    return f'  - {{name: {name}, type: tcp, target: "127.0.0.1:{port}", interval: 0.2s, timeout: 0.2s{extra}}}\n'


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> str:
    if proc.returncode is None:
        proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    return err.decode()


async def test_reload_adds_checks_keeps_incidents_and_survives_a_typo(tmp_path: Path, fleet: Fleet) -> None:
    down = closed_port()
    events = tmp_path / "events.jsonl"
    path = config(tmp_path, tcp_check("db", down))
    agent = await start_agent(path)
    try:
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "firing" for x in e))
        incident = evs[0]["incident"]
        # a good reload: one more check; the open incident carries on, not fired again
        config(tmp_path, tcp_check("db", down) + tcp_check("web", fleet.ports[0]))
        agent.send_signal(signal.SIGHUP)
        await asyncio.sleep(1.0)
        assert [e["kind"] for e in read_events(events)] == ["firing"]
        # a typo: the old config keeps running, every error is logged, an agent event is raised
        Path(path).write_text(Path(path).read_text().replace("interval: 0.2s", "intervall: 0.2s", 1))
        agent.send_signal(signal.SIGHUP)
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "agent" for x in e))
        (failed,) = [e for e in evs if e["kind"] == "agent"]
        assert failed["severity"] == "major"
        assert "config reload failed, still running the previous config" in failed["summary"]
        assert "checks[0].intervall: unknown option; did you mean 'interval'?" in failed["summary"]
        # the incident still resolves under the running config, with its id
        config(tmp_path, tcp_check("db", fleet.ports[0]) + tcp_check("web", fleet.ports[0]))
        agent.send_signal(signal.SIGHUP)
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "resolved" and x["incident"] for x in e))
        (resolved,) = [e for e in evs if e["kind"] == "resolved" and e["type"] != "agent"]
        assert resolved["incident"] == incident
        # the failed reload was an agent problem with an identity: the good reload resolves it
        (cleared,) = [e for e in evs if e["kind"] == "resolved" and e["type"] == "agent"]
        assert cleared["fingerprint"] == failed["fingerprint"] and cleared["rule"] == "config_reload"
    finally:
        err = await stop(agent)
    assert "reload: " in err and "reloaded" in err and "Traceback" not in err


async def test_sigterm_stops_within_seconds_with_a_black_holed_webhook(tmp_path: Path) -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(100)  # accepts connections, never answers
    port = hole.getsockname()[1]
    path = config(
        tmp_path,
        tcp_check("db", closed_port()),
        sinks=f'  - {{type: webhook, name: pager, url: "http://127.0.0.1:{port}/hook", timeout: 30s}}\n',
    )
    agent = await start_agent(path)
    try:
        await wait_for_events(tmp_path / "events.jsonl", lambda e: len(e) >= 1)
        await asyncio.sleep(0.3)  # the webhook send is now hanging on the black hole
        t0 = time.monotonic()
        err = await stop(agent)
        assert time.monotonic() - t0 < 6.0
        assert agent.returncode == 0 and "Traceback" not in err
    finally:
        hole.close()


async def test_every_committed_event_is_delivered_after_a_sigkill(tmp_path: Path) -> None:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    port = closed_port()
    targets = ", ".join(f'"127.0.0.1:{closed_port()}"' for _ in range(20))
    path = config(
        tmp_path,
        f"  - {{name: fleet, type: tcp, targets: [{targets}], interval: 0.2s, timeout: 0.2s}}\n",
        sinks=f'  - {{type: webhook, name: pager, url: "http://127.0.0.1:{port}/hook", timeout: 1s}}\n',
    )
    agent = await start_agent(path)  # the webhook is down: events pile up in the outbox
    await wait_for_events(tmp_path / "events.jsonl", lambda e: sum(x["kind"] == "firing" for x in e) == 20)
    agent.send_signal(signal.SIGKILL)
    await agent.wait()
    committed = {e["id"] for e in read_events(tmp_path / "events.jsonl") if e["kind"] == "firing"}

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    agent = await start_agent(path)
    try:
        deadline = time.monotonic() + 15
        while sum(e["kind"] == "firing" for e in got) < 20 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        delivered = [e["id"] for e in got if e["kind"] == "firing"]
        assert set(delivered) == committed  # nothing lost
        assert len(delivered) == len(set(delivered))  # and here, nothing duplicated either
    finally:
        await stop(agent)
        await runner.cleanup()


async def test_heartbeat_reaches_the_dead_mans_switch(tmp_path: Path, fleet: Fleet) -> None:
    beats = tmp_path / "beats.jsonl"
    path = config(
        tmp_path,
        tcp_check("web", fleet.ports[0]),
        sinks=f'  - {{type: file, name: deadman, path: "{beats}", kinds: [agent]}}\n',
        agent=", heartbeat: {every: 0.3s, sinks: [deadman]}",
    )
    agent = await start_agent(path)
    try:
        evs = await wait_for_events(beats, lambda e: len(e) >= 3)
        assert all(e["kind"] == "agent" and e["summary"].startswith("heartbeat: watching 1 targets") for e in evs)
        assert not any(e["kind"] == "agent" for e in read_events(tmp_path / "events.jsonl"))  # only to that sink
    finally:
        await stop(agent)


async def test_watchdog_pings_while_the_scheduler_makes_progress(tmp_path: Path, fleet: Fleet) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
    path = config(tmp_path, tcp_check("web", fleet.ports[0]))
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "300000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    messages: list[str] = []
    try:
        deadline = loop.time() + 10
        while sum("WATCHDOG=1" in m for m in messages) < 3 and loop.time() < deadline:
            messages.append((await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)).decode())
        assert messages[0].startswith("READY=1")
        assert sum("WATCHDOG=1" in m for m in messages) >= 3
        proc.send_signal(signal.SIGSTOP)  # a frozen agent stops pinging
        await asyncio.sleep(0.3)
        while True:
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.5)
        try:
            stray = sock.recv(4096)
        except BlockingIOError:
            stray = b""
        assert b"WATCHDOG=1" not in stray
        proc.send_signal(signal.SIGCONT)
    finally:
        await stop(proc)
        sock.close()


def test_healthy_means_the_scheduler_keeps_its_schedule() -> None:
    from agent.engine.scheduler import Job, Scheduler

    async def nothing() -> None:
        return None

    now = [1000.0]
    s = Scheduler([Job("a", 10.0, nothing)], clock=lambda: now[0], first_window=1.0)
    s.plan(1000.0)
    assert s.behind() == 0.0
    now[0] = 1100.0  # the loop was stuck for 100 s: the job is overdue
    assert s.behind() > 90
    assert json.dumps(s.behind())  # a number, for the status endpoint
