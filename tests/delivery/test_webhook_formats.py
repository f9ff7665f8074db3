"""``format: slack`` and ``format: pagerduty`` of the webhook sink: every body checked against the
receiver's documented rules (Slack Block Kit limits, PagerDuty Events API v2 fields), and real
local receivers (aiohttp on 127.0.0.1) that get a trigger and then its resolution."""

from __future__ import annotations

import functools
import json
import re
import traceback
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp import web

from agent.config.load import parse_config
from agent.core.errors import DeliveryError, PermanentDeliveryError
from agent.core.events import KINDS, Event
from agent.core.severity import SEVERITIES
from agent.delivery.sinks.webhook import WebhookConfig, WebhookSink
from agent.delivery.sinks.webhook_formats import FormatOptions, render_pagerduty, render_slack
from tests.support import factories
from tests.support.factories import T0
from tests.support.peers.servers import serve_app

ROUTING_KEY = "R0CANARY5e1f9a7c0123456789abcdef"  # 32 characters, a secret
EXAMPLES = Path(__file__).parents[2] / "config" / "examples"
LINK = "https://status.example.com/?team=shop&view=incidents"


event = functools.partial(factories.event, {**factories.SHOP_WEB, "labels": {"env": "prod"}})


def every_event() -> list[Event]:
    """Every kind at every severity, plus the awkward ones."""
    out = [event(kind=k, severity=s) for k in KINDS for s in SEVERITIES]
    out.append(event(kind="agent", check=None, target=None, rule=None, incident=None, fingerprint=None))
    out.append(event(summary="x" * 5000, check="c" * 300, target="https://t/" + "p" * 3000))
    out.append(event(started_at=None, type=None, summary=""))
    return out


# --- slack -----------------------------------------------------------------------------------------

# Block Kit limits (api.slack.com/reference/block-kit): at most 50 blocks; a section's text at most
# 3000 characters and at most 10 fields of 2000; a context at most 10 elements.
TEXT: dict[str, Any] = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["mrkdwn", "plain_text"]}, "text": {"type": "string", "minLength": 1}},
}
SLACK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["text", "blocks"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "section"},
                            "text": {**TEXT, "properties": {**TEXT["properties"], "text": {"maxLength": 3000}}},
                            "fields": {
                                "type": "array",
                                "maxItems": 10,
                                "items": {**TEXT, "properties": {**TEXT["properties"], "text": {"maxLength": 2000}}},
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "context"},
                            "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": TEXT},
                        },
                    },
                ]
            },
        },
    },
}


def slack(e: Event, link: str | None = LINK) -> dict[str, Any]:
    content_type, body = render_slack(e, FormatOptions(link=link))
    assert content_type == "application/json"
    doc: dict[str, Any] = json.loads(body)
    jsonschema.validate(doc, SLACK_SCHEMA)
    return doc


def texts(doc: dict[str, Any]) -> list[str]:
    out = [doc["text"]]
    for block in doc["blocks"]:
        out += [block["text"]["text"]] if "text" in block else []
        out += [f["text"] for f in block.get("fields", []) + block.get("elements", [])]
    return out


def test_every_slack_message_fits_block_kit() -> None:
    for e in every_event():
        for text in texts(slack(e)):
            # unescaped control characters only where firstwatch itself makes a link or a date
            bare = re.sub(r"<(https://[^|<>]+\|status page|!date\^\d+\^[^|<>]+\|[^<>]+)>", "", text)
            assert "<" not in bare and ">" not in bare, text
            assert not re.search(r"&(?!amp;|lt;|gt;)", bare), text


def test_slack_firing_message() -> None:
    doc = slack(event())
    title, section, context = doc["blocks"]
    assert title["text"]["text"] == "*:red_circle: CRITICAL firing: shop-web*"
    assert doc["text"] == ":red_circle: CRITICAL firing: shop-web: 3 of 3 targets: HTTP 503 from 10.0.0.2:443 for 1m"
    assert section["text"]["text"] == "shop-web: 3 of 3 targets: HTTP 503 from 10.0.0.2:443 for 1m"
    assert [f["text"] for f in section["fields"]] == [
        "*Check*\nshop-web (http)",
        "*Target*\n3 targets",
        "*Rule*\ndown for 1m",
        f"*Since*\n<!date^{int(T0)}^{{date_short_pretty}} {{time}}|2026-11-29T02:35:00.000Z>",
    ]
    assert context["elements"][0]["text"] == (
        "agent *web-01*  ·  incident `3f9c2a7b1d04`  ·  ack: `firstwatch ack 3f9c2a7b1d04`  ·  "
        "<https://status.example.com/?team=shop&amp;view=incidents|status page>"
    )
    assert "status page" not in json.dumps(slack(event(), link=None))


def test_slack_titles_by_kind() -> None:
    def title(**kw: Any) -> str:
        return str(slack(event(**kw))["blocks"][0]["text"]["text"])

    assert title(kind="resolved", time=T0 + 12 * 60) == "*:white_check_mark: RESOLVED shop-web after 12m*"
    assert title(kind="reminder", time=T0 + 15 * 60) == "*:red_circle: CRITICAL still firing after 15m: shop-web*"
    assert title(kind="changed", severity="major") == "*:large_orange_circle: MAJOR (severity changed): shop-web*"
    assert title(severity="medium") == "*:large_yellow_circle: MEDIUM firing: shop-web*"
    assert title(severity="minor") == "*:large_blue_circle: MINOR firing: shop-web*"
    assert title(kind="agent", severity="major", check=None) == "*:warning: MAJOR firstwatch agent web-01*"
    resolved = slack(event(kind="resolved"))["blocks"][2]["elements"][0]["text"]
    assert "firstwatch ack" not in resolved  # nothing left to acknowledge


def test_slack_escapes_what_checks_and_peers_say() -> None:
    evil = "HTTP 500: <!channel> wake up & see <https://evil.example|your bank> >_<"
    doc = slack(event(summary=evil, target="https://shop/?a=1&b=<2>"))
    section = doc["blocks"][1]
    assert section["text"]["text"] == (
        "HTTP 500: &lt;!channel&gt; wake up &amp; see &lt;https://evil.example|your bank&gt; &gt;_&lt;"
    )
    assert section["text"]["verbatim"] is True  # no @mentions or #channels parsed from it either
    assert "*Target*\nhttps://shop/?a=1&amp;b=&lt;2&gt;" in [f["text"] for f in section["fields"]]
    cut = slack(event(summary="&" * 5000))["blocks"][1]["text"]["text"]
    assert cut.endswith("&amp;…") and len(cut) <= 3000  # never half an entity


# --- pagerduty -----------------------------------------------------------------------------------

# PagerDuty Events API v2 (developer.pagerduty.com/docs/events-api-v2/trigger-events and
# /resolve-events): trigger needs a payload with summary (at most 1024), source and severity;
# resolve needs only routing_key, event_action and dedup_key (at most 255).
PAGERDUTY_SCHEMA = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string", "format": "uri"},
        "links": {
            "type": "array",
            "items": {"type": "object", "required": ["href"], "properties": {"href": {"type": "string"}}},
        },
        "images": {"type": "array"},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
    },
    "allOf": [
        {"if": {"properties": {"event_action": {"const": "trigger"}}}, "then": {"required": ["payload"]}},
        {"if": {"properties": {"event_action": {"enum": ["acknowledge", "resolve"]}}},
         "then": {"required": ["dedup_key"]}},
    ],
}  # fmt: skip


def pagerduty_errors(body: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(PAGERDUTY_SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = [e.message for e in validator.iter_errors(body)]
    stamp = body.get("payload", {}).get("timestamp") if isinstance(body, dict) else None
    if stamp is not None:
        datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # ISO 8601, as the API documents
    return errors


def pagerduty(e: Event, link: str | None = None) -> dict[str, Any]:
    content_type, body = render_pagerduty(e, FormatOptions(link=link, routing_key=ROUTING_KEY))
    assert content_type == "application/json"
    doc: dict[str, Any] = json.loads(body)
    assert pagerduty_errors(doc) == []
    return doc


def test_every_pagerduty_body_follows_events_api_v2() -> None:
    for e in every_event():
        pagerduty(e)
        pagerduty(e, link=LINK)


def test_pagerduty_bodies() -> None:
    trigger = pagerduty(event(), link=LINK)
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "a1b2c3d4e5f60718",
        "payload": {
            "summary": "shop-web: 3 of 3 targets: HTTP 503 from 10.0.0.2:443 for 1m",
            "source": "web-01",
            "severity": "critical",
            "timestamp": "2026-11-29T02:36:00.000Z",
            "component": "shop-web",
            "group": "3 targets",
            "class": "down for 1m",
            "custom_details": event().to_dict() | {"id": trigger["payload"]["custom_details"]["id"]},
        },
        "client": "firstwatch",
        "client_url": LINK,
        "links": [{"href": LINK, "text": "firstwatch status page"}],
    }
    resolve = pagerduty(event(kind="resolved"))
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "a1b2c3d4e5f60718"}
    for kind in ("changed", "reminder"):  # the same alert, updated
        assert pagerduty(event(kind=kind))["event_action"] == "trigger"
        assert pagerduty(event(kind=kind))["dedup_key"] == "a1b2c3d4e5f60718"
    sev = {s: pagerduty(event(severity=s))["payload"]["severity"] for s in SEVERITIES}
    assert sev == {"critical": "critical", "major": "error", "medium": "warning", "minor": "info"}
    agent = pagerduty(event(kind="agent", check=None, target=None, rule=None, fingerprint=None, incident=None))
    assert agent["dedup_key"] == "firstwatch-agent-web-01" and agent["event_action"] == "trigger"
    assert set(agent["payload"]) == {"summary", "source", "severity", "timestamp", "custom_details"}
    assert len(pagerduty(event(summary="y" * 3000))["payload"]["summary"]) == 1024


class PagerDuty:
    """A local stand-in for events.pagerduty.com/v2/enqueue: validates like the API, answers 202."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.alerts: dict[str, str] = {}  # dedup_key -> triggered | resolved
        self.answer_429 = 0
        self.echo = False
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        self.app = app

    async def enqueue(self, request: web.Request) -> web.Response:
        if self.answer_429:
            self.answer_429 -= 1
            return web.json_response({"status": "throttle event", "message": "slow down"}, status=429)
        body = await request.json()
        errors = pagerduty_errors(body)
        if errors or request.content_type != "application/json" or self.echo:
            # like the real API, an error may repeat what it got
            return web.json_response({"status": "invalid event", "errors": errors, "got": body}, status=400)
        self.events.append(body)
        key = body["dedup_key"]
        self.alerts[key] = "resolved" if body["event_action"] == "resolve" else "triggered"
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)


@pytest.fixture
async def pd() -> AsyncIterator[tuple[PagerDuty, str]]:
    receiver = PagerDuty()
    runner, port = await serve_app(receiver.app, access_log=None)
    yield receiver, f"http://127.0.0.1:{port}/v2/enqueue"
    await runner.cleanup()


def sink(url: str, **options: Any) -> WebhookSink:
    return WebhookSink(WebhookConfig.model_validate({"type": "webhook", "url": url, **options}), "pager")


async def test_pagerduty_receives_trigger_then_resolve_with_the_same_key(pd: tuple[PagerDuty, str]) -> None:
    receiver, url = pd
    s = sink(url, format="pagerduty", routing_key=ROUTING_KEY, link=LINK)
    await s.send(event())
    await s.send(event(kind="changed", severity="major", summary="shop-web: now 2 of 3 targets"))
    assert receiver.alerts == {"a1b2c3d4e5f60718": "triggered"}
    await s.send(event(kind="resolved", summary="shop-web: resolved after 12m"))
    assert receiver.alerts == {"a1b2c3d4e5f60718": "resolved"}
    assert [(e["event_action"], e["dedup_key"]) for e in receiver.events] == [
        ("trigger", "a1b2c3d4e5f60718"),
        ("trigger", "a1b2c3d4e5f60718"),
        ("resolve", "a1b2c3d4e5f60718"),
    ]
    receiver.answer_429 = 1
    with pytest.raises(DeliveryError) as info:  # throttled: retried, not dropped
        await s.send(event(kind="agent", check=None, fingerprint=None, incident=None, summary="sink slack failing"))
    assert not isinstance(info.value, PermanentDeliveryError)
    await s.send(event(kind="agent", check=None, fingerprint=None, incident=None, summary="sink slack failing"))
    assert receiver.alerts["firstwatch-agent-web-01"] == "triggered"
    await s.close()


async def test_a_rejected_pagerduty_event_never_shows_the_routing_key(pd: tuple[PagerDuty, str]) -> None:
    receiver, url = pd
    receiver.echo = True  # a 400 that repeats the whole event, routing key included
    s = sink(url, format="pagerduty", routing_key=ROUTING_KEY)
    with pytest.raises(PermanentDeliveryError) as info:
        await s.send(event())
    said = f"{info.value}\n{info.value!r}\n" + "".join(traceback.format_exception(info.value)) + repr(s)
    assert "HTTP 400" in said and "***" in said
    assert ROUTING_KEY not in said and ROUTING_KEY not in repr(s._cfg)
    await s.close()


async def test_slack_receiver_gets_the_message() -> None:
    got: list[tuple[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((request.content_type, await request.json()))
        return web.Response(text="ok")  # what Slack answers

    app = web.Application()
    app.router.add_post("/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX", hook)
    runner, port = await serve_app(app, access_log=None)
    s = sink(f"http://127.0.0.1:{port}/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX", format="slack", link=LINK)
    await s.send(event())
    await s.send(event(kind="resolved", time=T0 + 12 * 60))
    await s.close()
    await runner.cleanup()
    assert [ct for ct, _ in got] == ["application/json"] * 2
    assert got[0][1] == slack(event())
    assert got[1][1]["text"].startswith(":white_check_mark: RESOLVED shop-web after 12m")


# --- config ----------------------------------------------------------------------------------------


config_error = functools.partial(
    factories.config_error,
    WebhookConfig,
    {"type": "webhook", "url": "https://events.pagerduty.com/v2/enqueue"},
    not_shown=ROUTING_KEY,
)


def test_config_rules() -> None:
    assert config_error(format="pagerduty") == (
        'format pagerduty needs routing_key (e.g. routing_key: "${PAGERDUTY_ROUTING_KEY}")'
    )
    assert config_error(format="json", routing_key=ROUTING_KEY) == (
        "routing_key is used only with format pagerduty, not json"
    )
    assert config_error(link=LINK) == "link is used only with format slack or pagerduty, not json"
    assert config_error(format="pagerduty", routing_key=ROUTING_KEY + "\n") == (
        "routing_key must be the 32-character integration key of an Events API v2 integration"
    )
    assert config_error(format="slack", link="status.example.com").startswith("link must be an http://")
    assert config_error(format="slack", link="https://x/ a|b").startswith("link must be an http://")
    assert config_error(format="teams") == (
        "unknown format 'teams' (expected one of: json, cloudevents, slack, pagerduty)"
    )
    ok = WebhookConfig.model_validate(
        {"type": "webhook", "url": "https://x/", "format": "pagerduty", "routing_key": ROUTING_KEY}
    )
    assert ROUTING_KEY not in repr(ok) and ROUTING_KEY not in str(ok)


@pytest.mark.parametrize("name", ["slack", "pagerduty"])
def test_the_example_configs_validate(name: str) -> None:
    env = {
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PAGERDUTY_BACKUP_ROUTING_KEY": ROUTING_KEY[::-1],
    }
    path = EXAMPLES / f"{name}.yaml"
    cfg = parse_config(path.read_text(), str(path), env=env)
    formats = [s.config.format for s in cfg.sinks if isinstance(s.config, WebhookConfig)]
    assert name in formats
    assert cfg.checks
