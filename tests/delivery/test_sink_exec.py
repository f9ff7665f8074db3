"""The exec sink running real programs (Python scripts written to tmp_path): what the program
receives, how its exit maps to retry or drop, the deadline that kills its whole process group,
and that nothing goes through a shell."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.delivery.sinks.exec import ExecConfig, ExecSink
from tests.support import factories
from tests.support.factories import event

SLEEP = shutil.which("sleep") or "/bin/sleep"


def script(tmp_path: Path, body: str, name: str = "notify") -> str:
    """An executable Python program; ``OUT`` in its body is a file it may write for the test."""
    path = tmp_path / name
    header = f"#!{sys.executable}\nimport json, os, subprocess, sys, time\nOUT = {str(tmp_path / 'out.json')!r}\n"
    path.write_text(header + body)
    path.chmod(0o755)
    return str(path)


def sink(command: list[str], name: str = "notify-team", **options: Any) -> ExecSink:
    return ExecSink(ExecConfig.model_validate({"type": "exec", "command": command, **options}), name)


def group_alive(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


async def survivors(pgid: int, grace: float = 3.0) -> list[int]:
    """The processes of group ``pgid`` still alive after ``grace`` seconds: SIGKILL is delivered
    asynchronously, so a killed process may take a moment to die on a loaded machine."""
    for _ in range(int(grace / 0.02)):
        if not group_alive(pgid):
            break
        await asyncio.sleep(0.02)
    return group_alive(pgid)


# --- what the program gets -------------------------------------------------------------------------

RECORD = """
data = {"stdin": sys.stdin.read(), "env": dict(os.environ), "argv": sys.argv[1:]}
with open(OUT, "w") as fh:
    json.dump(data, fh)
"""


async def test_program_gets_event_json_on_stdin_and_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SECRET_ENV", "not for plugins")
    s = sink([script(tmp_path, RECORD), "--channel", "ops"], env={"TEAM": "blue"})
    e = event(runbook="https://wiki.example.com/runbooks/shop-home?a=1&b=2", affected=["shop-checkout"])
    await s.send(e)
    await s.close()
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["stdin"] == e.to_json() + "\n"
    assert json.loads(got["stdin"]) == e.to_dict()
    assert got["argv"] == ["--channel", "ops"]
    env = got["env"]
    env.pop("LC_CTYPE", None)  # Python may set it itself on some platforms
    assert env == {
        "PATH": os.environ["PATH"],
        "LANG": "C",
        "TEAM": "blue",
        "FIRSTWATCH_EVENT_ID": e.id,
        "FIRSTWATCH_KIND": "firing",
        "FIRSTWATCH_SEVERITY": "critical",
        "FIRSTWATCH_CHECK": "shop-home",
        "FIRSTWATCH_TARGET": "https://shop.example.com/",
        "FIRSTWATCH_INCIDENT": "3f9c2a7b1d04",
        "FIRSTWATCH_SUMMARY": "shop-home: down",
        "FIRSTWATCH_RUNBOOK": "https://wiki.example.com/runbooks/shop-home?a=1&b=2",
    }
    assert json.loads(got["stdin"])["affected"] == ["shop-checkout"]


async def test_missing_fields_are_empty_variables(tmp_path: Path) -> None:
    s = sink([script(tmp_path, RECORD)])
    await s.send(event(kind="agent", check=None, target=None, incident=None, summary="config reload failed"))
    env = json.loads((tmp_path / "out.json").read_text())["env"]
    assert (env["FIRSTWATCH_KIND"], env["FIRSTWATCH_CHECK"], env["FIRSTWATCH_INCIDENT"]) == ("agent", "", "")
    assert env["FIRSTWATCH_RUNBOOK"] == ""  # set, empty: a script may test it without a default


async def test_shell_metacharacters_reach_the_program_literally(tmp_path: Path) -> None:
    trap = f"$(touch {tmp_path}/pwned); `touch {tmp_path}/pwned2` | true && echo $HOME > {tmp_path}/pwned3 ; *"
    s = sink([script(tmp_path, RECORD), "*", "$HOME", "a b;c"])
    await s.send(event(summary=trap))
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["env"]["FIRSTWATCH_SUMMARY"] == trap
    assert json.loads(got["stdin"])["summary"] == trap
    assert got["argv"] == ["*", "$HOME", "a b;c"]
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))


async def test_program_found_on_path_from_env(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script(bindir, RECORD.replace("OUT", repr(str(tmp_path / "out.json"))), name="notify-team")
    s = sink(["notify-team"], env={"PATH": f"{bindir}:/usr/bin:/bin"})
    await s.send(event())
    assert json.loads((tmp_path / "out.json").read_text())["env"]["PATH"] == f"{bindir}:/usr/bin:/bin"


# --- exits: retry or drop --------------------------------------------------------------------------


async def test_nonzero_exit_is_retryable_with_first_stderr_line(tmp_path: Path) -> None:
    body = 'sys.stderr.write("chat API said: \\x1b[1mno route\\r\\nsecond line\\n"); sys.exit(2)\n'
    s = sink([script(tmp_path, body)])
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    assert type(info.value) is DeliveryError
    assert str(info.value) == "exec notify-team: exit 2: chat API said: [1mno route"


async def test_stderr_excerpt_is_capped_and_env_secrets_redacted(tmp_path: Path) -> None:
    body = 'sys.stderr.write("bad token " + os.environ["TEAM_TOKEN"] + " " + "x" * 5000); sys.exit(1)\n'
    s = sink([script(tmp_path, body)], env={"TEAM_TOKEN": "tok-CANARY-1234"})
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    message = str(info.value)
    assert message.startswith("exec notify-team: exit 1: bad token *** xxx")
    assert len(message.split(": ", 2)[2]) == 200
    assert "CANARY" not in message + repr(s) + repr(s.config) + str(s.config)


async def test_exit_without_stderr_shows_stdout_or_nothing(tmp_path: Path) -> None:
    s = sink([script(tmp_path, "sys.exit(3)\n")])
    with pytest.raises(DeliveryError, match=r"^exec notify-team: exit 3$"):
        await s.send(event())
    s = sink([script(tmp_path, 'print("posting failed: 502"); sys.exit(1)\n', name="chatty")])
    with pytest.raises(DeliveryError, match=r"^exec notify-team: exit 1: posting failed: 502$"):
        await s.send(event())


@pytest.mark.parametrize(("code", "permanent"), [(63, False), (64, True), (65, True), (78, True), (79, False)])
async def test_sysexits_codes_are_permanent(tmp_path: Path, code: int, permanent: bool) -> None:
    s = sink([script(tmp_path, f'print("usage: notify [--channel C]", file=sys.stderr); sys.exit({code})\n')])
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    assert isinstance(info.value, PermanentDeliveryError) is permanent
    assert str(info.value) == f"exec notify-team: exit {code}: usage: notify [--channel C]"


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    s = sink([script(tmp_path, "import signal; os.kill(os.getpid(), signal.SIGTERM)\n")])
    with pytest.raises(DeliveryError, match=r"^exec notify-team: killed by SIGTERM$") as info:
        await s.send(event())
    assert not isinstance(info.value, PermanentDeliveryError)


# --- deadlines and floods --------------------------------------------------------------------------


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    body = f"""
child = subprocess.Popen([{SLEEP!r}, "30"])
with open(OUT, "w") as fh:
    json.dump({{"pid": os.getpid(), "child": child.pid}}, fh)
time.sleep(30)
"""
    s = sink([script(tmp_path, body)], timeout="1500ms")
    start = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    elapsed = time.monotonic() - start
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == "exec notify-team: timed out after 1.5s"
    assert elapsed < 4.0
    pids = json.loads((tmp_path / "out.json").read_text())
    assert await survivors(pids["pid"]) == []
    assert group_alive(pids["pid"]) == []


async def test_children_left_behind_are_killed_and_do_not_hold_the_send(tmp_path: Path) -> None:
    body = f"""
child = subprocess.Popen([{SLEEP!r}, "30"])  # inherits stdout/stderr: would hold the pipes open
with open(OUT, "w") as fh:
    json.dump({{"pid": os.getpid()}}, fh)
"""
    s = sink([script(tmp_path, body)], timeout="10s")
    start = time.monotonic()
    await s.send(event())
    assert time.monotonic() - start < 5.0
    assert await survivors(json.loads((tmp_path / "out.json").read_text())["pid"]) == []


async def test_program_flooding_its_output_finishes(tmp_path: Path) -> None:
    body = """
chunk = "y" * 65536 + "\\n"
for _ in range(160):  # 10 MiB to each pipe
    sys.stdout.write(chunk)
    sys.stderr.write(chunk)
sys.stdout.flush()
"""
    s = sink([script(tmp_path, body)], timeout="10s")
    start = time.monotonic()
    tracemalloc.start()
    try:
        await s.send(event())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 8.0
    assert peak < 4 * 1024 * 1024  # 64 KiB kept of each pipe, not the 20 MiB written


async def test_program_ignoring_a_large_event_on_stdin(tmp_path: Path) -> None:
    s = sink([script(tmp_path, "sys.exit(0)\n")], timeout="5s")
    await s.send(event(summary="z" * 500_000))  # far more than a pipe holds; never read


# --- config ----------------------------------------------------------------------------------------


config_error = functools.partial(factories.config_error, ExecConfig, {"type": "exec"})


def test_config_errors(tmp_path: Path) -> None:
    assert config_error(command=["no-such-notifier-4f2a"], env={"PATH": "/usr/bin"}) == (
        "program 'no-such-notifier-4f2a' not found on PATH (/usr/bin)"
    )
    assert config_error(command=[str(tmp_path / "missing")]) == f"program '{tmp_path}/missing' not found"
    (tmp_path / "plain").write_text("#!/bin/sh\n")
    assert config_error(command=[str(tmp_path / "plain")]) == f"program '{tmp_path}/plain' is not an executable file"
    assert config_error(command=["./notify"]) == (
        "program './notify': write an absolute path, or a program name found on PATH"
    )
    assert config_error(command=[]) == "command must name a program: [PROGRAM, ARG, ...]"
    assert config_error(command=[SLEEP, 5]) == (
        "command[1] is not a string: quote every argument (YAML reads 5432, yes or 0755 as numbers or booleans)"
    )
    assert config_error(command=[SLEEP], env={"A-B": "x"}) == "invalid environment variable name 'A-B'"
    assert config_error(command=[SLEEP], env={"TOKEN": 1234}) == "env TOKEN: the value must be a string (quote it)"
    assert config_error(command=[SLEEP], env={"FIRSTWATCH_KIND": "x"}) == (
        "env FIRSTWATCH_KIND: FIRSTWATCH_* variables are set from the event"
    )
    assert config_error(command=[SLEEP], timeout="0") == "timeout must be greater than 0"
    cfg = ExecConfig.model_validate({"type": "exec", "command": ["sleep", "1"]})
    assert (cfg.timeout, cfg.env) == (10.0, {})
    with pytest.raises(ValidationError) as info:
        ExecConfig.model_validate({"type": "exec", "command": ["nope-x"], "env": {"PATH": "/x", "K": "SECRET-9d"}})
    assert "SECRET-9d" not in str(info.value)
