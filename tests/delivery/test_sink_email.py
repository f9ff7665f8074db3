"""The email sink against a real SMTP server (aiosmtpd) on 127.0.0.1: plain, STARTTLS and implicit
TLS (trustme certificates), AUTH LOGIN and PLAIN, several recipients, threading headers, and how
each SMTP answer and each failure maps to retry or drop, with the password never shown."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import itertools
import logging
import socket
import ssl
import time
import traceback
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from agent.config.load import parse_config
from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.delivery.sinks.email import EmailConfig, EmailSink
from tests.support import factories
from tests.support.factories import T0
from tests.support.loop import ticking
from tests.support.peers.tls import server_context

CANARY = "CANARY-pw-9d2e41"
EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "email.yaml"


event = functools.partial(factories.event, factories.SHOP_WEB)


class Handler:
    """Records each message; ``rcpt`` and ``data`` decide the answers."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Session, EmailMessage]] = []
        self.rcpt: Callable[[str], str] = lambda addr: "250 OK"
        self.data = "250 OK"
        self.logins: list[tuple[str, bytes, bytes]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.rcpt(address)
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data.startswith("250"):
            assert isinstance(envelope.content, bytes)
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append((envelope, session, msg))
        return self.data

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((mechanism, data.login, data.password))
        ok = data.login == b"alerts" and data.password == CANARY.encode()
        return AuthResult(success=ok, handled=False)


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca.issue_cert("127.0.0.1", "localhost"))


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start an aiosmtpd server on 127.0.0.1:0: ``await serve(ssl=ctx, **smtp_kwargs)``."""
    servers: list[asyncio.Server] = []

    async def start(ssl: ssl.SSLContext | None = None, **kw: Any) -> tuple[Handler, int]:
        handler = Handler()
        if "authenticator" in kw:
            kw["authenticator"] = handler.authenticate
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="mx.test", loop=loop, **kw), "127.0.0.1", 0, ssl=ssl
        )
        servers.append(server)
        return handler, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def sink(port: int, **options: Any) -> EmailSink:
    base = {"type": "email", "host": "127.0.0.1", "port": port, "from": "firstwatch <alerts@example.com>"}
    base["to"] = ["oncall@example.com"]
    return EmailSink(EmailConfig.model_validate({**base, **options}), "mail")


def everything_said(exc: BaseException) -> str:
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


# --- what the recipients get ---------------------------------------------------------------------


async def test_several_recipients_get_a_phone_sized_mail_threaded_by_incident(serve: Any) -> None:
    handler, port = await serve()
    s = sink(port, to=["oncall@example.com", "Shop Team <shop@example.com>"], subject_prefix="[prod] ")
    firing, resolved = event(), event(kind="resolved", time=T0 + 12 * 60, summary="shop-web: resolved after 12m")
    await s.send(firing)
    await s.send(firing)  # a redelivery
    await s.send(resolved)
    (env, _, first), (_, _, again), (_, _, last) = handler.messages
    assert env.mail_from == "alerts@example.com"
    assert env.rcpt_tos == ["oncall@example.com", "shop@example.com"]
    assert first["From"] == "firstwatch <alerts@example.com>"
    assert first["To"] == "oncall@example.com, Shop Team <shop@example.com>"
    assert first["Subject"] == "[prod] [CRITICAL] firing: shop-web: 3 of 3 targets: HTTP 503 from 10.0.0.2:443 for 1m"
    assert last["Subject"] == "[prod] [CRITICAL] resolved after 12m: shop-web (down for 1m)"
    assert first["Auto-Submitted"] == "auto-generated"
    # idempotent ids, one thread per incident
    assert first["Message-ID"] == again["Message-ID"] == "<incident-3f9c2a7b1d04@example.com>"
    assert "In-Reply-To" not in first
    assert last["Message-ID"] == f"<{resolved.id}@example.com>"
    assert last["In-Reply-To"] == last["References"] == first["Message-ID"]
    text = first.get_content()
    assert all(len(line) <= 60 for line in text.splitlines()), text
    for expected in (
        "CRITICAL: FIRING",
        "Since:    2026-11-29 02:35:00 UTC",
        "Check:    shop-web (http)",
        "Target:   3 targets",
        "Rule:     down for 1m",
        "Incident: 3f9c2a7b1d04",
        "  firstwatch ack 3f9c2a7b1d04 --by NAME",
        '  firstwatch note 3f9c2a7b1d04 "what you did"',
        "  firstwatch report 3f9c2a7b1d04",
    ):
        assert expected in text.splitlines(), expected
    closing = last.get_content().splitlines()
    assert "CRITICAL: RESOLVED" in closing and "Lasted:   12m" in closing
    assert not any("firstwatch ack" in line for line in closing)  # nothing left to acknowledge
    await s.close()


async def test_subjects_start_with_the_severity_and_stay_short(serve: Any) -> None:
    handler, port = await serve()
    s = sink(port)
    long = "shop-web: " + "HTTP 503 from a very long upstream error text \r\n\x1b[31m " * 10
    await s.send(event(summary=long))
    await s.send(event(kind="agent", severity="major", summary="sink pager failing", check=None, incident=None))
    await s.send(event(kind="reminder", time=T0 + 15 * 60))
    subjects = [m["Subject"] for _, _, m in handler.messages]
    assert subjects[0].startswith("[CRITICAL] firing: shop-web: HTTP 503") and len(subjects[0]) <= 120
    assert "\x1b" not in subjects[0] and subjects[0].endswith("…")
    assert subjects[1] == "[MAJOR] agent web-01: sink pager failing"
    assert subjects[2].startswith("[CRITICAL] still firing after 15m: shop-web")


async def test_the_mail_names_the_runbook_and_the_checks_failing_because_of_this(serve: Any) -> None:
    handler, port = await serve()
    s = sink(port)
    runbook = "https://wiki.example.com/runbooks/shop-web?section=503&lang=en#first-steps"
    affected = ["shop-checkout", "search", *(f"shop-api-{i}" for i in range(8))]
    await s.send(event(runbook=runbook, affected=affected))
    await s.send(event())
    await s.close()
    (_, _, told), (_, _, plain) = handler.messages
    lines = told.get_content().splitlines()
    assert f"Runbook:  {runbook}" in lines  # whole, on one line: mail clients link it
    at = next(i for i, line in enumerate(lines) if line.startswith("Affected: "))
    wrapped = [lines[at], *itertools.takewhile(lambda line: line.startswith(" " * 10), lines[at + 1 :])]
    assert all(len(line) <= 60 for line in wrapped), wrapped
    assert " ".join(line.strip() for line in wrapped) == "Affected: " + ", ".join(affected)
    assert lines.index("Target:   3 targets") < at < lines.index("Rule:     down for 1m")
    assert not any(line.startswith(("Runbook:", "Affected:")) for line in plain.get_content().splitlines())


# --- TLS and authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_starttls_then_auth(serve: Any, ca: trustme.CA, ca_file: str, mechanism: str) -> None:
    other = {"LOGIN": "PLAIN", "PLAIN": "LOGIN"}[mechanism]
    handler, port = await serve(
        tls_context=server_tls(ca),
        require_starttls=True,
        auth_required=True,
        authenticator=True,
        auth_exclude_mechanism=[other],
    )
    s = sink(port, starttls=True, ca_file=ca_file, username="alerts", password=CANARY)
    await s.send(event())
    ((_, session, msg),) = handler.messages
    assert session.ssl is not None and session.authenticated
    assert handler.logins == [(mechanism, b"alerts", CANARY.encode())]
    assert msg["Subject"].startswith("[CRITICAL]")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls_with_password_file(serve: Any, ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    # aiosmtpd sees TLS only after STARTTLS: the whole connection is TLS here, so AUTH is allowed
    handler, port = await serve(ssl=server_tls(ca), auth_required=True, authenticator=True, auth_require_tls=False)
    (tmp_path / "pw").write_text(CANARY + "\n")
    s = sink(port, tls=True, ca_file=ca_file, username="alerts", password_file=str(tmp_path / "pw"))
    await s.send(event())
    ((_, session, _),) = handler.messages
    assert session.authenticated
    assert handler.logins[0][2] == CANARY.encode()


async def test_wrong_password_is_permanent_and_the_password_never_shows(
    serve: Any, ca: trustme.CA, ca_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, port = await serve(tls_context=server_tls(ca), auth_required=True, authenticator=True)
    wrong = CANARY + "-wrong"
    s = sink(port, starttls=True, ca_file=ca_file, username="alerts", password=wrong)
    with pytest.raises(PermanentDeliveryError) as info:
        await s.send(event())
    said = everything_said(info.value) + repr(s) + repr(s._cfg) + str(s._cfg.model_dump()) + caplog.text
    assert "rejected the login: 535" in str(info.value)
    assert CANARY not in said
    with pytest.raises(ValidationError) as bad:  # a config error never echoes the password either
        EmailConfig.model_validate({"type": "email", "host": "h", "from": "a@b.c", "to": ["x"], "password": CANARY})
    assert CANARY not in str(bad.value)


async def test_untrusted_certificate_is_retried(serve: Any, ca: trustme.CA) -> None:
    _, port = await serve(ssl=server_tls(ca))
    s = sink(port, tls=True)  # the system store does not know the test CA
    with pytest.raises(DeliveryError) as info:
        await s.send(event())
    assert not isinstance(info.value, PermanentDeliveryError)
    assert "certificate verify failed" in str(info.value)
    await sink(port, tls=True, tls_verify=False).send(event())  # what tls_verify: false is for


async def test_starttls_required_but_not_offered(serve: Any) -> None:
    handler, port = await serve()  # no tls_context: no STARTTLS in the EHLO answer
    with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
        await sink(port, starttls=True).send(event())
    assert handler.messages == []


# --- answers: retry or drop ------------------------------------------------------------------------


async def test_unknown_recipient_550_is_permanent(serve: Any) -> None:
    handler, port = await serve()
    handler.rcpt = lambda addr: "550 5.1.1 unknown user" if addr.startswith("gone") else "250 OK"
    with pytest.raises(PermanentDeliveryError) as info:
        await sink(port, to=["gone@example.com"]).send(event())
    assert str(info.value) == (
        f"email mail: 127.0.0.1:{port} refused 1 of 1 recipients: gone@example.com: 550 5.1.1 unknown user"
    )
    with pytest.raises(PermanentDeliveryError, match=r"refused 1 of 2 recipients: gone@example\.com: 550"):
        await sink(port, to=["oncall@example.com", "gone@example.com"]).send(event())
    ((env, _, _),) = handler.messages  # the others got it
    assert env.rcpt_tos == ["oncall@example.com"]


async def test_451_is_retried_and_a_retry_reaches_only_who_missed_it(serve: Any) -> None:
    handler, port = await serve()
    handler.data = "451 4.3.0 try again later"
    s = sink(port, to=["oncall@example.com", "shop@example.com"])
    e = event()
    with pytest.raises(DeliveryError) as info:
        await s.send(e)
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == f"email mail: 127.0.0.1:{port} answered: 451 4.3.0 try again later"
    handler.data = "250 OK"
    handler.rcpt = lambda addr: "450 4.2.1 mailbox busy" if addr.startswith("shop") else "250 OK"
    with pytest.raises(DeliveryError, match=r"refused 1 of 2 recipients: shop@example\.com: 450"):
        await s.send(e)
    handler.rcpt = lambda addr: "250 OK"
    await s.send(e)  # the dispatcher's retry
    assert [env.rcpt_tos for env, _, _ in handler.messages] == [["oncall@example.com"], ["shop@example.com"]]
    assert handler.messages[0][2]["To"] == handler.messages[1][2]["To"] == "oncall@example.com, shop@example.com"
    await s.send(event())  # another event goes to everyone again
    assert handler.messages[-1][0].rcpt_tos == ["oncall@example.com", "shop@example.com"]


async def test_server_down_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError) as info:
        await sink(port).send(event())
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == f"email mail: cannot deliver to 127.0.0.1:{port}: connection refused"


async def test_a_silent_server_is_abandoned_at_the_deadline_without_blocking_the_loop() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets; returns when the client hangs up
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with ticking() as ticks:
        start = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer from 127\.0\.0\.1:\d+ within 500ms"):
            await sink(port, timeout="500ms").send(event())
        elapsed = time.monotonic() - start
        await asyncio.wait_for(closed.wait(), 5)  # the abandoned session was closed, not left hanging
    server.close()
    await server.wait_closed()
    assert 0.45 <= elapsed < 3
    assert ticks.count >= 10  # the loop kept running while the thread waited


# --- config ----------------------------------------------------------------------------------------


config_error = functools.partial(
    factories.config_error,
    EmailConfig,
    {"type": "email", "host": "smtp.example.com", "from": "alerts@example.com", "to": ["a@example.com"]},
)


def test_config_errors_and_defaults(tmp_path: Path) -> None:
    assert config_error(tls=True, starttls=True).startswith("set one of tls (implicit TLS, port 465) or starttls")
    assert config_error(username="u", password="p") == (
        "username and password need starttls or tls: never send a password in clear text"
    )
    assert config_error(starttls=True, username="u").startswith("authentication needs both username and password")
    assert config_error(starttls=True, password="p").startswith("authentication needs both username and password")
    assert config_error(starttls=True, username="u", password="p", password_file=str(tmp_path / "x")).startswith(
        "no such file"
    )
    assert config_error(to=[]) == "List should have at least 1 item after validation, not 0"
    assert config_error(to=["not-an-address"]) == (
        "invalid recipient address 'not-an-address': expected name@example.com"
    )
    assert config_error(**{"from": "a@b.c\r\nBcc: x@y.z"}).startswith("invalid from address")
    assert config_error(host="smtp://smtp.example.com").startswith("invalid host")
    assert config_error(timeout="0s") == "Input should be greater than 0"
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        EmailConfig.model_validate({"type": "email", "host": "h", "from": "a@b.c", "to": ["a@b.c"], "cc": ["x"]})

    def port(**kw: Any) -> int:
        base = {"type": "email", "host": "h", "from": "a@example.com", "to": ["b@example.com"]}
        return EmailConfig.model_validate({**base, **kw}).effective_port

    assert (port(), port(starttls=True), port(tls=True), port(tls=True, port=2465)) == (25, 587, 465, 2465)


def test_the_example_config_validates() -> None:
    from agent.delivery.sinks import SINKS

    env = {"SMTP_PASSWORD": CANARY}
    text = EXAMPLE.read_text()
    if "email" in SINKS:  # once registered, the whole example loads as users will load it
        cfg = parse_config(text, str(EXAMPLE), env=env)
        assert any(s.config.type == "email" for s in cfg.sinks)
        return
    data = yaml.safe_load(text)
    sinks = [s for s in data["sinks"] if s["type"] == "email"]
    assert sinks
    for raw in sinks:
        raw = {k: (CANARY if v == "${SMTP_PASSWORD}" else v) for k, v in raw.items()}
        assert EmailConfig.model_validate(raw).secret == CANARY
    others = [s for s in data["sinks"] if s["type"] != "email"]
    parse_config(yaml.safe_dump({**data, "sinks": others}), str(EXAMPLE), env=env)
