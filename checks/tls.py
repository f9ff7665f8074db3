"""``type: tls``: a TLS handshake to HOST:PORT: is the certificate valid, and how long until it expires?

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    target       HOST:PORT to probe (IPv6 in brackets: ``[::1]:443``); ``targets:`` is the list form
    server_name  the name sent (SNI) and verified; default: the HOST of the target
    ca_file      a PEM bundle of CAs to trust instead of the system store; must exist
    cert_file    a PEM client certificate (chain) for servers that require one; needs key_file
    key_file     the unencrypted PEM private key of cert_file; needs cert_file
    tls_verify   verify the certificate chain and name (default true); false still reports days_left
    min_version  the lowest TLS version offered: "1.2" or "1.3" (default: Python's, TLS 1.2)

Values:

    days_left  days  until the earliest notAfter in the chain the server presented (negative once
                     expired); reported even when verification fails
    handshake  s     the TLS handshake alone (when it succeeded)

``days_left`` covers the chain as sent (leaf and intermediates) where Python exposes it (public
``get_unverified_chain`` from 3.13, private in 3.10-3.12), else the leaf alone; after a failed
verification a second, unverified handshake fetches it. A TLS 1.3 server judges a client
certificate after our side of the handshake, so ``ok`` waits for its verdict (a session ticket, data
or an alert; else 0.5 s or twice the connect time), counted in ``duration``, not ``handshake``.

Failures: ``tls``, the error starting with ``certificate expired``, ``certificate not yet valid``,
``self-signed certificate``, ``hostname mismatch``, ``unknown CA``, ``certificate rejected`` (other
verification errors) or ``handshake failed`` (a protocol error or an alert, e.g. for a missing or
refused client certificate); ``refused``, ``dns``, ``reset`` (closed or reset during the handshake),
``connection`` (other network errors), ``timeout`` (set by the runner).

Example::

    - name: shop-cert
      type: tls
      targets: ["shop.example.com:443", "[2001:db8::443]:443"]
      server_name: shop.example.com
      interval: 1h
      alerts:
        - {when: down, severity: major}
        - {when: days_left < 14, severity: minor}
    - name: partner-api
      type: tls
      target: api.partner.example:8443
      min_version: "1.3"
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import os
import re
import socket
import ssl
import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import WithJsonSchema, field_validator, model_validator

from agent.core import validators
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.tcp import parse_target

_SETTLE_S = 0.5  # least wait for a TLS 1.3 server's verdict on our certificate
_NAME = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]*\Z")
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY_ERRORS = {10: "certificate expired", 9: "certificate not yet valid", 62: "hostname mismatch"}  # X509_V_ERR_*
_VERIFY_ERRORS |= {18: "self-signed certificate", 19: "self-signed certificate", 64: "hostname mismatch"}
_VERIFY_ERRORS |= dict.fromkeys((2, 20, 21), "unknown CA")  # no issuer (locally), cannot verify the leaf
_CERT_WANTED = " (the server wants a client certificate: set cert_file and key_file)"
_CERT_REFUSED = " (the server refused our client certificate)"
_CLIENT_CERT_ALERTS = re.compile(r"ALERT_(CERTIFICATE_\w+|BAD_CERTIFICATE|UNKNOWN_CA|UNSUPPORTED_CERTIFICATE)")


def _no_password() -> str:
    raise ValueError("key_file is encrypted: firstwatch needs an unencrypted key readable by its user")


_VERSION_INPUT = WithJsonSchema({"enum": ["1.2", "1.3", 1.2, 1.3, None]})  # YAML reads `1.3` as a number


class TlsConfig(CheckConfig):
    target: str | None = None
    server_name: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_verify: bool = True
    min_version: Annotated[Literal["1.2", "1.3"] | None, _VERSION_INPUT] = None

    @field_validator("target", "targets")
    @classmethod
    def _check_targets(cls, v: str | list[str] | None) -> str | list[str] | None:
        for t in [v] if isinstance(v, str) else v or ():
            parse_target(t)
        return v

    @field_validator("server_name")
    @classmethod
    def _check_server_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"invalid server_name {v!r}: expected a host name or address")
        return v

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, float) else v  # YAML reads `min_version: 1.3` as a number

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, v: str | None) -> str | None:
        return None if v is None else validators.ca_file(v)

    @model_validator(mode="after")
    def _check_client_cert(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        for key in ("cert_file", "key_file"):
            if (path := getattr(self, key)) is not None and not os.path.isfile(path):
                raise ValueError(f"{key} {path!r} not found")
        try:
            if self.cert_file is not None:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(self.cert_file, self.key_file, _no_password)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"cert_file and key_file are not a usable certificate and key: {exc}") from None
        return self


class _Handshake:
    """One connection and TLS handshake, driven over asyncio streams through memory BIOs so that it
    is timed alone and the TLS 1.3 messages after it (tickets, alerts) can be read without data.
    ``run`` leaves what the server presented in ``chain``, or where and why it failed."""

    def __init__(self, ctx: ssl.SSLContext, name: str) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_hostname=name)
        self.chain: list[bytes] = []
        self.seconds = 0.0
        self.error: OSError | None = None
        self.phase = "connect"

    async def run(self, host: str, port: int, settle_until: float | None) -> _Handshake:
        loop, writer = asyncio.get_running_loop(), None
        try:
            t0 = loop.time()
            reader, writer = await asyncio.open_connection(host, port)
            self.phase, connect_s, started = "TLS handshake", loop.time() - t0, time.perf_counter()
            while True:
                try:
                    self._obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    await self._send(writer)
                    await self._receive(reader)
            await self._send(writer)
            self.seconds, self.chain = time.perf_counter() - started, _presented_chain(self._obj)
            if settle_until is not None and self._obj.version() == "TLSv1.3":
                await self._settle(reader, min(loop.time() + max(_SETTLE_S, 2 * connect_s), settle_until))
        except TimeoutError:
            raise  # an OSError too, but the runner owns deadlines
        except OSError as exc:  # ssl.SSLError included
            self.error = exc
        finally:
            if writer is not None:
                writer.transport.abort()  # never wait for a close handshake with a hostile peer
        return self

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        if pending := self._out.read():
            writer.write(pending)
            await writer.drain()

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        if data := await reader.read(65536):
            self._in.write(data)
        else:
            self._in.write_eof()

    async def _settle(self, reader: asyncio.StreamReader, until: float) -> None:
        """Wait (until loop time ``until`` at most) for a TLS 1.3 server's verdict on our side of the
        handshake: a session ticket, data or close_notify accept it; an alert or a bare close raise."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                while True:
                    try:
                        self._obj.read(1)
                        return  # the server spoke first
                    except ssl.SSLWantReadError:
                        if (session := self._obj.session) is not None and session.has_ticket:
                            return
                    except ssl.SSLZeroReturnError:
                        return  # a clean close_notify; a bare close raises SSLEOFError like a rejection
                    await self._receive(reader)


def _presented_chain(obj: ssl.SSLObject) -> list[bytes]:
    """DER certificates the server presented, leaf first; the leaf alone where Python hides the rest."""
    try:
        if (public := getattr(obj, "get_unverified_chain", None)) is not None:  # Python 3.13+
            return [bytes(der) for der in public() or ()]
        private = getattr(getattr(obj, "_sslobj", None), "get_unverified_chain", None)  # 3.10-3.12
        if private is not None and (certs := private()):
            return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]
    except Exception:  # a private API: fall back to the leaf rather than fail the probe
        pass
    leaf = obj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _validity(chain: list[bytes]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The earliest notAfter and the latest notBefore in ``chain``."""
    from cryptography import x509  # loaded by TlsCheck.__init__ already

    certs = []
    for der in chain:
        with contextlib.suppress(ValueError):  # OpenSSL took it, but cryptography is stricter
            certs.append(x509.load_der_x509_certificate(der))
    if not certs:
        return None, None
    return min(c.not_valid_after_utc for c in certs), max(c.not_valid_before_utc for c in certs)


def _days_left(chain: list[bytes]) -> dict[str, float]:
    not_after, _ = _validity(chain)
    return {} if not_after is None else {"days_left": (not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400}


class TlsCheck(BaseCheck):
    TYPE: ClassVar[str] = "tls"
    TARGET_KEY: ClassVar[str | None] = "target"
    Config: ClassVar[type[CheckConfig]] = TlsConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("days_left", "days", "days until the earliest notAfter in the chain the server presented"),
        ValueSpec("handshake", "s", "the TLS handshake alone"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, TlsConfig):
            raise TypeError(f"expected TlsConfig, got {type(config).__name__}")
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        # cryptography reads the certificate dates. It is loaded here, when the check is built, not
        # when a config loads; and before any probe starts, so it never stalls a running probe.
        importlib.import_module("cryptography.x509")
        self._verified = self._context(verify=config.tls_verify)
        self._unverified = self._context(verify=False) if config.tls_verify else self._verified

    def _context(self, verify: bool) -> ssl.SSLContext:
        cfg = self._cfg
        if verify:
            ctx = ssl.create_default_context(cafile=cfg.ca_file)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        if cfg.cert_file is not None:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file, _no_password)
        if cfg.min_version is not None:
            ctx.minimum_version = _VERSIONS[cfg.min_version]
        return ctx

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        host, port = parse_target(target)
        name = self._cfg.server_name or host
        budget = asyncio.get_running_loop().time() + 0.9 * self._cfg.timeout  # the rest is to report
        first = await _Handshake(self._verified, name).run(host, port, settle_until=budget)
        if first.error is None:
            return Observation(ok=True, values={"handshake": first.seconds, **_days_left(first.chain)})
        if not isinstance(first.error, ssl.SSLCertVerificationError):
            return self._failure(first.error, first.phase, target, host)
        chain: list[bytes] = []  # verification failed: fetch the chain unverified, within the budget
        with contextlib.suppress(TimeoutError):  # keep the verification error rather than a timeout
            async with asyncio.timeout_at(budget):
                chain = (await _Handshake(self._unverified, name).run(host, port, settle_until=None)).chain
        error = self._verify_error(first.error, name, chain)
        return Observation(ok=False, values=_days_left(chain), error_kind="tls", error=error)

    def _failure(self, exc: OSError, phase: str, target: str, host: str) -> Observation:
        if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            kind, error = "reset", f"connection closed by peer during {phase}"
        elif isinstance(exc, ssl.SSLError):
            reason = exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
            if exc.reason == "WRONG_VERSION_NUMBER":
                reason += " (does this port speak TLS?)"
            elif exc.reason and _CLIENT_CERT_ALERTS.search(exc.reason):
                reason += _CERT_REFUSED if self._cfg.cert_file else _CERT_WANTED
            kind, error = "tls", f"handshake failed: {reason}"
        elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            kind, error = "reset", f"connection reset by peer during {phase}"
        elif isinstance(exc, ConnectionRefusedError):
            kind, error = "refused", f"connection refused by {target}"
        elif isinstance(exc, socket.gaierror):
            kind, error = "dns", f"cannot resolve {host!r}: {exc.strerror or exc}"
        else:
            kind, error = "connection", f"{phase} failed: {exc.strerror or exc}"
        return Observation(ok=False, error_kind=kind, error=error)

    def _verify_error(self, exc: ssl.SSLCertVerificationError, name: str, chain: list[bytes]) -> str:
        code, message = exc.verify_code, exc.verify_message or exc.reason or str(exc)
        not_after, not_before = _validity(chain)
        now = dt.datetime.now(dt.UTC)
        if code == 10 and not_after is not None and not_after < now:
            message = f"not valid after {not_after:%Y-%m-%d %H:%M:%S} UTC"
        elif code == 9 and not_before is not None and not_before > now:
            message = f"not valid before {not_before:%Y-%m-%d %H:%M:%S} UTC"
        elif code == 18:
            message = "the server's certificate is its own issuer and is not trusted"
        elif code == 19:
            message = "the chain ends in a self-signed root that is not trusted"
        elif code in (2, 20, 21):
            trust = f"ca_file {self._cfg.ca_file!r}" if self._cfg.ca_file else "the system trust store"
            message += f" (no issuer found in {trust})"
        elif code in (62, 64):
            message = f"the certificate is not valid for {name!r}"
        return f"{_VERIFY_ERRORS.get(code, 'certificate rejected')}: {message}"
