"""``type: file``: events appended as JSON lines to ``path``.

Each event is written with one ``write`` on a file opened in append mode, so lines from one agent
never interleave and ``logrotate`` (``copytruncate`` or move-and-reopen) is safe: the file is
reopened when it was moved or truncated. Writes run in a thread, so a slow disk never stalls
probing. The parent directory is created if missing.

Example::

    sinks:
      - type: file
        path: /var/log/firstwatch/events.jsonl
        min_severity: minor
"""

from __future__ import annotations

import asyncio
import os
from typing import IO, ClassVar

from agent.core.events import Event
from agent.delivery.sinks.base import BaseSink, SinkConfig


class FileSinkConfig(SinkConfig):
    path: str


class FileSink(BaseSink):
    TYPE = "file"
    DIRECT = True
    Config: ClassVar[type[SinkConfig]] = FileSinkConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, FileSinkConfig)
        self.path = config.path
        self._fh: IO[bytes] | None = None
        self._inode: tuple[int, int] | None = None

    def _write(self, line: bytes) -> None:
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fh is None or current != self._inode:
            if self._fh is not None:
                self._fh.close()
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across events
            st = os.fstat(self._fh.fileno())
            self._inode = (st.st_dev, st.st_ino)
        self._fh.write(line)

    async def send(self, event: Event) -> None:
        await asyncio.to_thread(self._write, (event.to_json() + "\n").encode())

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
