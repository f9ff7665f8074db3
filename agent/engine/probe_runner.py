"""Run one probe of one target under a total deadline, time it, and turn every failure into data.

This is the single place that owns deadlines and crash capture (blackbox_exporter's
``prober/handler.go`` role): probes only measure. A probe that overruns its ``timeout`` is
cancelled (``asyncio.timeout`` is a total deadline, so a server dripping one byte a second cannot
hold it); a probe that raises is a bug, logged once with its traceback and reported as
``error_kind: internal`` so one broken check never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from checks.base import Check, Observation, Result
from checks.browser_pool import BrowserPool, BrowserSettings

log = logging.getLogger("firstwatch.probe")


class SharedResources:
    """The :class:`checks.base.ProbeContext` of a runtime: lazily created shared clients (an
    aiohttp session; one Chromium for the browser checks, per ``browser_settings``)."""

    def __init__(
        self, agent_name: str, artifacts_dir: str | None = None, browser_settings: BrowserSettings | None = None
    ) -> None:
        self.agent_name = agent_name
        self.artifacts_dir = artifacts_dir
        self.browser_settings = browser_settings or BrowserSettings()  # agent.browser
        self._http: Any = None
        self._browser: BrowserPool | None = None

    def http_session(self) -> Any:
        if self._http is None:
            import aiohttp  # imported on first use: tcp- or host-only configs never pay for it

            from checks.http_phases import PhaseConnector  # per-phase timings (dns, connect, tls)

            connector = PhaseConnector(
                force_close=True,  # a fresh connection per probe, as a user's browser would see
                limit=0,
                use_dns_cache=False,
                enable_cleanup_closed=True,
            )
            self._http = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # the runner owns the deadline
                auto_decompress=True,
                trust_env=False,
            )
        return self._http

    def browser(self) -> BrowserPool:
        """The shared :class:`checks.browser_pool.BrowserPool` (created on first use; Chromium
        starts on the first browser run)."""
        if self._browser is None:
            self._browser = BrowserPool(self.browser_settings)
        return self._browser

    def browser_restarts(self) -> int:
        """How often the shared browser was restarted (crashed, killed or hung) so far."""
        return self._browser.restarts if self._browser is not None else 0

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._browser is not None:  # kept, closed: its restarts stay readable
            await self._browser.close()


async def run_probe(check: Check, target: str, ctx: SharedResources) -> Result:
    """Probe ``target`` once with ``check``; always returns a :class:`Result`."""
    cfg = check.config
    started_wall = time.time()
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(cfg.timeout):
            obs = await check.probe(target, ctx)
    except TimeoutError:
        obs = Observation(ok=False, error_kind="timeout", error=f"no answer within {cfg.timeout:g}s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in a probe: report it as data, keep every other check going
        log.exception("check %s: probe of %s crashed (a firstwatch bug)", cfg.name, target)
        obs = Observation(ok=False, error_kind="internal", error=f"internal error: {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - t0
    values = obs.values
    values.setdefault("duration", elapsed)
    return Result(
        check=cfg.name,
        type=check.TYPE,
        target=target,
        ok=obs.ok,
        values=values,
        error_kind=obs.error_kind,
        error=obs.error,
        started_at=started_wall,
        duration_s=elapsed,
        artifact=obs.artifact,
    )
