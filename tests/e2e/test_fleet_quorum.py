"""A fleet's quorum rule on the real engines: three agents, one Prometheus, one Alertmanager.

Three daemons run the one shipped ``config/examples/fleet.yaml``, told apart only by their
environment (locations a, b and c), and probe one local web server that answers 503 to the
locations the test plays "down" for (the check sends ``X-Firstwatch-Location``). A real Prometheus
(the Debian binary) runs the shipped ``config/fleet/prometheus.yml``, with only the addresses, ports
and the rule files' paths replaced; its rules are what ``firstwatch rules -c fleet.yaml`` prints, and
the shipped ``config/fleet/firstwatch-agents.yml`` (about the agents themselves). It alerts a
real Alertmanager running the shipped ``config/fleet/alertmanager.yml`` (its receivers' addresses
replaced by a local one). Every assertion goes through the engines' HTTP APIs:

(a) one location down raises nothing: Prometheus has seen exactly one agent down for longer than
    the rule's ``for:`` plus a few evaluations, the rule was evaluated since, and neither
    Prometheus nor Alertmanager has an alert; the down agent holds the rule on its own status
    ("down here; quorum judged centrally");
(b) two locations down raise exactly one alert in Alertmanager, with the rule's severity, the
    check's name and target, and the runbook as ``runbook_url``;
(c) all up again resolves it: gone from Alertmanager's active alerts and from Prometheus'.

The agents themselves never sent a firing event for the quorum rule (their file sinks). Timings
are polled with generous deadlines (a slow, loaded CI machine), never bounded tightly from above.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import web

from tests.conftest import require_binary
from tests.support.agent import Daemon, firstwatch, read_events, start_daemon
from tests.support.peers.alertmanager import BINARY as AM_BINARY
from tests.support.peers.alertmanager import FLEET_CONFIG, Alertmanager, fleet_config
from tests.support.peers.prometheus import BINARY as PROM_BINARY
from tests.support.peers.prometheus import PROMTOOL, Prometheus
from tests.support.peers.servers import serve_app

ROOT = Path(__file__).parents[2]
FLEET = ROOT / "config" / "examples" / "fleet.yaml"
PROMETHEUS_YML = ROOT / "config" / "fleet" / "prometheus.yml"
AGENT_RULES = ROOT / "config" / "fleet" / "firstwatch-agents.yml"
LOCATIONS = ("a", "b", "c")
HEADER = "X-Firstwatch-Location"
DEADLINE = 60.0  # for anything awaited: generous, a loaded 2-core CI machine is slow
HELD = "down here; quorum judged centrally"

T = TypeVar("T")


def the_rule() -> tuple[str, dict[str, Any]]:
    """The shipped example's check name and its quorum rule, as written (so the test follows it)."""
    raw = yaml.safe_load(FLEET.read_text())
    [check] = raw["checks"]
    [rule] = [r for r in check["alerts"] if r.get("quorum")]
    return str(check["name"]), rule


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    assert m, f"the test reads for: in s or ms, not {text!r}"
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


CHECK, RULE = the_rule()
FOR = seconds(RULE["for"])
DOWN = f'firstwatch_check_up{{check_name="{CHECK}"}} == 0'


def agent_env(location: str, state: Path, shop_url: str) -> dict[str, str]:
    """The environment one agent of the fleet runs with (the variables fleet.yaml documents)."""
    return {
        "FIRSTWATCH_LOCATION": location,
        "FIRSTWATCH_LISTEN": "127.0.0.1:0",  # a free port, read from the agent's log
        "FIRSTWATCH_STATE": str(state),
        "SHOP_URL": shop_url,
    }


def scrape_interval() -> str:
    """The shipped prometheus.yml's scrape interval, which ``firstwatch rules`` is told (1s)."""
    every = str(yaml.safe_load(PROMETHEUS_YML.read_text())["global"]["scrape_interval"])
    assert every == "1s", "the recipe in docs/fleet.md passes --scrape-interval 1s"
    return every


async def generate_rules(tmp_path: Path) -> Path:
    """``firstwatch rules -c fleet.yaml --scrape-interval 1s`` (the shipped prometheus.yml's),
    written where the Prometheus config will point."""
    env = agent_env("a", tmp_path / "rules-env", "https://shop.example.com/")
    code, out, err = await firstwatch("rules", "-c", str(FLEET), "--scrape-interval", scrape_interval(), env=env)
    assert code == 0, f"firstwatch rules failed ({code}): {err}"
    assert "# Assumes Prometheus scrapes the agents every 1s (firstwatch rules --scrape-interval 1s)" in out
    rules = tmp_path / "firstwatch-rules.yml"
    rules.write_text(out)
    return rules


def rule_files(generated: Path) -> list[str]:
    """The shipped prometheus.yml's rule files, here: the generated one and the shipped agents' one."""
    here = {"firstwatch.yml": str(generated), AGENT_RULES.name: str(AGENT_RULES)}
    return [here[Path(p).name] for p in yaml.safe_load(PROMETHEUS_YML.read_text())["rule_files"]]


def prometheus_config(rules: Path, agents: list[str], alertmanager: str) -> str:
    """The shipped prometheus.yml with its addresses and the rule files' paths replaced, and
    nothing else: each replaced list must be where (and as long as) the docs say."""
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    cfg["rule_files"] = rule_files(rules)
    [ams] = cfg["alerting"]["alertmanagers"]
    [static] = ams["static_configs"]
    static["targets"] = [alertmanager]
    [job] = cfg["scrape_configs"]
    [scraped] = job["static_configs"]
    assert len(scraped["targets"]) == len(agents)
    scraped["targets"] = agents
    return str(yaml.safe_dump(cfg, sort_keys=False))


class Shop:
    """The page probed: 200 to every location except those in ``down`` (503)."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.asked: dict[str, int] = {}
        self.notifications: list[dict[str, Any]] = []

    async def page(self, request: web.Request) -> web.Response:
        where = request.headers.get(HEADER, "")
        self.asked[where] = self.asked.get(where, 0) + 1
        if where in self.down:
            return web.Response(status=503, text="down from here")
        return web.Response(text="Add to cart")

    async def hook(self, request: web.Request) -> web.Response:
        self.notifications.append(await request.json())
        return web.Response()


@dataclass
class Stack:
    """Everything running for one test, stopped by the fixture whatever happens."""

    shop: Shop
    shop_url: str
    hook_url: str
    daemons: dict[str, Daemon] = field(default_factory=dict)
    prometheus: Prometheus | None = None
    alertmanager: Alertmanager | None = None

    def diagnose(self) -> str:
        """Log tails for a failure message."""
        out = [f"shop: down={sorted(self.shop.down)} asked={self.shop.asked}"]
        if self.prometheus is not None:
            out.append(f"--- prometheus:\n{self.prometheus.log_tail(1500)}")
        if self.alertmanager is not None:
            out.append(f"--- alertmanager:\n{self.alertmanager.log_tail()[-1500:]}")
        out += [f"--- agent {loc}:\n{d.log[-800:]}" for loc, d in self.daemons.items()]
        return "\n".join(out)

    async def until(self, what: str, probe: Callable[[], T], ok: Callable[[T], bool]) -> T:
        """Poll ``probe`` (in a thread: it does blocking HTTP) until ``ok`` holds; fail after DEADLINE."""
        deadline = time.monotonic() + DEADLINE
        while True:
            value = await asyncio.to_thread(probe)
            if ok(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {DEADLINE}s; last: {value!r}\n{self.diagnose()}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    shop = Shop()
    app = web.Application()
    app.router.add_get("/", shop.page)
    app.router.add_post("/hook", shop.hook)
    runner, port = await serve_app(app, access_log=None)
    s = Stack(shop, f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/hook")
    try:
        yield s
    finally:
        for peer in (s.prometheus, s.alertmanager):
            if peer is not None:
                await asyncio.to_thread(peer.stop)
        for daemon in s.daemons.values():
            try:
                await daemon.stop()
            except TimeoutError:
                daemon.proc.kill()
                await daemon.proc.wait()
        await runner.cleanup()


def status_of(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def held_here(port: int) -> list[str]:
    """The ``why`` of every rule of the check held on this agent's /status."""
    [check] = [c for c in status_of(port)["checks"] if c["name"] == CHECK]
    return [h["why"] for m in check["members"] for h in m["held"]]


def ours(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("check_name") == CHECK]


def rfc3339(text: str) -> float:
    """Prometheus' timestamps carry nanoseconds; Python reads at most microseconds."""
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


async def test_a_quorum_rule_pages_once_when_two_of_three_locations_fail(tmp_path: Path, stack: Stack) -> None:
    prometheus_bin = require_binary(PROM_BINARY, "prometheus")
    alertmanager_bin = require_binary(AM_BINARY, "prometheus-alertmanager")
    rules = await generate_rules(tmp_path)

    ports: dict[str, int] = {}
    for loc in LOCATIONS:  # the same file for all three: only the environment differs
        env = agent_env(loc, tmp_path / f"agent-{loc}", stack.shop_url)
        stack.daemons[loc] = await start_daemon(FLEET, env=env)
    for loc, daemon in stack.daemons.items():
        ports[loc] = int((await daemon.wait_log(r"status endpoint on 127\.0\.0\.1:(\d+)", DEADLINE)).group(1))

    am = stack.alertmanager = Alertmanager(alertmanager_bin, tmp_path / "am", fleet_config(stack.hook_url))
    await asyncio.to_thread(am.start, DEADLINE)
    agents = [f"127.0.0.1:{ports[loc]}" for loc in LOCATIONS]
    prom = Prometheus(prometheus_bin, tmp_path / "prom", prometheus_config(rules, agents, f"127.0.0.1:{am.port}"))
    stack.prometheus = prom
    await asyncio.to_thread(prom.start, DEADLINE)

    # The rules are loaded, and Prometheus scrapes the three agents, told apart by name and location.
    loaded = await stack.until("the rules loaded", prom.rules, lambda rs: len(rs) >= 1)
    assert all(r["health"] != "err" for r in loaded), loaded
    assert {r["name"] for r in loaded} >= {"FirstwatchDown", "FirstwatchAgentDown", "FirstwatchTooFewAgents"}
    up = await stack.until(
        "all three agents scraped, the shop up from each",
        lambda: prom.query(f'firstwatch_check_up{{check_name="{CHECK}"}} == 1'),
        lambda v: len(v) == 3,
    )
    assert {s["metric"]["location"] for s in up} == set(LOCATIONS)
    assert {s["metric"]["firstwatch_agent_name"] for s in up} == {f"probe-{loc}" for loc in LOCATIONS}

    # (a) One location down: seen by Prometheus, held by that agent, paged by nobody.
    stack.shop.down = {"a"}
    one_down = f"count by (check_name) ({DOWN}) == 1"
    await stack.until("Prometheus sees location a down", lambda: prom.query(one_down), lambda v: len(v) == 1)
    since = time.time()
    held_long_enough = since + FOR + 3.0  # the rule's for: and three more evaluations (1s each)
    while time.time() < held_long_enough:
        down = await asyncio.to_thread(prom.query, DOWN)
        assert [s["metric"]["location"] for s in down] == ["a"], f"only a is down throughout: {down}"
        await asyncio.sleep(0.2)
    evaluated = await stack.until(
        "the rule evaluated since location a was down long enough",
        prom.rules,
        lambda rs: all(rfc3339(r["lastEvaluation"]) > held_long_enough for r in rs),
    )
    assert all(r["health"] == "ok" for r in evaluated), evaluated
    assert await asyncio.to_thread(prom.alerts) == []  # neither pending nor firing (the agents' rules neither)
    # not even pending at any evaluation so far (the ALERTS series records both states)
    never = await asyncio.to_thread(prom.query, f'count_over_time(ALERTS{{check_name="{CHECK}"}}[10m])')
    assert never == [], never
    assert await asyncio.to_thread(am.alerts) == []
    # ... while the agent at a holds the rule on its own view (its for: has long passed).
    why = await stack.until("agent a holds the rule", lambda: held_here(ports["a"]), bool)
    assert len(why) == 1 and why[0].startswith(HELD), why
    assert await asyncio.to_thread(held_here, ports["b"]) == []

    # (b) Two locations down: exactly one alert, with the rule's labels and runbook.
    stack.shop.down = {"a", "b"}
    [alert] = await stack.until("the alert in Alertmanager", lambda: ours(am.alerts()), bool)
    assert alert["labels"]["severity"] == RULE["severity"]
    assert alert["labels"]["check_name"] == CHECK
    assert alert["labels"]["check_target"] == stack.shop_url
    assert alert["annotations"]["runbook_url"] == RULE["runbook"]
    assert alert["status"]["state"] == "active"
    [firing] = await asyncio.to_thread(prom.alerts)
    assert firing["state"] == "firing" and firing["labels"]["check_name"] == CHECK
    assert float(firing["value"]) == 2  # the number of agents that see it down
    await asyncio.sleep(2.0)  # two more evaluations: still one alert, not one per agent or rule
    assert [a["fingerprint"] for a in await asyncio.to_thread(am.alerts)] == [alert["fingerprint"]]

    # (c) Every location up again: resolved in Prometheus and in Alertmanager.
    stack.shop.down = set()
    await stack.until("Prometheus sees every location up", lambda: prom.query(DOWN), lambda v: v == [])
    await stack.until("Prometheus resolves it", prom.alerts, lambda v: ours(v) == [])
    await stack.until("Alertmanager resolves it", lambda: ours(am.alerts()), lambda v: v == [])

    # The agents never paged the quorum rule themselves.
    for loc, daemon in stack.daemons.items():
        log = await daemon.stop()
        assert daemon.proc.returncode == 0 and "Traceback" not in log, log[-2000:]
        events = read_events(tmp_path / f"agent-{loc}" / "events.jsonl")
        assert [e for e in events if e.get("check") == CHECK and e.get("kind") == "firing"] == [], events


async def tool(*args: str) -> str:
    """Run a checking tool; its output, asserting it exited 0."""
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), DEADLINE))[0].decode()
    assert proc.returncode == 0, f"{' '.join(args)}: {out}"
    return out


async def test_the_shipped_central_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    promtool = require_binary(PROMTOOL, "prometheus")
    amtool = require_binary("amtool", "prometheus-alertmanager")
    rules = await generate_rules(tmp_path)
    assert "SUCCESS: 1 rules found" in await tool(promtool, "check", "rules", str(rules))
    assert "SUCCESS: 2 rules found" in await tool(promtool, "check", "rules", str(AGENT_RULES))
    # the shipped file as is, but for the rule files' paths: promtool reads the rules it names
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    cfg["rule_files"] = rule_files(rules)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert "SUCCESS" in await tool(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    await tool(amtool, "check-config", str(FLEET_CONFIG))
