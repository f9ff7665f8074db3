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

from tests.conftest import require_binary

UNIT = Path(__file__).parent.parent / "systemd" / "firstwatch.service"


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


async def test_daemon_notifies_ready_and_stopping(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)
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
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sock.close()
