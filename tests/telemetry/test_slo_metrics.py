"""The SLO gauges (issue 16) of :meth:`Telemetry.observe_slos`: their Prometheus names, labels and
values in the ``/metrics`` text (read back with prometheus_client's parser), the same points at a
real OTLP receiver over both transports, no point for a window without runs, values read at each
collection, and a broken callback that costs only its own series."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.telemetry.config import TelemetryConfig
from agent.telemetry.metrics import Telemetry
from agent.telemetry.slos import SloReading
from checks.host import HostCheck
from tests.support.peers.otlp import OtlpReceiver
from tests.telemetry.test_prometheus_scrape import results
from tests.telemetry.test_telemetry import ENDPOINT, otlp

WEB2, WEB3 = "https://10.0.0.2/", "https://10.0.0.3/"
READINGS = [
    SloReading("shop-web", WEB2, 0.9995, 0.5, {"5m": 18.0, "1h": 15.2, "6h": None}),
    SloReading("shop-web", WEB3, 0.9988, -0.2, {"5m": 0.0, "1h": 1.2}),  # overspent; 0 is a value
    SloReading("box", "localhost", None, None, {"5m": None, "1h": None}),  # no runs yet: no points
]
SLO_NAMES = ("firstwatch_slo_sli", "firstwatch_slo_error_budget_remaining", "firstwatch_slo_burn_rate")


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry(TelemetryConfig(prometheus=True), "web-01", {"env": "prod"}, "9.9.9")
    yield t
    t.shutdown(1.0)


def slo_samples(t: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(t.prometheus_text()[0].decode())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families
        if f.name.startswith("firstwatch_slo")
        for s in f.samples
    }


def labels(target: str, window: str | None = None) -> tuple[tuple[str, str], ...]:
    pairs = {"check_name": "shop-web", "check_target": target, "env": "prod", "firstwatch_agent_name": "web-01"}
    if window:
        pairs["window"] = window
    return tuple(sorted(pairs.items()))


def test_prometheus_names_labels_and_values(telemetry: Telemetry) -> None:
    for r, values in results():
        telemetry.record_result(r, values)
    assert b"firstwatch_slo" not in telemetry.prometheus_text()[0]  # no slo yet: no such metrics
    telemetry.observe_slos(lambda: READINGS)
    assert slo_samples(telemetry) == {
        ("firstwatch_slo_sli", labels(WEB2)): 0.9995,
        ("firstwatch_slo_sli", labels(WEB3)): 0.9988,
        ("firstwatch_slo_error_budget_remaining", labels(WEB2)): 0.5,
        ("firstwatch_slo_error_budget_remaining", labels(WEB3)): -0.2,
        ("firstwatch_slo_burn_rate", labels(WEB2, "5m")): 18.0,
        ("firstwatch_slo_burn_rate", labels(WEB2, "1h")): 15.2,
        ("firstwatch_slo_burn_rate", labels(WEB3, "5m")): 0.0,
        ("firstwatch_slo_burn_rate", labels(WEB3, "1h")): 1.2,
    }
    text = telemetry.prometheus_text()[0].decode()
    for name in SLO_NAMES:
        assert f"# TYPE {name} gauge\n" in text, name
    line = (
        'firstwatch_slo_error_budget_remaining{check_name="shop-web",check_target="https://10.0.0.3/",'
        'firstwatch_agent_name="web-01",env="prod"} -0.2'
    )
    assert line in text.splitlines()
    assert "box" not in "".join(x for x in text.splitlines() if x.startswith("firstwatch_slo"))
    assert 'firstwatch_check_up{check_name="box"' in text  # the rest is exported as before


def test_read_at_each_collection_and_removed_with_none(telemetry: Telemetry) -> None:
    now = list(READINGS[:1])
    telemetry.observe_slos(lambda: now)
    assert slo_samples(telemetry)[("firstwatch_slo_sli", labels(WEB2))] == 0.9995
    now[0] = SloReading("shop-web", WEB2, 0.998, -1.0, {"5m": None, "1h": 2.5})
    assert slo_samples(telemetry) == {
        ("firstwatch_slo_sli", labels(WEB2)): 0.998,
        ("firstwatch_slo_error_budget_remaining", labels(WEB2)): -1.0,
        ("firstwatch_slo_burn_rate", labels(WEB2, "1h")): 2.5,
    }
    telemetry.observe_slos(lambda: READINGS[1:2])  # a reload: the new runtime's readings only
    assert set(slo_samples(telemetry)) == {
        ("firstwatch_slo_sli", labels(WEB3)),
        ("firstwatch_slo_error_budget_remaining", labels(WEB3)),
        ("firstwatch_slo_burn_rate", labels(WEB3, "5m")),
        ("firstwatch_slo_burn_rate", labels(WEB3, "1h")),
    }
    telemetry.observe_slos(None)  # a runtime without slos
    assert slo_samples(telemetry) == {}


def test_a_broken_callback_costs_only_its_series(telemetry: Telemetry, caplog: pytest.LogCaptureFixture) -> None:
    telemetry.record_result(results()[2][0], HostCheck.VALUES)

    def broken() -> list[SloReading]:
        raise RuntimeError("the runtime's counts are gone")

    telemetry.observe_slos(broken)
    with caplog.at_level(logging.ERROR, logger="firstwatch.telemetry"):
        telemetry.prometheus_text()
        body = telemetry.prometheus_text()[0]
    assert b"firstwatch_slo" not in body and b'firstwatch_check_up{check_name="box"' in body
    for name in ("firstwatch.slo.sli", "firstwatch.slo.error_budget.remaining", "firstwatch.slo.burn_rate"):
        assert caplog.text.count(f"observing {name} failed") == 1, name  # said once, not at every scrape


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_points(protocol: str) -> None:
    with OtlpReceiver() as rx:
        t = Telemetry(otlp(getattr(rx, ENDPOINT[protocol]), protocol), "web-01", {}, "9.9.9")
        try:
            t.observe_slos(lambda: READINGS)
            web3 = {"check.name": "shop-web", "check.target": WEB3}
            expected = [
                ("firstwatch.slo.sli", {"check.name": "shop-web", "check.target": WEB2}, 0.9995),
                ("firstwatch.slo.error_budget.remaining", web3, -0.2),
                ("firstwatch.slo.burn_rate", {**web3, "window": "5m"}, 0.0),
                ("firstwatch.slo.burn_rate", {**web3, "window": "1h"}, 1.2),
            ]
            for name, attrs, value in expected:
                p = rx.wait_for(lambda name=name, attrs=attrs: rx.latest(name, attrs), timeout=10)
                assert (p.value, p.kind, p.unit) == (value, "gauge", "1"), (name, attrs)
                assert p.attributes == attrs, name  # exactly these attributes
            batch = rx.latest("firstwatch.slo.sli", {"check.target": WEB2})
            assert batch is not None
            sent = [p for p in rx.points() if p.request == batch.request and p.name.startswith("firstwatch.slo")]
            assert len(sent) == 8  # 2 sli, 2 budgets, 4 burn rates: nothing for box, nor WEB2's 6h
            assert not [p for p in sent if p.attributes.get("check.name") == "box"]
        finally:
            t.shutdown(1.0)
