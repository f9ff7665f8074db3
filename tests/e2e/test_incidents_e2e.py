"""Story 1, end to end with the shipped CLI and short intervals: the shop is down at 2 AM.

Three web servers start answering 503. One critical incident (not three pages); the timeline
holds the first failing run with its error; the on-call acknowledges and notes the rollback;
``check --until-green`` exits 0 when the servers recover; the incident resolves; ``report``
prints a post-mortem draft. And: the agent killed with SIGKILL mid-incident comes back without
a duplicate page and still sends the resolution.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.support.agent import firstwatch, start_agent, wait_for_events
from tests.support.peers.fleet import Fleet


def story_config(tmp_path: Path, fleet: Fleet) -> str:
    urls = ", ".join(f'"{u}"' for u in fleet.urls)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
agent: {{name: web-01, state_dir: "{tmp_path / "state"}", outage_tolerance: 1m, listen: "127.0.0.1:0"}}
checks:
  - name: shop-web
    type: http
    targets: [{urls}]
    interval: 0.2s
    timeout: 0.2s
    expect: {{status: [200]}}
    alerts:
      - {{when: down, for: 0.6s, severity: minor}}
    impact:
      - {{share: 0.5, severity: major}}
      - {{share: 1.0, severity: critical}}
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
"""
    )
    return str(path)


def kinds(events: list[dict[str, object]], kind: str) -> list[dict[str, object]]:
    return [e for e in events if e["kind"] == kind]


async def stop(proc: asyncio.subprocess.Process) -> str:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    return err.decode()


async def test_the_shop_is_down_at_2am(tmp_path: Path, fleet: Fleet) -> None:
    cfg = story_config(tmp_path, fleet)
    events_file = tmp_path / "events.jsonl"
    fleet.status = 503
    agent = await start_agent(cfg)
    try:
        evs = await wait_for_events(events_file, lambda e: len(kinds(e, "firing")) >= 1)
        await asyncio.sleep(1.0)  # give any (wrong) extra pages time to show up
        evs = json.loads("[" + ",".join(events_file.read_text().splitlines()) + "]")
        assert [(e["kind"], e["severity"]) for e in evs] == [("firing", "critical")]  # one page, not three
        incident = str(evs[0]["incident"])
        assert evs[0]["summary"].startswith("shop-web: 3 of 3 targets: down (HTTP 503 from 127.0.0.1:")

        code, out, err = await firstwatch("timeline", "-c", cfg, "--format", "json")
        assert code == 0, err
        timeline = json.loads(out)
        first = timeline[0]
        assert first["kind"] == "pending" and "HTTP 503 from 127.0.0.1:" in first["text"]

        code, out, _ = await firstwatch("ack", "-c", cfg, incident[:6], "--by", "maria")
        assert code == 0 and f"incident {incident} acknowledged by maria" in out
        code, out, _ = await firstwatch("ack", "-c", cfg, incident, "--by", "ben")
        assert code == 0 and "already acknowledged by maria" in out
        code, _, _ = await firstwatch(
            "note", "-c", cfg, incident, "rolled", "back", "shop 1.4.2 -> 1.4.1 on web-01..03", "--by", "maria"
        )
        assert code == 0

        asyncio.get_running_loop().call_later(0.5, setattr, fleet, "status", 200)
        code, out, err = await firstwatch("check", "-c", cfg, "--only", "shop-web", "--until-green", "20s")
        assert code == 0, out + err

        evs = await wait_for_events(events_file, lambda e: len(kinds(e, "resolved")) == 1)
        assert kinds(evs, "resolved")[0]["incident"] == incident
        code, report, _ = await firstwatch("report", "-c", cfg, incident)
        assert code == 0
        assert report.startswith(f"# Incident {incident}: shop-web: 3 of 3 targets: down (HTTP 503")
        for needle in (
            "Status: **resolved**",
            "| First error | down (HTTP 503 from 127.0.0.1:",
            "| Detected (fired) |",
            "by maria (",
            "| Recovered |",
            "**rolled back shop 1.4.2 -> 1.4.1 on web-01..03**",
            "## Root cause",
            "## Follow-ups",
        ):
            assert needle in report, needle
        code, out, _ = await firstwatch("report", "-c", cfg, incident, "--format", "json")
        facts = json.loads(out)
        assert facts["acknowledged_by"] == "maria" and facts["status"] == "resolved"
        assert sorted(t["target"] for t in facts["affected_targets"]) == sorted(fleet.urls)
        assert [h["severity"] for h in facts["severity_history"]] == ["critical"]
    finally:
        err = await stop(agent)
    assert "Traceback" not in err


async def test_a_killed_agent_resumes_its_incident_without_a_second_page(tmp_path: Path, fleet: Fleet) -> None:
    cfg = story_config(tmp_path, fleet)
    events_file = tmp_path / "events.jsonl"
    fleet.status = 503
    agent = await start_agent(cfg)
    evs = await wait_for_events(events_file, lambda e: len(kinds(e, "firing")) == 1)
    incident = kinds(evs, "firing")[0]["incident"]
    agent.send_signal(signal.SIGKILL)
    await agent.wait()

    agent = await start_agent(cfg)
    try:
        await asyncio.sleep(1.5)  # several runs of the still-failing targets after the restart
        firing = kinds(json.loads("[" + ",".join(events_file.read_text().splitlines()) + "]"), "firing")
        # at least once: a kill between writing and acknowledging may redeliver the same event
        # (same id); a second page would be a new id
        assert {e["id"] for e in firing} == {firing[0]["id"]}
        fleet.status = 200
        evs = await wait_for_events(events_file, lambda e: len(kinds(e, "resolved")) == 1)
        assert kinds(evs, "resolved")[0]["incident"] == incident
    finally:
        err = await stop(agent)
    assert "restored" in err and "Traceback" not in err


async def test_incident_commands_explain_bad_input(tmp_path: Path, fleet: Fleet) -> None:
    cfg = story_config(tmp_path, fleet)
    code, _, err = await firstwatch("ack", "-c", cfg, "nope")
    assert code == 1 and "no state database in" in err
    (tmp_path / "state").mkdir()
    from agent.incidents.store import Store

    Store(str(tmp_path / "state")).close()
    code, _, err = await firstwatch("note", "-c", cfg, "nope", "hello")
    assert code == 1 and "no incident 'nope' (no incidents recorded yet)" in err
    code, _, err = await firstwatch("timeline", "-c", cfg, "--since", "yesterday")
    assert code == 64 and "invalid --since 'yesterday'" in err
