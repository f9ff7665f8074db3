"""The systemd unit verifies and is hardened; the daemon speaks sd_notify to a real socket."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary

UNIT = Path(__file__).parents[2] / "systemd" / "firstwatch.service"


def unit_with_real_binary(tmp_path: Path) -> Path:
    exe = Path(sys.executable).with_name("firstwatch")
    text = UNIT.read_text().replace("/usr/local/bin/firstwatch", str(exe))
    out = tmp_path / "firstwatch.service"
    out.write_text(text)
    return out


def test_unit_verifies(tmp_path: Path) -> None:
    tool = require_binary("systemd-analyze", "systemd")
    unit = unit_with_real_binary(tmp_path)
    proc = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if "firstwatch.service" in line]
    assert proc.returncode == 0 and problems == [], proc.stderr


def test_unit_is_hardened_to_at_most_2_0(tmp_path: Path) -> None:
    tool = require_binary("systemd-analyze", "systemd")
    unit = unit_with_real_binary(tmp_path)
    proc = subprocess.run([tool, "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for firstwatch\.service: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_is_notify_and_does_not_restart_on_config_errors() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "RestartPreventExitStatus=78" in text


def notify_socket(tmp_path: Path) -> tuple[socket.socket, Path]:
    """A datagram socket read the way systemd reads NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock, path


async def reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_daemon_notifies_ready_and_stopping(tmp_path: Path) -> None:
    sock, sock_path = notify_socket(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"agent: {{state_dir: '{tmp_path}', listen: '127.0.0.1:0'}}\n"
        "checks: [{name: host, type: host, interval: 1s}]\n"
        "sinks: [{type: stdout}]\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(config), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        first = await asyncio.wait_for(loop.sock_recv(sock, 4096), 15)
        assert first.decode().splitlines()[0] == "READY=1"
        assert "STATUS=watching 1 targets of 1 checks" in first.decode()
        proc.send_signal(signal.SIGTERM)
        second = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
        assert second.decode() == "STOPPING=1"
        await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == 0
    finally:
        await reap(proc)
        sock.close()


def unit_settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            out[key.strip()] = value.strip()
    return out


def test_unit_has_watchdog_reload_and_a_descriptor_limit() -> None:
    settings = unit_settings()
    assert settings["WatchdogSec"] == "30s"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert int(settings["LimitNOFILE"]) >= 65536


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "c.yaml"
    config.write_text(
        f"agent: {{state_dir: '{tmp_path}', listen: ''}}\n"
        "checks: [{name: host, type: host, interval: 1s}]\n"
        "sinks: [{type: stdout}]\n"
    )
    return config


async def _recv(sock: socket.socket, timeout: float) -> str:
    return (await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout)).decode()


async def test_watchdog_and_exec_reload_work_as_systemd_runs_them(tmp_path: Path) -> None:
    """No systemd manager runs here (no bus, PID 1 is not systemd), so this does what it would:
    NOTIFY_SOCKET and WATCHDOG_USEC in the environment, a datagram socket read like systemd
    reads it, and the unit's own ExecReload= line with $MAINPID filled in. WatchdogSec= is
    scaled down from 30 s to 0.6 s so that the pings come quickly."""
    sock, sock_path = notify_socket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "600000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(_config(tmp_path)), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        assert (await _recv(sock, 15)).splitlines()[0] == "READY=1"
        start, pings = loop.time(), 0
        while pings < 4:  # one every 0.2 s
            msg = await _recv(sock, 2)
            pings += msg.splitlines()[0] == "WATCHDOG=1"
        assert loop.time() - start < 2.5
        reload = unit_settings()["ExecReload"].replace("$MAINPID", str(proc.pid)).split()
        kill = await asyncio.create_subprocess_exec(*reload)
        assert await asyncio.wait_for(kill.wait(), 10) == 0
        seen: list[str] = []
        while "READY=1" not in seen:
            seen += [line for line in (await _recv(sock, 10)).splitlines() if line != "WATCHDOG=1"]
        assert seen.index("RELOADING=1") < seen.index("READY=1")
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == 0
    finally:
        await reap(proc)
        sock.close()


async def test_a_stalled_notify_socket_never_blocks_the_daemon(tmp_path: Path) -> None:
    """The reader of NOTIFY_SOCKET never reads and its queue is full: every notification would
    block. The daemon starts, pings, and stops on SIGTERM within a few seconds anyway, saying
    once that it drops notifications."""
    sock_path = tmp_path / "notify.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(sock_path))
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    for _ in range(100_000):  # bounded; the queue is full after a few hundred at most
        try:
            filler.sendto(b"x" * 512, str(sock_path))
        except BlockingIOError:
            break
    else:
        pytest.fail("could not fill the notification socket")
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "300000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(_config(tmp_path)), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    loop = asyncio.get_running_loop()
    err = b""
    try:
        deadline = loop.time() + 10
        while b"started" not in err:
            assert loop.time() < deadline, f"the daemon did not start: {err.decode()}"
            err += await asyncio.wait_for(proc.stderr.readline(), max(0.1, deadline - loop.time()))
        await asyncio.sleep(1.0)  # about ten watchdog pings, each dropped
        proc.send_signal(signal.SIGTERM)
        start = loop.time()
        err += await asyncio.wait_for(proc.stderr.read(), 5)
        await asyncio.wait_for(proc.wait(), 5)
        assert loop.time() - start < 5 and proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 10)
        reader.close()
        filler.close()
    text = err.decode()
    assert text.count("notification socket is full") == 1, text
