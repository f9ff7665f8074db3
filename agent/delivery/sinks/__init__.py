"""The registry of sink types: ``SINKS[type]`` is the class implementing ``type:`` in ``sinks:``.

Config validation, docs and tests read this one mapping.
"""

from __future__ import annotations

from agent.delivery.sinks.alertmanager import AlertmanagerSink
from agent.delivery.sinks.base import Sink
from agent.delivery.sinks.digest import DigestSink
from agent.delivery.sinks.email import EmailSink
from agent.delivery.sinks.exec import ExecSink
from agent.delivery.sinks.file import FileSink
from agent.delivery.sinks.otlp import OtlpSink
from agent.delivery.sinks.stdout import StdoutSink
from agent.delivery.sinks.webhook import WebhookSink

_ALL: tuple[type[Sink], ...] = (
    StdoutSink,
    FileSink,
    DigestSink,
    WebhookSink,
    AlertmanagerSink,
    ExecSink,
    EmailSink,
    OtlpSink,
)
SINKS: dict[str, type[Sink]] = {cls.TYPE: cls for cls in _ALL}

__all__ = ["SINKS"]
