"""``firstwatch slo`` (issue 16) against a real endpoint (``agent.web.api.start_http`` on
127.0.0.1) serving canned status documents, the CLI run as a subprocess: the exact table and
JSON, exit codes by the burn alerts firing, no SLOs, an agent from before SLOs, no agent at all,
another agent, and what the agent says escaped."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.web.api import start_http
from agent.web.slos import budget_text, burn_text, percent, sli_text
from tests.support.agent import Run, firstwatch
from tests.support.peers.servers import free_port
from tests.web.test_http_api import SNAPSHOT
from tests.web.test_status_cli import ESC, Source, assert_unknown, config

DAY = 86400.0
CRITICAL = {"rule": "slo burn 14.4x over 1h and 5m", "severity": "critical"}
MAJOR = {"rule": "slo burn 6x over 6h and 30m", "severity": "major"}
MINOR = {"rule": "slo burn 1x over 3d and 6h", "severity": "minor"}

# burning fast: the agent's windows come in any order, the table and JSON sort them
BURNING: dict[str, Any] = {
    "check": "shop-web",
    "target": "https://10.0.0.2/",
    "objective": 0.999,
    "window_s": 28 * DAY,
    "latency_s": 0.8,
    "runs": 80640,
    "good": 80600,
    "sli": 0.9995,
    "budget_remaining": 0.41,
    "burn_rates": {"1h": 15.2, "5m": 18.04, "3d": 0.5, "30m": 2.0, "6h": 3.0},
    "firing": [CRITICAL],
}
# overspent, one window without runs, two alerts firing
OVERSPENT: dict[str, Any] = {
    "check": "shop-web",
    "target": "https://10.0.0.3/",
    "objective": 0.999,
    "window_s": 28 * DAY,
    "latency_s": 0.8,
    "runs": 10000,
    "good": 9988,
    "sli": 0.9988,
    "budget_remaining": -0.2,
    "burn_rates": {"5m": None, "30m": 7.5, "1h": 6.25, "6h": 6.1, "3d": 1.2},
    "firing": [MINOR, MAJOR],
}
# no runs yet (a host check: no target)
IDLE: dict[str, Any] = {
    "check": "box",
    "target": "",
    "objective": 0.99,
    "window_s": 7 * DAY,
    "latency_s": None,
    "runs": 0,
    "good": 0,
    "sli": None,
    "budget_remaining": None,
    "burn_rates": {"5m": None, "1h": None},
    "firing": [],
}


def document(*slos: object, name: str = "mon-01") -> dict[str, Any]:
    doc = copy.deepcopy(SNAPSHOT)
    doc["agent"]["name"] = name
    doc["slos"] = [copy.deepcopy(s) for s in slos]
    return doc


@contextlib.asynccontextmanager
async def agent_serving(doc: dict[str, Any]) -> AsyncIterator[int]:
    server = await start_http("127.0.0.1:0", Source(doc))
    try:
        yield server.port
    finally:
        await server.close()


async def slo(doc: dict[str, Any], tmp_path: Path, *args: str) -> Run:
    async with agent_serving(doc) as port:
        return await firstwatch("slo", "-c", config(tmp_path, port), *args)


async def test_the_table(tmp_path: Path) -> None:
    code, out, err = await slo(document(BURNING, OVERSPENT, IDLE), tmp_path)
    assert (code, err) == (2, ""), (code, out, err)
    assert out.splitlines() == [
        "CHECK     TARGET             OBJECTIVE  WINDOW  SLI     BUDGET LEFT       "
        "BURN RATES                                      STATUS",
        "shop-web  https://10.0.0.2/  99.9%      28d     99.95%  41%               "
        "5m 18.0x  30m 2.0x  1h 15.2x  6h 3.0x  3d 0.5x  critical burn",
        "shop-web  https://10.0.0.3/  99.9%      28d     99.88%  -20% (overspent)  "
        "5m -  30m 7.5x  1h 6.2x  6h 6.1x  3d 1.2x       major burn, minor burn",
        "box       this host          99%        7d      -       -                 "
        "-                                               ok",
    ]


async def test_json(tmp_path: Path) -> None:
    code, out, err = await slo(document(BURNING, IDLE), tmp_path, "--format", "json")
    assert (code, err) == (2, "")
    burning = {**BURNING, "burn_rates": {"5m": 18.04, "30m": 2.0, "1h": 15.2, "6h": 3.0, "3d": 0.5}}
    assert json.loads(out) == {"slos": [burning, IDLE]}
    assert list(json.loads(out)["slos"][0]["burn_rates"]) == ["5m", "30m", "1h", "6h", "3d"]  # window order


@pytest.mark.parametrize(
    ("firing", "expected"),
    [([], 0), ([MINOR], 1), ([{"rule": "r", "severity": "medium"}], 1), ([MINOR, MAJOR], 2), ([CRITICAL], 2)],
)
async def test_exit_code_is_the_worst_burn_alert_firing(
    tmp_path: Path, firing: list[dict[str, str]], expected: int
) -> None:
    doc = document(IDLE, {**BURNING, "firing": firing})
    for fmt in ("text", "json"):
        code, out, _ = await slo(doc, tmp_path, "--format", fmt)
        assert code == expected, (fmt, out)


async def test_an_open_incident_does_not_set_the_exit_code(tmp_path: Path) -> None:
    doc = document(IDLE)
    doc["summary"]["worst"] = "critical"  # status would exit 2; no burn alert fires
    code, out, _ = await slo(doc, tmp_path)
    assert code == 0 and out.splitlines()[1].endswith("  ok"), out


async def test_no_slos_configured(tmp_path: Path) -> None:
    code, out, err = await slo(document(), tmp_path)
    assert (code, out, err) == (0, "no SLOs configured: no check of agent mon-01 has an slo\n", "")
    code, out, _ = await slo(document(), tmp_path, "--format", "json")
    assert (code, json.loads(out)) == (0, {"slos": []})


async def test_an_agent_from_before_slos_is_told_to_upgrade(tmp_path: Path) -> None:
    old = copy.deepcopy(SNAPSHOT)  # no "slos" key
    assert "slos" not in old
    run = await slo(old, tmp_path)
    assert_unknown(run, "the agent mon-01 (firstwatch 0.1.0) does not report SLOs: upgrade it")
    code, out, _ = await slo(old, tmp_path, "--format", "json")
    assert code == 3 and json.loads(out) == {
        "status": "unknown",
        "error": "the agent mon-01 (firstwatch 0.1.0) does not report SLOs: upgrade it",
    }
    broken = {**old, "slos": {"shop-web": BURNING}}  # not a list: not a document this client reads
    assert_unknown(await slo(broken, tmp_path), "does not report SLOs")


async def test_no_agent_or_another_agent_is_unknown_as_for_status(tmp_path: Path) -> None:
    nobody = config(tmp_path, free_port())
    assert_unknown(await firstwatch("slo", "-c", nobody), "connection refused")
    code, out, _ = await firstwatch("slo", "-c", nobody, "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["status"] == "unknown" and "connection refused" in doc["error"]
    status = await firstwatch("status", "-c", nobody)
    assert status[1] == (await firstwatch("slo", "-c", nobody))[1]  # the same line, word for word
    async with agent_serving(document(BURNING, name="other")) as port:
        assert_unknown(await firstwatch("slo", "-c", config(tmp_path, port)), "'other', not 'mon-01'")


async def test_what_the_agent_says_is_read_forgivingly_and_escaped(tmp_path: Path) -> None:
    odd = {
        "check": "shop\x1b]0;pwned\x07\x1b[2J",
        "target": None,
        "objective": "99.9%",
        "window_s": -1,
        "sli": True,
        "budget_remaining": "lots",
        "burn_rates": {"5m": "fast", "1h": 2},
        "firing": [{"severity": "critical\x1b[31m"}, "not a rule"],
    }
    code, out, err = await slo(document(odd, "not a record"), tmp_path)
    assert ESC not in out + err and "\x07" not in out and "Traceback" not in err, out
    assert code == 0, out  # an unknown severity is no severity
    assert out.splitlines()[1].split() == [
        "shop\\x1b]0;pwned\\x07\\x1b[2J", "this", "host", "-", "-", "-", "-",
        "5m", "-", "1h", "2.0x", "?", "burn,", "critical\\x1b[31m", "burn",
    ]  # fmt: skip
    assert len(out.splitlines()) == 2  # the record that is not an object is skipped
    code, out, _ = await slo(document(odd), tmp_path, "--format", "json")
    (record,) = json.loads(out)["slos"]
    assert ESC not in out and record["check"] == "shop\x1b]0;pwned\x07\x1b[2J"
    assert (record["objective"], record["window_s"], record["sli"], record["budget_remaining"]) == (
        None,
        -1.0,
        None,
        None,
    )
    assert record["burn_rates"] == {"5m": None, "1h": 2.0}


def test_formats_round_down_through_float_noise() -> None:
    assert [percent(x) for x in (0.999, 0.9995, 0.99, 0.99999, None)] == ["99.9%", "99.95%", "99%", "99.999%", "-"]
    # an SLI never looks better than it is: 99.999% is not 100.00%
    assert [sli_text(x) for x in (1.0, 0.99999, 0.999, 0.9995, 0.0, None)] == [
        "100%", "99.99%", "99.90%", "99.95%", "0.00%", "-",
    ]  # fmt: skip
    budget = 1 - (1 - 0.9988) / (1 - 0.999)  # -0.19999999999999574 from counts
    assert [budget_text(x) for x in (1.0, 0.41, 0.0, budget, -0.2, -0.001, -1.5, None)] == [
        "100%", "41%", "0%", "-20% (overspent)", "-20% (overspent)", "-1% (overspent)", "-150% (overspent)", "-",
    ]  # fmt: skip
    assert burn_text({"5m": 14.44, "1h": None}) == "5m 14.4x  1h -"
    assert burn_text({"5m": None}) == burn_text({}) == "-"
