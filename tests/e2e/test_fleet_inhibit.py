"""The shipped ``config/fleet/alertmanager.yml`` mutes lower SLO burn alerts, on a real
Alertmanager (Debian's ``prometheus-alertmanager``; skipped without it, failing under CI).

An agent pages one burn alert per SLO, the most severe it exceeds; the central Prometheus judges
each ``FirstwatchSloBurn`` rule alone, so a fast burn fires critical, major and minor together.
The file's ``inhibit_rules`` leave the highest active per check, target and agent: posted
alerts, as Prometheus would send them, come back ``suppressed`` (inhibited) or ``active``. Another
agent's burn, and ``FirstwatchValue`` alerts (different conditions of one check), are not muted.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import require_binary
from tests.support.peers.alertmanager import BINARY as AM_BINARY
from tests.support.peers.alertmanager import Alertmanager, fleet_config

DEADLINE = 60.0


def alert(name: str, severity: str, agent: str, rule: str) -> dict[str, Any]:
    """An alert as the central Prometheus sends it for a per-agent rule."""
    labels = {
        "alertname": name, "check_name": "shop-home", "check_target": "https://shop.example.com/",
        "firstwatch_agent_name": agent, "instance": f"probe-{agent}:9464", "severity": severity,
        "firstwatch_rule": rule,
    }  # fmt: skip
    return {"labels": labels, "annotations": {"summary": rule}}


def post(am: Alertmanager, alerts: list[dict[str, Any]]) -> None:
    body = json.dumps(alerts).encode()
    req = urllib.request.Request(f"{am.url}/api/v2/alerts", body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def states(am: Alertmanager) -> dict[tuple[str, str, str], str]:
    """(alertname, agent, severity) -> active | suppressed, of every alert (inhibited too)."""
    out = {}
    for a in am.alerts(inhibited=True, silenced=True, active=True):
        key = (a["labels"]["alertname"], a["labels"]["firstwatch_agent_name"], a["labels"]["severity"])
        out[key] = a["status"]["state"] + (" (inhibited)" if a["status"]["inhibitedBy"] else "")
    return out


async def test_a_firing_burn_alert_mutes_the_lower_ones_of_its_agent(tmp_path: Path) -> None:
    binary = require_binary(AM_BINARY, "prometheus-alertmanager")
    am = Alertmanager(binary, tmp_path / "am", fleet_config("http://127.0.0.1:9/hook"))  # nothing listens
    await asyncio.to_thread(am.start, DEADLINE)
    try:
        burn = "FirstwatchSloBurn"
        sent = [
            alert(burn, "critical", "probe-a", "error budget burn > 14.4x over 1h and 5m"),
            alert(burn, "major", "probe-a", "error budget burn > 6x over 6h and 30m"),
            alert(burn, "minor", "probe-a", "error budget burn > 1x over 3d and 6h"),
            alert(burn, "major", "probe-b", "error budget burn > 6x over 6h and 30m"),
            alert(burn, "minor", "probe-b", "error budget burn > 1x over 3d and 6h"),
            alert("FirstwatchValue", "critical", "probe-a", "status != 200"),
            alert("FirstwatchValue", "minor", "probe-a", "tls.days_left < 14"),
        ]
        await asyncio.to_thread(post, am, sent)
        want = {
            (burn, "probe-a", "critical"): "active",
            (burn, "probe-a", "major"): "suppressed (inhibited)",
            (burn, "probe-a", "minor"): "suppressed (inhibited)",
            (burn, "probe-b", "major"): "active",  # another agent's burn: its own page
            (burn, "probe-b", "minor"): "suppressed (inhibited)",
            ("FirstwatchValue", "probe-a", "critical"): "active",
            ("FirstwatchValue", "probe-a", "minor"): "active",  # a different condition
        }
        deadline = time.monotonic() + DEADLINE
        while True:  # polled: Alertmanager marks inhibitions as the alerts come in
            got = await asyncio.to_thread(states, am)
            if got == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert got == want, am.log_tail()
    finally:
        await asyncio.to_thread(am.stop)
