"""Canary secrets: a value from ${VAR} never shows up in logs, events, /status, the page, the
timeline, `check` output or config errors, even when the peer echoes it back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

from aiohttp import web

from tests.support.agent import firstwatch, wait_for_events

CANARY = "s3cr3t-canary-7f1d9a"


async def test_a_canary_token_never_leaks(tmp_path: Path) -> None:
    async def echo(request: web.Request) -> web.Response:  # a hostile peer echoing our headers back
        return web.Response(status=500, text=json.dumps(dict(request.headers)))

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"""
agent: {{state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0"}}
checks:
  - name: api
    type: http
    url: "http://127.0.0.1:{port}/"
    headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
    interval: 0.2s
    timeout: 0.2s
    expect: {{body_contains: "ok"}}
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
"""
    )
    env = {**os.environ, "API_TOKEN": CANARY}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(cfg), "--log-level", "debug", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for_events(tmp_path / "events.jsonl", lambda e: len(e) >= 1)
        assert proc.stderr is not None
        line = b""
        while b"status endpoint on" not in line:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
        url = "http://" + line.decode().split("status endpoint on ")[1].strip()
        pages = [await asyncio.to_thread(lambda u=u: urllib.request.urlopen(u, timeout=5).read()) for u in
                 (url + "/status", url + "/")]  # fmt: skip
        timeline = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "timeline", "-c", str(cfg), "--format", "json",
            stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        timeline_out, _ = await timeline.communicate()
        check = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "check", "-c", str(cfg), "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        check_out, check_err = await check.communicate()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        await runner.cleanup()
    everything = [out, err, *pages, timeline_out, check_out, check_err, (tmp_path / "events.jsonl").read_bytes()]
    assert b"status endpoint on" in line and b"down" in err  # we did look at real output
    for blob in everything:
        assert CANARY.encode() not in blob


async def test_config_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("checks:\n  - {name: api, type: tcp, target: '${DB_PASSWORD}'}\n")
    os.environ["DB_PASSWORD"] = CANARY
    try:
        code, out, err = await firstwatch("validate", "-c", str(cfg))
    finally:
        del os.environ["DB_PASSWORD"]
    assert code == 78 and "checks[0].target" in err and CANARY not in out + err
