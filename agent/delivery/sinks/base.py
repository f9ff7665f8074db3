"""The one small interface every sink implements, and the routing keys every sink has.

A sink class has ``TYPE`` (its ``type:`` in the config), ``Config`` (a pydantic model subclassing
:class:`SinkConfig`) and ``async send(event)``, which raises on failure so the dispatcher can retry,
count and report it: :class:`DeliveryError` for a failure worth retrying (refused, timeout, 5xx),
:class:`PermanentDeliveryError` for one that retrying cannot fix (a 4xx that is not 408/429: the
event is dropped, counted and reported; both live in :mod:`agent.core.errors`). The message of
either is shown to users: never put a secret (a header value, a token in a URL) in it. Delivery
is at least once: a sink that talks to a remote service sends the event ``id`` as an idempotency
key where the service allows it.

Routing (``min_severity``, ``kinds``, ``checks``) is decided once, in :meth:`SinkConfig.accepts`,
never inside a sink; ``delay`` (escalation) and ``repeat`` (reminders) are the dispatcher's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import Event, Kind
from agent.core.severity import Severity, rank
from agent.core.units import Seconds


def positive_timeout(value: float) -> float:
    """The shared check of a sink's ``timeout`` (use with ``field_validator("timeout")``)."""
    if value <= 0:
        raise ValueError("timeout must be greater than 0")
    return value


class SinkConfig(BaseModel):
    """Keys every sink has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="the sink type")
    name: str | None = Field(default=None, description="default: the type (TYPE-I when the type repeats)")
    min_severity: Severity | None = Field(default=None, description="only incidents at least this severe")
    kinds: list[Kind] | None = Field(default=None, description="only these kinds of events")
    checks: list[str] | None = Field(default=None, description="only events of these checks")
    delay: Seconds | None = Field(
        default=None, description="only for incidents still firing and unacknowledged after this long"
    )
    repeat: Seconds | None = Field(default=None, description="reminders while firing and unacknowledged")

    def accepts(self, event: Event, *, ignore_severity: bool = False) -> bool:
        """Whether this sink wants ``event`` (every event unless a filter says otherwise).
        ``ignore_severity``: for the follow-ups of an incident the sink already has."""
        if not ignore_severity and self.min_severity is not None and rank(event.severity) < rank(self.min_severity):
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return not (self.checks is not None and event.check is not None and event.check not in self.checks)


class Sink(Protocol):
    """What the dispatcher sees of a sink."""

    TYPE: ClassVar[str]
    Config: ClassVar[type[SinkConfig]]
    DIRECT: ClassVar[bool]
    name: str
    config: SinkConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        """A sink is built from its validated config and its display name (``SINKS[type](config, name)``)."""

    async def send(self, event: Event) -> None:
        """Deliver one event; raise on failure."""

    async def close(self) -> None:
        """Flush and release resources."""


class BaseSink:
    """Shared plumbing: holds the config and the sink's display name, and makes its errors
    (:meth:`_fail`) with the secrets a sink lists in ``_secrets`` masked (:meth:`_redact`)."""

    TYPE: ClassVar[str] = ""
    Config: ClassVar[type[SinkConfig]] = SinkConfig
    RESYNC_ON_START: ClassVar[bool] = False  # keeps state in memory: resend open incidents after a restart
    # needs neither the network nor the state database: gets the agent's "cannot write state"
    # news straight away, while the outbox cannot be written
    DIRECT: ClassVar[bool] = False

    def __init__(self, config: SinkConfig, name: str) -> None:
        self.config = config
        self.name = name
        self._secrets: Sequence[str] = ()  # never shown in an error; longest first

    def _redact(self, text: str) -> str:
        """``text`` with every one of the sink's secrets as ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(self, reason: str, permanent: bool = False) -> DeliveryError:
        """The error to raise: ``TYPE NAME: reason``, secrets redacted; permanent or worth retrying."""
        cls = PermanentDeliveryError if permanent else DeliveryError
        return cls(f"{self.TYPE} {self.name}: {self._redact(reason)}")

    async def send(self, event: Event) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None
