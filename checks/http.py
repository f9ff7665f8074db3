"""``type: http``: one HTTP(S) request per target, judged on its status, headers and body.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    url               the http:// or https:// URL to probe; ``targets:`` is the list form
    method            GET (default), HEAD, POST, PUT, PATCH, DELETE, OPTIONS or TRACE
    headers           request headers (their values never appear in error texts)
    body              request body (text, sent as UTF-8)
    auth              ``{basic: {username, password}}`` or ``{bearer: TOKEN}``; ``password_file`` and
                      ``{bearer: {token_file: PATH}}`` read the secret from a file at load (trailing
                      newline dropped). Sent as the Authorization header (dropped on redirects to
                      another origin); never shown in errors or logs
    ip_version        4, 6 or any (default): connect over that IP family only; the Host header, SNI
                      and the certificate check still use the name
    follow_redirects  follow 3xx answers, at most 10 (default true)
    tls_verify        verify the certificate chain and name (default true)
    ca_file           a PEM bundle of CAs to trust instead of the system store; must exist
    max_body          fail past this many body bytes after decompression (default 1MiB)
    values_from_json  JSON paths (``$.queue.depth``) whose numbers become values ``json.PATH``
    expect.status         allowed codes (``200``) or classes (``"2xx"``); default: any 2xx
    expect.body_contains  text the body (decoded per its charset, else UTF-8) must contain
    expect.body_regex     a regex searched in the body; checked at load
    expect.headers        header name -> regex its value must match; a missing header fails
    expect.json           assertions on the JSON body: ``{path: $.status, equals: ok}``,
                          ``{path, matches: REGEX}`` or ``{path, op: ">", value: 3}``. A path is
                          keys and ``[N]`` indexes: ``$.data.items[0].id`` or ``data.items[0].id``

Values (the phases count from the start of the request, like curl's ``-w`` times, so
dns <= connect <= tls <= first_byte <= duration; after redirects they describe the last hop):

    duration       s      total time of the request including the body
    dns            s      name resolved (at once for an IP address)
    connect        s      TCP connection established
    tls            s      TLS handshake done (https only; ``tls - connect`` is the handshake itself)
    first_byte     s      response headers received (of the final answer, after redirects)
    status         1      HTTP status code of the final response
    body_bytes     bytes  body size after decompression
    tls.days_left  days   days until the server certificate expires (https only)
    json.PATH      1      the number (true/false: 1/0) at a ``values_from_json`` path, e.g.
                          ``json.queue.depth``; absent when the path holds no number

How the phases are measured, and how ``ip_version`` resolves names: see :mod:`checks.http_phases`;
``auth`` and its secret files: :mod:`checks.http_auth`.

Failures: ``http_status`` (``HTTP 503 from 10.0.0.2:443``, redirect loops), ``body`` (too large, text
or regex missing, undecodable, ``body is not JSON: ...``, ``json $.status is 'degraded', expected
'ok'``), ``expect`` (headers), ``tls``, ``dns``, ``refused``, ``reset``, ``connection``.

Example::

    - name: shop
      type: http
      url: https://shop.example.com/health
      expect:
        status: ["2xx", 304]
        body_contains: Add to cart
        headers: {Content-Type: "^text/html"}
      alerts:
        - {when: down, for: 1m, severity: critical}
        - {when: tls.days_left < 14, severity: minor}
        - {when: first_byte > 2s, for: 5m, severity: medium}
    - name: orders-api
      type: http
      url: https://api.example.com/v1/health
      ip_version: 6
      values_from_json: [$.queue.depth]
      expect:
        json:
          - {path: $.status, equals: ok}
          - {path: $.db.latency_ms, op: "<", value: 500}
      alerts:
        - {when: down, severity: critical}
        - {when: json.queue.depth > 100, for: 5m, severity: major}
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import re
import ssl
import time
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

import aiohttp
from aiohttp.client_middlewares import ClientMiddlewareType
from aiohttp.http_exceptions import ContentEncodingError, ContentLengthError
from cryptography import x509
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from agent.units import parse_quantity
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.http_auth import HttpAuth
from checks.http_json import JsonAssertion, JsonRules, parse_body, value_name
from checks.http_phases import PHASES, Phases, RecordingSSLObject, ip_version_of, pin_family
from checks.http_phases import TRACE as TRACE  # re-exported: agent/probe_runner.py imports it from here

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


def _http_url(value: str) -> str:
    url = URL(value)  # its ValueError (say, a bad IPv6 literal) is a config error too
    if url.scheme not in ("http", "https"):
        raise ValueError(f"invalid URL {value!r}: scheme must be http or https")
    if not url.host:
        raise ValueError(f"invalid URL {value!r}: no host")
    return value


def _status(value: int | str) -> int | str:
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"[1-5]xx", text):
            return text
        if not text.isdigit():
            raise ValueError(f"invalid status {value!r}: use a code such as 200 or a class such as 2xx")
        value = int(text)
    if not 100 <= value <= 599:
        raise ValueError(f"invalid status {value}: HTTP status codes are 100-599")
    return value


def _ca_file(value: str) -> str:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
    except FileNotFoundError:
        raise ValueError(f"no such file: {value!r}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"{value!r} holds no usable PEM certificates: {exc}") from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value


def _value_path(path: str) -> str:
    value_name(path)  # raises ValueError for paths that cannot name a value
    return path


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Regex = Annotated[str, AfterValidator(_regex)]
ByteCount = Annotated[int, BeforeValidator(lambda v: parse_quantity(v, "bytes") if isinstance(v, str) else v)]


class HttpExpect(BaseModel):
    """What a good answer looks like."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Annotated[list[Annotated[int | str, AfterValidator(_status)]], Field(min_length=1)] = ["2xx"]
    body_contains: str | None = None
    body_regex: Regex | None = None
    headers: dict[str, Regex] = {}
    json_: list[JsonAssertion] = Field([], alias="json")  # BaseModel has a json() method


class HttpConfig(CheckConfig):
    url: HttpUrl | None = None
    targets: list[HttpUrl] | None = None
    method: Annotated[Method, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    auth: HttpAuth | None = None
    ip_version: Annotated[Literal[4, 6, "any"], BeforeValidator(lambda v: int(v) if v in ("4", "6") else v)] = "any"
    expect: HttpExpect = HttpExpect()
    follow_redirects: bool = True
    tls_verify: bool = True
    ca_file: Annotated[str, AfterValidator(_ca_file)] | None = None
    max_body: Annotated[ByteCount, Field(gt=0)] = 1048576  # after decompression
    values_from_json: list[Annotated[str, AfterValidator(_value_path)]] = []

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if "\r" in text or "\n" in text:  # never echo the value: it may be a secret
                raise ValueError(f"header {name!r}: the value must be one line")
        return value

    @field_validator("values_from_json")
    @classmethod
    def _distinct_values(cls, paths: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for path in paths:
            if (first := seen.setdefault(value_name(path), path)) != path:
                raise ValueError(f"{path!r} names the same value as {first!r} ({value_name(path)})")
        return paths

    @model_validator(mode="after")
    def _consistent(self) -> HttpConfig:
        if self.auth is not None and any(name.lower() == "authorization" for name in self.headers):
            raise ValueError("set auth or an Authorization header, not both")
        for url in (self.url, *(self.targets or ())):
            version = ip_version_of(URL(url).host) if url else None
            if version is not None and self.ip_version != "any" and version != self.ip_version:
                raise ValueError(f"{url!r} is an IPv{version} address but ip_version is {self.ip_version}")
        return self


def _hostport(host: str | None, port: int | None) -> str:
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


class HttpCheck(BaseCheck):
    TYPE: ClassVar[str] = "http"
    TARGET_KEY: ClassVar[str | None] = "url"
    Config: ClassVar[type[CheckConfig]] = HttpConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "total time of the request including the body"),
        ValueSpec("dns", "s", "name resolved, from the start of the request"),
        ValueSpec("connect", "s", "TCP connection established, from the start of the request"),
        ValueSpec("tls", "s", "TLS handshake done, from the start of the request (https only)"),
        ValueSpec("first_byte", "s", "response headers received, from the start of the request"),
        ValueSpec("status", "1", "HTTP status code of the final response"),
        ValueSpec("body_bytes", "bytes", "body size after decompression"),
        ValueSpec("tls.days_left", "days", "days until the server certificate expires (https only)"),
        ValueSpec("json.PATH", "1", "the number at a values_from_json PATH of the JSON body"),
    )

    def __init__(self, config: CheckConfig) -> None:
        assert isinstance(config, HttpConfig)
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        expect = config.expect
        self._body_regex = re.compile(expect.body_regex) if expect.body_regex is not None else None
        self._header_regexes = {name: re.compile(rx) for name, rx in expect.headers.items()}
        self._json = JsonRules(expect.json_, config.values_from_json)
        self._headers = dict(config.headers)
        if config.auth is not None:
            self._headers["Authorization"] = config.auth.header()
        self._middlewares: Sequence[ClientMiddlewareType] | None = (
            None if config.ip_version == "any" else (pin_family(config.ip_version),)
        )

    def __repr__(self) -> str:  # the headers may hold secrets
        return f"<HttpCheck {self._cfg.name!r}>"

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """The check's TLS settings, built on first use (loading the CA store takes a while)."""
        ctx = ssl.create_default_context(cafile=self._cfg.ca_file)
        if not self._cfg.tls_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.sslobject_class = RecordingSSLObject
        return ctx

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        cfg = self._cfg
        session: aiohttp.ClientSession = ctx.http_session()
        phases = Phases()
        token = PHASES.set(phases)
        values: dict[str, float] = {}
        try:
            async with session.request(
                cfg.method,
                target,
                headers=self._headers,
                data=cfg.body.encode() if cfg.body is not None else None,
                allow_redirects=cfg.follow_redirects,
                ssl=self.ssl_context,
                trace_request_ctx=phases,
                middlewares=self._middlewares,
            ) as resp:
                values["first_byte"] = time.perf_counter() - phases.start
                https = resp.url.scheme == "https"
                values.update(phases.values(https), status=resp.status)
                if phases.certs and https and (days := _days_left(phases.certs[-1])) is not None:
                    values["tls.days_left"] = days
                body = await self._read(resp, values)
                return self._judge(resp, body, values)
        except TimeoutError:
            raise  # the runner maps its deadline (aiohttp's own timeouts are off)
        except (aiohttp.ClientError, OSError) as exc:
            values.update(phases.values(URL(target).scheme == "https"))
            return _classify(exc, URL(target), values)
        finally:
            PHASES.reset(token)

    async def _read(self, resp: aiohttp.ClientResponse, values: dict[str, float]) -> bytes | None:
        """The body (kept only if an expectation needs it), or None past ``max_body``. aiohttp
        inflates gzip/deflate in bounded steps, so a bomb costs no more memory than a flood."""
        keep = self._cfg.expect.body_contains is not None or self._body_regex is not None or bool(self._json)
        body, size = bytearray(), 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self._cfg.max_body:
                resp.close()  # drop the connection: draining a flood would never end
                return None
            if keep:
                body += chunk
        values["body_bytes"] = size
        return bytes(body)

    def _judge(self, resp: aiohttp.ClientResponse, body: bytes | None, values: dict[str, float]) -> Observation:
        expect, status = self._cfg.expect, resp.status
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
            return _fail("body", f"body larger than max_body ({_size(self._cfg.max_body)})", values)
        for name, rx in self._header_regexes.items():
            found = resp.headers.getall(name, [])
            if not found:
                return _fail("expect", f"header {name!r} missing", values)
            if not any(rx.search(v) for v in found):
                return _fail("expect", f"header {name!r} does not match /{rx.pattern}/", values)
        if expect.body_contains is not None or self._body_regex is not None:
            try:
                text = body.decode(resp.charset or "utf-8", errors="replace")
            except LookupError:  # an unknown charset name
                text = body.decode("utf-8", errors="replace")
            if expect.body_contains is not None and expect.body_contains not in text:
                return _fail("body", f"body does not contain {expect.body_contains!r}", values)
            if self._body_regex is not None and not self._body_regex.search(text):
                return _fail("body", f"body does not match /{self._body_regex.pattern}/", values)
        if self._json and (problem := not_json or self._json.failure(doc)) is not None:
            return _fail("body", problem, values)
        return Observation(ok=True, values=values)
