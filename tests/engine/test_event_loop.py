"""The daemon's event loop (uvloop when installed, ``FIRSTWATCH_EVENT_LOOP`` to choose) and the
frozen garbage-collector generation around a long-lived runtime (agent.engine.event_loop)."""

from __future__ import annotations

import asyncio
import gc
import sys
import urllib.request
from pathlib import Path

import pytest

from agent.engine import event_loop
from tests.support.agent import read_events, start_daemon


def test_asyncio_by_default_and_uvloop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")

    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.loop_factory() == ("asyncio", None)
    assert event_loop.run(kind()).startswith("asyncio")
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    assert event_loop.loop_factory()[0] == "uvloop"
    assert event_loop.run(kind()).startswith("uvloop")


def test_a_wrong_choice_says_so_and_runs_anyway(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(event_loop.ENV, "tokio")
    assert event_loop.loop_factory() == ("asyncio", None)
    assert "expected uvloop or asyncio" in caplog.text


def test_uvloop_missing_falls_back_to_asyncio(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    assert event_loop.loop_factory() == ("asyncio", None)
    assert "uvloop is not installed" in caplog.text


def test_settle_freezes_and_thaw_unfreezes() -> None:
    try:
        event_loop.settle()
        assert gc.get_freeze_count() > 0
        event_loop.thaw()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status)


CONFIG = """
agent: {name: loops, state_dir: "%s", listen: "127.0.0.1:0"}
checks:
  - {name: refused, type: tcp, target: "127.0.0.1:1", interval: 200ms, timeout: 100ms}
sinks: [{type: file, path: "%s/events.jsonl"}]
"""


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_the_daemon_runs_pages_and_reloads_on_either_loop(loop: str, tmp_path: Path) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % (tmp_path / "state", tmp_path))
    agent = await start_daemon(config, env={event_loop.ENV: loop})
    try:
        await agent.wait_log(rf"started: agent loops, .*, on {loop}")
        await agent.wait_log(r"refused 127.0.0.1:1: down")
        port = await agent.port()  # the status endpoint (its own accept loop) answers on this loop too
        for path in ("/healthz", "/status", "/"):
            assert await asyncio.to_thread(get, f"http://127.0.0.1:{port}{path}") == 200, path
        agent.proc.send_signal(1)  # SIGHUP: a reload thaws, drops the old runtime and freezes again
        await agent.wait_log(r"reloaded .*: 1 checks")
    finally:
        log = await agent.stop()
    assert "Traceback" not in log
    assert [e["kind"] for e in read_events(tmp_path / "events.jsonl")] == ["firing"]  # once, across the reload


async def test_a_wrong_loop_choice_is_warned_about_once_and_the_daemon_runs_on_asyncio(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG % (tmp_path / "state", tmp_path))
    agent = await start_daemon(config, env={event_loop.ENV: "tokio"})
    try:
        await agent.wait_log(r"started: agent loops, .*, on asyncio")
    finally:
        log = await agent.stop()
    assert log.count("FIRSTWATCH_EVENT_LOOP='tokio': expected uvloop or asyncio") == 1, log
