"""The shipped CLI as a user runs it, against real web servers on 127.0.0.1.

Story 3 ("is it really all down?"), the mitigation check after a rollback, and the daemon raising
and resolving an incident into a file sink, then stopping cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.support.agent import firstwatch, start_agent, wait_for_events
from tests.support.peers.fleet import Fleet


def write_config(tmp_path: Path, fleet: Fleet, extra: str = "", severity: str = "critical") -> str:
    urls = ", ".join(f'"{u}"' for u in fleet.urls)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
agent: {{name: web-01, labels: {{env: test}}, state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0"}}
checks:
  - name: shop-web
    type: http
    targets: [{urls}]
    interval: 0.5s
    timeout: 0.5s  # generous: a loaded CI machine must not make a green target time out
    expect: {{status: [200], body_contains: "Add to cart"}}
    alerts:
      - {{when: down, for: 0.4s, severity: {severity}}}
  - name: other
    type: tcp
    target: "127.0.0.1:{fleet.ports[0]}"
sinks:
  - {{type: file, path: "{tmp_path / "events.jsonl"}"}}
{extra}
"""
    )
    return str(path)


async def test_is_it_really_all_down_text(tmp_path: Path, fleet: Fleet) -> None:
    fleet.status = 503
    code, out, err = await firstwatch("check", "-c", write_config(tmp_path, fleet), "--only", "shop-web")
    assert code == 2, err
    lines = out.splitlines()
    assert lines[0].split() == ["CHECK", "TARGET", "STATUS", "TIME", "DETAIL"]
    for port, line in zip(fleet.ports, lines[1:4], strict=True):
        assert line.startswith("shop-web")
        assert "CRITICAL" in line
        assert f"down (HTTP 503 from 127.0.0.1:{port}) [down for 400ms]" in line
    assert lines[-1] == "CRITICAL: 3 target(s) checked, 3 failing (worst: critical)"


async def test_json_and_nagios_formats(tmp_path: Path, fleet: Fleet) -> None:
    fleet.status = 503
    cfg = write_config(tmp_path, fleet)
    code, out, _ = await firstwatch("check", "-c", cfg, "--format", "json")
    doc = json.loads(out)
    assert (code, doc["status"], doc["exit_code"]) == (2, "critical", 2)
    by_check = {(r["check"], r["target"]): r for r in doc["results"]}
    assert len(by_check) == 4
    web = by_check[("shop-web", fleet.urls[1])]
    assert web["ok"] is False and web["severity"] == "critical" and web["values"]["status"] == 503
    assert web["error_kind"] == "http_status" and web["duration_s"] > 0
    tcp = by_check[("other", f"127.0.0.1:{fleet.ports[0]}")]
    assert tcp["ok"] is True and tcp["severity"] is None

    code, out, _ = await firstwatch("check", "-c", cfg, "--format", "nagios")
    first, *rest = out.splitlines()
    assert code == 2
    assert first.startswith("CRITICAL - 3 of 4 failing: shop-web ")
    assert "| 'shop-web " in first and "'other duration'=" in first
    assert len(rest) == 3 and all(line.startswith("shop-web http://127.0.0.1:") for line in rest)


async def test_all_green_exits_0_and_minor_exits_1(tmp_path: Path, fleet: Fleet) -> None:
    code, out, _ = await firstwatch("check", "-c", write_config(tmp_path, fleet))
    assert code == 0 and out.splitlines()[-1] == "OK: 4 target(s) checked, 0 failing"
    fleet.status = 500
    code, _, _ = await firstwatch("check", "-c", write_config(tmp_path, fleet, severity="minor"), "--only", "shop-web")
    assert code == 1


async def test_until_green_waits_for_the_rollback(tmp_path: Path, fleet: Fleet) -> None:
    fleet.status, fleet.then = 503, (3, 200)  # the first round fails on all three, then the rollback lands
    code, out, err = await firstwatch("check", "-c", write_config(tmp_path, fleet), "--until-green", "20s")
    assert code == 0, out + err
    assert fleet.hits >= 6  # failed once on each, then passed on each
    assert "still failing (3)" in err
    code, _, _ = await firstwatch("check", "-c", write_config(tmp_path, fleet), "--until-green", "1s", "--only", "x")
    assert code == 3


async def test_until_green_gives_up_with_the_last_status(tmp_path: Path, fleet: Fleet) -> None:
    fleet.status = 503
    code, _, _ = await firstwatch("check", "-c", write_config(tmp_path, fleet), "--until-green", "1s")
    assert code == 2


async def test_unknown_check_and_bad_config_exit_3(tmp_path: Path, fleet: Fleet) -> None:
    code, _, err = await firstwatch("check", "-c", write_config(tmp_path, fleet), "--only", "shop-webb")
    assert code == 3 and "no check named 'shop-webb'; did you mean 'shop-web'?" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - {name: x, type: tcp, target: 'a:1', intervall: 1s}\n")
    code, _, err = await firstwatch("check", "-c", str(bad))
    assert code == 3 and "checks[0].intervall: unknown option; did you mean 'interval'?" in err
    code, _, err = await firstwatch("run", "-c", str(bad))
    assert code == 78 and "Traceback" not in err


async def test_daemon_fires_resolves_and_stops_cleanly(tmp_path: Path, fleet: Fleet) -> None:
    cfg = write_config(tmp_path, fleet)
    events_file = tmp_path / "events.jsonl"
    fleet.status = 503
    proc = await start_agent(cfg)

    def wait_for(pred):  # type: ignore[no-untyped-def]
        return wait_for_events(events_file, pred)

    try:
        evs = await wait_for(lambda e: sum(x["kind"] == "firing" for x in e) == 3)
        firing = [e for e in evs if e["kind"] == "firing"]
        assert {e["target"] for e in firing} == set(fleet.urls)
        assert all(e["severity"] == "critical" and e["rule"] == "down for 400ms" for e in firing)
        assert all(e["labels"] == {"env": "test"} and e["agent"] == "web-01" for e in firing)
        fleet.status = 200
        evs = await wait_for(lambda e: sum(x["kind"] == "resolved" for x in e) == 3)
        resolved = {e["incident"] for e in evs if e["kind"] == "resolved"}
        assert resolved == {e["incident"] for e in firing}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    assert "Traceback" not in err.decode()
    assert "stopped after" in err.decode()
    # the default stdout sink is replaced by the configured file sink: stdout stays quiet
    assert out == b""


async def test_list_checks_and_samples_cover_every_registered_type() -> None:
    from checks import CHECKS

    code, out, _ = await firstwatch("list-checks")
    assert code == 0
    for name, cls in CHECKS.items():
        assert f"\n{name}  (" in "\n" + out
        for v in cls.VALUES:
            assert v.name in out
    code, out, _ = await firstwatch("list-checks", "--sample", "tcp")
    assert code == 0 and "type: tcp" in out
