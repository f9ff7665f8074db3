"""HTTP(S) check: one request per target, judged on status, headers and body.

Options (besides the common ``name``, ``type``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    url               the target (``targets:`` for several); scheme http or https, host required
    method            GET (default), HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE
    headers           request headers, name -> value (values never appear in error texts)
    body              request body (text)
    follow_redirects  follow 3xx answers (default true, at most 10 hops)
    tls_verify        verify the certificate and its hostname (default true)
    ca_file           a PEM bundle of extra CAs to trust; must exist when the config loads
    max_body          read at most this much body after decompression (default 1MiB;
                      ``512KB``, ``2MiB`` or a number of bytes); a larger body fails with ``body``
    expect.status         allowed statuses: codes (``200``) or classes (``"2xx"``); default any 2xx
    expect.body_contains  text the (decoded) body must contain
    expect.body_regex     regex the body must match (``re.search``)
    expect.headers        header name -> regex its value must match; a missing header fails

Values:

    duration       s      total time of the request including the body (set by the runner)
    status         1      HTTP status code of the final response
    body_bytes     bytes  body size after decompression
    tls.days_left  days   days until the server certificate expires (https only)

Example::

    - name: shop
      type: http
      url: https://shop.example.com/health
      timeout: 5s
      expect:
        status: ["2xx", 304]
        body_contains: Add to cart
        headers: {content-type: "^text/html"}
      alerts:
        - when: tls.days_left < 14
"""

from __future__ import annotations

import contextvars
import datetime as dt
import errno
import os
import re
import ssl
from typing import Annotated, Any, ClassVar

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from cryptography import x509
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, field_validator
from yarl import URL

from agent.units import parse_quantity
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_STATUS_CLASS = re.compile(r"[1-5]xx\Z")


def _http_url(value: str) -> str:
    try:
        url = URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid URL {value!r}: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"invalid URL {value!r}: scheme must be http or https")
    if not url.host:
        raise ValueError(f"invalid URL {value!r}: no host")
    return value


def _byte_count(value: object) -> object:
    if isinstance(value, str):
        return parse_quantity(value, "bytes")
    return value


def _status(value: int | str) -> int | str:
    if isinstance(value, str):
        text = value.strip().lower()
        if _STATUS_CLASS.match(text):
            return text
        if not text.isdigit():
            raise ValueError(f"invalid status {value!r}: use a code such as 200 or a class such as 2xx")
        value = int(text)
    if not 100 <= value <= 599:
        raise ValueError(f"invalid status {value}: HTTP status codes are 100-599")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Regex = Annotated[str, AfterValidator(_regex)]


class HttpExpect(BaseModel):
    """What a good answer looks like."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: list[Annotated[int | str, AfterValidator(_status)]] = ["2xx"]
    body_contains: str | None = None
    body_regex: Regex | None = None
    headers: dict[str, Regex] = {}

    @field_validator("status")
    @classmethod
    def _some_status(cls, value: list[int | str]) -> list[int | str]:
        if not value:
            raise ValueError("list at least one status (such as 200 or 2xx)")
        return value


class HttpConfig(CheckConfig):
    url: HttpUrl | None = None
    targets: list[HttpUrl] | None = None
    method: str = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    expect: HttpExpect = HttpExpect()
    follow_redirects: bool = True
    tls_verify: bool = True
    ca_file: str | None = None
    max_body: Annotated[int, BeforeValidator(_byte_count)] = 1048576

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"unknown method {value!r}: use one of {', '.join(METHODS)}")
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if "\r" in text or "\n" in text:  # never echo the value: it may be a secret
                raise ValueError(f"header {name!r}: the value must be one line")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not os.path.isfile(value):
            raise ValueError(f"ca_file {value!r} does not exist")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"ca_file {value!r} holds no usable PEM certificates: {exc}") from None
        return value

    @field_validator("max_body")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("max_body must be positive")
        return value


# The certificates of the TLS handshakes made by the probe running in this context. aiohttp
# releases (and, with force_close, closes) a connection as soon as the whole body has arrived,
# often before ``session.request`` returns, so the response no longer reaches its transport.
_PEER_CERTS: contextvars.ContextVar[list[bytes] | None] = contextvars.ContextVar("_PEER_CERTS", default=None)


class _RecordingSSLObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()  # raises SSLWantReadError until the handshake is done
        certs = _PEER_CERTS.get()
        der = self.getpeercert(binary_form=True)
        if certs is not None and der:
            certs.append(der)


def _hostport(url: URL) -> str:
    host = url.host or "?"
    return f"[{host}]:{url.port}" if ":" in host else f"{host}:{url.port}"


def _size(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _days_left(der: bytes) -> float | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400


def _fail(kind: str, error: str, values: dict[str, float] | None = None) -> Observation:
    return Observation(ok=False, values=values or {}, error_kind=kind, error=error)


def _classify(exc: BaseException, url: URL) -> Observation:
    """Map a client error to an error kind; texts name host:port and reasons, never header values."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = f"{exc.host}:{exc.port}"
        os_error = exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            cert_error = exc.certificate_error
            reason = getattr(cert_error, "verify_message", None) or str(cert_error)
            return _fail("tls", f"certificate verify failed: {reason} ({where})")
        if isinstance(exc, aiohttp.ClientSSLError):
            reason = getattr(os_error, "reason", None) or os_error.strerror or str(os_error)
            return _fail("tls", f"TLS handshake with {where} failed: {reason}")
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return _fail("dns", f"cannot resolve {exc.host}: {os_error.strerror or os_error}")
        if isinstance(os_error, ConnectionRefusedError) or os_error.errno == errno.ECONNREFUSED:
            return _fail("refused", f"connection refused by {where}")
        return _fail("connection", f"cannot connect to {where}: {os_error.strerror or os_error}")
    where = _hostport(url)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return _fail("http_status", f"too many redirects from {where}")
    if isinstance(exc, aiohttp.RedirectClientError):
        return _fail("http_status", f"bad redirect from {where}: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        if isinstance(cause, ContentEncodingError):
            return _fail("body", f"body from {where} could not be decoded: {cause.message}")
        if isinstance(cause, ContentLengthError) or "not enough data" in str(exc).lower():
            return _fail("reset", f"connection to {where} closed mid-body")
        return _fail("body", f"malformed body from {where}: {getattr(cause, 'message', None) or exc}")
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line or headers
        detail = type(exc.__cause__).__name__ if exc.__cause__ is not None else exc.message
        return _fail("connection", f"malformed HTTP response from {where} ({detail})")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return _fail("reset", f"{where} closed the connection mid-response")
    if isinstance(exc, ConnectionResetError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNRESET):
        return _fail("reset", f"connection reset by {where}")
    if isinstance(exc, ssl.SSLError):
        return _fail("tls", f"TLS error with {where}: {exc.reason or exc}")
    if type(exc) is aiohttp.ClientConnectionError and "Connection lost" in str(exc):
        return _fail("reset", f"connection to {where} lost mid-response")
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    return _fail("connection", f"request to {where} failed: {reason}")


class HttpCheck(BaseCheck):
    TYPE: ClassVar[str] = "http"
    TARGET_KEY: ClassVar[str | None] = "url"
    Config: ClassVar[type[CheckConfig]] = HttpConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "total time of the request including the body"),
        ValueSpec("status", "1", "HTTP status code of the final response"),
        ValueSpec("body_bytes", "bytes", "body size after decompression"),
        ValueSpec("tls.days_left", "days", "days until the server certificate expires (https only)"),
    )

    def __init__(self, config: CheckConfig) -> None:
        assert isinstance(config, HttpConfig)
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        expect = config.expect
        self._body_regex = re.compile(expect.body_regex) if expect.body_regex is not None else None
        self._header_regexes = {name: re.compile(rx) for name, rx in expect.headers.items()}
        self._ssl: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The check's TLS settings, built on first use (loading the CA store takes a while)."""
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self._cfg.ca_file)
            if not self._cfg.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.sslobject_class = _RecordingSSLObject
            self._ssl = ctx
        return self._ssl

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        cfg = self._cfg
        session: aiohttp.ClientSession = ctx.http_session()
        certs: list[bytes] = []
        token = _PEER_CERTS.set(certs)
        values: dict[str, float] = {}
        keep = cfg.expect.body_contains is not None or self._body_regex is not None
        body = bytearray()
        too_large = False
        try:
            async with session.request(
                cfg.method,
                target,
                headers=cfg.headers,
                data=cfg.body.encode() if cfg.body is not None else None,
                allow_redirects=cfg.follow_redirects,
                ssl=self.ssl_context(),
            ) as resp:
                status, url, headers, charset = resp.status, resp.url, resp.headers, resp.charset
                values["status"] = status
                size = 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > cfg.max_body:
                        too_large = True
                        resp.close()  # drop the connection: draining a flood would take forever
                        break
                    if keep:
                        body += chunk
                if not too_large:
                    values["body_bytes"] = size
        except TimeoutError:
            raise
        except (aiohttp.ClientError, OSError) as exc:
            return _classify(exc, URL(target))
        finally:
            _PEER_CERTS.reset(token)
        if certs and url.scheme == "https" and (days := _days_left(certs[-1])) is not None:
            values["tls.days_left"] = days
        return self._judge(status, url, headers, charset, bytes(body), too_large, values)

    def _judge(
        self,
        status: int,
        url: URL,
        headers: Any,
        charset: str | None,
        body: bytes,
        too_large: bool,
        values: dict[str, float],
    ) -> Observation:
        expect = self._cfg.expect
        if status not in expect.status and f"{status // 100}xx" not in expect.status:
            return _fail("http_status", f"HTTP {status} from {_hostport(url)}", values)
        if too_large:
            return _fail("body", f"body larger than max_body ({_size(self._cfg.max_body)})", values)
        for name, rx in self._header_regexes.items():
            found = headers.getall(name, [])
            if not found:
                return _fail("expect", f"header {name!r} missing", values)
            if not any(rx.search(v) for v in found):
                return _fail("expect", f"header {name!r} does not match /{rx.pattern}/", values)
        if expect.body_contains is not None or self._body_regex is not None:
            try:
                text = body.decode(charset or "utf-8", errors="replace")
            except LookupError:
                text = body.decode("utf-8", errors="replace")
            if expect.body_contains is not None and expect.body_contains not in text:
                return _fail("body", f"body does not contain {expect.body_contains!r}", values)
            if self._body_regex is not None and not self._body_regex.search(text):
                return _fail("body", f"body does not match /{self._body_regex.pattern}/", values)
        return Observation(ok=True, values=values)
