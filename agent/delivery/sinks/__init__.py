"""The registry of sink types: ``SINKS[type]`` is the class implementing ``type:`` in ``sinks:``.

Config validation, docs and tests read this one mapping. A type's module is imported when its
class is first asked for (:class:`agent.core.registry.LazyRegistry`).
"""

from __future__ import annotations

from agent.core.registry import LazyRegistry
from agent.delivery.sinks.base import Sink

SINKS: LazyRegistry[type[Sink]] = LazyRegistry(
    {
        "stdout": "agent.delivery.sinks.stdout:StdoutSink",
        "file": "agent.delivery.sinks.file:FileSink",
        "digest": "agent.delivery.sinks.digest:DigestSink",
        "webhook": "agent.delivery.sinks.webhook:WebhookSink",
        "alertmanager": "agent.delivery.sinks.alertmanager:AlertmanagerSink",
        "exec": "agent.delivery.sinks.exec:ExecSink",
        "email": "agent.delivery.sinks.email:EmailSink",
        "otlp": "agent.delivery.sinks.otlp:OtlpSink",
    }
)

__all__ = ["SINKS"]
