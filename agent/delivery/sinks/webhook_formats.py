"""The bodies a ``type: webhook`` sink can POST: its ``format:`` option.

Each format is ``render(event, options) -> (content_type, body)``; ``options`` carries the few
settings a format needs (the status page ``link``, the PagerDuty ``routing_key``).

    json         the event itself (``application/json``)
    cloudevents  a CloudEvents 1.0 structured-mode envelope with the event as ``data``
    slack        a Slack incoming-webhook message: ``text`` (the notification) and ``blocks``
                 (title with the severity, the summary, check, target, rule and since; the
                 checks failing because of this one and a ``Runbook`` link, when there are;
                 and a context line with the agent, the incident and a link to the status
                 page). ``&``, ``<`` and ``>`` in texts from checks and peers are escaped, so an
                 error text cannot mention ``@channel`` or forge a link; a runbook becomes a
                 link only when it is an http(s) URL (anything else is shown as text).
    pagerduty    a PagerDuty Events API v2 event: ``firing``, ``changed`` and ``reminder``
                 trigger (or update) the alert whose ``dedup_key`` is the event fingerprint,
                 ``resolved`` resolves it; ``agent`` events trigger ``firstwatch-agent-AGENT``.
                 Severities map critical -> critical, major -> error, medium -> warning,
                 minor -> info. A trigger links the runbook (when it is an http(s) URL) and
                 the status page; ``custom_details`` is the event (``runbook``, ``affected``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.core.events import Event, iso_time
from agent.core.safe_text import web_url
from agent.core.units import format_duration


@dataclass(frozen=True)
class FormatOptions:
    link: str | None = None  # the status page, linked from Slack messages and PagerDuty alerts
    routing_key: str | None = field(default=None, repr=False)  # a secret: PagerDuty's integration key


Render = Callable[[Event, FormatOptions], tuple[str, bytes]]


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


_NOT_IN_URL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def runbook_link(event: Event) -> str | None:
    """The event's runbook when it may be a link: an http:// or https:// URL with a host and no
    spaces or control characters (never ``javascript:`` or ``data:``); None otherwise."""
    url = event.runbook
    if not url or len(url) > 1800 or _NOT_IN_URL.search(url):
        return None
    return url if web_url(url) else None


def render_json(event: Event, options: FormatOptions) -> tuple[str, bytes]:
    return "application/json", event.to_json().encode()


def render_cloudevents(event: Event, options: FormatOptions) -> tuple[str, bytes]:
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": f"firstwatch/{event.agent}",
        "type": f"io.firstwatch.event.{event.kind}",
        "time": event.to_dict()["time"],
    }
    if event.check:  # optional in CloudEvents, but never empty when present
        envelope["subject"] = event.check
    envelope["datacontenttype"] = "application/json"
    envelope["data"] = event.to_dict()
    return "application/cloudevents+json", _dumps(envelope)


# --- slack ------------------------------------------------------------------------------------

_EMOJI = {"critical": ":red_circle:", "major": ":large_orange_circle:", "medium": ":large_yellow_circle:"}
_CUT_ENTITY = re.compile(r"&[a-z]{0,3}\Z")


def _esc(text: str, limit: int = 2900) -> str:
    """``text`` for Slack's mrkdwn: its three control characters escaped, cut to ``limit``."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(out) > limit:
        out = _CUT_ENTITY.sub("", out[: limit - 1]) + "…"
    return out


def _lasted(event: Event) -> str | None:
    return format_duration(max(0.0, event.time - event.started_at)) if event.started_at is not None else None


def slack_title(event: Event) -> str:
    """``:red_circle: CRITICAL firing: shop-web``, ``:white_check_mark: RESOLVED shop-web after 12m``."""
    sev, what = event.severity.upper(), event.check or event.target or event.agent
    emoji = _EMOJI.get(event.severity, ":large_blue_circle:")
    lasted = _lasted(event)
    if event.kind == "resolved":
        return f":white_check_mark: RESOLVED {what}" + (f" after {lasted}" if lasted else "")
    if event.kind == "agent":
        return f":warning: {sev} firstwatch agent {event.agent}"
    if event.kind == "reminder":
        return f"{emoji} {sev} still firing" + (f" after {lasted}" if lasted else "") + f": {what}"
    if event.kind == "changed":
        return f"{emoji} {sev} (severity changed): {what}"
    return f"{emoji} {sev} firing: {what}"


def slack_link(url: str, text: str, limit: int = 1400) -> str | None:
    """``<URL|text>`` for a checked ``url`` (http or https, no spaces), or None when it would be
    longer than ``limit``. Escaped as Slack asks, and a ``|`` in it percent-encoded, so it can
    neither end the link early nor change its text."""
    target = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "%7C")
    return f"<{target}|{text}>" if len(target) + len(text) + 3 <= limit else None


def slack_extra(event: Event) -> str | None:
    """The lines under the summary (a section of their own, at most ~2900 characters): the checks
    failing because of this one, and the runbook."""
    lines = []
    if event.affected:
        lines.append(f"Also failing because of this: {_esc(', '.join(event.affected), 1400)}")
    url = runbook_link(event)
    link = slack_link(url, "Runbook") if url is not None else None
    if link is not None:
        lines.append(f":book: {link}")
    elif event.runbook:  # not a URL a reader may safely follow: shown, never linked
        lines.append(f"Runbook: {_esc(event.runbook, 1000)}")
    return "\n".join(lines) or None


def render_slack(event: Event, options: FormatOptions) -> tuple[str, bytes]:
    title = _esc(slack_title(event), 200)
    summary = _esc(event.summary)
    fields = []
    if event.check:
        fields.append(f"*Check*\n{_esc(event.check, 1000)}" + (f" ({_esc(event.type, 100)})" if event.type else ""))
    if event.target:
        fields.append(f"*Target*\n{_esc(event.target, 1900)}")
    if event.rule:
        fields.append(f"*Rule*\n{_esc(event.rule, 1900)}")
    if event.started_at is not None:
        since = int(event.started_at)  # shown in each reader's own time zone, the fallback in UTC
        fields.append(f"*Since*\n<!date^{since}^{{date_short_pretty}} {{time}}|{iso_time(event.started_at)}>")
    context = [f"agent *{_esc(event.agent, 200)}*"]
    if event.incident:
        context.append(f"incident `{_esc(event.incident, 100)}`")
        if event.kind in ("firing", "changed", "reminder"):
            context.append(f"ack: `firstwatch ack {_esc(event.incident, 100)}`")
    if options.link:
        context.append(f"<{_esc(options.link, 1000)}|status page>")
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": summary, "verbatim": True}}
    if fields:
        section["fields"] = [{"type": "mrkdwn", "text": f, "verbatim": True} for f in fields]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*", "verbatim": True}},
        section,
    ]
    extra = slack_extra(event)
    if extra is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": extra, "verbatim": True}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "  ·  ".join(context)}]})
    body = {
        "text": f"{title}: {summary.removeprefix(_esc(event.check or '') + ': ')}",  # the notification
        "blocks": blocks,
    }
    return "application/json", _dumps(body)


# --- pagerduty -------------------------------------------------------------------------------

PAGERDUTY_SEVERITY = {"critical": "critical", "major": "error", "medium": "warning", "minor": "info"}
_ACTIONS = {"firing": "trigger", "changed": "trigger", "reminder": "trigger", "agent": "trigger", "resolved": "resolve"}


def pagerduty_dedup_key(event: Event) -> str:
    """One PagerDuty alert per firstwatch alert: its fingerprint (stable per agent, check, target
    and rule); the agent's own trouble is one alert per agent."""
    if event.kind == "agent" or event.fingerprint is None:
        key = f"firstwatch-agent-{event.agent}" if event.kind == "agent" else f"firstwatch-{event.incident or event.id}"
    else:
        key = event.fingerprint
    return key[:255]


def render_pagerduty(event: Event, options: FormatOptions) -> tuple[str, bytes]:
    if not options.routing_key:  # the config refuses format: pagerduty without one
        raise ValueError("format pagerduty needs a routing_key")
    action = _ACTIONS[event.kind]
    body: dict[str, Any] = {
        "routing_key": options.routing_key,
        "event_action": action,
        "dedup_key": pagerduty_dedup_key(event),
    }
    if action == "trigger":
        summary = event.summary.strip() or f"{event.kind}: {event.check or event.agent}"
        payload: dict[str, Any] = {
            "summary": summary if len(summary) <= 1024 else summary[:1023] + "…",
            "source": event.agent or "firstwatch",
            "severity": PAGERDUTY_SEVERITY.get(event.severity, "error"),
            "timestamp": iso_time(event.time),
        }
        for key, value in (("component", event.check), ("group", event.target), ("class", event.rule)):
            if value:
                payload[key] = value
        payload["custom_details"] = event.to_dict()
        body["payload"] = payload
        body["client"] = "firstwatch"
        links = []
        runbook = runbook_link(event)
        if runbook is not None:
            links.append({"href": runbook, "text": "Runbook"})
        if options.link:
            body["client_url"] = options.link
            links.append({"href": options.link, "text": "firstwatch status page"})
        if links:
            body["links"] = links
    return "application/json", _dumps(body)


FORMATS: dict[str, Render] = {
    "json": render_json,
    "cloudevents": render_cloudevents,
    "slack": render_slack,
    "pagerduty": render_pagerduty,
}
OPTIONS_OF: dict[str, frozenset[str]] = {  # the format-specific webhook options each format uses
    "slack": frozenset({"link"}),
    "pagerduty": frozenset({"link", "routing_key"}),
}
