"""The webhook sink against real aiohttp servers on 127.0.0.1 (and trustme certificates for https):
what the receiver gets, how each answer and each failure maps to retry or drop, and that the
header secrets and URL tokens never show in an error or a log line."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import traceback
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from pydantic import ValidationError

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.delivery.sinks.webhook import WebhookConfig, WebhookSink
from tests.support import factories
from tests.support.factories import event
from tests.support.peers.servers import free_port, serve_app
from tests.support.peers.tls import server_context

CANARY = "CANARY-5e1f9a7c-secret"
URL_TOKEN = "urltok-77c1d0"
PATH_TOKEN = "B0123456789abcdefXYZ"  # as in https://hooks.slack.com/services/T000/B000/XXXX


def sink(url: str, name: str = "pager", **options: Any) -> WebhookSink:
    return WebhookSink(WebhookConfig.model_validate({"type": "webhook", "url": url, **options}), name)


class Receiver:
    """A webhook receiver: records each request; each path answers differently."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.flood_sent = 0
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_post("/status/{code}", self.status)
        app.router.add_post("/echo/{code}", self.echo)
        app.router.add_post("/echo/{code}/{token}", self.echo)
        app.router.add_post("/slow", self.slow)
        app.router.add_post("/flood", self.flood)
        app.router.add_post("/moved", self.moved)
        self.app = app

    async def record(self, request: web.Request) -> None:
        self.requests.append({"headers": dict(request.headers), "body": await request.read(), "query": request.query})

    async def hook(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(status=202, text="accepted")

    async def status(self, request: web.Request) -> web.Response:
        await self.record(request)
        return web.Response(status=int(request.match_info["code"]), text="upstream\tbroken\r\n\x1b[31mretry later\n")

    async def echo(self, request: web.Request) -> web.Response:
        """Like some debugging endpoints: the error body repeats what was sent."""
        await self.record(request)
        text = f"rejected {request.path_qs} " + " ".join(f"{k}={v}" for k, v in request.headers.items())
        return web.Response(status=int(request.match_info["code"]), text=text)

    async def slow(self, request: web.Request) -> web.Response:
        await self.record(request)
        await asyncio.sleep(5)
        return web.Response(text="too late")

    async def flood(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        resp = web.StreamResponse(status=503)
        await resp.prepare(request)
        chunk = b"overloaded! " * 5000
        try:
            while True:
                await resp.write(chunk)
                self.flood_sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what the sink should do
        return resp

    async def moved(self, request: web.Request) -> web.Response:
        await self.record(request)
        raise web.HTTPFound("/hook")


# handler_cancellation: a handler still sleeping when the client gave up is cancelled, so
# cleanup is quick. No access log: the test server logging its own URLs is not the sink's doing.
serve = functools.partial(serve_app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    r = Receiver()
    runner, port = await serve(r.app)
    yield r, f"127.0.0.1:{port}"
    await runner.cleanup()


def everything_said(exc: BaseException) -> str:
    """The message, repr and full traceback (with chained causes) of an exception."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


# --- what the receiver gets -------------------------------------------------------------------------


async def test_json_body_and_headers_arrive_exactly(receiver: tuple[Receiver, str]) -> None:
    r, host = receiver
    s = sink(f"http://{host}/hook", headers={"Authorization": f"Bearer {CANARY}", "X-Team": "ops"})
    e, other = event(), event(kind="resolved")
    try:
        await s.send(e)
        await s.send(e)  # a redelivery of the same event
        await s.send(other)
    finally:
        await s.close()
    first, again, third = r.requests
    assert json.loads(first["body"]) == e.to_dict()
    assert first["body"] == again["body"]
    h = first["headers"]
    assert h["Content-Type"] == "application/json"
    assert h["Authorization"] == f"Bearer {CANARY}"
    assert h["X-Team"] == "ops"
    assert h["User-Agent"].startswith("firstwatch/")
    assert h["Idempotency-Key"] == e.id == again["headers"]["Idempotency-Key"]
    assert third["headers"]["Idempotency-Key"] == other.id != e.id


async def test_cloudevents_structured_envelope(receiver: tuple[Receiver, str]) -> None:
    r, host = receiver
    s = sink(f"http://{host}/hook", format="cloudevents")
    e = event(time=1795919700.123)
    await s.send(e)
    await s.send(event(kind="agent", check=None, incident=None, summary="config reload failed"))
    await s.close()
    req, agent_req = r.requests
    assert req["headers"]["Content-Type"] == "application/cloudevents+json"
    assert req["headers"]["Idempotency-Key"] == e.id
    envelope = json.loads(req["body"])
    assert envelope.pop("specversion") == "1.0"
    assert envelope.pop("id") == e.id
    assert envelope.pop("source") == "firstwatch/web-01"
    assert envelope.pop("type") == "io.firstwatch.event.firing"
    assert envelope.pop("time") == "2026-11-29T02:35:00.123Z" == e.to_dict()["time"]
    assert envelope.pop("subject") == "shop-home"
    assert envelope.pop("datacontenttype") == "application/json"
    assert envelope.pop("data") == e.to_dict()
    assert envelope == {}  # nothing else
    agent_envelope = json.loads(agent_req["body"])
    assert agent_envelope["type"] == "io.firstwatch.event.agent"
    assert "subject" not in agent_envelope  # optional, and must not be empty when present


async def test_json_and_cloudevents_carry_runbook_and_affected(receiver: tuple[Receiver, str]) -> None:
    r, host = receiver
    told = event(runbook="https://wiki.example.com/runbooks/shop-home", affected=["shop-checkout", "search"])
    for fmt in ("json", "cloudevents"):
        s = sink(f"http://{host}/hook", format=fmt)
        await s.send(told)
        await s.send(event())
        await s.close()
    as_json, plain_json, as_ce, plain_ce = (json.loads(req["body"]) for req in r.requests)
    for got, plain in ((as_json, plain_json), (as_ce["data"], plain_ce["data"])):
        assert (got["runbook"], got["affected"]) == (
            "https://wiki.example.com/runbooks/shop-home",
            ["shop-checkout", "search"],
        )
        assert (plain["runbook"], plain["affected"]) == (None, [])  # always there: null and []
        assert "members" not in got and "members" not in plain  # only a group's events have it


async def test_one_session_reused_and_closed(receiver: tuple[Receiver, str]) -> None:
    _, host = receiver
    s = sink(f"http://{host}/hook")
    await s.send(event())
    session = s._session
    await s.send(event())
    assert s._session is session and session is not None
    await s.close()
    assert session.closed
    await s.close()  # twice is harmless


# --- answers: retry or drop ----------------------------------------------------------------------


async def test_503_is_retryable_with_a_clean_body_excerpt(receiver: tuple[Receiver, str]) -> None:
    _, host = receiver
    s = sink(f"http://{host}/status/503?token={URL_TOKEN}")
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    await s.close()
    assert type(info.value) is DeliveryError  # not permanent: the dispatcher retries
    assert str(info.value) == f"webhook pager: HTTP 503 from {host}: upstream broken retry later"
    assert URL_TOKEN not in str(info.value) and "/status" not in str(info.value)


@pytest.mark.parametrize("code", [408, 429, 500, 502])
async def test_overload_and_server_errors_are_retryable(receiver: tuple[Receiver, str], code: int) -> None:
    _, host = receiver
    s = sink(f"http://{host}/status/{code}")
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    await s.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert f"HTTP {code} from {host}" in str(info.value)


@pytest.mark.parametrize("code", [400, 401, 404, 422])
async def test_client_errors_are_permanent(receiver: tuple[Receiver, str], code: int) -> None:
    _, host = receiver
    s = sink(f"http://{host}/status/{code}")
    with pytest.raises(PermanentDeliveryError, match=f"^webhook pager: HTTP {code} from {host}: upstream"):
        await s.send(event())
    await s.close()


async def test_redirects_are_not_followed(receiver: tuple[Receiver, str]) -> None:
    r, host = receiver
    s = sink(f"http://{host}/moved")
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 302 from .*redirects are not followed"):
        await s.send(event())
    await s.close()
    assert len(r.requests) == 1  # /hook never got it


# --- failures: deadlines, floods, refused, TLS -------------------------------------------------------


async def test_timeout_is_a_total_deadline(receiver: tuple[Receiver, str]) -> None:
    _, host = receiver
    s = sink(f"http://{host}/slow", timeout="300ms")
    start = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    elapsed = time.monotonic() - start
    await s.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == f"webhook pager: no answer from {host} within 300ms"
    assert 0.25 < elapsed < 2.5  # the deadline, not the server's 5s answer


async def test_flooding_error_body_is_cut_quickly_with_bounded_memory(receiver: tuple[Receiver, str]) -> None:
    r, host = receiver
    s = sink(f"http://{host}/flood", timeout="5s")
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(DeliveryError) as info:
            await s.send(event())
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    await s.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value).startswith(f"webhook pager: HTTP 503 from {host}: overloaded! overloaded!")
    assert len(str(info.value).split(": ", 2)[2]) == 200
    assert elapsed < 2.0  # well within the 5s deadline: the body was not read to its (missing) end
    assert peak < 8 * 1024 * 1024  # server and client together; an unbounded read would be far past this
    await asyncio.sleep(0.2)
    sent = r.flood_sent
    await asyncio.sleep(0.2)
    assert r.flood_sent == sent  # the connection was closed, not drained


async def test_refused_connection_is_retryable() -> None:
    port = free_port()
    s = sink(f"http://127.0.0.1:{port}/hook")
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    await s.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == f"webhook pager: cannot connect to 127.0.0.1:{port}: connection refused"


@pytest.fixture
async def https(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[tuple[Receiver, str, str]]:
    ctx = server_context(ca.issue_cert("127.0.0.1", "localhost"))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    r = Receiver()
    runner, port = await serve(r.app, ctx)
    yield r, f"127.0.0.1:{port}", str(ca_file)
    await runner.cleanup()


async def test_https_with_ca_file(https: tuple[Receiver, str, str]) -> None:
    r, host, ca_file = https
    s = sink(f"https://{host}/hook", ca_file=ca_file)
    await s.send(event())
    await s.close()
    assert len(r.requests) == 1


async def test_https_untrusted_certificate_is_retryable_tls_failure(https: tuple[Receiver, str, str]) -> None:
    r, host, _ = https
    s = sink(f"https://{host}/hook")  # the system store does not know the test CA
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    await s.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value).startswith(f"webhook pager: TLS with {host} failed: ")
    assert "certificate" in str(info.value)
    assert r.requests == []
    insecure = sink(f"https://{host}/hook", tls_verify=False)
    await insecure.send(event())
    await insecure.close()
    assert len(r.requests) == 1


# --- secrets ---------------------------------------------------------------------------------------


async def test_secrets_never_in_errors_or_logs(
    receiver: tuple[Receiver, str], https: tuple[Receiver, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, host = receiver
    _, tls_host, _ = https
    headers = {"Authorization": f"Bearer {CANARY}", "X-Api-Key": CANARY}
    failing = [
        f"http://{host}/echo/503?token={URL_TOKEN}",  # the error body repeats the headers and the query
        f"http://{host}/echo/400/{PATH_TOKEN}?token={URL_TOKEN}",
        f"http://{host}/slow?token={URL_TOKEN}",
        f"http://127.0.0.1:{free_port()}/hook?token={URL_TOKEN}",
        f"https://{tls_host}/hook?token={URL_TOKEN}",
    ]
    said: list[str] = []
    for url in failing:
        s = sink(f"{url}", headers=headers, timeout="300ms")
        said += [repr(s), repr(s.config), str(s.config)]
        with pytest.raises(DeliveryError) as info:
            await s.send(event())
        await s.close()
        said.append(everything_said(info.value))
    assert "***" in said[3]  # the echoed secrets were redacted, the rest of the excerpt kept
    with pytest.raises(ValidationError) as bad:
        WebhookConfig.model_validate({"type": "webhook", "url": f"ftp://h/?t={URL_TOKEN}", "headers": {"X": 1}})
    said.append(str(bad.value))
    with pytest.raises(ValidationError) as bad:
        WebhookConfig.model_validate({"type": "webhook", "url": "http://h/", "headers": {"X": f"{CANARY}\r\nY: z"}})
    said.append(str(bad.value))
    text = "\n".join(said) + caplog.text + "".join(str(rec.args) for rec in caplog.records)
    assert CANARY not in text
    assert URL_TOKEN not in text
    assert PATH_TOKEN not in text
    assert "Authorization=*** X-Api-Key=***" in said[3]


# --- config ----------------------------------------------------------------------------------------


config_error = functools.partial(factories.config_error, WebhookConfig, {"type": "webhook"})


def test_config_errors(tmp_path: Path) -> None:
    assert config_error(url="ftp://pager.example.com/") == "invalid url: expected http:// or https://, got scheme 'ftp'"
    assert config_error(url="pager.example.com/hook") == "invalid url: expected http:// or https://, got scheme none"
    assert config_error(url="http:///hook") == "invalid url: no host"
    assert config_error(url="http://x/", format="xml") == (
        "unknown format 'xml' (expected one of: json, cloudevents, slack, pagerduty)"
    )
    assert config_error(url="http://x/", timeout="0") == "timeout must be greater than 0"
    assert config_error(url="http://x/", ca_file=str(tmp_path / "none.pem")).startswith("no such file")
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert "no usable PEM" in config_error(url="http://x/", ca_file=str(tmp_path / "junk.pem"))
    assert config_error(url="http://x/", headers={"Content-Type": "text/plain"}) == (
        "header 'Content-Type' is set by the sink itself"
    )
    assert config_error(url="http://x/", headers={"Bad Name": "v"}) == "invalid header name 'Bad Name'"
    assert (
        config_error(url="http://x/", headers={"X-Port": 5432})
        == "header 'X-Port': the value must be a string (quote it)"
    )
    assert "extra_forbidden" in str(info_of(url="http://x/", method="PUT"))
    cfg = WebhookConfig.model_validate({"type": "webhook", "url": "https://x/"})
    assert (cfg.format, cfg.timeout, cfg.tls_verify, cfg.ca_file, cfg.headers) == ("json", 10.0, True, None, {})


def info_of(**options: Any) -> ValidationError:
    try:
        WebhookConfig.model_validate({"type": "webhook", **options})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a ValidationError")
