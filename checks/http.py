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
                          ``{path, matches: REGEX}``, ``{path, op: ">", value: 3}`` or
                          ``{path, exists: true}``; or a mapping ``{"items.0.sku": {exists: true}}``.
                          A path is keys and ``[N]`` indexes: ``$.data.items[0].id`` or
                          ``data.items.0.id``

Values (the phases count from the start of the request, like curl's ``-w`` times, so
dns <= connect <= tls <= first_byte <= duration; after redirects they describe the last hop):

    duration       s      total time of the request including the body
    dns            s      name resolved; absent for an IP address (nothing to resolve)
    connect        s      TCP connection established
    tls            s      TLS handshake done (https only; ``tls - connect`` is the handshake itself)
    first_byte     s      response headers received (of the final answer, after redirects)
    status         1      HTTP status code of the final response
    body_bytes     bytes  body size after decompression
    tls.days_left  days   days until the server certificate expires (https only)
    json.PATH      1      the number (true/false: 1/0) at a ``values_from_json`` path, e.g.
                          ``json.queue.depth``; absent when the path holds no number

How the phases are measured, and how ``ip_version`` resolves names: see :mod:`checks.http_phases`;
``auth`` and its secret files: :mod:`checks.http_auth`. This module holds the options and the values;
the probe itself (aiohttp) is :mod:`checks.http_probe`, imported on the first probe.

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

import functools
import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.core import validators
from agent.core.units import QUANTITY_UNITS, parse_quantity, quantity_pattern
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.http_auth import HttpAuth
from checks.http_json import JsonAssertion, assertions, value_name

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
_ANY_CASE = "|".join("".join(f"[{c}{c.lower()}]" for c in m) for m in get_args(Method))
AnyCaseMethod = Annotated[
    Method,
    BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    WithJsonSchema({"anyOf": [{"enum": list(get_args(Method))}, {"type": "string", "pattern": f"^(?:{_ANY_CASE})$"}]}),
]
"""An HTTP method in any case (``get`` is ``GET``)."""
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@functools.lru_cache(maxsize=4096)  # asked on every probe of the same few hosts
def ip_version_of(host: str | None) -> int | None:
    """4 or 6 for an IP address literal, None for a name."""
    try:
        return ipaddress.ip_address(host or "").version
    except ValueError:
        return None


def _host_of(url: str) -> str | None:
    from yarl import URL  # a config without http checks never pays for yarl

    return URL(url).host


def _http_url(value: str) -> str:
    from yarl import URL

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


def request_headers(value: dict[str, str]) -> dict[str, str]:
    """``value`` if every name is an HTTP token and every value one line (never echoed: it may be a
    secret); shared with the steps of ``type: journey``."""
    for name, text in value.items():
        if not _TOKEN.match(name):
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in text or "\n" in text:  # never echo the value: it may be a secret
            raise ValueError(f"header {name!r}: the value must be one line")
    return value


def _value_path(path: str) -> str:
    value_name(path)  # raises ValueError for paths that cannot name a value
    return path


HttpUrl = Annotated[str, AfterValidator(_http_url)]
Regex = Annotated[str, AfterValidator(validators.regex)]
ByteCount = Annotated[
    int,
    BeforeValidator(lambda v: parse_quantity(v, "bytes") if isinstance(v, str) else v),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": quantity_pattern(QUANTITY_UNITS["bytes"])}]}
    ),
]


class HttpExpect(BaseModel):
    """What a good answer looks like."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Annotated[list[Annotated[int | str, AfterValidator(_status)]], Field(min_length=1)] = ["2xx"]
    body_contains: str | None = None
    body_regex: Regex | None = None
    headers: dict[str, Regex] = {}
    # BaseModel has a json() method; a mapping {PATH: {TEST}} is read as a list
    json_: Annotated[
        list[JsonAssertion], BeforeValidator(assertions, json_schema_input_type=list[JsonAssertion] | dict[str, Any])
    ] = Field([], alias="json")


class HttpConfig(CheckConfig):
    url: HttpUrl | None = None
    targets: list[HttpUrl] | None = None
    method: AnyCaseMethod = "GET"
    headers: dict[str, str] = {}
    body: str | None = None
    auth: HttpAuth | None = None
    ip_version: Annotated[
        Literal[4, 6, "any"],
        BeforeValidator(lambda v: int(v) if v in ("4", "6") else v),
        WithJsonSchema({"enum": [4, 6, "any", "4", "6"]}),
    ] = "any"
    expect: HttpExpect = HttpExpect()
    follow_redirects: bool = True
    tls_verify: bool = True
    ca_file: Annotated[str, AfterValidator(validators.ca_file)] | None = None
    max_body: Annotated[ByteCount, Field(gt=0)] = 1048576  # after decompression
    values_from_json: list[Annotated[str, AfterValidator(_value_path)]] = []

    _headers = field_validator("headers")(request_headers)

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
            version = ip_version_of(_host_of(url)) if url else None
            if version is not None and self.ip_version != "any" and version != self.ip_version:
                raise ValueError(f"{url!r} is an IPv{version} address but ip_version is {self.ip_version}")
        return self


def _hostport(host: str | None, port: int | None) -> str:
    host = host or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
        # aiohttp is imported here, when the check is built, not when a config loads; and before
        # any probe starts, so importing it never stalls the event loop under a running probe.
        from checks.http_probe import HttpProbe

        self._impl = HttpProbe(config)

    def __repr__(self) -> str:  # the headers may hold secrets
        return f"<HttpCheck {self._cfg.name!r}>"

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        return await self._impl.probe(target, ctx)
