"""The state database under faults: a full disk, a lock held by another process, a corrupt file,
two agents on one directory. Real daemons, a real tmpfs, a real second SQLite process; each test
asserts that nothing is lost and that probing never stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from agent.incidents.store import Store, open_checked
from tests.support.agent import firstwatch, read_events, start_daemon, wait_for_events
from tests.support.peers.fleet import Switch


@pytest.fixture
async def switch() -> AsyncIterator[Switch]:
    sw = Switch(8)
    for i in range(sw.n):
        await sw.up(i)
    yield sw
    for i in range(sw.n):
        await sw.down(i)


def write_config(
    path: Path, state: Path, events: Path, ports: list[int], extra: str = "", interval: str = "0.2s"
) -> Path:
    checks = "".join(
        f'  - {{name: svc-{i}, type: tcp, target: "127.0.0.1:{p}", interval: {interval}, timeout: 0.2s,'
        " alerts: [{when: down, severity: critical}]}\n"
        for i, p in enumerate(ports)
    )
    path.write_text(
        f'agent: {{name: faults, state_dir: "{state}", listen: "127.0.0.1:0"}}\n'
        f"telemetry: {{prometheus: true}}\n"
        f"checks:\n{checks}"
        f'sinks:\n  - {{type: file, path: "{events}"}}\n{extra}'
    )
    return path


def need_root_for(what: str) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{what} needs root, and CI must run it")
        pytest.skip(f"{what} needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> AsyncIterator[Path]:
    need_root_for("mounting a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


async def get(port: int, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(5)) as r:
        return r.status, await r.text()


def metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# --- 1. a full disk under state_dir --------------------------------------------------------------


async def test_a_full_disk_loses_no_page_and_says_so_loudly(tmp_path: Path, small_disk: Path, switch: Switch) -> None:
    events = tmp_path / "events.jsonl"  # the file sink lives on another disk
    cfg = write_config(tmp_path / "c.yaml", small_disk / "state", events, switch.ports)
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # what systemd would read
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    agent = await start_daemon(cfg, env={"NOTIFY_SOCKET": str(tmp_path / "notify")})
    try:
        port = await agent.port()
        await agent.wait_log(r"svc-7 127\.0\.0\.1:\d+: up")
        filler = fill(small_disk)
        for i in range(switch.n):  # every service goes down while nothing can be written
            await switch.down(i)
        # the agent says so at once, to the sinks that need no database, in the log, on /healthz
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "agent" for x in e))
        (news,) = [e for e in evs if e["kind"] == "agent"]
        assert news["severity"] == "critical" and "state database cannot be written" in news["summary"]
        assert news["rule"] == "store_write"
        status, text = await get(port, "/healthz")
        assert status == 503 and "state database cannot be written" in text
        await agent.wait_log(r"CRITICAL firstwatch\.store: state database .* cannot be written")
        said = []
        with contextlib.suppress(BlockingIOError):
            while True:
                said.append(systemd.recv(4096).decode())
        assert any("STATUS=STATE DATABASE NOT WRITABLE" in m for m in said), said
        # probing goes on meanwhile: runs keep being counted
        _, before = await get(port, "/metrics")
        await asyncio.sleep(1.0)
        _, after = await get(port, "/metrics")
        runs = metric(after, "firstwatch_scheduler_runs_total") - metric(before, "firstwatch_scheduler_runs_total")
        assert runs >= 20
        assert not [e for e in read_events(events) if e["kind"] == "firing"]  # nothing durable, nothing sent yet
        filler.unlink()  # space returns: every firing is delivered, once each, then the all-clear
        evs = await wait_for_events(events, lambda e: len([x for x in e if x["kind"] == "firing"]) >= switch.n, 15)
        await wait_for_events(events, lambda e: any(x["kind"] == "resolved" and x["type"] == "agent" for x in e))
        status, _ = await get(port, "/healthz")
        assert status == 200
        firing = [e for e in read_events(events) if e["kind"] == "firing"]
        assert sorted(e["check"] for e in firing) == sorted(f"svc-{i}" for i in range(switch.n))
        assert len({e["id"] for e in firing}) == switch.n
        for i in range(switch.n):  # they recover: each resolution follows its own firing
            await switch.up(i)
        evs = await wait_for_events(events, lambda e: len([x for x in e if x["kind"] == "resolved"]) > switch.n)
        for e in [x for x in evs if x["kind"] == "resolved" and x["type"] != "agent"]:
            assert any(f["incident"] == e["incident"] for f in firing)
    finally:
        log = await agent.stop()
        systemd.close()
    assert "Traceback" not in log


async def test_state_changes_that_never_committed_are_judged_again_after_a_restart(
    tmp_path: Path, small_disk: Path, switch: Switch
) -> None:
    """Killed while the disk is full: the database holds the last consistent state, so the
    restarted agent sees the outage afresh and pages for it (no resolution for an unsent firing)."""
    events = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "c.yaml", small_disk / "state", events, switch.ports[:1])
    agent = await start_daemon(cfg)
    await agent.wait_log(r"svc-0 127\.0\.0\.1:\d+: up")
    filler = fill(small_disk)
    await switch.down(0)
    await agent.wait_log(r"cannot be written")
    agent.proc.send_signal(signal.SIGKILL)
    await agent.stop()
    filler.unlink()
    agent = await start_daemon(cfg)
    try:
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "firing" for x in e))
        assert [e["check"] for e in evs if e["kind"] == "firing"] == ["svc-0"]
        assert not [e for e in evs if e["kind"] == "resolved" and e["type"] != "agent"]
    finally:
        await agent.stop()


# --- 2. a lock held by another process -------------------------------------------------------------


async def test_a_locked_database_delays_writes_never_probes(tmp_path: Path, switch: Switch) -> None:
    events = tmp_path / "events.jsonl"
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state, events, switch.ports[:4])
    agent = await start_daemon(cfg)
    try:
        port = await agent.port()
        await agent.wait_log(r"svc-3 127\.0\.0\.1:\d+: up")
        # a backup or an operator's sqlite3 shell holds the write lock for 6 seconds
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({str(state / 'firstwatch.db')!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(6); db.execute('ROLLBACK')\n",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"locked"
        _, before = await get(port, "/metrics")
        t0 = time.monotonic()
        await switch.down(0)  # an outage during the lock
        for _ in range(20):  # /healthz answers at once throughout: the loop never waits on SQLite
            started = time.monotonic()
            await get(port, "/healthz")
            assert time.monotonic() - started < 2.0  # the lock is held 6s
            await asyncio.sleep(0.1)
        _, after = await get(port, "/metrics")
        elapsed = time.monotonic() - t0
        runs = metric(after, "firstwatch_scheduler_runs_total") - metric(before, "firstwatch_scheduler_runs_total")
        assert runs >= 4 * elapsed / 0.2 * 0.7, (runs, elapsed)  # four targets every 0.2 s
        assert metric(after, "firstwatch_scheduler_missed_total") == metric(before, "firstwatch_scheduler_missed_total")
        assert await asyncio.wait_for(holder.wait(), 10) == 0
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "firing" for x in e), 15)
        assert [e["check"] for e in evs if e["kind"] == "firing"] == ["svc-0"]  # not lost
    finally:
        log = await agent.stop()
    assert "Traceback" not in log


# --- 3. a corrupt database ----------------------------------------------------------------------------


def test_a_damaged_page_is_found_at_open_and_set_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store(str(state))
    with store.transaction():
        for _ in range(2000):
            store.add_entry("note", "x" * 200)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    db = state / "firstwatch.db"
    data = bytearray(db.read_bytes())
    data[4096 * 5 : 4096 * 5 + 300] = b"A" * 300  # light corruption: one page, the header intact
    db.write_bytes(bytes(data))
    store, why = open_checked(str(state))
    assert why is not None and "set aside as" in why and "malformed" in why
    moved = re.search(r"set aside as (\S+) and", why)
    assert moved and Path(moved.group(1)).exists()
    assert store.check() is None and store.entries() == []  # a fresh, sound database
    store.close()


async def test_a_corrupt_database_does_not_stop_monitoring(tmp_path: Path, switch: Switch) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "firstwatch.db").write_bytes(b"this is not SQLite" * 500)
    events = tmp_path / "events.jsonl"
    cfg = write_config(tmp_path / "c.yaml", state, events, switch.ports[:1])
    agent = await start_daemon(cfg)
    try:
        m = await agent.wait_log(r"set aside as (\S+firstwatch\.db\.corrupt-\S+) and a fresh one started")
        assert Path(m.group(1)).exists()
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "agent" for x in e))
        assert any("set aside as" in e["summary"] for e in evs)
        await switch.down(0)  # and it keeps monitoring
        await wait_for_events(events, lambda e: any(x["kind"] == "firing" for x in e))
    finally:
        await agent.stop()


async def test_the_incident_commands_say_the_database_is_damaged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store(str(state))
    with store.transaction():
        for _ in range(2000):
            store.add_entry("note", "x" * 200, check="svc")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    db = state / "firstwatch.db"
    data = bytearray(db.read_bytes())
    data[4096 * 20 : 4096 * 20 + 500] = b"B" * 500
    db.write_bytes(bytes(data))
    cfg = write_config(tmp_path / "c.yaml", state, tmp_path / "events.jsonl", [1])
    code, _, err = await firstwatch("timeline", "-c", str(cfg))
    assert code == 1 and "Traceback" not in err
    assert err.strip().startswith("firstwatch: the state database cannot be used: database disk image is malformed")


# --- 13. one agent per state directory ------------------------------------------------------------------


async def test_a_second_agent_on_the_same_state_dir_is_refused(tmp_path: Path, switch: Switch) -> None:
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "state", tmp_path / "events.jsonl", switch.ports[:1])
    first = await start_daemon(cfg)
    try:
        await first.wait_log(r"svc-0 127\.0\.0\.1:\d+: up")
        second = await start_daemon(cfg)
        assert await asyncio.wait_for(second.proc.wait(), 10) == 73
        log = await second.stop()
        assert "another firstwatch agent (pid " in log and "already running on" in log
        assert "Traceback" not in log
        # distinct shards may share the directory; the same shard twice may not
        one = await start_daemon(cfg, "--shard", "1/2")
        assert await asyncio.wait_for(one.proc.wait(), 10) == 73  # the unsharded agent holds it whole
        await one.stop()
    finally:
        await first.stop()
    shards = [await start_daemon(cfg, "--shard", f"{k}/2") for k in (1, 2)]
    try:
        for a in shards:
            await a.wait_log(r"started: agent faults")
        again = await start_daemon(cfg, "--shard", "2/2")
        assert await asyncio.wait_for(again.proc.wait(), 10) == 73
        assert "shard 2/2" in await again.stop()
    finally:
        for a in shards:
            await a.stop()


def test_outbox_rows_belong_to_the_shard_that_queued_them(tmp_path: Path) -> None:
    from agent.core.events import Event
    from agent.delivery.outbox import Outbox
    from agent.delivery.sinks.base import SinkConfig
    from agent.delivery.sinks.stdout import StdoutSink

    sink = StdoutSink(SinkConfig.model_validate({"type": "stdout"}), "stdout")
    a, b = Store(str(tmp_path), owner="1/2"), Store(str(tmp_path), owner="2/2")
    oa, ob = Outbox(a, [sink]), Outbox(b, [sink])
    with a.transaction():
        oa.enqueue(Event(kind="agent", severity="minor", summary="from 1/2", agent="x"))
    assert ob.head("stdout", time.time() + 1) is None  # the other shard never delivers it
    row = oa.head("stdout", time.time() + 1)
    assert row is not None and row.event().summary == "from 1/2"


def test_a_commit_that_fails_is_rolled_back_whole(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state"))
    with pytest.raises(sqlite3.Error), store.transaction():
        store.add_entry("note", "kept only if all of it commits")
        store.db.execute("INSERT INTO no_such_table VALUES (1)")
    assert store.entries() == []
    assert not store.db.in_transaction
