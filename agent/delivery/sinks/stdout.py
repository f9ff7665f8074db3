"""``type: stdout``: one JSON line per event on standard output (the default sink).

Example::

    sinks:
      - type: stdout
"""

from __future__ import annotations

import sys

from agent.core.events import Event
from agent.delivery.sinks.base import BaseSink, SinkConfig


class StdoutSink(BaseSink):
    TYPE = "stdout"
    DIRECT = True
    Config = SinkConfig

    async def send(self, event: Event) -> None:
        sys.stdout.write(event.to_json() + "\n")
        sys.stdout.flush()
