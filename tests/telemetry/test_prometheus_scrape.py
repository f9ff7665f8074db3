"""``/metrics`` scraped by a real Prometheus (Debian's ``prometheus``) on loopback: the series land in
its TSDB with the names, labels and values its query API returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.telemetry.config import TelemetryConfig
from agent.telemetry.metrics import Telemetry
from agent.telemetry.series import Metric, prometheus_name
from agent.telemetry.slos import SloReading
from checks.base import Result
from checks.host import HostCheck
from checks.http import HttpCheck
from tests.conftest import require_binary
from tests.support.peers.servers import free_port, serve_app

SHOP = "https://shop.example.com/"


def results() -> list[tuple[Result, Any]]:
    now = time.time()
    http = Result("shop-home", "http", SHOP, True, {"duration": 0.234, "status": 200.0}, None, None, now, 0.234)
    down = Result("api", "http", "https://api.example.com/", False, {"duration": 10.0}, "timeout", "x", now, 10.0)
    host = Result("box", "host", "localhost", True, {"cpu": 12.5, "disk[/]": 42.0}, None, None, now, 0.01)
    return [(http, HttpCheck.VALUES), (down, HttpCheck.VALUES), (host, HostCheck.VALUES)]


@pytest.fixture
def telemetry() -> Any:
    t = Telemetry(TelemetryConfig(prometheus=True), "web-01", {"env": "prod"}, "9.9.9")
    for r, values in results():
        t.record_result(r, values)
    t.register_sinks(["pager", "file"])
    t.event_sent("pager")
    t.scheduler_run(0.002)
    t.observe_slos(lambda: [SloReading("shop-home", SHOP, 0.9995, -0.25, {"5m": 18.0, "1h": None})])
    yield t
    t.shutdown(1.0)


def test_exposition_names(telemetry: Telemetry) -> None:
    body, content_type = telemetry.prometheus_text()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    kinds = {name: f.type for name, f in families.items()}
    assert kinds["firstwatch_check_up"] == "gauge"
    assert kinds["firstwatch_check_duration_seconds"] == "histogram"
    assert kinds["firstwatch_events_sent"] == "counter"  # exposed as firstwatch_events_sent_total
    assert kinds["firstwatch_scheduler_lag_seconds"] == "histogram"
    assert kinds["system_cpu_utilization"] == "gauge"
    assert kinds["target_info"] == "gauge"
    up = {s.labels["check_name"]: s for s in families["firstwatch_check_up"].samples}
    assert up["shop-home"].value == 1.0 and up["api"].value == 0.0
    assert up["shop-home"].labels == {
        "check_name": "shop-home",
        "check_type": "http",
        "check_target": SHOP,
        "firstwatch_agent_name": "web-01",  # the agent's name and labels ride on every series,
        "env": "prod",  # so a central Prometheus tells agents apart (firstwatch rules counts them)
    }
    info = families["target_info"].samples[0].labels
    assert info["service_name"] == "firstwatch" and info["service_version"] == "9.9.9"


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("firstwatch.check.duration", "s", "histogram", "firstwatch_check_duration_seconds"),
        ("firstwatch.events.sent", "{event}", "counter", "firstwatch_events_sent_total"),
        ("firstwatch.check.body_bytes", "By", "gauge", "firstwatch_check_body_bytes"),  # no _bytes_bytes
        ("firstwatch.check.loss", "%", "gauge", "firstwatch_check_loss_percent"),
        ("firstwatch.check.days_left", "d", "gauge", "firstwatch_check_days_left_days"),
        ("system.cpu.utilization", "1", "gauge", "system_cpu_utilization"),
        ("system.cpu.load_average.1m", "{thread}", "gauge", "system_cpu_load_average_1m"),
        ("firstwatch.check.perf", "", "gauge", "firstwatch_check_perf"),
        ("9lives.x-y", "", "gauge", "_lives_x_y"),
    ],
)
def test_prometheus_names(name: str, unit: str, kind: Any, expected: str) -> None:
    assert prometheus_name(Metric(kind, name, unit, "")) == expected


def test_escaping_and_bucket_edges() -> None:
    t = Telemetry(TelemetryConfig(prometheus=True), "web-01", {"team.name": 'a "b" \\ c'}, "1")
    odd = 'https://x/?q="1"\\n\nline'
    for duration in (0.25, 60.5):  # on a bound counts in that bucket; past the last only in +Inf
        t.record_result(
            Result("odd", "http", odd, True, {"duration": duration}, None, None, 0, duration), HttpCheck.VALUES
        )
    body, _ = t.prometheus_text()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    (up,) = families["firstwatch_check_up"].samples
    assert up.labels["check_target"] == odd and up.labels["team_name"] == 'a "b" \\ c'
    buckets = {
        s.labels["le"]: s.value for s in families["firstwatch_check_duration_seconds"].samples if "le" in s.labels
    }
    assert (buckets["0.1"], buckets["0.25"], buckets["60.0"], buckets["+Inf"]) == (0, 1, 1, 2)


@pytest.fixture
async def metrics_url(telemetry: Telemetry) -> AsyncIterator[str]:
    """``prometheus_text()`` served the way the daemon mounts it at ``/metrics``."""

    async def handler(request: web.Request) -> web.Response:
        body, content_type = telemetry.prometheus_text()
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner, port = await serve_app(app, access_log=None)
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def poll(fn: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fn()
            if last:
                return last
        except (aiohttp.ClientError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r}); prometheus log:\n{log.read_text()[-3000:]}")


async def test_real_prometheus_scrapes_the_series(metrics_url: str, tmp_path: Path) -> None:
    binary = require_binary("prometheus", "prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: firstwatch\n"
        f"    static_configs: [{{targets: ['{metrics_url}']}}]\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=out,
            stderr=out,
        )
    api = f"http://127.0.0.1:{port}/api/v1/query"
    try:
        async with aiohttp.ClientSession() as http:

            async def query(q: str) -> list[dict[str, Any]]:
                async with http.get(api, params={"query": q}) as resp:
                    if resp.status != 200:
                        return []
                    doc = await resp.json()
                    return list(doc["data"]["result"])

            series = await poll(lambda: query("firstwatch_check_up"), 20, "firstwatch_check_up in Prometheus", log)
            by_check = {s["metric"]["check_name"]: s for s in series}
            assert set(by_check) == {"shop-home", "api", "box"}
            shop = by_check["shop-home"]["metric"]
            assert shop["check_type"] == "http" and shop["check_target"] == SHOP and shop["env"] == "prod"
            assert shop["job"] == "firstwatch" and shop["instance"] == metrics_url
            assert by_check["shop-home"]["value"][1] == "1" and by_check["api"]["value"][1] == "0"

            assert (await query('up{job="firstwatch"}'))[0]["value"][1] == "1"  # the scrape parsed cleanly
            count = await query('firstwatch_check_duration_seconds_count{check_name="api"}')
            assert count[0]["value"][1] == "1"
            le = await query('firstwatch_check_duration_seconds_bucket{check_name="shop-home",le="0.25"}')
            assert le[0]["value"][1] == "1"
            cpu = await query("system_cpu_utilization")
            assert float(cpu[0]["value"][1]) == pytest.approx(0.125)
            disk = await query("system_filesystem_utilization")
            assert disk[0]["metric"]["system_filesystem_mountpoint"] == "/"
            assert (await query('firstwatch_events_sent_total{sink="pager"}'))[0]["value"][1] == "1"
            for zero in ('firstwatch_events_dropped_total{sink="file"}', "firstwatch_scheduler_missed_total"):
                assert (await query(zero))[0]["value"][1] == "0", zero  # exported before the first count
            budget = await query("firstwatch_slo_error_budget_remaining")  # negative: overspent
            assert [(b["metric"]["check_target"], b["value"][1]) for b in budget] == [(SHOP, "-0.25")]
            burn = await query("firstwatch_slo_burn_rate")  # no point for a window without runs
            assert [(b["metric"]["window"], b["value"][1]) for b in burn] == [("5m", "18")]
            assert (await query("firstwatch_slo_sli"))[0]["value"][1] == "0.9995"
            info = await query("target_info")
            assert info[0]["metric"]["service_name"] == "firstwatch"
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
