"""Screenshots of failing runs: served read-only at /artifacts/NAME, kept to a bound, recorded on
the timeline and linked from the status page and the report.

Real peers throughout: a real HTTP server on 127.0.0.1:0 asked over raw sockets (an HTTP client
would tidy ``..`` away before sending it), real files, symlinks and a FIFO in a real directory,
and a real daemon (``agent.engine.daemon.Agent``, in this process) running a tiny check type
defined here whose probe saves a PNG on every failing run, as the ``browser`` check does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.load import parse_config
from agent.engine.artifacts import Artifacts, prune, stored
from agent.engine.daemon import Agent
from agent.incidents.report import render_json, render_markdown
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter
from agent.web.api import HttpServer, start_http
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, Result

SECRET = b"SQLite format 3\x00 the state database: never served"


def png(seed: int = 0, width: int = 4) -> bytes:
    """A real (tiny, grey) PNG image; ``seed`` changes its pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([seed % 256]) * width for _ in range(width))
    header = struct.pack(">IIBBBBB", width, width, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Source:
    """The smallest real status source: the endpoint needs one besides the artifacts."""

    async def snapshot(self) -> dict[str, Any]:
        return {"agent": {"name": "t"}, "checks": [], "incidents": []}

    def healthy(self) -> tuple[bool, str]:
        return True, ""

    def metrics(self) -> tuple[bytes, str] | None:
        return None


async def ask(port: int, path: str, method: str = "GET", *headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as written (nothing normalized), over a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{h}\r\n" for h in headers)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{head}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), fields, body


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, Path]]:
    """An endpoint serving ``state/artifacts``, next to a database and a secret outside it."""
    state = tmp_path / "state"
    shots = state / "artifacts"
    (shots / "sub").mkdir(parents=True)
    (state / "firstwatch.db").write_bytes(SECRET)
    (tmp_path / "outside.png").write_bytes(SECRET)
    (shots / "shop-checkout-1.png").write_bytes(png(1))
    (shots / "big.png").write_bytes(png(2) + os.urandom(700_000))  # several chunks
    (shots / "notes.txt").write_bytes(SECRET)
    (shots / "upper.PNG").write_bytes(SECRET)
    (shots / ".hidden.png").write_bytes(SECRET)
    (shots / "sub" / "x.png").write_bytes(SECRET)
    (shots / "escape.png").symlink_to(state / "firstwatch.db")
    (shots / "outside-link.png").symlink_to(tmp_path / "outside.png")
    (shots / "inside-link.png").symlink_to(shots / "shop-checkout-1.png")
    (shots / "dir.png").mkdir()
    os.mkfifo(shots / "fifo.png")
    server = await start_http("127.0.0.1:0", Source(), artifacts_dir=str(shots))
    yield server, shots
    await server.close()


async def test_a_screenshot_is_served_as_a_png_that_nothing_may_run_in(served: tuple[HttpServer, Path]) -> None:
    server, shots = served
    status, headers, body = await ask(server.port, "/artifacts/shop-checkout-1.png")
    assert status == 200 and body == png(1)
    assert headers["content-type"] == "image/png"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "default-src 'none'"
    assert headers["cache-control"] == "private, no-cache" and headers["last-modified"].endswith(" GMT")
    assert headers["content-length"] == str(len(png(1)))
    again, _, nothing = await ask(
        server.port, "/artifacts/shop-checkout-1.png", "GET", f"If-None-Match: {headers['etag']}"
    )
    assert again == 304 and nothing == b""
    status, _, body = await ask(server.port, "/artifacts/big.png")
    assert status == 200 and body == (shots / "big.png").read_bytes()


async def test_head_answers_the_headers_and_other_methods_are_refused(served: tuple[HttpServer, Path]) -> None:
    server, _ = served
    status, headers, body = await ask(server.port, "/artifacts/shop-checkout-1.png", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len(png(1)))
    assert headers["content-type"] == "image/png"
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = await ask(server.port, "/artifacts/shop-checkout-1.png", method, "Content-Length: 0")
        assert status == 405 and headers["allow"] == "GET, HEAD", method


@pytest.mark.parametrize(
    "path",
    [
        "/artifacts/../firstwatch.db",
        "/artifacts/%2e%2e/firstwatch.db",
        "/artifacts/%2E%2E%2Ffirstwatch.db",
        "/artifacts/..%2ffirstwatch.db",
        "/artifacts/..%5cfirstwatch.db",
        "/artifacts/%2e%2e%2f..%2foutside.png",
        "/artifacts//etc/passwd",
        "/artifacts/escape.png",  # a symlink to the database
        "/artifacts/outside-link.png",  # a symlink out of the directory
        "/artifacts/inside-link.png",  # even to a screenshot: links are never followed
        "/artifacts/notes.txt",
        "/artifacts/upper.PNG",
        "/artifacts/.hidden.png",
        "/artifacts/sub/x.png",
        "/artifacts/sub%2fx.png",
        "/artifacts/dir.png",
        "/artifacts/fifo.png",  # not a regular file: refused at once, not waited on
        "/artifacts/shop-checkout-1.png%00.txt",
        "/artifacts/shop-checkout-%31.png",  # nothing is decoded, not even what is harmless
        "/artifacts/missing.png",
        "/artifacts/",
    ],
)
async def test_nothing_but_a_plain_png_in_the_directory_is_served(served: tuple[HttpServer, Path], path: str) -> None:
    server, _ = served
    for method in ("GET", "HEAD"):
        status, _, body = await ask(server.port, path, method)
        assert status == 404, (method, path)
        assert SECRET not in body and b"SQLite" not in body


async def test_without_a_directory_every_artifact_is_404(tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "a.png").write_bytes(png())
    server = await start_http("127.0.0.1:0", Source())
    try:
        status, _, _ = await ask(server.port, "/artifacts/a.png")
        assert status == 404
    finally:
        await server.close()


def test_the_page_links_only_plain_names() -> None:
    from agent.web.page import render

    def doc(name: object) -> dict[str, Any]:
        member = {"target": "https://shop.test/", "up": False, "error": "no button", "artifact": name}
        entry = {"time": "2026-11-24T02:35:07Z", "kind": "artifact", "text": f"shot: {name}", "artifact": name}
        incident = {"id": "i1", "summary": "down", "severity": "major", "check": "c", "timeline": [entry]}
        return {"checks": [{"name": "c", "type": "browser", "members": [member]}], "incidents": [incident]}

    page = render(doc("c-0001.png"))
    assert page.count('<a class="shot" href="artifacts/c-0001.png">screenshot</a>') == 2  # member and timeline
    for hostile in ("../firstwatch.db", "javascript:alert(1).png", '"><b>x</b>.png', ".h.png", "a/b.png", 7, None):
        page = render(doc(hostile))
        assert 'class="shot"' not in page and "<b>x</b>" not in page, hostile


# -- the bound -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(0, 4000), max_size=25),
    max_bytes=st.integers(0, 40_000),
    max_files=st.integers(0, 30),
)
def test_pruning_keeps_the_newest_that_fit_within_the_bound(sizes: list[int], max_bytes: int, max_files: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        shots = os.path.join(root, "artifacts")
        os.mkdir(shots)
        outside = os.path.join(root, "outside.png")
        with open(outside, "wb") as f:
            f.write(b"x" * 50_000)
        others = {"notes.txt": b"keep me", "link.png": None}  # not artifacts: never counted nor deleted
        with open(os.path.join(shots, "notes.txt"), "wb") as f:
            f.write(b"keep me")
        os.symlink(outside, os.path.join(shots, "link.png"))
        age: dict[str, int] = {}
        for i, size in enumerate(sizes):
            name = f"shot-{(i * 7919) % 1000:03d}-{i}.png"  # names not in age order
            with open(os.path.join(shots, name), "wb") as f:
                f.write(b"\0" * size)
            age[name] = 1_700_000_000_000_000_000 + i * 1_000_000  # the later, the newer
            os.utime(os.path.join(shots, name), ns=(age[name], age[name]))
        size_of = {name: sizes[i] for i, name in enumerate(age)}

        kept = prune(shots, max_bytes, max_files)

        left = {e.name for e in os.scandir(shots)} - set(others)
        assert set(kept) == left
        assert len(left) <= max_files and sum(size_of[n] for n in left) <= max_bytes
        gone = set(age) - left
        assert all(age[k] > age[g] for k in left for g in gone)  # the newest stay
        if gone:  # and as many of them as fit: the newest one deleted would not have
            newest_gone = max(gone, key=age.__getitem__)
            assert len(left) == max_files or sum(size_of[n] for n in left) + size_of[newest_gone] > max_bytes
        assert kept == sorted(left, key=age.__getitem__, reverse=True)
        assert Path(shots, "notes.txt").read_bytes() == b"keep me"
        assert os.path.islink(os.path.join(shots, "link.png")) and os.path.getsize(outside) == 50_000
        assert [s.name for s in stored(shots)] == kept


def test_an_artifacts_directory_that_cannot_be_made_leaves_probes_without_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "artifacts").write_text("a file in the way")
    with caplog.at_level(logging.ERROR, logger="firstwatch.artifacts"):
        artifacts = Artifacts(str(tmp_path))
    assert artifacts.directory is None and artifacts.prune() == []
    assert [r.getMessage() for r in caplog.records if "cannot create" in r.getMessage()] != []
    fresh = Artifacts(str(tmp_path / "state"))
    assert fresh.directory == str(tmp_path / "state" / "artifacts")
    assert stat.S_IMODE(os.stat(fresh.directory).st_mode) == 0o700


async def test_a_name_that_is_not_a_plain_png_is_not_recorded(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    writer = StoreWriter(store)
    artifacts = Artifacts(str(tmp_path))
    assert artifacts.directory is not None
    (tmp_path / "secret.png").write_bytes(png())
    from agent.alerting.book import AlertBook

    book = AlertBook("t", {})
    for name in ("../secret.png", "missing.png", "x.txt"):
        result = Result("c", "shot", "t", False, {}, "expect", "bad", 1e9, 0.1, artifact=name)
        await artifacts.record(result, book, writer)
    assert writer.waiting == 0
    await writer.close()
    assert store.entries() == []
    store.close()


# -- a failing run end to end ----------------------------------------------------------------


class ShotConfig(CheckConfig):
    target: str


class ShotCheck(BaseCheck):
    """A stand-in for the browser check: every run fails and leaves a screenshot."""

    TYPE: ClassVar[str] = "shot"
    Config: ClassVar[type[CheckConfig]] = ShotConfig
    runs: ClassVar[int] = 0

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        ShotCheck.runs += 1
        failed = Observation(ok=False, error_kind="expect", error="no 'Place order' button on the page")
        if ctx.artifacts_dir is None:
            return failed
        name = f"{self.config.name}-{ShotCheck.runs:04d}.png"
        Path(ctx.artifacts_dir, name).write_bytes(png(ShotCheck.runs))
        return replace(failed, artifact=name)


CONFIG = """
agent: {{name: shop-01, state_dir: "{state}", listen: "127.0.0.1:0"}}
checks:
  - {{name: shop-checkout, type: tcp, target: "shop.example.test:443", alerts: [{{when: down, severity: major}}]}}
sinks: []
"""


async def test_a_failing_run_is_on_the_timeline_the_page_the_endpoint_and_the_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="firstwatch")
    ShotCheck.runs = 0
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    cfg = parse_config(path.read_text(), str(path))
    (tcp,) = cfg.checks
    shot = ShotConfig(name="shop-checkout", type="shot", interval="200ms", timeout="150ms", target="https://shop.test/")
    cfg = replace(cfg, checks=(replace(tcp, cls=ShotCheck, config=shot),))
    store = Store(cfg.state_dir)
    agent = Agent(str(path), cfg, store, None)
    agent.runtime.artifacts.max_files = 2  # pruned after each new one
    signals: asyncio.Queue[str] = asyncio.Queue()
    serving = asyncio.create_task(agent.serve(signals))
    shots = tmp_path / "state" / "artifacts"
    try:
        port = await _port(caplog)
        doc = await _status_when(port, lambda d: ShotCheck.runs >= 4 and _timeline(d))
        (member,) = doc["checks"][0]["members"]
        assert member["up"] is False and re.fullmatch(r"shop-checkout-\d{4}\.png", member["artifact"])
        first = _timeline(doc)[0]
        assert first["kind"] == "artifact" and first["artifact"] == "shop-checkout-0001.png"
        assert first["text"] == "screenshot of the failing run: shop-checkout-0001.png"

        status, _, page = await ask(port, "/")
        assert status == 200
        assert f'<a class="shot" href="artifacts/{member["artifact"]}">screenshot</a>' in page.decode()
        status, headers, body = await ask(port, f"/artifacts/{member['artifact']}")
        assert status == 200 and headers["content-type"] == "image/png"
        assert body == (shots / member["artifact"]).read_bytes() and body.startswith(b"\x89PNG")
        assert len([p for p in shots.iterdir()]) <= 2  # the bound holds while it runs
        assert stat.S_IMODE(shots.stat().st_mode) == 0o700
    finally:
        signals.put_nowait("SIGTERM")
        await asyncio.wait_for(serving, 20)

    (incident,) = store.incidents()
    entries = store.entries(incident=incident.id)
    recorded = [e for e in entries if e.kind == "artifact"]
    assert len(recorded) >= 4 and all(e.incident == incident.id for e in recorded)
    assert all(e.check == "shop-checkout" and e.target == "https://shop.test/" for e in recorded)
    report = render_markdown(incident, entries, [], state_dir=cfg.state_dir)
    absolute = os.path.abspath(tmp_path / "state" / "artifacts" / "shop-checkout-0001.png")
    assert (
        f"- {_iso(recorded[0].time)}: [shop-checkout-0001.png](artifacts/shop-checkout-0001.png) (`{absolute}`)"
        in (report.split("\n## Screenshots\n", 1)[1])
    )
    data = json.loads(render_json(incident, entries, [], state_dir=cfg.state_dir))
    assert data["artifacts"][0] == {
        "time": _iso(recorded[0].time),
        "name": "shop-checkout-0001.png",
        "link": "artifacts/shop-checkout-0001.png",
        "path": absolute,
    }
    assert len(data["artifacts"]) == len(recorded)
    store.close()


def _iso(t: float) -> str:
    from agent.core.events import iso_time

    return iso_time(t)


def _timeline(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for inc in doc.get("incidents", []) for e in inc["timeline"] if e["kind"] == "artifact"]


async def _port(caplog: pytest.LogCaptureFixture, timeout: float = 10.0) -> int:
    for _ in range(int(timeout / 0.05)):
        for record in caplog.records:
            if m := re.search(r"status endpoint on 127\.0\.0\.1:(\d+)", record.getMessage()):
                return int(m.group(1))
        await asyncio.sleep(0.05)
    raise AssertionError("the status endpoint never started")


async def _status_when(port: int, ready: Any, timeout: float = 15.0) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(int(timeout / 0.1)):
        status, _, body = await ask(port, "/status")
        doc = json.loads(body) if status == 200 else {}
        if doc and ready(doc):
            return doc
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready in time: {json.dumps(doc)[:2000]}")


async def test_a_runtime_prunes_what_earlier_runs_left_when_it_starts(tmp_path: Path) -> None:
    from agent.engine.runtime import Runtime

    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state").replace("shop.example.test:443", "127.0.0.1:1"))
    cfg = parse_config(path.read_text(), str(path))
    shots = tmp_path / "state" / "artifacts"
    shots.mkdir(parents=True)
    for i in range(5):
        (shots / f"earlier-{i}.png").write_bytes(png(i))
        os.utime(shots / f"earlier-{i}.png", (1e9 + i, 1e9 + i))
    store = Store(cfg.state_dir)
    writer = StoreWriter(store)
    runtime = Runtime(cfg, store, writer)
    runtime.artifacts.max_files = 2
    await runtime.start()
    try:
        for _ in range(100):
            if len(list(shots.iterdir())) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(p.name for p in shots.iterdir()) == ["earlier-3.png", "earlier-4.png"]
    finally:
        await runtime.stop(timeout=1.0)
        await writer.close()
        store.close()
