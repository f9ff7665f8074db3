"""``type: tcp``: connect to HOST:PORT, optionally do a TLS handshake, send a line and expect a reply.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    target      HOST:PORT to probe (IPv6 in brackets: ``[::1]:80``); ``targets:`` is the list form
    send        text sent (UTF-8) once connected; use YAML double quotes for ``\\r\\n``
    expect      a regex searched in what the server sends (decoded as UTF-8); checked at load.
                ``^`` anchors at the start of the reply; write ``(?m)^...`` to anchor at any line
    tls         do a TLS handshake after connecting (default false)
    tls_verify  verify the certificate chain and name (default true)
    server_name the name sent (SNI) and verified; default: the HOST of the target
    ca_file     a PEM bundle of CAs to trust instead of the system store; must exist
    max_read    stop reading after this many bytes without a match (default 65536)

Values:

    duration  s  connect, optional TLS handshake, send and expect

Failures: ``refused``, ``dns``, ``tls`` (with the reason), ``reset`` (the peer closed or reset the
connection mid-exchange), ``connection`` (any other network error), ``expect`` (the reply never
matched: the peer closed first or ``max_read`` bytes came without a match), ``timeout`` (set by
the runner: the whole exchange took longer than ``timeout``).

Example::

    - name: mail
      type: tcp
      targets: ["mx1.example.com:25", "[2001:db8::25]:25"]
      expect: "^220 "
      timeout: 5s
    - name: ldaps
      type: tcp
      target: ldap.internal:636
      tls: true
      server_name: ldap.example.com
"""

from __future__ import annotations

import asyncio
import codecs
import re
import socket
import ssl
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from agent.core import validators
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec

_HOST = re.compile(r"[A-Za-z0-9_.-]+\Z")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?\Z")


def parse_target(text: str) -> tuple[str, int]:
    """``"db:5432"`` -> ``("db", 5432)``; ``"[::1]:80"`` -> ``("::1", 80)``. Raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(f"invalid target {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host or not _IPV6.match(host):
            raise ValueError(f"invalid target {text!r}: {host!r} is not an IPv6 address")
    elif ":" in host:
        raise ValueError(f"invalid target {text!r}: write IPv6 addresses in brackets, like [::1]:80")
    elif not _HOST.match(host):
        raise ValueError(f"invalid target {text!r}: expected HOST:PORT")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid target {text!r}: port must be a number from 1 to 65535")
    return host, int(port)


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


class TcpConfig(CheckConfig):
    target: str | None = None
    send: str | None = None
    expect: str | None = None
    tls: bool = False
    tls_verify: bool = True
    server_name: str | None = None
    ca_file: str | None = None
    max_read: int = Field(default=65536, gt=0)

    @field_validator("target")
    @classmethod
    def _check_target(cls, v: str | None) -> str | None:
        if v is not None:
            parse_target(v)
        return v

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, v: list[str] | None) -> list[str] | None:
        for t in v or ():
            parse_target(t)
        return v

    @field_validator("expect")
    @classmethod
    def _check_expect(cls, v: str | None) -> str | None:
        return None if v is None else validators.regex(v, "expect regex")

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, v: str | None) -> str | None:
        return None if v is None else validators.ca_file(v)

    @model_validator(mode="after")
    def _check_tls_options(self) -> TcpConfig:
        loose = [k for k in ("tls_verify", "server_name", "ca_file") if k in self.model_fields_set]
        if loose and not self.tls:
            raise ValueError(f"{', '.join(loose)} only apply with tls: true")
        return self


class TcpCheck(BaseCheck):
    TYPE: ClassVar[str] = "tcp"
    TARGET_KEY: ClassVar[str | None] = "target"
    Config: ClassVar[type[CheckConfig]] = TcpConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("duration", "s", "connect, optional TLS handshake, send and expect"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, TcpConfig):
            raise TypeError(f"expected TcpConfig, got {type(config).__name__}")
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        self._expect = re.compile(config.expect) if config.expect is not None else None
        self._payload = config.send.encode("utf-8") if config.send else b""
        self._ssl: ssl.SSLContext | None = None
        if config.tls:
            ctx = ssl.create_default_context(cafile=config.ca_file)
            if not config.tls_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._ssl = ctx

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        host, port = parse_target(target)
        phase = "connect"
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(host, port)
            if self._ssl is not None:
                phase = "TLS handshake"
                await writer.start_tls(self._ssl, server_hostname=self._cfg.server_name or host)
            if self._payload:
                phase = "send"
                writer.write(self._payload)
                await writer.drain()
            if self._expect is not None:
                phase = "expect"
                failure = await self._read_until_match(reader, self._expect)
                if failure is not None:
                    return Observation(ok=False, error_kind="expect", error=failure)
            return Observation(ok=True)
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or str(exc)
            return Observation(ok=False, error_kind="tls", error=f"certificate verify failed: {reason}")
        except ssl.SSLError as exc:
            reason = exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
            if exc.reason == "WRONG_VERSION_NUMBER":
                reason += " (does this port speak TLS?)"
            where = "TLS handshake failed" if phase == "TLS handshake" else f"TLS error during {phase}"
            return Observation(ok=False, error_kind="tls", error=f"{where}: {reason}")
        except ConnectionRefusedError:
            return Observation(ok=False, error_kind="refused", error=f"connection refused by {target}")
        except socket.gaierror as exc:
            return Observation(ok=False, error_kind="dns", error=f"cannot resolve {host!r}: {exc.strerror or exc}")
        except TimeoutError:
            raise  # an OSError too, but the runner owns deadlines
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
            return Observation(ok=False, error_kind="reset", error=f"connection reset by peer during {phase}")
        except OSError as exc:
            return Observation(ok=False, error_kind="connection", error=f"{phase} failed: {exc.strerror or exc}")
        finally:
            if writer is not None:
                writer.transport.abort()  # never wait for a close handshake with a hostile peer

    async def _read_until_match(self, reader: asyncio.StreamReader, regex: re.Pattern[str]) -> str | None:
        """Read until ``regex`` matches (None), or return why it never did."""
        limit = self._cfg.max_read
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, received = "", 0
        while received < limit:
            chunk = await reader.read(min(limit - received, 65536))
            if not chunk:
                got = f" (got {text[:80]!r})" if text else " (got nothing)"
                return f"connection closed before /{regex.pattern}/ matched{got}"
            received += len(chunk)
            text += decoder.decode(chunk)
            if regex.search(text):
                return None
        return f"expected /{regex.pattern}/ not found in the first {_size(limit)}"
