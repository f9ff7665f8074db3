"""``type: alertmanager``: alerts pushed to Prometheus Alertmanager (API v2), the way Prometheus does.

Options: ``url`` or ``urls`` (the base URL of each Alertmanager; list every member of a cluster:
each gets every alert, the cluster deduplicates notifications), ``timeout`` (per request, 10s),
``resend`` (how often alerts are re-sent, 60s), ``resolved_for`` (how long resolved alerts keep
being re-sent, 15m), ``headers`` (e.g. basic auth; never logged), ``labels`` (static, added).

Labels: ``alertname`` (the check), ``severity``, ``check``, ``target``, ``agent``, the event's
labels (``team.name`` -> ``team_name``) and ``labels``; annotations ``summary``, ``rule``,
``incident``, ``runbook_url`` (the runbook, as Prometheus rules name it) when there is one,
``affected`` (the checks failing because of this one, comma-separated) when there are, and for a
group ``members`` (the failing members); ``generatorURL`` is the agent's status page when
``agent.listen`` is set. A firing alert's ``endsAt`` is pushed ``max(4 * resend, 5m)`` ahead at
each send, so Alertmanager resolves it itself if the agent dies.
A severity change resolves the alert with the old ``severity`` label and fires the new one.
``agent`` events become ``firstwatch_agent`` alerts (heartbeats: ``firstwatch_heartbeat``). An
agent problem with an identity (a sink failing, the state database, a reload: label ``problem``,
``target`` the sink, ``state`` or the config) fires until the agent resolves it; other agent news
resolves ``resolved_for`` after the last repeat. A send succeeds when one member accepts it. The
alerts live in memory: after a restart, only those that a new event names are re-sent;
Alertmanager ends the others at their ``endsAt``.

Example::

    sinks:
      - type: alertmanager
        urls: [http://am-1.example.com:9093, http://am-2.example.com:9093]
        headers: {Authorization: "Basic ${AM_AUTH}"}
        labels: {team: web}
        min_severity: medium
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import Event, iso_time
from agent.core.units import Seconds, format_duration
from agent.delivery.sinks.base import BaseSink, SinkConfig

if TYPE_CHECKING:  # aiohttp and yarl are imported where the sink posts or parses a url, never at load
    import aiohttp

log = logging.getLogger("firstwatch.alertmanager")

AGENT_ALERT = "firstwatch_agent"
HEARTBEAT_ALERT = "firstwatch_heartbeat"  # always firing while the agent is healthy, like Prometheus' Watchdog
CORE_LABELS = ("alertname", "severity", "check", "target", "agent")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
LabelKey = tuple[tuple[str, str], ...]


def label_name(key: str) -> str:
    """An event label key as an Alertmanager label name: ``team.name`` -> ``team_name``."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return "_" + name if name[:1].isdigit() else name


def hold(resend: float) -> float:
    """How far ahead a firing alert's ``endsAt`` is set: it outlives a few missed re-sends."""
    return max(4 * resend, 300.0)


def alert_labels(event: Event, extra: dict[str, str]) -> dict[str, str]:
    """Event labels, then configured ones, then the core labels (which nothing overrides)."""
    labels = {label_name(k): v for k, v in event.labels.items() if k}
    labels.update(extra)
    alertname = event.check or AGENT_ALERT
    if event.kind == "agent" or event.type == "agent":
        alertname = HEARTBEAT_ALERT if event.summary.startswith("heartbeat") else AGENT_ALERT
        if event.rule:  # an agent problem with an identity: its own alert, resolved when it clears
            labels["problem"] = event.rule
    core = {"alertname": alertname, "severity": event.severity, "check": event.check, "target": event.target}
    labels.update({k: v for k, v in core.items() if v is not None})
    labels["agent"] = event.agent
    return {k: v for k, v in labels.items() if v != ""}  # Alertmanager drops empty labels anyway


@dataclass
class _Alert:
    ident: str  # the event fingerprint: one incident, whatever its severity
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None  # None while firing: pushed ahead at every send
    updated: float
    link: str | None = None  # generatorURL: the agent's status page

    @property
    def key(self) -> LabelKey:
        return tuple(sorted(self.labels.items()))

    def active(self, now: float) -> bool:
        return self.ends_at is None or self.ends_at > now

    def wire(self, now: float, ahead: float) -> dict[str, Any]:
        ends = max(self.ends_at if self.ends_at is not None else now + ahead, self.starts_at)
        times = {"startsAt": iso_time(self.starts_at), "endsAt": iso_time(ends)}
        link = {"generatorURL": self.link} if self.link else {}
        return {"labels": self.labels, "annotations": self.annotations, **times, **link}


class AlertBook:
    """Active and recently resolved alerts (no I/O): what to send now and what to re-send."""

    def __init__(self, extra_labels: dict[str, str], resolved_for: float, link: str | None = None) -> None:
        self.extra = extra_labels
        self.resolved_for = resolved_for
        self.link = link
        self.alerts: dict[tuple[str, LabelKey], _Alert] = {}

    def update(self, event: Event, now: float) -> set[LabelKey]:
        """Apply ``event``; returns the label sets whose alert must be sent at once."""
        labels = alert_labels(event, self.extra)
        ident = event.fingerprint or repr(sorted((k, v) for k, v in labels.items() if k != "severity"))
        notes = {"summary": event.summary, "rule": event.rule, "incident": event.incident, "runbook_url": event.runbook}
        if event.affected:  # checks failing because of this one (their depends_on)
            notes["affected"] = ", ".join(event.affected)
        if event.members:  # a group: which members fail
            notes["members"] = ", ".join(event.members)
        starts = event.started_at if event.started_at is not None else event.time
        new = _Alert(ident, labels, {k: v for k, v in notes.items() if v}, starts, None, now, self.link)
        touched: set[LabelKey] = set()
        if event.kind == "resolved":
            mine = [a for a in self.alerts.values() if a.ident == ident and a.active(now)]
            if not mine:  # unknown here (a restart): resolve the label set the event names
                self.alerts[(ident, new.key)] = new
                mine = [new]
            for a in mine:
                a.ends_at, a.updated = max(event.time, a.starts_at), now
                touched.add(a.key)
            return touched
        for a in self.alerts.values():  # another severity of the same incident: resolved now
            if a.ident == ident and a.key != new.key and a.active(now):
                a.ends_at, a.updated = now, now
                touched.add(a.key)
        if event.kind == "agent" and not event.rule:  # news without an end: shown for a while
            new.ends_at = event.time + self.resolved_for
        self.alerts[(ident, new.key)] = new
        touched.add(new.key)
        return touched

    def wire(self, keys: set[LabelKey] | None, now: float, ahead: float) -> list[dict[str, Any]]:
        """One alert per label set (all of them when ``keys`` is None); a firing one wins when
        two incidents share a label set (two rules of one check with the same severity)."""
        best: dict[LabelKey, _Alert] = {}
        for a in self.alerts.values():
            if keys is not None and a.key not in keys:
                continue
            b = best.get(a.key)
            if b is None or (a.active(now), a.updated) > (b.active(now), b.updated):
                best[a.key] = a
        return [a.wire(now, ahead) for a in best.values()]

    def prune(self, now: float) -> None:
        """Forget alerts resolved more than ``resolved_for`` ago."""
        keep = now - self.resolved_for
        self.alerts = {k: a for k, a in self.alerts.items() if a.ends_at is None or a.ends_at >= keep}


def _member(url: str) -> str:
    from yarl import URL

    u = URL(url)
    host = f"[{u.host}]" if u.host and ":" in u.host else u.host
    return f"{host}:{u.port}"


class AlertmanagerConfig(SinkConfig):
    url: str | None = None
    urls: list[str] | None = None
    timeout: Seconds = Field(10.0, gt=0)
    resend: Seconds = Field(60.0, gt=0)
    resolved_for: Seconds = Field(900.0, ge=0)
    headers: dict[str, str] = {}
    labels: dict[str, str] = {}

    @property
    def members(self) -> list[str]:
        return [self.url] if self.url is not None else list(self.urls or [])

    @field_validator("url", "urls")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        from yarl import URL  # a config without this sink never pays for yarl

        urls = [value] if isinstance(value, str) else value or []
        if value is not None and not urls:
            raise ValueError("urls must list at least one Alertmanager")
        if len(set(urls)) != len(urls):
            raise ValueError("urls lists the same Alertmanager twice")
        for url in urls:
            u = URL(url)
            if u.scheme not in ("http", "https") or not u.host:
                raise ValueError(f"invalid url {url!r}: expected http://host:port or https://host:port")
            if u.user or u.password or u.query_string or u.fragment:  # the message must not echo a secret
                raise ValueError("put credentials in 'headers', not in the url (and no ?query or #fragment)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not _LABEL_NAME.match(key):
                raise ValueError(f"label {key!r}: use letters, digits and _ only (try {label_name(key)!r})")
            if key in CORE_LABELS:
                raise ValueError(f"label {key!r} is set by firstwatch on every alert and cannot be configured")
        return labels

    @model_validator(mode="after")
    def _one_of(self) -> AlertmanagerConfig:
        if (self.url is None) == (self.urls is None):
            raise ValueError("an alertmanager sink needs exactly one of 'url' or 'urls'")
        return self


class AlertmanagerSink(BaseSink):
    TYPE = "alertmanager"
    Config: ClassVar[type[SinkConfig]] = AlertmanagerConfig
    RESYNC_ON_START = True  # the active set lives in memory: the runtime re-sends open incidents at start

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, AlertmanagerConfig)
        self._cfg = config
        self.book = AlertBook(dict(config.labels), config.resolved_for)
        self.agent_url: str | None = None  # set by the runtime: the status page, as generatorURL
        self._headers = {"Content-Type": "application/json", **config.headers}
        importlib.import_module("aiohttp")  # when the sink is built, not when a config loads nor under a send
        self._session: aiohttp.ClientSession | None = None
        self._resender: asyncio.Task[None] | None = None
        self._warned: dict[str, tuple[float, int]] = {}  # member -> (last logged, failures since)

    async def send(self, event: Event) -> None:
        now = time.time()
        self.book.link = self.agent_url
        keys = self.book.update(event, now)
        if self._resender is None:
            self._resender = asyncio.create_task(self._resend(), name=f"alertmanager:{self.name}")
        await self._post(self.book.wire(keys, now, hold(self._cfg.resend)))

    async def _resend(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.resend)
            now = time.time()
            self.book.prune(now)
            alerts = self.book.wire(None, now, hold(self._cfg.resend))
            if not alerts:
                continue
            try:
                await self._post(alerts)
            except DeliveryError:
                pass  # each failing member is logged by _post; the next round tries again
            except Exception:
                log.exception("alertmanager sink %s: re-sending alerts failed", self.name)

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._cfg.timeout))
        body = json.dumps(alerts).encode()
        urls = self._cfg.members
        results = await asyncio.gather(*(self._post_one(self._session, url, body) for url in urls))
        failed = [(url, r) for url, r in zip(urls, results, strict=True) if r is not None]
        for url, (_, why) in failed:
            self._warn(url, why)
        if len(failed) < len(urls):
            return
        text = "; ".join(f"{_member(url)}: {why}" for url, (_, why) in failed)
        statuses = [status for _, (status, _) in failed]
        if all(s is not None and 400 <= s < 500 and s not in (408, 429) for s in statuses):
            bug = ": Alertmanager rejected the alert, a bug in firstwatch (please report it)"
            raise PermanentDeliveryError(
                f"every Alertmanager refused the alerts: {text}" + (bug if set(statuses) == {400} else "")
            )
        raise DeliveryError(f"no Alertmanager accepted the alerts: {text}")

    async def _post_one(self, session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int | None, str] | None:
        """None when accepted, else (HTTP status or None, why)."""
        import aiohttp

        try:
            async with (
                asyncio.timeout(self._cfg.timeout),
                session.post(url.rstrip("/") + "/api/v2/alerts", data=body, headers=self._headers) as resp,
            ):
                if 200 <= resp.status < 300:
                    return None
                detail = " ".join((await resp.text(errors="replace")).split())[:200]
                why = f"HTTP {resp.status} {resp.reason or ''}".strip()
                return resp.status, f"{why}: {detail}" if detail else why
        except TimeoutError:
            return None, f"no answer within {format_duration(self._cfg.timeout)}"
        except aiohttp.ClientConnectorError as exc:  # refused, no route, DNS, TLS handshake
            errno = getattr(getattr(exc, "os_error", None), "errno", None)
            return None, f"cannot connect ({os.strerror(errno)})" if errno else f"cannot connect: {exc}"
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _warn(self, url: str, why: str) -> None:
        now = time.monotonic()
        last, count = self._warned.get(url, (-1e9, 0))
        self._warned[url] = (last, count + 1) if now - last < 60 else (now, 0)
        if now - last < 60:
            return
        more = f" ({count} more failures since the last message)" if count else ""
        log.warning("alertmanager sink %s: %s did not accept alerts: %s%s", self.name, _member(url), why, more)

    async def close(self) -> None:
        if self._resender is not None:
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
            self._resender = None
        if self._session is not None:
            await self._session.close()
            self._session = None
