"""Nagios plugin states end to end: real plugins (monitoring-plugins-basic) and small scripts run
by ``firstwatch check`` and by the daemon. WARNING and UNKNOWN stay themselves in the exit code,
the text, JSON and Nagios output and the events; ``--format nagios`` perfdata carries every value
with its unit; a command check's target is its command, without secrets."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from checks.perfdata import parse_perfdata
from tests.conftest import require_binary
from tests.support.agent import firstwatch, start_agent, wait_for_events

DUMMY = "/usr/lib/nagios/plugins/check_dummy"
CANARY = "s3cr3t-canary-plugin-42"


def dummy() -> str:
    return require_binary(DUMMY, "monitoring-plugins-basic")


def config(tmp_path: Path, checks: str, sinks: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f'agent: {{name: box, state_dir: "{tmp_path / "state"}", listen: ""}}\nchecks:\n{checks}\n{sinks}')
    return str(path)


def plugin_check(name: str, state: str, text: str, extra: str = "") -> str:
    return f'  - {{name: {name}, type: command, command: ["{dummy()}", "{state}", "{text}"]{extra}}}\n'


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


async def check(cfg: str, *args: str) -> tuple[int, str]:
    code, out, err = await firstwatch("check", "-c", cfg, *args)
    assert "Traceback" not in err, err
    return code, out


async def test_warning_exits_1_and_reads_warning(tmp_path: Path) -> None:
    cfg = config(tmp_path, plugin_check("load", "1", "load is high"))  # default rule: down is critical
    code, out = await check(cfg)
    assert code == 1, out
    row = out.splitlines()[1]
    assert row.startswith("load ") and f" {DUMMY} 1 'load is high'  WARNING  " in row
    assert "WARNING: load is high [down]" in out and "down (" not in out
    assert out.splitlines()[-1] == "WARNING: 1 target(s) checked, 1 failing"

    code, out = await check(cfg, "--format", "json")
    r = json.loads(out)["results"][0]
    assert (code, r["status"], r["error_kind"], r["error"]) == (1, "warning", "warning", "WARNING: load is high")
    assert r["target"] == f"{DUMMY} 1 'load is high'"

    code, out = await check(cfg, "--format", "nagios")
    first, second = out.splitlines()
    assert code == 1 and first.startswith("WARNING - 1 of 1 failing: load ") and "(warning)" in first
    assert second.endswith(": WARNING WARNING: load is high [down]")


async def test_unknown_exits_3_and_reads_unknown(tmp_path: Path) -> None:
    cfg = config(tmp_path, plugin_check("db", "3", "no idea"))
    code, out = await check(cfg)
    assert code == 3, out
    assert " UNKNOWN " in out.splitlines()[1] and "UNKNOWN: no idea [down]" in out
    assert "CRITICAL" not in out and "down (" not in out
    assert out.splitlines()[-1] == "UNKNOWN: 1 target(s) checked, 1 failing"

    code, out = await check(cfg, "--format", "json")
    doc = json.loads(out)
    assert (code, doc["status"], doc["exit_code"]) == (3, "unknown", 3)
    assert (doc["results"][0]["status"], doc["results"][0]["error_kind"]) == ("unknown", "unknown")
    assert doc["results"][0]["error"] == "UNKNOWN: no idea"

    code, out = await check(cfg, "--format", "nagios")
    assert code == 3 and out.startswith("UNKNOWN - 1 of 1 failing: db ") and "(unknown)" in out


async def test_states_combine_as_nagios_does(tmp_path: Path) -> None:
    warn, unknown = plugin_check("w", "1", "meh"), plugin_check("u", "3", "eh")
    crit = plugin_check("c", "2", "fire")
    minor = plugin_check("m", "2", "fire", ", alerts: [{when: down, severity: minor}]")
    assert (await check(config(tmp_path, warn + unknown)))[0] == 3  # UNKNOWN over WARNING
    assert (await check(config(tmp_path, warn + unknown + crit)))[0] == 2  # CRITICAL over both
    assert (await check(config(tmp_path, minor)))[0] == 1  # a CRITICAL follows the rules' severity
    code, out = await check(config(tmp_path, crit))
    assert code == 2 and out.splitlines()[-1] == "CRITICAL: 1 target(s) checked, 1 failing (worst: critical)"
    # an UNKNOWN with a major rule failing on its exit code: the rule says worse
    major = plugin_check(
        "u2", "3", "eh", ", alerts: [{when: down, severity: minor}, {when: exit_code > 2, severity: major}]"
    )
    assert (await check(config(tmp_path, major)))[0] == 2


async def test_unknown_and_warning_reach_events_as_themselves(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    checks = plugin_check("db", "3", "no idea", ", interval: 0.2s") + plugin_check(
        "load", "1", "meh", ", interval: 0.2s"
    )
    cfg = config(tmp_path, checks, f'sinks:\n  - {{type: file, path: "{events}"}}\n')
    proc = await start_agent(cfg)
    try:
        evs = await wait_for_events(events, lambda e: sum(x["kind"] == "firing" for x in e) == 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    by_check = {e["check"]: e for e in evs}
    assert "UNKNOWN: no idea" in by_check["db"]["summary"] and "(exit 3)" not in by_check["db"]["summary"]
    assert "WARNING: meh" in by_check["load"]["summary"]
    assert by_check["db"]["target"] == f"{DUMMY} 3 'no idea'"
    assert "localhost" not in err.decode()


async def test_nagios_perfdata_carries_every_value_with_its_unit(tmp_path: Path) -> None:
    plugin = script(
        tmp_path,
        "app.sh",
        "echo \"APP OK - fine | latency=250ms 'hit ratio'=93.5%;90;80;0;100 cache=512KB count=12 up=0.0112265s\"\n",
    )
    cfg = config(tmp_path, f'  - {{name: app, type: command, command: ["{plugin}"]}}\n')
    code, out = await check(cfg, "--format", "nagios")
    assert code == 0, out
    status, _, perf = out.partition(" | ")
    assert status == "OK - all 1 targets ok"
    assert perf.startswith("'app duration'=")
    assert "'app perf.hit ratio'=93.5%;;;0;100" in perf
    items = {p.label: (p.value, p.uom, p.min, p.max) for p in parse_perfdata(perf)}  # as Nagios reads it
    assert items.pop("app duration")[1:] == ("s", 0, None)
    assert items == {
        "app exit_code": (0, "", None, None),
        "app perf.latency": (0.25, "s", 0, None),
        "app perf.hit ratio": (93.5, "%", 0, 100),
        "app perf.cache": (512000, "B", 0, None),
        "app perf.count": (12, "", None, None),
        "app perf.up": (0.011227, "s", 0, None),
    }

    code, out = await check(cfg)  # the same values for humans: one format per unit
    detail = out.splitlines()[1]
    assert "perf.latency 250ms, perf.hit ratio 93.5%, perf.cache 512KB, perf.count 12, perf.up 11ms" in detail
    assert "0.0112265" not in out


async def test_perfdata_labels_are_quoted_per_the_guidelines(tmp_path: Path) -> None:
    plugin = script(tmp_path, "odd.sh", "echo \"OK | 'it''s'=1 'a=b'=2 plain=3\"\n")
    cfg = config(tmp_path, f'  - {{name: odd, type: command, command: ["{plugin}"]}}\n')
    _, out = await check(cfg, "--format", "nagios")
    perf = out.partition(" | ")[2]
    assert "'odd perf.it''s'=1 'odd perf.a_b'=2 'odd perf.plain'=3" in perf
    assert [p.label for p in parse_perfdata(perf)][1:] == [
        "odd exit_code",
        "odd perf.it's",
        "odd perf.a_b",
        "odd perf.plain",
    ]


async def test_a_secret_argument_is_not_shown_as_the_target(tmp_path: Path) -> None:
    cfg = config(
        tmp_path, f'  - {{name: db, type: command, command: ["{dummy()}", "1", "--password=${{DB_PASSWORD}}"]}}\n'
    )
    env = {**os.environ, "DB_PASSWORD": CANARY}
    os.environ["DB_PASSWORD"] = CANARY
    try:
        code, out = await check(cfg, "--format", "json")
    finally:
        del os.environ["DB_PASSWORD"]
    assert env and code == 1
    doc = json.loads(out)
    assert doc["results"][0]["target"] == f"{DUMMY} 1 <redacted>"
    assert CANARY not in json.dumps(doc["results"][0]["target"])
