"""The command check with real Nagios plugins (Debian's monitoring-plugins-basic) and small
scripts, through the probe runner: exit codes, perfdata in base units, output caps, a minimal
environment, no shell, and the whole process group killed on timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from checks.command import CommandCheck, CommandConfig
from tests.conftest import require_binary
from tests.support import factories

PLUGINS = "/usr/lib/nagios/plugins"


def plugin(name: str) -> str:
    return require_binary(f"{PLUGINS}/{name}", "monitoring-plugins-basic")


def make(command: list[Any], **options: Any) -> CommandCheck:
    return factories.check(CommandCheck, **{"name": "c", "timeout": "5s", "command": command, **options})


probe = factories.probe_once


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# Real plugins


async def test_check_dummy_ok() -> None:
    check = make([plugin("check_dummy"), "0", "fine"])
    assert check.targets() == [f"{PLUGINS}/check_dummy 0 fine"]
    r = await probe(check)
    assert r.ok, r.error
    assert r.error_kind is None and r.error is None and r.status == "ok"
    assert r.values["exit_code"] == 0
    assert r.type == "command" and r.target == f"{PLUGINS}/check_dummy 0 fine"


@pytest.mark.parametrize(
    ("state", "text", "error", "kind", "status"),
    [
        ("1", "warn", "WARNING: warn", "warning", "warning"),
        ("2", "disk on fire", "CRITICAL: disk on fire", "command", "critical"),
        ("3", "no idea", "UNKNOWN: no idea", "unknown", "unknown"),
    ],
)
async def test_check_dummy_failing_states(state: str, text: str, error: str, kind: str, status: str) -> None:
    r = await probe(make([plugin("check_dummy"), state, text]))
    assert not r.ok
    assert (r.error_kind, r.status) == (kind, status)
    assert r.error == error
    assert r.values["exit_code"] == int(state)


async def test_plugin_found_by_name_in_the_plugin_directory() -> None:
    plugin("check_dummy")
    check = make(["check_dummy", "1", "by name"])
    r = await probe(check)
    assert r.error == "WARNING: by name"


async def test_check_load_perfdata() -> None:
    r = await probe(make([plugin("check_load"), "-w", "999,999,999", "-c", "999,999,999"]))
    assert r.ok, r.error
    load1, load5, load15 = os.getloadavg()
    for name, real in (("perf.load1", load1), ("perf.load5", load5), ("perf.load15", load15)):
        assert abs(r.values[name] - real) < 5, (name, r.values)


@pytest.fixture
async def listening_port() -> AsyncIterator[int]:
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hello, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_check_tcp_time_in_seconds(listening_port: int) -> None:
    r = await probe(make([plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(listening_port)]))
    assert r.ok, r.error
    assert 0 <= r.values["perf.time"] < 2  # seconds, as check_tcp prints them (time=0.000115s)


async def test_check_tcp_refused_is_critical() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = await probe(make([plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(port)]))
    assert r.error_kind == "command"
    assert r.values["exit_code"] == 2
    assert r.error == f"CRITICAL: connect to address 127.0.0.1 and port {port}: Connection refused"


async def test_check_disk_perfdata_in_bytes() -> None:
    r = await probe(make([plugin("check_disk"), "-w", "1%", "-c", "1%", "-p", "/"]))
    assert r.values["exit_code"] in (0, 1, 2)
    used = psutil.disk_usage("/").used
    # bytes, whatever unit it printed (older check_disk versions print MB meaning MiB: 4.9% off)
    assert r.values["perf./"] == pytest.approx(used, rel=0.06)


async def test_shell_metacharacters_reach_the_program_literally(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"$(id) `id`; touch {marker} && echo $HOME *"
    r = await probe(make([plugin("check_dummy"), "2", text]))
    assert r.error == f"CRITICAL: {text}"
    assert not marker.exists()


# Scripts


async def test_perfdata_of_long_output_in_base_units(tmp_path: Path) -> None:
    body = """cat <<'EOF'
APP WARNING - queue is growing | latency=250ms;100;500;0 'queue depth'=1200;1000;5000
worker-1 busy
worker-2 busy | cache=512KB;;;0;1024
hit_ratio=93.5%;;;0;100 uptime=3600s
EOF
exit 1
"""
    r = await probe(make([script(tmp_path, "app.sh", body)]))
    assert r.error_kind == "warning"
    assert r.error == "APP WARNING - queue is growing"
    assert r.values["exit_code"] == 1
    assert r.values["perf.latency"] == pytest.approx(0.25)
    assert r.values["perf.queue depth"] == 1200
    assert r.values["perf.cache"] == 512_000
    assert r.values["perf.hit_ratio"] == 93.5
    assert r.values["perf.uptime"] == 3600


async def test_minimal_environment_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SECRET", "s3cret")
    body = (
        'echo "CRITICAL: db=$DB_NAME secret=${AGENT_SECRET:-unset} lang=$LANG home=${HOME:-unset} pwd=$(pwd)"\nexit 2\n'
    )
    check = make([script(tmp_path, "env.sh", body)], env={"DB_NAME": "orders"}, cwd="/")
    r = await probe(check)
    assert r.error == "CRITICAL: db=orders secret=unset lang=C home=unset pwd=/"


async def test_exit_codes_beyond_3_and_stderr(tmp_path: Path) -> None:
    r = await probe(make([script(tmp_path, "crash.sh", "echo 'Traceback: it broke' >&2\nexit 42\n")]))
    assert (r.error_kind, r.status) == ("unknown", "unknown")
    assert r.error == "UNKNOWN (exit 42): no output; stderr: Traceback: it broke"
    assert r.values["exit_code"] == 42
    r = await probe(make([script(tmp_path, "quiet.sh", "exit 2\n")]))
    assert r.error == "CRITICAL (exit 2): no output"


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    r = await probe(make([script(tmp_path, "segv.sh", "echo 'about to die'\nkill -SEGV $$\n")]))
    assert r.error == "UNKNOWN (killed by SIGSEGV): about to die" and r.error_kind == "unknown"
    assert r.values["exit_code"] == 128 + signal.SIGSEGV


async def test_flooding_output_is_cut_not_buffered(tmp_path: Path) -> None:
    r = await probe(make([script(tmp_path, "flood.sh", "exec yes 'OK: spam spam spam'\n")]))
    assert r.error_kind == "unknown"
    assert r.error == "UNKNOWN (killed by SIGPIPE): OK: spam spam spam (output cut at 64 KiB)"
    assert r.duration_s < 2  # cut at once, not at the 5s timeout


async def test_a_plugin_that_leaves_a_child_behind_does_not_hold_the_probe(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    body = f"sleep 30 &\necho $! > {pid_file}\necho 'OK: done'\n"
    r = await probe(make([script(tmp_path, "leaky.sh", body)]))
    assert r.ok, r.error
    assert r.duration_s < 2  # the leftover child held stdout open: killed, not waited for
    assert gone(int(pid_file.read_text()))


def gone(pid: int, within: float = 2.0) -> bool:
    """Whether ``pid`` is dead within ``within`` seconds (a SIGKILL takes effect asynchronously)."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of group ``pgid``."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return out


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = f"sleep 30 &\necho $$ $! > {pids}\nwait\n"  # a hung plugin with a grandchild
    r = await probe(make([script(tmp_path, "hung.sh", body)], timeout="700ms"))
    assert r.error_kind == "timeout"
    assert r.duration_s < 3.5  # the deadline plus the kill and reap, even on a loaded machine
    pgid, grandchild = map(int, pids.read_text().split())
    assert group_members(pgid) == []  # nothing of the group survives (zombies await init's reaping)
    assert gone(grandchild)


# Config


def test_missing_program_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"program '/nonexistent/check_foo' not found"):
        make(["/nonexistent/check_foo"])
    with pytest.raises(ValidationError, match=r"program 'check_nope_xyz' not found on PATH \(.*\) nor in /usr/lib"):
        make(["check_nope_xyz"])
    data = tmp_path / "data.txt"
    data.write_text("not a program\n")
    with pytest.raises(ValidationError, match="is not an executable file"):
        make([str(data)])
    with pytest.raises(ValidationError, match="write an absolute path, or a program name found on PATH"):
        make(["./check.sh"])


def test_program_looked_up_on_the_configured_path(tmp_path: Path) -> None:
    script(tmp_path, "check_mine", "echo OK\n")
    with pytest.raises(ValidationError, match="'check_mine' not found"):
        make(["check_mine"])
    check = make(["check_mine"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert check._argv == [str(tmp_path / "check_mine")]


def test_bad_options() -> None:
    with pytest.raises(ValidationError, match=r"command must name a program: \[PROGRAM, ARG, \.\.\.\]"):
        make([])
    with pytest.raises(ValidationError, match=r"command\[2\] is not a string: quote every argument") as exc:
        make(["/bin/echo", "-p", 5432])
    assert "5432" not in str(exc.value).split("quote every argument")[0]  # the value is not echoed
    with pytest.raises(ValidationError, match="invalid environment variable name 'A-B'"):
        make(["/bin/echo"], env={"A-B": "x"})
    with pytest.raises(ValidationError, match="cwd '/nonexistent' is not a directory"):
        make(["/bin/echo"], cwd="/nonexistent")
    with pytest.raises(ValidationError, match="Field required"):
        CommandConfig.model_validate({"name": "c", "type": "command"})


async def test_program_removed_after_load(tmp_path: Path) -> None:
    check = make([script(tmp_path, "gone.sh", "echo OK\n")])
    (tmp_path / "gone.sh").unlink()
    t0 = time.perf_counter()
    r = await probe(check)
    assert r.error_kind == "command"
    assert r.error == f"cannot run {tmp_path / 'gone.sh'}: No such file or directory"
    assert time.perf_counter() - t0 < 1
