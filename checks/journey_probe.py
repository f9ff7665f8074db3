"""The probe of ``type: journey``: its steps in order, over one fresh cookie jar per run, under the
check's one total deadline, each answer judged by http's own code (:class:`checks.http_probe.Expectations`).

:mod:`checks.journey` holds the options and the values; it imports this module when the check is
built, so loading a config never pays for aiohttp. Each run gets its own ``aiohttp.ClientSession``
(its own ``CookieJar``) over the runtime's shared connector, so cookies never cross runs or checks
while connections are made the same way as for http checks.

The probe runner owns the deadline. So that a journey cut short says which step was running, the
probe also sets one a few milliseconds before the runner's, and reports it as ``step NAME: no
answer within ...``; should the runner's fire first anyway, its plain timeout stands.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from agent.core.errors import FirstwatchError
from checks.base import Observation, ProbeContext
from checks.http_json import lookup, parse_body
from checks.http_probe import Expectations, _classify, _ssl_context, body_text
from checks.journey import JourneyConfig
from checks.journey_steps import TEMPLATE, JourneyStep, SaveSource, parse_save, render, render_json

REDACT_MIN = 4  # saved values shorter than this are not masked (they cannot be told from numbers)


class StepCrash(FirstwatchError):
    """A bug met while running a step, its message stripped of saved values (the probe runner logs
    it and reports ``internal``; the original exception is not chained, as its text may hold one)."""


@dataclass(frozen=True)
class _Save:
    name: str
    source: SaveSource
    regex: re.Pattern[str] | None


@dataclass(frozen=True)
class _Step:
    """One step compiled once: its options, its expectations and saves, its TLS settings."""

    cfg: JourneyStep
    expect: Expectations
    saves: tuple[_Save, ...]
    ssl: ssl.SSLContext
    templated: bool  # any {{ }} in its request


class _Failed(Exception):
    """A step failed: why (``error_kind``, text before redaction); internal to this module."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class Saved:
    """What one run saved so far, and how to hide it: each value, and each header a template filled
    in, is masked in any text as ``<saved:NAME>`` (the header as its template with the names masked:
    ``Bearer <saved:token>``). Texts shorter than :data:`REDACT_MIN` characters are not masked."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self._masks: dict[str, str] = {}

    def __repr__(self) -> str:  # never the values
        return f"<Saved {sorted(self.values)}>"

    def save(self, name: str, value: str) -> None:
        self.values[name] = value
        self._mask(value, f"<saved:{name}>")

    def fill(self, template: str, *, mask: bool = False) -> str:
        """``template`` with the saved values filled in; ``mask``: hide the whole result too."""
        filled = render(template, self.values)
        if mask and filled != template:
            self._mask(filled, render(template, {name: f"<saved:{name}>" for name in self.values}))
        return filled

    def _mask(self, text: str, shown: str) -> None:
        if len(text) >= REDACT_MIN:
            self._masks[text] = shown
            self._masks = dict(sorted(self._masks.items(), key=lambda item: -len(item[0])))  # longest first

    def redact(self, text: str) -> str:
        """``text`` with every saved value, and every header holding one, masked."""
        for secret, shown in self._masks.items():
            text = text.replace(secret, shown)
            if secret.lower() in text.lower():  # a resolver or URL parser may have changed its case
                text = re.compile(re.escape(secret), re.IGNORECASE).sub(shown.replace("\\", r"\\"), text)
        return text


def _compile(step: JourneyStep) -> _Step:
    saves = []
    for name, text in step.save.items():
        source = parse_save(text)
        saves.append(_Save(name, source, re.compile(source.arg) if source.kind == "regex" else None))
    from_body = any(s.source.kind != "header" for s in saves)
    templated = any(TEMPLATE.search(text) for _, text in step.templated())
    return _Step(
        step,
        Expectations(step.expect, step.max_body, keep_body=from_body),
        tuple(saves),
        _ssl_context(None, step.tls_verify),
        templated,
    )


def _extract(save: _Save, resp: aiohttp.ClientResponse, body: bytes) -> str:
    """The value ``save`` takes from the answer; raises :class:`_Failed` when it finds nothing."""
    source = save.source
    found: str | None = None
    if source.kind == "header":
        found = resp.headers.get(source.arg)
    elif source.kind == "json":
        try:
            doc = parse_body(body)
        except ValueError as exc:
            raise _Failed("body", f"save {save.name}: {exc}") from None
        ok, value = lookup(doc, source.path)
        if ok and value is not None:
            found = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    else:
        assert save.regex is not None
        m = save.regex.search(body_text(resp, body))
        if m is not None:
            found = m.group(1) if save.regex.groups else m.group(0)
    kind = "expect" if source.kind == "header" else "body"
    if found is None:
        raise _Failed(kind, f"save {save.name}: {source.text} not found")
    if not found:
        raise _Failed(kind, f"save {save.name}: {source.text} is empty")
    return found


class JourneyProbe:
    """What one journey check needs to run, compiled once from its config."""

    def __init__(self, config: JourneyConfig) -> None:
        self._cfg = config
        self._steps = tuple(_compile(step) for step in config.steps)
        # a hair before the runner's deadline (set just before the probe starts), so ours fires first
        self._deadline = config.timeout - min(0.005, config.timeout / 100)

    def __repr__(self) -> str:  # headers and bodies may hold secrets
        return f"<JourneyProbe {self._cfg.name!r}>"

    async def probe(self, ctx: ProbeContext) -> Observation:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        values: dict[str, float] = {"steps": 0}
        saved = Saved()
        shared: aiohttp.ClientSession = ctx.http_session()
        session = aiohttp.ClientSession(
            connector=shared.connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # this run's own; unsafe: IP addresses keep theirs
            timeout=aiohttp.ClientTimeout(total=None),  # the runner owns the deadline
            auto_decompress=True,
            trust_env=False,
        )
        step = self._steps[0]
        try:
            async with asyncio.timeout_at(loop.time() + self._deadline):
                for step in self._steps:
                    await self._run(step, session, saved, values)
                    values["steps"] += 1
        except TimeoutError:
            reason = f"no answer within {self._cfg.timeout:g}s (the whole journey's timeout)"
            return self._failed(step, "timeout", reason, saved, values, start)
        except _Failed as failed:
            return self._failed(step, failed.kind, failed.reason, saved, values, start)
        finally:
            await session.close()
        values["duration"] = time.perf_counter() - start
        return Observation(ok=True, values=values)

    @staticmethod
    def _failed(
        step: _Step, kind: str, reason: str, saved: Saved, values: dict[str, float], start: float
    ) -> Observation:
        values["duration"] = time.perf_counter() - start
        return Observation(
            ok=False, values=values, error_kind=kind, error=f"step {step.cfg.name}: {saved.redact(reason)}"
        )

    async def _run(self, step: _Step, session: aiohttp.ClientSession, saved: Saved, values: dict[str, float]) -> None:
        """Run one step: its request, its judgement, its saves; raises :class:`_Failed`."""
        cfg, name = step.cfg, step.cfg.name
        try:
            url, headers, data, body_json = self._request(step, saved)
            scratch: dict[str, float] = {}  # http's own values of the answer (body_bytes): not the journey's
            t0 = time.perf_counter()
            try:
                async with session.request(
                    cfg.method,
                    url,
                    headers=headers,
                    data=data,
                    json=body_json,
                    allow_redirects=cfg.follow_redirects,
                    ssl=step.ssl,
                ) as resp:
                    values[f"step.{name}.status"] = resp.status
                    body = await step.expect.read(resp, scratch)
                    values[f"step.{name}.duration"] = time.perf_counter() - t0
                    verdict = step.expect.judge(resp, body, scratch)
                    if not verdict.ok:
                        raise _Failed(verdict.error_kind or "expect", verdict.error or "failed")
                    for save in step.saves:
                        assert body is not None  # judge() fails a body past max_body
                        saved.save(save.name, _extract(save, resp, body))
            except TimeoutError:
                raise  # the deadline: named by the caller
            except (aiohttp.ClientError, OSError) as exc:
                values[f"step.{name}.duration"] = time.perf_counter() - t0
                obs = _classify(exc, URL(url), scratch)
                raise _Failed(obs.error_kind or "connection", obs.error or "failed") from None
        except (TimeoutError, _Failed):
            raise
        except Exception as exc:  # a bug: reported as internal by the runner, without saved values
            raise StepCrash(f"step {name}: {type(exc).__name__}: {saved.redact(str(exc))}") from None

    @staticmethod
    def _request(step: _Step, saved: Saved) -> tuple[str, dict[str, str], bytes | None, Any]:
        """The step's URL, headers and body with the saved values filled in; raises :class:`_Failed`
        when a saved value makes them unusable (a line break in a header, a URL that is not http(s))."""
        cfg = step.cfg
        data = cfg.body.encode() if cfg.body is not None and not step.templated else None
        if not step.templated:
            return cfg.url, cfg.headers, data, cfg.json_
        url = saved.fill(cfg.url)
        headers = {key: saved.fill(value, mask=True) for key, value in cfg.headers.items()}
        for key, value in headers.items():
            if "\r" in value or "\n" in value:
                raise _Failed("expect", f"header {key!r}: a saved value put a line break in it")
        if url != cfg.url:
            try:
                parsed = URL(url)
            except ValueError:
                parsed = None
            if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
                raise _Failed("expect", "the URL is not an http(s) URL once the saved values are filled in")
        if cfg.body is not None:
            data = saved.fill(cfg.body).encode()
        return url, headers, data, render_json(cfg.json_, saved.values)
