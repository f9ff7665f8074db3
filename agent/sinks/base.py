"""The one small interface every sink implements, and the routing keys every sink has.

A sink class has ``TYPE`` (its ``type:`` in the config), ``Config`` (a pydantic model subclassing
:class:`SinkConfig`) and ``async send(event)``, which raises on failure so the dispatcher can count
and report it. Routing (``min_severity``, ``kinds``, ``checks``) is decided once, in
:meth:`SinkConfig.accepts`, never inside a sink.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from agent.events import Event, Kind
from agent.severity import Severity, rank


class SinkConfig(BaseModel):
    """Keys every sink has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str | None = None
    min_severity: Severity | None = None
    kinds: list[Kind] | None = None
    checks: list[str] | None = None

    def accepts(self, event: Event) -> bool:
        """Whether this sink wants ``event`` (every event unless a filter says otherwise)."""
        if self.min_severity is not None and rank(event.severity) < rank(self.min_severity):
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        return not (self.checks is not None and event.check is not None and event.check not in self.checks)


class Sink(Protocol):
    """What the dispatcher sees of a sink."""

    TYPE: ClassVar[str]
    Config: ClassVar[type[SinkConfig]]
    name: str
    config: SinkConfig

    async def send(self, event: Event) -> None:
        """Deliver one event; raise on failure."""

    async def close(self) -> None:
        """Flush and release resources."""


class BaseSink:
    """Shared plumbing: holds the config and the sink's display name."""

    TYPE: ClassVar[str] = ""
    Config: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        self.config = config
        self.name = name

    async def send(self, event: Event) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None
