"""The runbook and the checks failing because of this one (``Event.runbook``, ``Event.affected``)
in the Slack and PagerDuty messages a human reads: a ``Runbook`` link when the runbook is an
http(s) URL, shown as escaped text (never a link) when it is anything else, and the body checked
by the same Block Kit and Events API v2 rules as every other message, on real local receivers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from agent.core.events import Event
from agent.delivery.sinks.webhook import WebhookConfig, WebhookSink
from tests.delivery.test_webhook_formats import LINK, ROUTING_KEY, PagerDuty, event, pagerduty, slack, texts
from tests.support.peers.servers import serve_app

RUNBOOK = "https://wiki.example.com/runbooks/shop-web?section=503&lang=en"
AFFECTED = ["shop-checkout", "search"]

# Every link firstwatch may make in a Slack text: the status page, a date, the runbook.
OURS = re.compile(r"<(https?://[^|<>\s]+\|(?:status page|Runbook)|!date\^\d+\^[^|<>]+\|[^<>]+)>")


def slack_extra(doc: dict[str, Any]) -> str:
    """The text of the section under the summary (the affected checks and the runbook)."""
    _title, _summary, extra, context = doc["blocks"]  # between the summary and the context line
    assert extra["type"] == "section" and extra["text"]["verbatim"] is True and context["type"] == "context"
    return str(extra["text"]["text"])


def sink(url: str, **options: Any) -> WebhookSink:
    return WebhookSink(WebhookConfig.model_validate({"type": "webhook", "url": url, **options}), "hook")


# --- slack -----------------------------------------------------------------------------------------


def test_slack_links_the_runbook_and_names_what_else_fails() -> None:
    doc = slack(event(runbook=RUNBOOK, affected=AFFECTED))
    assert slack_extra(doc) == (
        "Also failing because of this: shop-checkout, search\n"
        ":book: <https://wiki.example.com/runbooks/shop-web?section=503&amp;lang=en|Runbook>"
    )
    upper = "HTTPS://Wiki.example.com/rb"
    assert slack_extra(slack(event(runbook=upper))) == f":book: <{upper}|Runbook>"
    assert slack_extra(slack(event(affected=["search"]))) == "Also failing because of this: search"
    assert len(slack(event())["blocks"]) == 3  # neither: no extra section


@pytest.mark.parametrize(
    ("runbook", "shown"),
    [
        ("javascript:alert(document.cookie)", "javascript:alert(document.cookie)"),
        ("data:text/html,<script>alert(1)</script>", "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("https://ok.example/ <https://evil.example|Runbook>", "https://ok.example/ &lt;https://evil.example|Runbook&gt;"),
        ("<!channel> see the wiki", "&lt;!channel&gt; see the wiki"),
        ("http:///no-host", "http:///no-host"),
        ("wiki.example.com/rb", "wiki.example.com/rb"),
        ("https://ok.example/\n<!here>", "https://ok.example/\n&lt;!here&gt;"),
    ],
)  # fmt: skip
def test_a_runbook_that_is_not_a_web_url_is_shown_but_never_linked(runbook: str, shown: str) -> None:
    doc = slack(event(runbook=runbook))
    assert slack_extra(doc) == f"Runbook: {shown}"
    for text in texts(doc):
        assert "|Runbook>" not in text, text
        bare = OURS.sub("", text)  # what is left once the links firstwatch made are taken out
        assert "<" not in bare and ">" not in bare, text


def test_a_runbook_url_cannot_forge_another_link_or_mention() -> None:
    sneaky = "https://ok.example/rb|Click-here><!channel><https://evil.example/?a=1&b=2"
    doc = slack(event(runbook=sneaky, affected=["<!everyone>", "a&b"]))
    assert slack_extra(doc) == (
        "Also failing because of this: &lt;!everyone&gt;, a&amp;b\n"
        ":book: <https://ok.example/rb%7CClick-here&gt;&lt;!channel&gt;&lt;https://evil.example/?a=1&amp;b=2|Runbook>"
    )
    links = [m for t in texts(doc) for m in re.findall(r"<([^<>]*)>", t)]
    assert [link.rsplit("|", 1)[1] for link in links if link.startswith("http")] == ["Runbook", "status page"]
    assert not any(link.startswith(("!channel", "!everyone", "!here")) for link in links)


def test_slack_sections_stay_within_block_kit_limits_with_long_lists_and_urls() -> None:
    many = [f"check-{i:03d}-" + "x" * 20 for i in range(200)]
    long_url = "https://wiki.example.com/" + "&" * 1700  # escaped, longer than a section may hold
    extra = slack_extra(slack(event(runbook=long_url, affected=many)))  # slack() checks the schema
    assert len(extra) <= 3000 and "|Runbook>" not in extra and extra.count("\n") == 1
    assert slack_extra(slack(event(runbook="https://wiki.example.com/" + "a" * 1300))).endswith("|Runbook>")


async def test_slack_receiver_gets_the_runbook_link() -> None:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/services/T000/B000/XXXX", hook)
    runner, port = await serve_app(app, access_log=None)
    s = sink(f"http://127.0.0.1:{port}/services/T000/B000/XXXX", format="slack", link=LINK)
    try:
        await s.send(event(runbook=RUNBOOK, affected=AFFECTED))
    finally:
        await s.close()
        await runner.cleanup()
    (doc,) = got
    assert doc == slack(event(runbook=RUNBOOK, affected=AFFECTED))
    assert f"<{RUNBOOK.replace('&', '&amp;')}|Runbook>" in slack_extra(doc)


# --- pagerduty -------------------------------------------------------------------------------------


def test_pagerduty_links_the_runbook_beside_the_status_page() -> None:
    e = event(runbook=RUNBOOK, affected=AFFECTED)
    trigger = pagerduty(e, link=LINK)  # checked against the Events API v2 rules
    assert trigger["links"] == [
        {"href": RUNBOOK, "text": "Runbook"},
        {"href": LINK, "text": "firstwatch status page"},
    ]
    details = trigger["payload"]["custom_details"]
    assert (details["runbook"], details["affected"]) == (RUNBOOK, AFFECTED)
    alone = pagerduty(e)  # no status page configured: the runbook alone
    assert alone["links"] == [{"href": RUNBOOK, "text": "Runbook"}] and "client_url" not in alone
    plain = pagerduty(event(), link=LINK)
    assert plain["links"] == [{"href": LINK, "text": "firstwatch status page"}]
    assert (plain["payload"]["custom_details"]["runbook"], plain["payload"]["custom_details"]["affected"]) == (None, [])
    assert "links" not in pagerduty(event())
    assert "links" not in pagerduty(event(kind="resolved", runbook=RUNBOOK))  # a resolve carries only the key


@pytest.mark.parametrize("runbook", ["javascript:alert(1)", "data:text/html,x", "https://a.example/ b", "//a.example/"])
def test_pagerduty_never_links_a_runbook_that_is_not_a_web_url(runbook: str) -> None:
    trigger = pagerduty(event(runbook=runbook), link=LINK)
    assert trigger["links"] == [{"href": LINK, "text": "firstwatch status page"}]
    assert trigger["payload"]["custom_details"]["runbook"] == runbook  # still told, as text


async def test_pagerduty_receiver_gets_the_runbook_link() -> None:
    receiver = PagerDuty()
    runner, port = await serve_app(receiver.app, access_log=None)
    s = sink(f"http://127.0.0.1:{port}/v2/enqueue", format="pagerduty", routing_key=ROUTING_KEY)
    try:
        await s.send(event(runbook=RUNBOOK, affected=AFFECTED))
        await s.send(event(kind="resolved", runbook=RUNBOOK, affected=AFFECTED))
    finally:
        await s.close()
        await runner.cleanup()
    trigger, resolve = receiver.events  # both accepted (202) by a receiver validating like the API
    assert trigger["links"] == [{"href": RUNBOOK, "text": "Runbook"}]
    assert trigger["payload"]["custom_details"]["affected"] == AFFECTED
    assert resolve["event_action"] == "resolve"


def test_every_kind_with_a_runbook_fits_both_formats() -> None:
    for kind in ("firing", "changed", "reminder", "resolved", "agent"):
        e: Event = event(kind=kind, runbook=RUNBOOK, affected=AFFECTED)
        slack(e, link=None)
        pagerduty(e, link=LINK)
