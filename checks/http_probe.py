"""The probe of ``type: http``: one aiohttp request per target, its body read within ``max_body``,
judged against the check's expectations, and client errors mapped to error kinds.

:mod:`checks.http` holds the options, their validation and the values; it imports this module on
the first probe, so loading and validating a config never pays for aiohttp (or for cryptography,
imported only to read the expiry of a certificate an https probe received).
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import importlib
import re
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.client_middlewares import ClientMiddlewareType
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from yarl import URL

from checks.base import Observation, ProbeContext
from checks.http import HttpConfig, HttpExpect, _hostport
from checks.http_json import JsonRules, parse_body
from checks.http_phases import PHASES, Phases, RecordingSSLObject, pin_family


def _size(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _days_left(der: bytes) -> float | None:
    from cryptography import x509  # only https answers get here: plain http never pays for it

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def _fail(kind: str, error: str, values: dict[str, float]) -> Observation:
    return Observation(ok=False, values=values, error_kind=kind, error=error)


def _classify(exc: BaseException, url: URL, values: dict[str, float]) -> Observation:
    """Map a client error to an error kind; texts name host:port and reasons, never header values."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        where, os_error = _hostport(exc.host, exc.port), exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            reason = getattr(exc.certificate_error, "verify_message", None) or str(exc.certificate_error)
            return _fail("tls", f"certificate verify failed: {reason} ({where})", values)
        if isinstance(exc, aiohttp.ClientSSLError):
            reason = getattr(os_error, "reason", None) or os_error.strerror or str(os_error)
            return _fail("tls", f"TLS handshake with {where} failed: {reason}", values)
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return _fail("dns", f"cannot resolve {exc.host}: {os_error.strerror or os_error}", values)
        if isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED:
            return _fail("refused", f"connection refused by {where}", values)
        return _fail("connection", f"cannot connect to {where}: {os_error.strerror or os_error}", values)
    where = _hostport(url.host, url.port)
    if isinstance(exc, aiohttp.TooManyRedirects | aiohttp.RedirectClientError):
        what = "too many redirects" if isinstance(exc, aiohttp.TooManyRedirects) else "bad redirect"
        return _fail("http_status", f"{what} from {where}", values)
    cause = exc.__cause__
    if isinstance(exc, aiohttp.ClientPayloadError) or isinstance(cause, ContentEncodingError):
        if isinstance(cause, ContentLengthError) or "not enough data" in str(exc).lower():
            return _fail("reset", f"connection to {where} closed mid-body", values)
        reason = getattr(cause, "message", None) or str(exc)
        return _fail("body", f"body from {where} could not be decoded: {reason}", values)
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line or headers
        detail = type(cause).__name__ if cause is not None else exc.message
        return _fail("connection", f"malformed HTTP response from {where} ({detail})", values)
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNRESET
    ):
        return _fail("reset", f"{where} closed or reset the connection mid-response", values)
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return _fail("connection", f"request to {where} failed: {reason}", values)


@functools.lru_cache(maxsize=64)
def _ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.sslobject_class = RecordingSSLObject
    return ctx


class Expectations:
    """An ``expect`` block compiled once, with the body limit: reads an answer's body within
    ``max_body`` and judges the answer. :class:`HttpProbe` uses one per check; each step of a
    ``type: journey`` check has its own (``keep_body`` when the step saves from the body)."""

    def __init__(
        self, expect: HttpExpect, max_body: int, values_from_json: Sequence[str] = (), *, keep_body: bool = False
    ) -> None:
        self.expect = expect
        self.max_body = max_body
        self._body_regex = re.compile(expect.body_regex) if expect.body_regex is not None else None
        self._header_regexes = {name: re.compile(rx) for name, rx in expect.headers.items()}
        self._json = JsonRules(expect.json_, values_from_json)
        self._keep = keep_body or expect.body_contains is not None or self._body_regex is not None or bool(self._json)

    async def read(self, resp: aiohttp.ClientResponse, values: dict[str, float]) -> bytes | None:
        """The body (kept only if an expectation needs it), or None past ``max_body``. aiohttp
        inflates gzip/deflate in bounded steps, so a bomb costs no more memory than a flood."""
        body, size = bytearray(), 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                resp.close()  # drop the connection: draining a flood would never end
                return None
            if self._keep:
                body += chunk
        values["body_bytes"] = size
        return bytes(body)

    def judge(self, resp: aiohttp.ClientResponse, body: bytes | None, values: dict[str, float]) -> Observation:
        """The answer against the expectations: the first one broken, explained, or ``ok``."""
        expect, status = self.expect, resp.status
        doc: Any = None
        not_json: str | None = None
        if self._json and body is not None:  # values first: a failing answer still feeds the graphs
            try:
                doc = parse_body(body)
            except ValueError as exc:
                not_json = str(exc)
            else:
                values.update(self._json.values(doc))
        if status not in expect.status and f"{status // 100}xx" not in expect.status:
            return _fail("http_status", f"HTTP {status} from {_hostport(resp.url.host, resp.url.port)}", values)
        if body is None:
            return _fail("body", f"body larger than max_body ({_size(self.max_body)})", values)
        for name, rx in self._header_regexes.items():
            found = resp.headers.getall(name, [])
            if not found:
                return _fail("expect", f"header {name!r} missing", values)
            if not any(rx.search(v) for v in found):
                return _fail("expect", f"header {name!r} does not match /{rx.pattern}/", values)
        if expect.body_contains is not None or self._body_regex is not None:
            text = body_text(resp, body)
            if expect.body_contains is not None and expect.body_contains not in text:
                return _fail("body", f"body does not contain {expect.body_contains!r}", values)
            if self._body_regex is not None and not self._body_regex.search(text):
                return _fail("body", f"body does not match /{self._body_regex.pattern}/", values)
        if self._json and (problem := not_json or self._json.failure(doc)) is not None:
            return _fail("body", problem, values)
        return Observation(ok=True, values=values)


def body_text(resp: aiohttp.ClientResponse, body: bytes) -> str:
    """``body`` decoded per the answer's charset, else (or for an unknown charset) as UTF-8."""
    try:
        return body.decode(resp.charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


class HttpProbe:
    """What one http check needs to probe, compiled once from its config: the expectations, the
    request headers (with the Authorization header) and the TLS settings."""

    def __init__(self, config: HttpConfig) -> None:
        self._cfg = config
        self._expect = Expectations(config.expect, config.max_body, config.values_from_json)
        self._headers = dict(config.headers)
        self._urls: dict[str, URL] = {}  # bounded: a check's targets are fixed by its config
        if config.auth is not None:
            self._headers["Authorization"] = config.auth.header()
        self._middlewares: Sequence[ClientMiddlewareType] | None = (
            None if config.ip_version == "any" else (pin_family(config.ip_version),)
        )
        if any(url.lower().startswith("https:") for url in (config.url, *(config.targets or ())) if url):
            # Loaded now, before any probe starts, rather than under a running probe (which would
            # stall the event loop for every probe in flight); an http URL that redirects to https
            # loads it on its first certificate.
            importlib.import_module("cryptography.x509")

    def __repr__(self) -> str:  # the headers may hold secrets
        return f"<HttpProbe {self._cfg.name!r}>"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The check's TLS settings: one context per (ca_file, tls_verify), shared by every check
        that uses them (each loads the CA store: about 1 MB and a few ms)."""
        return _ssl_context(self._cfg.ca_file, self._cfg.tls_verify)

    def _url(self, target: str) -> URL:
        """``target`` parsed once (a check probes the same few targets over and over)."""
        url = self._urls.get(target)
        if url is None:
            url = self._urls[target] = URL(target)
        return url

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        cfg = self._cfg
        session: aiohttp.ClientSession = ctx.http_session()
        url = self._url(target)
        phases = Phases(url.raw_host)
        token = PHASES.set(phases)
        values: dict[str, float] = {}
        try:
            async with session.request(
                cfg.method,
                url,
                headers=self._headers,
                data=cfg.body.encode() if cfg.body is not None else None,
                allow_redirects=cfg.follow_redirects,
                ssl=self.ssl_context,
                middlewares=self._middlewares,
            ) as resp:
                values["first_byte"] = time.perf_counter() - phases.start
                https = resp.url.scheme == "https"
                values.update(phases.values(https), status=resp.status)
                if phases.certs and https and (days := _days_left(phases.certs[-1])) is not None:
                    values["tls.days_left"] = days
                body = await self._expect.read(resp, values)
                return self._expect.judge(resp, body, values)
        except TimeoutError:
            raise  # the runner maps its deadline (aiohttp's own timeouts are off)
        except (aiohttp.ClientError, OSError) as exc:
            values.update(phases.values(url.scheme == "https"))
            return _classify(exc, url, values)
        finally:
            PHASES.reset(token)
