"""``type: webhook``: each event POSTed to ``url``: as JSON, a CloudEvent, a Slack message or a PagerDuty event.

Options (besides the routing keys every sink has):

    url         where to POST (http:// or https://). Error messages name only its host: the
                path or query string may hold a token.
    headers     added to every request, e.g. ``{Authorization: "Bearer ${PAGER_TOKEN}"}``. The
                values are treated as secrets: never logged, never in an error message.
    format      ``json`` (default): the event itself is the body (``application/json``);
                ``cloudevents``: a CloudEvents 1.0 structured-mode envelope
                (``application/cloudevents+json``) with the event as ``data``;
                ``slack``: a Slack incoming-webhook message (severity, summary, check, target,
                rule, since, and for resolutions how long it lasted);
                ``pagerduty``: a PagerDuty Events API v2 event (trigger, then resolve with the
                same ``dedup_key``: the alert's fingerprint). See agent/delivery/sinks/webhook_formats.py.
    link        the status page URL, linked from slack messages and pagerduty alerts
    routing_key (pagerduty, required there) the integration key of an Events API v2
                integration: a secret, e.g. ``"${PAGERDUTY_ROUTING_KEY}"``; never shown
    timeout     a total deadline for connecting, sending and reading the answer (default 10s)
    tls_verify  verify the server's certificate (default true)
    ca_file     a PEM bundle of CAs to trust instead of the system store; must exist

Every request carries the event ``id`` as ``Idempotency-Key``, the same on each redelivery.
A 2xx answer is delivered. 408, 429 and 5xx, a refused or reset connection, a DNS or TLS
failure and the timeout are retried by the dispatcher; any other 4xx, and a 3xx (redirects are
not followed: set ``url`` to the new location), drop the event as permanently undeliverable.
At most 1 KiB of an answer is read; the first 200 characters of an error answer are shown.

Example::

    sinks:
      - type: webhook
        name: pager
        url: https://pager.example.com/hook
        headers: {Authorization: "Bearer ${PAGER_TOKEN}"}
        format: cloudevents
        min_severity: critical
      - type: webhook
        name: slack
        url: "${SLACK_WEBHOOK_URL}"
        format: slack
        link: https://status.example.com/
        min_severity: major
      - type: webhook
        name: pagerduty
        url: https://events.pagerduty.com/v2/enqueue
        format: pagerduty
        routing_key: "${PAGERDUTY_ROUTING_KEY}"
        min_severity: critical
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import ssl
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from agent import __version__
from agent.core import validators
from agent.core.events import Event
from agent.core.units import Seconds, format_duration
from agent.delivery.sinks.base import BaseSink, SinkConfig, positive_timeout
from agent.delivery.sinks.webhook_formats import FORMATS, OPTIONS_OF, FormatOptions

if TYPE_CHECKING:  # aiohttp and yarl are imported where a sink sends or parses its url, never at load
    import aiohttp

BODY_CAP = 1024  # bytes of an answer ever read
EXCERPT = 200  # characters of an error answer shown
_RETRYABLE = frozenset({408, 429})
_RESERVED = frozenset({"content-type", "content-length", "transfer-encoding", "idempotency-key"})
_SCHEMES = frozenset({"basic", "bearer", "digest", "token"})  # auth scheme names are no secret
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_CONTROL = re.compile(r"(?:\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f-\x9f])+")  # incl. terminal colour codes


class WebhookConfig(SinkConfig):
    model_config = ConfigDict(hide_input_in_errors=True)  # the url and headers may hold secrets

    url: str = Field(repr=False)  # may hold a token
    headers: dict[str, str] = Field(default={}, repr=False)
    format: str = "json"
    link: str | None = None  # the status page (slack, pagerduty)
    routing_key: SecretStr | None = Field(default=None, repr=False)  # pagerduty's integration key
    timeout: Seconds = 10.0
    tls_verify: bool = True
    ca_file: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        from yarl import URL

        try:
            url = URL(v)
        except (ValueError, TypeError):
            raise ValueError("invalid url: expected http://HOST/... or https://HOST/...") from None
        if url.scheme not in ("http", "https"):
            shown = f"{url.scheme!r}" if url.scheme else "none"
            raise ValueError(f"invalid url: expected http:// or https://, got scheme {shown}")
        if not url.host:
            raise ValueError("invalid url: no host")
        return v

    @field_validator("headers", mode="before")
    @classmethod
    def _check_headers(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic says "expected a mapping"
        for key, value in v.items():  # never echo a value: it is a secret
            if not isinstance(key, str) or not _TOKEN.match(key):
                raise ValueError(f"invalid header name {key!r}")
            if key.lower() in _RESERVED:
                raise ValueError(f"header {key!r} is set by the sink itself")
            if not isinstance(value, str):
                raise ValueError(f"header {key!r}: the value must be a string (quote it)")
            if _CONTROL.search(value.replace("\t", " ")):
                raise ValueError(f"header {key!r}: the value must not contain line breaks or control characters")
        return v

    @field_validator("format")
    @classmethod
    def _check_format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unknown format {v!r} (expected one of: {', '.join(FORMATS)})")
        return v

    @field_validator("link")
    @classmethod
    def _check_link(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not re.match(r"https?://[^\s/|<>]+[^\s|<>]*\Z", v):
            raise ValueError("link must be an http:// or https:// URL without spaces, '|', '<' or '>'")
        return v

    @field_validator("routing_key")
    @classmethod
    def _check_routing_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.fullmatch(r"[!-~]{32}", v.get_secret_value()):  # never echo it
            raise ValueError("routing_key must be the 32-character integration key of an Events API v2 integration")
        return v

    @model_validator(mode="after")
    def _format_options(self) -> WebhookConfig:
        if self.format == "pagerduty" and self.routing_key is None:
            raise ValueError('format pagerduty needs routing_key (e.g. routing_key: "${PAGERDUTY_ROUTING_KEY}")')
        used = OPTIONS_OF.get(self.format, frozenset())
        for option in ("link", "routing_key"):
            if getattr(self, option) is not None and option not in used:
                which = " or ".join(f for f, opts in OPTIONS_OF.items() if option in opts)
                raise ValueError(f"{option} is used only with format {which}, not {self.format}")
        return self

    _check_timeout = field_validator("timeout")(positive_timeout)

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, v: str | None) -> str | None:
        return None if v is None else validators.ca_file(v)


def _secrets(cfg: WebhookConfig) -> list[str]:
    """Strings never to show, even when a server echoes them: header values and their words (but
    ``Bearer``), the URL's password, query values and long path segments (Slack-style tokens)."""
    from yarl import URL

    url = URL(cfg.url)
    found = {*cfg.headers.values(), url.password or "", *url.query.values()}
    if cfg.routing_key is not None:
        found.add(cfg.routing_key.get_secret_value())
    found |= {word for value in cfg.headers.values() for word in value.split() if word.lower() not in _SCHEMES}
    found |= {part for part in url.parts if len(part) >= 16}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


class WebhookSink(BaseSink):
    TYPE = "webhook"
    Config: ClassVar[type[SinkConfig]] = WebhookConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        from yarl import URL

        super().__init__(config, name)
        assert isinstance(config, WebhookConfig)
        self._cfg = config
        url = URL(config.url)
        self._host = f"{url.host}:{url.port}" if url.explicit_port is not None else str(url.host)
        self._render = FORMATS[config.format]
        key = config.routing_key.get_secret_value() if config.routing_key is not None else None
        self._options = FormatOptions(link=config.link, routing_key=key)
        self._secrets = _secrets(config)
        importlib.import_module("aiohttp")  # when the sink is built, not when a config loads nor under a send
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # the config holds secrets
        return f"<WebhookSink {self.name!r} to {self._host}>"

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._cfg.ca_file is None and self._cfg.tls_verify:
            return True  # aiohttp's default context
        ctx = ssl.create_default_context(cafile=self._cfg.ca_file)
        if not self._cfg.tls_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
                timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout in send() is the deadline
                headers={"User-Agent": f"firstwatch/{__version__}"},
            )
        return self._session

    async def send(self, event: Event) -> None:
        import aiohttp

        content_type, body = self._render(event, self._options)
        headers = {**self._cfg.headers, "Content-Type": content_type, "Idempotency-Key": event.id}
        session = self._get_session()
        try:
            async with asyncio.timeout(self._cfg.timeout):
                async with session.post(self._cfg.url, data=body, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    answer = await _read_capped(resp.content, BODY_CAP)
                    if not resp.content.at_eof():
                        resp.close()  # never drain the rest: close the connection
        except TimeoutError:
            raise self._fail(f"no answer from {self._host} within {format_duration(self._cfg.timeout)}") from None
        except aiohttp.ClientError as exc:
            raise self._fail(self._describe(exc)) from None
        except OSError as exc:
            raise self._fail(f"request to {self._host} failed: {_os_reason(exc, type(exc).__name__)}") from None
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise self._fail(
                f"HTTP {status} from {self._host}: redirects are not followed (set url to the new location)",
                permanent=True,
            )
        text = answer.decode("utf-8", errors="replace")
        if len(answer) >= BODY_CAP and self._secrets:  # a secret cut at the cap would escape redaction
            text = text[: -len(self._secrets[0])]
        excerpt = self._redact(_CONTROL.sub(" ", text)).strip()[:EXCERPT]  # redacted before it is cut
        reason = f"HTTP {status} from {self._host}" + (f": {excerpt}" if excerpt else "")
        raise self._fail(reason, permanent=not (status in _RETRYABLE or status >= 500))

    def _describe(self, exc: aiohttp.ClientError) -> str:
        """A short reason, built from the exception's type, never its text (which may hold the URL)."""
        import aiohttp

        host = self._host
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"cannot resolve {host}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert = exc.certificate_error
            detail = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or "certificate rejected"
            return f"TLS with {host} failed: {detail}"
        if isinstance(exc, aiohttp.ClientSSLError):
            reason = getattr(exc.os_error, "reason", None) or "handshake failed"
            return f"TLS with {host} failed: {reason}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect to {host}: {_os_reason(exc.os_error, 'connection failed')}"
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return f"{host} closed the connection before answering"
        if isinstance(exc, aiohttp.ClientOSError):
            return f"connection to {host} failed: {_os_reason(exc, 'connection error')}"
        return f"request to {host} failed ({type(exc).__name__})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _os_reason(exc: OSError, default: str) -> str:
    """``connection refused``: the errno's text, never the exception's (which may name the address)."""
    return os.strerror(exc.errno).lower() if exc.errno else default


async def _read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes:
    """At most ``cap`` bytes of a body; the rest is never read (the connection is closed instead)."""
    data = bytearray()
    while len(data) < cap:
        chunk = await stream.read(cap - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
