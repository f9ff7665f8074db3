"""A journey end to end: the shipped daemon walks the shop's login, cart and payment; a payment
that fails pages with the step named, its recovery resolves it, and neither the saved token nor
the password from ``${VAR}`` shows up in the events, the daemon's debug log or the timeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.checks.test_check_journey import PASSWORD, Shop, shop_app  # the shop API, defined once
from tests.support.agent import firstwatch, start_daemon, wait_for_events
from tests.support.peers.servers import serve_app


async def test_a_failing_payment_pages_naming_the_step_and_nothing_secret_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = Shop(fail_pay=True)
    runner, shop.port = await serve_app(shop_app(shop), access_log=None)
    monkeypatch.setenv("SHOP_PASSWORD", PASSWORD)
    events = tmp_path / "events.jsonl"
    config = tmp_path / "config.yaml"
    bearer = 'headers: {Authorization: "Bearer {{ token }}"}'
    config.write_text(
        f"""
agent: {{state_dir: "{tmp_path / "state"}", listen: ""}}
checks:
  - name: checkout
    type: journey
    interval: 0.3s
    timeout: 0.3s
    steps:
      - name: login
        method: POST
        url: "{shop.base}/login"
        json: {{user: probe, password: "${{SHOP_PASSWORD}}"}}
        save: {{token: json.access_token}}
      - {{name: cart, url: "{shop.base}/cart", {bearer}}}
      - {{name: pay, url: "{shop.base}/pay", {bearer}}}
sinks:
  - {{type: file, path: "{events}"}}
"""
    )
    daemon = await start_daemon(config, "--log-level", "debug")
    try:
        firing = await wait_for_events(events, lambda evs: any(e["kind"] == "firing" for e in evs))
        shop.fail_pay = False
        await wait_for_events(events, lambda evs: any(e["kind"] == "resolved" for e in evs))
    finally:
        log = await daemon.stop()
        await runner.cleanup()
    (page,) = [e for e in firing if e["kind"] == "firing"]
    assert page["summary"] == f"checkout: down (step pay: HTTP 500 from 127.0.0.1:{shop.port})"
    assert (page["type"], page["target"], page["rule"]) == ("journey", f"{shop.base}/login", "down")
    code, timeline, _ = await firstwatch("timeline", "-c", str(config), "--format", "json")
    assert code == 0 and "step pay: HTTP 500" in timeline
    everything = [events.read_text(), log, timeline]
    assert "down (step pay: HTTP 500" in log and "up: steps 3" in log and len(shop.tokens) >= 2  # real runs, logged
    for secret in [*shop.tokens, PASSWORD]:
        assert all(secret not in text for text in everything), secret
    assert json.loads(events.read_text().splitlines()[-1])["kind"] == "resolved"
