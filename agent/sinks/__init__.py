"""The registry of sink types: ``SINKS[type]`` is the class implementing ``type:`` in ``sinks:``.

Config validation, docs and tests read this one mapping.
"""

from __future__ import annotations

from agent.sinks.alertmanager import AlertmanagerSink
from agent.sinks.base import Sink
from agent.sinks.digest import DigestSink
from agent.sinks.email import EmailSink
from agent.sinks.exec import ExecSink
from agent.sinks.file import FileSink
from agent.sinks.otlp import OtlpSink
from agent.sinks.stdout import StdoutSink
from agent.sinks.webhook import WebhookSink

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
