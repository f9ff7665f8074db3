"""Quiet time in the running agent: the config's maintenance windows and the silences made with
``firstwatch silence`` (another process), read from the state database every few seconds so a
silence takes effect without a reload. The alert book asks :meth:`QuietTime.quiet_for` before it
pages; the status snapshot asks it to show who is quiet, until when, why and by whom."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from agent.alerting.quiet import Quiet, Silence
from agent.alerting.windows import Window, window_quiet
from agent.incidents.silences import silences
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter

log = logging.getLogger("firstwatch")
POLL_SECONDS = 2  # `firstwatch silence add` takes effect within this many seconds


class QuietTime:
    def __init__(self, windows: Iterable[Window], known: list[Silence] | None = None) -> None:
        self.windows = tuple(windows)
        self.silences: list[Silence] = list(known or [])

    def quiet_for(self, check: str, labels: Mapping[str, str], wall: float) -> Quiet | None:
        """The window or silence that keeps ``check`` from paging at ``wall`` (the one that ends
        last), or None."""
        found = window_quiet(self.windows, check, labels, wall)
        for silence in self.silences:
            if (
                silence.active(wall)
                and silence.matches(check, labels)
                and (found is None or silence.ends > found.until)
            ):
                found = silence.quiet()
        return found

    async def refresh(self, writer: StoreWriter, store: Store) -> None:
        """Read the silences not ended yet; a locked or unreadable database keeps the known ones."""
        try:
            self.silences = await writer.call(silences, store, time.time())
        except Exception as exc:
            log.warning("state database: cannot read silences (%s); keeping the %d known", exc, len(self.silences))
