"""The otlp sink against a real OTLP logs receiver (gRPC and HTTP) and real broken collectors."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from agent import __version__
from agent.cli.docs import example_of
from agent.config.load import parse_config
from agent.core.errors import ConfigError, DeliveryError, PermanentDeliveryError
from agent.core.events import Event
from agent.delivery.sinks import SINKS
from agent.delivery.sinks.otlp import OtlpSink, OtlpSinkConfig
from tests.support.peers.otlp import BlackHole, OtlpLogsReceiver, Record, closed_port

CANARY = "s3cr3t-canary-7f3a9b"
PROTOCOLS = ("grpc", "http/protobuf")
ENV = {"OTLP_TOKEN": CANARY}


def make_sink(endpoint: str, protocol: str = "grpc", **opts: Any) -> OtlpSink:
    config = OtlpSinkConfig.model_validate({"type": "otlp", "endpoint": endpoint, "protocol": protocol, **opts})
    return OtlpSink(config, "collector")


def endpoint_of(receiver: OtlpLogsReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


def firing(**kw: Any) -> Event:
    fields: dict[str, Any] = {
        "kind": "firing",
        "severity": "major",
        "summary": "shop-home: duration (2.71s) > 2s for 5m",
        "agent": "web-01",
        "time": 1_790_000_000.125,
        "incident": "3f9c2a7b1d04",
        "fingerprint": "0123456789abcdef",
        "check": "shop-home",
        "target": "https://shop.example.com/",
        "type": "http",
        "rule": "duration > 2s for 5m",
        "value": 2.71,
        "started_at": 1_789_999_700.0,
        "labels": {"env": "prod", "team": "shop"},
        **kw,
    }
    return Event(**fields)


def only(receiver: OtlpLogsReceiver) -> Record:
    (record,) = receiver.records()
    return record


@pytest.fixture
def receiver() -> Iterator[OtlpLogsReceiver]:
    with OtlpLogsReceiver() as r:
        yield r


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_firing_event_arrives_as_a_log_record(receiver: OtlpLogsReceiver, protocol: str) -> None:
    sink = make_sink(endpoint_of(receiver, protocol), protocol)
    event = firing()
    before = time.time_ns()
    await sink.send(event)
    await sink.close()
    record = only(receiver)
    assert record.transport == ("grpc" if protocol == "grpc" else "http")
    assert record.body == event.summary
    assert (record.severity_number, record.severity_text) == (17, "MAJOR")  # ERROR
    assert record.event_name == "firstwatch.firing"
    assert record.time_unix_nano == 1_790_000_000_125_000_000
    assert before <= record.observed_time_unix_nano <= time.time_ns()
    assert record.attributes == {
        "event.name": "firstwatch.firing",
        "log.record.uid": event.id,
        "firstwatch.incident": "3f9c2a7b1d04",
        "firstwatch.fingerprint": "0123456789abcdef",
        "check.name": "shop-home",
        "check.target": "https://shop.example.com/",
        "check.type": "http",
        "firstwatch.rule": "duration > 2s for 5m",
        "firstwatch.value": 2.71,
        "firstwatch.started_at": "2026-09-21T14:08:20.000Z",
        "env": "prod",
        "team": "shop",
    }
    assert (record.scope, record.scope_version) == ("firstwatch", __version__)
    res = record.resource
    assert res["service.name"] == "firstwatch"
    assert res["service.version"] == __version__
    assert res["firstwatch.agent.name"] == "web-01"
    assert res["host.name"] == socket.gethostname()
    assert res["service.instance.id"]
    assert (res["env"], res["team"]) == ("prod", "shop")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_resolved_minor_event_maps_to_info(
    receiver: OtlpLogsReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-probes")  # the operator's environment wins, as for metrics
    sink = make_sink(endpoint_of(receiver, protocol), protocol)
    await sink.send(firing(kind="resolved", severity="minor", value=None, labels={}))
    await sink.close()
    record = only(receiver)
    assert (record.severity_number, record.severity_text) == (9, "MINOR")  # INFO
    assert record.event_name == "firstwatch.resolved"
    assert "firstwatch.value" not in record.attributes
    assert record.resource["service.name"] == "edge-probes"


async def test_every_severity_maps_to_its_severity_number(receiver: OtlpLogsReceiver) -> None:
    sink = make_sink(receiver.grpc_endpoint)
    for severity in ("critical", "major", "medium", "minor"):
        await sink.send(firing(severity=severity))
    await sink.send(Event(kind="agent", severity="medium", summary="sink pager failing", agent="web-01"))
    await sink.close()
    got = [(r.severity_number, r.severity_text) for r in receiver.records()]
    assert got == [(21, "CRITICAL"), (17, "MAJOR"), (13, "MEDIUM"), (9, "MINOR"), (13, "MEDIUM")]
    agent_event = receiver.records()[-1]
    assert agent_event.event_name == "firstwatch.agent"
    assert set(agent_event.attributes) == {"event.name", "log.record.uid"}  # no check: no check fields


async def test_redelivery_carries_the_same_record_uid(receiver: OtlpLogsReceiver) -> None:
    sink = make_sink(receiver.http_endpoint, "http/protobuf")
    event = firing()
    await sink.send(event)
    await sink.send(event)
    await sink.close()
    assert [r.attributes["log.record.uid"] for r in receiver.records()] == [event.id, event.id]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_headers_arrive_and_are_lower_case_over_grpc(receiver: OtlpLogsReceiver, protocol: str) -> None:
    sink = make_sink(endpoint_of(receiver, protocol), protocol, headers={"X-Api-Key": CANARY, "X-Tenant": "acme"})
    await sink.send(firing())
    await sink.close()
    (headers,) = receiver.headers
    assert headers["x-api-key"] == CANARY
    assert headers["x-tenant"] == "acme"
    if protocol == "grpc":
        assert "X-Api-Key" not in headers


async def test_http_endpoint_with_the_logs_path_is_used_as_is(receiver: OtlpLogsReceiver) -> None:
    sink = make_sink(receiver.http_endpoint + "/v1/logs", "http/protobuf")
    await sink.send(firing())
    await sink.close()
    assert only(receiver).transport == "http"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_collector_down_is_a_retryable_error(protocol: str) -> None:
    endpoint = closed_port()
    sink = make_sink(endpoint, protocol, timeout="3s", headers={"authorization": f"Bearer {CANARY}"})
    start = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        await sink.send(firing())
    await sink.close()
    assert time.monotonic() - start < 3.5
    assert not isinstance(info.value, PermanentDeliveryError)
    message = str(info.value)
    assert endpoint.removeprefix("http://") in message
    assert "refused" in message
    assert CANARY not in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_black_holed_collector_times_out_without_blocking_the_loop(protocol: str) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    with BlackHole() as hole:
        sink = make_sink(hole.endpoint, protocol, timeout="1500ms", headers={"x-api-key": CANARY})
        task = asyncio.create_task(ticker())
        start = time.monotonic()
        try:
            with pytest.raises(DeliveryError) as info:
                await sink.send(firing())
            elapsed = time.monotonic() - start
        finally:
            task.cancel()
            await sink.close()
    assert elapsed < 1.5 + 1.0
    assert not isinstance(info.value, PermanentDeliveryError)
    assert str(info.value) == f"otlp collector: no answer from 127.0.0.1:{hole.port} within 1.5s"
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) >= 10 and max(gaps) < 0.75, f"the event loop stalled: {max(gaps):.2f}s"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_collector_rejecting_the_request_drops_the_event(receiver: OtlpLogsReceiver, protocol: str) -> None:
    receiver.fail(400, f"malformed record (token {CANARY})")  # a collector echoing a secret
    sink = make_sink(endpoint_of(receiver, protocol), protocol, headers={"x-api-key": CANARY})
    with pytest.raises(PermanentDeliveryError) as info:
        await sink.send(firing())
    await sink.close()
    message = str(info.value)
    assert "malformed record (token ***)" in message
    assert ("INVALID_ARGUMENT" if protocol == "grpc" else "HTTP 400") in message
    assert endpoint_of(receiver, protocol).removeprefix("http://") in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_collector_overloaded_is_retryable(receiver: OtlpLogsReceiver, protocol: str) -> None:
    receiver.fail(503, "memory limiter refused the data")
    sink = make_sink(endpoint_of(receiver, protocol), protocol)
    with pytest.raises(DeliveryError) as info:
        await sink.send(firing())
    await sink.close()
    assert not isinstance(info.value, PermanentDeliveryError)
    assert "memory limiter refused the data" in str(info.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_partial_success_rejecting_the_record_drops_it(receiver: OtlpLogsReceiver, protocol: str) -> None:
    receiver.reject("attribute value too long")
    sink = make_sink(endpoint_of(receiver, protocol), protocol)
    with pytest.raises(PermanentDeliveryError, match="rejected the event: attribute value too long"):
        await sink.send(firing())
    await sink.close()


@pytest.mark.parametrize(
    ("protocol", "hint"), [("grpc", "protocol: http/protobuf?"), ("http/protobuf", "protocol: grpc?")]
)
async def test_the_wrong_protocol_for_the_port_says_so(receiver: OtlpLogsReceiver, protocol: str, hint: str) -> None:
    logging.getLogger("aiohttp.server").disabled = True  # the receiver complains about the gRPC preface
    try:
        other = receiver.http_endpoint if protocol == "grpc" else receiver.grpc_endpoint
        sink = make_sink(other, protocol, timeout="3s")
        with pytest.raises(DeliveryError, match=re.escape(hint)) as info:
            await sink.send(firing())
        await sink.close()
    finally:
        logging.getLogger("aiohttp.server").disabled = False
    assert not isinstance(info.value, PermanentDeliveryError)


async def test_delivery_resumes_when_the_collector_comes_back() -> None:
    endpoint = closed_port()
    sink = make_sink(endpoint, timeout="2s")
    with pytest.raises(DeliveryError):
        await sink.send(firing())
    with OtlpLogsReceiver(grpc_port=int(endpoint.rpartition(":")[2])) as receiver:
        deadline = time.monotonic() + 8
        while True:  # what the outbox does: retry after a backoff
            try:
                await sink.send(firing())
                break
            except DeliveryError:
                assert time.monotonic() < deadline, "the sink never reconnected"
                await asyncio.sleep(0.2)
        await sink.close()
        assert len(receiver.records()) == 1


async def test_secrets_never_appear_in_errors_logs_or_reprs(
    receiver: OtlpLogsReceiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    for endpoint, protocol in [
        (closed_port(), "grpc"),
        (closed_port(), "http/protobuf"),
        (receiver.grpc_endpoint, "grpc"),
        (receiver.http_endpoint, "http/protobuf"),
    ]:
        sink = make_sink(endpoint, protocol, headers={"Authorization": f"Bearer {CANARY}"}, timeout="2s")
        shown += [repr(sink), repr(sink.config), str(sink.config)]
        receiver.fail(401, f"unknown key {CANARY}")
        with pytest.raises(DeliveryError) as info:
            await sink.send(firing())
        shown.append(str(info.value))
        await sink.close()
    with pytest.raises(ValidationError) as bad:
        OtlpSinkConfig.model_validate({"type": "otlp", "endpoint": "http://h:4317", "headers": {"x": f"{CANARY}\n"}})
    shown.append(str(bad.value))
    out, err = capfd.readouterr()
    assert CANARY not in "\n".join([*shown, caplog.text, out, err])


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"endpoint": "ftp://collector:4317"}, "endpoint must be a URL"),
        ({"endpoint": "collector:4317"}, "endpoint must be a URL"),
        ({"endpoint": "http://:4317"}, "endpoint must be a URL"),
        ({"endpoint": "http://collector:99999"}, "invalid port"),
        ({"endpoint": "http://collector:4317/v1/logs"}, "grpc endpoint is host and port only"),
        ({"endpoint": "http://user:pw@collector:4317"}, "must not hold credentials"),
        ({"endpoint": "http://collector:4318", "protocol": "http/json"}, "'grpc' or 'http/protobuf'"),
        ({"endpoint": "https://collector:4317", "insecure": True}, "insecure: true contradicts"),
        ({"endpoint": "http://collector:4317", "headers": {"bad name": "x"}}, "not a valid HTTP header name"),
        ({"endpoint": "http://collector:4317", "headers": {"Content-Type": "x"}}, "set by the exporter"),
        ({"endpoint": "http://collector:4317", "timeout": "0s"}, "greater than 0"),
        ({"endpoint": "http://collector:4317", "timeout": 5}, "needs a unit"),
        ({"endpoint": "http://collector:4317", "url": "http://x"}, "Extra inputs"),
    ],
)
def test_config_errors(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        OtlpSinkConfig.model_validate({"type": "otlp", **options})


def test_the_documented_example_loads_and_config_errors_keep_secrets() -> None:
    assert SINKS["otlp"] is OtlpSink
    cfg = parse_config("checks: []\n" + example_of(OtlpSink), "c.yaml", env=ENV)
    (spec,) = cfg.sinks
    sink = spec.build()
    assert isinstance(sink, OtlpSink) and isinstance(sink.config, OtlpSinkConfig)
    assert sink.config.headers == {"Authorization": f"Bearer {CANARY}"}
    head = "checks: []\nsinks:\n  - type: otlp\n"
    for body, error in [
        (
            '    endpoint: http://c:4317\n    headers: {X-Key: "${OTLP_TOKEN}\\n"}\n',
            "c.yaml:5:14: sinks[0].headers: header 'X-Key' has a line break",
        ),
        (
            '    endpoint: http://c:4318/v1/logs\n    headers: {X-Key: "${OTLP_TOKEN}"}\n',
            "grpc endpoint is host and port only",
        ),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_config(head + body, "c.yaml", env=ENV)
        assert error in str(info.value) and CANARY not in str(info.value)


def test_config_defaults() -> None:
    config = OtlpSinkConfig.model_validate({"type": "otlp", "endpoint": "https://collector:4317"})
    assert (config.protocol, config.timeout, config.headers, config.insecure) == ("grpc", 10.0, {}, None)
    sink = OtlpSink(config, "otel")
    assert repr(sink) == "<OtlpSink 'otel' grpc to collector:4317>"
    http = make_sink("https://collector", "http/protobuf")
    assert repr(http) == "<OtlpSink 'collector' http/protobuf to collector:443>"
