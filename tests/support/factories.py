"""The objects tests build again and again, defined once: events, results, checks, config errors.

``event()`` starts from one of two stories and takes any :class:`Event` field as an override:
:data:`SHOP_HOME` (one page down: what a sink usually carries) and :data:`SHOP_WEB` (three of
three targets failing for a minute, with times: the page a human reads in Slack, PagerDuty or
an email). ``result()`` is one probe's result (a failed one says why); ``check()`` builds a
check of any type from its options and ``probe_once()`` runs it through the real probe runner.
``config_error()`` validates a config model and returns the one message it reports.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from agent.core.events import Event
from agent.engine.probe_runner import SharedResources, run_probe
from checks.base import BaseCheck, Result

C = TypeVar("C", bound=BaseCheck)

T0 = 1795919700.0  # 2026-11-29T02:35:00Z

SHOP_HOME: Mapping[str, Any] = {
    "kind": "firing",
    "severity": "critical",
    "summary": "shop-home: down",
    "agent": "web-01",
    "incident": "3f9c2a7b1d04",
    "check": "shop-home",
    "target": "https://shop.example.com/",
    "labels": {"env": "prod"},
}

SHOP_WEB: Mapping[str, Any] = {
    "kind": "firing",
    "severity": "critical",
    "summary": "shop-web: 3 of 3 targets: HTTP 503 from 10.0.0.2:443 for 1m",
    "agent": "web-01",
    "time": T0 + 60,
    "started_at": T0,
    "incident": "3f9c2a7b1d04",
    "fingerprint": "a1b2c3d4e5f60718",
    "check": "shop-web",
    "target": "3 targets",
    "type": "http",
    "rule": "down for 1m",
}

# What the shipped examples take from the environment (no real secrets): tests that load every
# file in config/examples/ set these.
EXAMPLE_ENV: dict[str, str] = {
    "API_TOKEN": "t",
    "API_SYNTHETIC_PASSWORD": "p",
    "SMTP_PASSWORD": "p",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/x",
    "PAGERDUTY_ROUTING_KEY": "r" * 32,
    "PAGERDUTY_BACKUP_ROUTING_KEY": "b" * 32,
    # fleet.yaml is one file for every location: each agent's environment says which (the loader
    # has no ${VAR:-default}, so the example names them and the tests provide them)
    "FIRSTWATCH_LOCATION": "eu-west",
    "FIRSTWATCH_LISTEN": "127.0.0.1:9464",
    "FIRSTWATCH_STATE": "/var/lib/firstwatch",
    "SHOP_URL": "https://shop.example.com/",
}


def event(story: Mapping[str, Any] = SHOP_HOME, /, **fields: Any) -> Event:
    """An event of ``story`` with ``fields`` replaced or added."""
    return Event(**{**story, **fields})


def config_error(model: type[BaseModel], base: Mapping[str, Any], /, *, not_shown: str = "", **options: Any) -> str:
    """The one message ``model`` reports for ``base`` with ``options`` (pydantic's "Value error, "
    prefix removed); fails unless validation reports exactly one error, or if the whole error
    text shows ``not_shown`` (a secret)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate({**base, **options})
    if not_shown:
        assert not_shown not in str(info.value)
    (err,) = info.value.errors()
    return str(err["msg"]).removeprefix("Value error, ")


def result(
    check: str = "shop-home",
    target: str = "https://shop.example.com/",
    ok: bool = True,
    *,
    type: str = "http",
    values: Mapping[str, float] | None = None,
    error: str | None = None,
    error_kind: str | None = None,
    at: float | None = None,
    duration: float | None = None,
) -> Result:
    """One probe's result. A failed one carries ``error`` (default "HTTP 503") and
    ``error_kind`` (default "http_status"); ``duration`` defaults to the ``duration`` value, if
    any, else 10 ms; ``at`` (its start, wall time) to now."""
    vals = dict(values or {})
    if not ok:
        error, error_kind = error or "HTTP 503", error_kind or "http_status"
    took = duration if duration is not None else vals.get("duration", 0.01)
    return Result(check, type, target, ok, vals, error_kind, error, time.time() if at is None else at, took)


def check(cls: type[C], /, **options: Any) -> C:
    """A check of type ``cls`` from its config ``options`` (``name`` and ``type`` filled in)."""
    return cls(cls.Config.model_validate({"name": cls.TYPE, "type": cls.TYPE, **options}))


async def probe_once(check: BaseCheck, target: str | None = None) -> Result:
    """One run of ``check`` (its first target unless ``target``) through the real probe runner."""
    return await run_probe(check, target or check.targets()[0], SharedResources("test"))
