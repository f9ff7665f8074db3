"""``firstwatch status`` against real peers (issue 12, item 12): nothing listening, a silent
server, a peer that is not HTTP, HTTP servers that are not firstwatch, another agent on the
port; each is one clean ``UNKNOWN: ...`` line and exit 3. The agent of the config is shown,
with what it says escaped, and exits by its worst open incident."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.web.api import start_http
from tests.support.agent import Run, firstwatch, start_agent
from tests.support.peers.servers import free_port
from tests.web.test_http_api import SNAPSHOT

ESC = "\x1b"


def config(tmp_path: Path, port: int, name: str = "mon-01", state: str = "state") -> str:
    path = tmp_path / f"{name}-{state}.yaml"
    path.write_text(
        f"agent: {{name: {name}, state_dir: '{tmp_path / state}', listen: '127.0.0.1:{port}'}}\n"
        "checks: [{name: host, type: host, interval: 1s}]\n"
        "sinks: [{type: stdout}]\n"
    )
    return str(path)


def assert_unknown(run: Run, *words: str) -> None:
    code, out, err = run
    assert code == 3, run
    assert out.startswith("UNKNOWN: ") and out.count("\n") == 1, run
    assert ESC not in out + err and "\x07" not in out + err and "Traceback" not in out + err, run
    for word in words:
        assert word in out, run


@contextlib.asynccontextmanager
async def tcp_peer(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def http_peer(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def test_nothing_listening_is_unknown(tmp_path: Path) -> None:
    assert_unknown(await firstwatch("status", "-c", config(tmp_path, free_port())), "connection refused")
    code, out, _ = await firstwatch("status", "-c", config(tmp_path, free_port()), "--format", "json")
    doc = json.loads(out)  # a script asking for JSON gets JSON, here too
    assert code == 3 and doc["status"] == "unknown" and "connection refused" in doc["error"]


async def test_listen_off_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "off.yaml"
    path.write_text("agent: {name: x, listen: ''}\nchecks: [{name: host, type: host}]\n")
    assert_unknown(await firstwatch("status", "-c", str(path)), "agent.listen is empty")


async def test_a_silent_or_dripping_peer_is_unknown_within_the_timeout(tmp_path: Path) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            writer.write(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):  # a header byte every 0.1 s: never a socket timeout
                await asyncio.sleep(0.1)
                writer.write(b"X")
                await writer.drain()

    async with tcp_peer(drip) as port:
        loop = asyncio.get_running_loop()
        start = loop.time()
        run = await firstwatch("status", "-c", config(tmp_path, port), "--timeout", "1s")
        assert loop.time() - start < 5
    assert_unknown(run, "did not answer within 1s")


async def test_a_peer_that_is_not_http_is_unknown_and_its_bytes_are_not_printed(tmp_path: Path) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x1b[2J\x1b]0;owned\x07SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage\r\n\r\n")
        await writer.drain()
        writer.close()

    async with tcp_peer(garbage) as port:
        run = await firstwatch("status", "-c", config(tmp_path, port))
    assert_unknown(run, "does not speak HTTP")
    assert "owned" not in run[1] and "SSH" not in run[1]


async def test_http_servers_that_are_not_firstwatch_are_unknown(tmp_path: Path) -> None:
    answers: list[web.Response] = [
        web.Response(status=404, text="\x1b[31mnot here"),
        web.json_response({"hello": "world"}),
        web.Response(text="<html>\x1b[2J</html>", content_type="text/html"),
        web.json_response({"agent": {"name": "mon-01"}}),  # no summary: not a status document
    ]
    for answer in answers:

        async def handler(_: web.Request, answer: web.Response = answer) -> web.Response:
            return answer

        async with http_peer(handler) as port:
            run = await firstwatch("status", "-c", config(tmp_path, port))
        assert_unknown(run, "is not a firstwatch agent")


class Source:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    async def snapshot(self) -> dict[str, Any]:
        return self.doc

    def healthy(self) -> tuple[bool, str]:
        return True, ""

    def metrics(self) -> tuple[bytes, str] | None:
        return None


async def test_an_agent_with_another_state_directory_is_unknown(tmp_path: Path) -> None:
    server = await start_http("127.0.0.1:0", Source(SNAPSHOT), state_dir=str(tmp_path / "state"))
    try:
        same = await firstwatch("status", "-c", config(tmp_path, server.port, state="state"))
        other = await firstwatch("status", "-c", config(tmp_path, server.port, state="elsewhere"))
    finally:
        await server.close()
    assert same[0] == 0 and "agent mon-01" in same[1], same
    assert_unknown(other, "keeps its state elsewhere", "mon-01")


async def test_what_the_agent_says_is_escaped(tmp_path: Path) -> None:
    doc = copy.deepcopy(SNAPSHOT)
    doc["checks"][0]["members"][0]["error"] = "HTTP 503 \x1b]0;pwned\x07\x1b[2J from 10.0.0.2"
    doc["summary"]["worst"] = "minor"
    server = await start_http("127.0.0.1:0", Source(doc))
    try:
        for fmt in ("text", "json"):
            code, out, err = await firstwatch("status", "-c", config(tmp_path, server.port), "--format", fmt)
            assert code == 1 and ESC not in out + err and "\x07" not in out, out
            assert "pwned" in out
    finally:
        await server.close()


async def test_a_real_agent_answers_for_its_own_config_only(tmp_path: Path) -> None:
    port = free_port()
    mine = config(tmp_path, port, name="alpha")
    proc = await start_agent(mine)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:  # until the agent listens
            run = await firstwatch("status", "-c", mine)
            if run[0] != 3 or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert run[0] == 0 and "agent alpha" in run[1], run
        other = await firstwatch("status", "-c", config(tmp_path, port, name="beta"))
        assert_unknown(other, "'alpha', not 'beta'")
        # same name, another state directory: the daemon publishes which one it watches
        elsewhere = await firstwatch("status", "-c", config(tmp_path, port, name="alpha", state="other"))
        assert_unknown(elsewhere)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), 15)
