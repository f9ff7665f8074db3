"""``type: email``: each event as a short plain-text email over SMTP, written to read well on a phone.

Options (besides the routing keys every sink has):

    host            the SMTP server (required)
    port            default 25; 587 with ``starttls``, 465 with ``tls``
    from            the sender, ``alerts@example.com`` or ``firstwatch <alerts@example.com>``
    to              the recipients: a list of at least one address
    starttls        upgrade the connection with STARTTLS (a server that does not offer it fails)
    tls             implicit TLS from the first byte (SMTPS); not together with ``starttls``
    username        log in (SMTP AUTH) as this user; needs ``starttls`` or ``tls``
    password        the password: a secret, e.g. ``"${SMTP_PASSWORD}"``; never shown
    password_file   or a file holding it, read once when the config loads
    timeout         a total deadline for one message: connect, TLS, login and send (default 30s)
    tls_verify      verify the server's certificate (default true)
    ca_file         a PEM bundle of CAs to trust instead of the system store; must exist
    subject_prefix  put before every subject, e.g. ``"[prod] "``

The subject starts with the severity (``[CRITICAL] firing: shop-web: 3 of 3 targets: ...``, at
most 120 characters); the body says what, since when, check, target, the checks failing
because of this one (``Affected:``), rule, the runbook URL (``Runbook:``, on one line so mail
clients can link it), incident, and the commands to acknowledge it, add a note and draft the
report. The ``Message-ID`` is stable across redeliveries (from the event ``id``; an incident's
``firing`` mail gets the incident's id), and later mails of an incident name that one in
``In-Reply-To``/``References``: one thread per incident. ``Auto-Submitted: auto-generated``
keeps vacation responders quiet.

smtplib runs in a thread under a total deadline (an overdue session is aborted), so a slow server
never stalls probing. Refused connections, timeouts, TLS failures and 4xx answers are retried; a
5xx answer (550 unknown recipient, 535 authentication failed) drops the event as permanently
undeliverable. When some recipients refuse with 4xx, the retry goes to those alone.

Example::

    sinks:
      - type: email
        host: smtp.example.com
        starttls: true
        username: alerts@example.com
        password: "${SMTP_PASSWORD}"
        from: "firstwatch <alerts@example.com>"
        to: [oncall@example.com, shop-team@example.com]
        min_severity: major
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import importlib
import re
import socket
import ssl
import textwrap
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from agent.core import validators
from agent.core.events import Event
from agent.core.units import Seconds, format_duration
from agent.delivery.sinks.base import BaseSink, SinkConfig

if TYPE_CHECKING:  # the email package and smtplib are imported where a mail is built or sent, never at load
    import smtplib
    from email.message import EmailMessage

    from agent.delivery.sinks.email_smtp import SmtpClient

SUBJECT_MAX = 120
WIDTH = 60  # body lines: readable on a phone without sideways scrolling
EXCERPT = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\Z")


def _address(value: str, what: str) -> str:
    from email.utils import formataddr, parseaddr

    name, addr = parseaddr(value)
    if _CONTROL.search(value) or not _ADDRESS.match(addr):
        raise ValueError(f"invalid {what} address {value!r}: expected name@example.com")
    return formataddr((name, addr)) if name else addr


class EmailConfig(SinkConfig):
    model_config = ConfigDict(hide_input_in_errors=True)  # the password is a secret

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: SecretStr | None = Field(default=None, repr=False)
    password_file: validators.SecretFile = Field(default=None, repr=False)
    timeout: Annotated[Seconds, Field(gt=0)] = 30.0
    tls_verify: bool = True
    ca_file: str | None = None
    subject_prefix: str = ""

    @field_validator("host")
    @classmethod
    def _check_host(cls, v: str) -> str:
        if not v or "://" in v or any(c.isspace() or c in "/@" for c in v):
            raise ValueError(f"invalid host {v!r}: expected a host name or address such as smtp.example.com")
        return v.strip("[]")

    @field_validator("from_", "to")
    @classmethod
    def _check_addresses(cls, v: str | list[str]) -> str | list[str]:
        return _address(v, "from") if isinstance(v, str) else [_address(a, "recipient") for a in v]

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, v: str | None) -> str | None:
        return None if v is None else validators.ca_file(v)

    @model_validator(mode="after")
    def _check_auth(self) -> EmailConfig:
        if self.tls and self.starttls:
            raise ValueError("set one of tls (implicit TLS, port 465) or starttls (port 587), not both")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set one of password or password_file, not both")
        secret = self.password or self.password_file
        if (self.username is None) != (secret is None):
            raise ValueError("authentication needs both username and password (or password_file)")
        if self.username is not None and not (self.tls or self.starttls):
            raise ValueError("username and password need starttls or tls: never send a password in clear text")
        return self

    @property
    def secret(self) -> str | None:
        s = self.password or self.password_file
        return s.get_secret_value() if s is not None else None

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)


# --- the message ---------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


def _lasted(event: Event) -> str | None:
    return format_duration(max(0.0, event.time - event.started_at)) if event.started_at is not None else None


def subject(event: Event, prefix: str = "") -> str:
    sev, lasted, what = f"[{event.severity.upper()}]", _lasted(event), event.check or event.agent
    if event.kind == "resolved":
        text = f"{sev} resolved" + (f" after {lasted}" if lasted else "") + f": {what}"
        text += f" ({event.rule})" if event.rule else ""
    elif event.kind == "reminder":
        text = f"{sev} still firing" + (f" after {lasted}" if lasted else "") + f": {event.summary}"
    elif event.kind == "agent":
        text = f"{sev} agent {event.agent}: {event.summary}"
    else:
        text = f"{sev} {event.kind}: {event.summary}"
    text = _one_line(prefix + text)
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 1].rstrip() + "…"


@functools.cache
def _fqdn() -> str:
    return socket.getfqdn()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def body(event: Event) -> str:
    lasted = _lasted(event)
    head = {"resolved": "RESOLVED", "reminder": "still FIRING", "changed": "severity CHANGED"}.get(event.kind, "FIRING")
    lines = [f"{event.severity.upper()}: {head}" if event.kind != "agent" else f"{event.severity.upper()}: agent"]
    lines += ["", *textwrap.wrap(_one_line(event.summary), WIDTH, break_long_words=False, break_on_hyphens=False), ""]
    facts = [
        ("Since", f"{_when(event.started_at)}" if event.started_at is not None else None),
        ("Lasted" if event.kind == "resolved" else "For", lasted),
        ("Check", f"{event.check} ({event.type})" if event.check and event.type else event.check),
        ("Target", event.target),
        ("Affected", ", ".join(event.affected)),
        ("Rule", event.rule),
        ("Runbook", event.runbook),
        ("Agent", event.agent),
        ("Incident", event.incident),
    ]
    for label, value in facts:
        if not value:
            continue
        lead = f"{label + ':':<10}"
        if label == "Affected":  # a list of names: wrapped under its label, never mid-name
            lines += textwrap.wrap(
                _one_line(value),
                WIDTH,
                initial_indent=lead,
                subsequent_indent=" " * len(lead),
                break_long_words=False,
                break_on_hyphens=False,
            )
        else:
            lines.append(lead + _one_line(value))
    if event.incident:
        inc = event.incident
        lines.append("")
        if event.kind != "resolved":
            lines += ["Acknowledge (stops reminders, escalation):", f"  firstwatch ack {inc} --by NAME"]
            lines += ["Add a note to the timeline:", f'  firstwatch note {inc} "what you did"']
        lines += ["Post-mortem draft:", f"  firstwatch report {inc}"]
    lines += ["", "-- ", f"firstwatch on {_one_line(event.agent)}, {_when(event.time)}", f"event {event.id}"]
    return "\n".join(lines) + "\n"


def build_message(cfg: EmailConfig, event: Event) -> EmailMessage:
    """The mail; its Message-ID is the incident's thread root for the incident's one firing event."""
    from email.message import EmailMessage
    from email.utils import formatdate, parseaddr

    domain = parseaddr(cfg.from_)[1].rpartition("@")[2]
    root = f"<incident-{event.incident}@{domain}>" if event.incident else None
    own = root if event.kind == "firing" else f"<{event.id}@{domain}>"
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = cfg.from_, ", ".join(cfg.to), subject(event, cfg.subject_prefix)
    msg["Date"] = formatdate(usegmt=True)  # when sent: a late escalation sorts as new mail
    msg["Message-ID"] = own or f"<{event.id}@{domain}>"
    if root is not None and own != root:
        msg["In-Reply-To"] = msg["References"] = root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg["X-Firstwatch-Severity"], msg["X-Firstwatch-Kind"] = event.severity, event.kind
    if event.incident:
        msg["X-Firstwatch-Incident"] = event.incident
    msg.set_content(body(event))
    return msg


# --- the send ----------------------------------------------------------------------------------


class EmailSink(BaseSink):
    TYPE = "email"
    Config: ClassVar[type[SinkConfig]] = EmailConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, EmailConfig)
        self._cfg = config
        self._server = f"{config.host}:{config.effective_port}"
        self._remaining: OrderedDict[str, list[str]] = OrderedDict()  # event id -> recipients still to reach
        secret, user = config.secret, config.username or ""
        forms = {f"\0{user}\0{secret}", f"{user}\0{secret}", f"{secret}"}  # AUTH PLAIN and LOGIN send base64
        b64 = {base64.b64encode(f.encode()).decode() for f in forms}
        self._secrets = sorted({secret, *b64}, key=len, reverse=True) if secret else []
        # imported when the sink is built, not when a config loads
        for module in ("agent.delivery.sinks.email_smtp", "email.message"):
            importlib.import_module(module)

    def __repr__(self) -> str:  # the config holds the password
        return f"<EmailSink {self.name!r} to {self._server}>"

    @functools.cached_property
    def _ssl(self) -> ssl.SSLContext:  # made once: loading the CA store costs milliseconds
        ctx = ssl.create_default_context(cafile=self._cfg.ca_file)
        if not self._cfg.tls_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx

    def _answer(self, code: int, text: bytes | str) -> str:
        raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        return f"{code} {_one_line(self._redact(raw))}"[:EXCERPT]  # redacted before it is cut

    async def send(self, event: Event) -> None:
        to = self._remaining.get(event.id) or list(self._cfg.to)
        msg = build_message(self._cfg, event)
        from agent.delivery.sinks.email_smtp import SmtpClient

        client = SmtpClient(self._cfg.host, self._cfg.timeout, self._ssl if self._cfg.tls else None)
        job = asyncio.ensure_future(asyncio.to_thread(self._deliver, client, msg, to))
        try:
            async with asyncio.timeout(self._cfg.timeout):
                refused = await asyncio.shield(job)
        except (TimeoutError, asyncio.CancelledError) as exc:
            client.abort()  # the thread ends at once; its error is collected here
            job.add_done_callback(lambda j: j.cancelled() or j.exception())
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise self._fail(f"no answer from {self._server} within {format_duration(self._cfg.timeout)}") from None
        self._remaining.pop(event.id, None)
        if not refused:
            return
        again = [addr for addr, (code, _) in refused.items() if code < 500]
        said = "; ".join(f"{addr}: {self._answer(code, text)}" for addr, (code, text) in refused.items())
        reason = f"{self._server} refused {len(refused)} of {len(to)} recipients: {said}"
        if not again:
            raise self._fail(reason, permanent=True)
        self._remaining[event.id] = again
        while len(self._remaining) > 1000:
            self._remaining.popitem(last=False)
        raise self._fail(reason)

    def _deliver(self, client: SmtpClient, msg: EmailMessage, to: list[str]) -> dict[str, tuple[int, bytes]]:
        """In a worker thread: one SMTP session. Returns the refused recipients (the rest got it)."""
        import smtplib
        from email.utils import parseaddr

        cfg = self._cfg
        try:
            client.local_hostname = _fqdn()  # may ask DNS: here in the thread, not in the event loop
            code, text = client.connect(cfg.host, cfg.effective_port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, text)
            if cfg.starttls:
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise self._fail(f"{self._server} does not offer STARTTLS")
                client.starttls(context=self._ssl)
            if cfg.username is not None and cfg.secret is not None:
                client.login(cfg.username, cfg.secret)
            if client.aborted:
                raise TimeoutError("aborted")
            refused = client.send_message(msg, from_addr=parseaddr(cfg.from_)[1], to_addrs=to)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()  # the message was accepted
            return dict(refused)
        except smtplib.SMTPRecipientsRefused as exc:
            return dict(exc.recipients)
        except smtplib.SMTPResponseException as exc:
            what = "rejected the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "answered"
            answer = self._answer(exc.smtp_code, exc.smtp_error)
            raise self._fail(f"{self._server} {what}: {answer}", permanent=exc.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._fail(self._describe(exc)) from None
        finally:
            client.close()

    def _describe(self, exc: smtplib.SMTPException | OSError) -> str:
        """A short reason from the exception's type, never its whole text."""
        import smtplib

        server = self._server
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS with {server} failed: certificate verify failed: {exc.verify_message or 'rejected'}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS with {server} failed: {exc.reason or 'handshake failed'}"
        if isinstance(exc, TimeoutError):
            return f"no answer from {server} within {format_duration(self._cfg.timeout)}"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {self._cfg.host}"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"{server} closed the connection"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"{server} does not offer SMTP AUTH (check starttls, tls and port)"
        if isinstance(exc, smtplib.SMTPException):
            return f"SMTP with {server} failed ({type(exc).__name__})"
        return f"cannot deliver to {server}: {(exc.strerror or type(exc).__name__).lower()}"
