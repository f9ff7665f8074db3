"""``type: digest``: minor events go to a periodic report, not a pager.

The seed: "urgent matters wake you up, while minor issues appear in reports or dashboards". A
digest collects the events it is routed (by default those at most ``max_severity: minor``) and,
every ``every`` (default 24h), writes one summary: what happened since the last one, and every
incident still open, so an unfixed problem (a certificate two weeks from expiry) is repeated
in each digest until it is fixed instead of being forgotten after one message. The summary is
appended to ``path`` as Markdown, or POSTed to ``url`` as JSON (``{"title", "text", "events",
"open"}``). A pending digest is written at shutdown too. Until the durable outbox lands, events
buffered for a digest do not survive a crash of the agent.

Example::

    sinks:
      - type: digest
        path: /var/log/firstwatch/digest.md
        every: 24h
        max_severity: minor
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import ClassVar

from pydantic import model_validator

from agent.core.events import Event, iso_time
from agent.core.severity import Severity, rank
from agent.core.units import Seconds
from agent.delivery.sinks.base import BaseSink, SinkConfig

log = logging.getLogger("firstwatch.digest")


class DigestConfig(SinkConfig):
    path: str | None = None
    url: str | None = None
    every: Seconds = 86400.0
    max_severity: Severity = "minor"

    def accepts(self, event: Event, *, ignore_severity: bool = False) -> bool:
        within = ignore_severity or rank(event.severity) <= rank(self.max_severity)
        return within and super().accepts(event, ignore_severity=ignore_severity)

    @model_validator(mode="after")
    def _one_destination(self) -> DigestConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("a digest needs exactly one of 'path' or 'url'")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"invalid url {self.url!r}: expected http:// or https://")
        if self.every <= 0:
            raise ValueError("every must be greater than 0")
        return self


class DigestSink(BaseSink):
    TYPE = "digest"
    Config: ClassVar[type[SinkConfig]] = DigestConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, DigestConfig)
        self._cfg = config
        self.pending: list[Event] = []
        self.open: dict[str, Event] = {}  # incident -> its latest firing/changed event
        self.since = time.time()
        self._timer: asyncio.Task[None] | None = None

    async def send(self, event: Event) -> None:
        self.pending.append(event)
        if event.incident is not None:
            if event.kind in ("firing", "changed", "reminder"):
                self.open[event.incident] = event
            elif event.kind == "resolved":
                self.open.pop(event.incident, None)
        if self._timer is None:
            self._timer = asyncio.create_task(self._every(), name=f"digest:{self.name}")

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.every)
            try:
                await self.flush()
            except Exception as exc:  # kept for the next digest, not lost
                log.error("digest %s: not written (%s); its events carry over to the next one", self.name, exc)

    def render(self, now: float) -> tuple[str, str]:
        title = f"firstwatch digest {iso_time(self.since)} .. {iso_time(now)}: {len(self.pending)} events"
        lines = [f"## {title}", ""]
        if self.open:
            lines += [f"Still open ({len(self.open)}):", ""]
            lines += [
                f"- [{e.severity}] {e.summary} (since {iso_time(e.started_at or e.time)})" for e in self.open.values()
            ]
            lines.append("")
        if self.pending:
            lines += ["Events:", ""]
            lines += [f"- {iso_time(e.time)} {e.kind} [{e.severity}] {e.summary}" for e in self.pending]
            lines.append("")
        return title, "\n".join(lines) + "\n"

    async def flush(self) -> None:
        if not self.pending and not self.open:
            return
        now = time.time()
        title, text = self.render(now)
        if self._cfg.path is not None:
            await asyncio.to_thread(self._append, self._cfg.path, text)
        else:
            await self._post(title, text)
        self.pending.clear()
        self.since = now

    @staticmethod
    def _append(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    async def _post(self, title: str, text: str) -> None:
        import aiohttp

        body = {
            "title": title,
            "text": text,
            "events": [e.to_dict() for e in self.pending],
            "open": [e.to_dict() for e in self.open.values()],
        }
        assert self._cfg.url is not None
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(self._cfg.url, data=json.dumps(body), headers={"Content-Type": "application/json"}) as resp,
        ):
            if resp.status >= 300:
                raise RuntimeError(f"digest POST to {self._cfg.url} answered HTTP {resp.status}")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        try:
            await self.flush()
        except Exception as exc:  # shutdown goes on; the dispatcher logs close failures
            raise RuntimeError(f"final digest not written: {exc}") from exc
