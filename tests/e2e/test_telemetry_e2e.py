"""The daemon's measurements reach the observability stack: OTLP to a real receiver, /metrics on
agent.listen, and CloudWatch EMF on a local UDP socket, all from one running agent."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.request
from pathlib import Path

from tests.support.agent import start_agent
from tests.support.peers.fleet import Fleet
from tests.support.peers.otlp import OtlpReceiver


async def endpoint_of(proc: asyncio.subprocess.Process) -> str:
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
        if "status endpoint on " in line:
            return "http://" + line.split("status endpoint on ")[1].strip()


async def test_one_agent_feeds_otlp_prometheus_and_cloudwatch(tmp_path: Path, fleet: Fleet) -> None:
    emf = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    emf.bind(("127.0.0.1", 0))
    emf.setblocking(False)
    with OtlpReceiver().start() as otlp:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"""
agent: {{name: probe-1, labels: {{location: eu-west}}, state_dir: "{tmp_path / "state"}", listen: "127.0.0.1:0"}}
checks:
  - {{name: shop, type: http, url: "{fleet.urls[0]}", interval: 0.2s, timeout: 0.2s}}
  - {{name: host, type: host, interval: 0.2s, timeout: 0.2s}}
sinks: [{{type: file, path: "{tmp_path / "events.jsonl"}"}}]
telemetry:
  otlp: {{endpoint: "{otlp.grpc_endpoint}", protocol: grpc, interval: 0.3s}}
  prometheus: true
  cloudwatch: {{endpoint: "udp://127.0.0.1:{emf.getsockname()[1]}", namespace: fw-test, interval: 0.3s}}
"""
        )
        agent = await start_agent(str(cfg))
        try:
            url = await endpoint_of(agent)
            # the web server under test runs in this event loop: wait for the receiver in a thread
            up = await asyncio.to_thread(
                otlp.wait_for, lambda: otlp.latest("firstwatch.check.up", {"check.name": "shop"}, 1.0)
            )
            assert up.attributes["check.target"] == fleet.urls[0] and up.attributes["check.type"] == "http"
            assert up.resource["service.name"] == "firstwatch" and up.resource["location"] == "eu-west"
            duration = await asyncio.to_thread(
                otlp.wait_for, lambda: otlp.latest("firstwatch.check.duration", {"check.name": "shop"})
            )
            assert duration.kind == "histogram" and duration.unit == "s" and (duration.count or 0) >= 1
            cpu = await asyncio.to_thread(otlp.wait_for, lambda: otlp.latest("system.cpu.utilization"))
            assert cpu.value is not None and 0.0 <= cpu.value <= 1.0
            runs = await asyncio.to_thread(otlp.wait_for, lambda: otlp.latest("firstwatch.scheduler.runs"))
            assert (runs.value or 0) >= 1

            text = (
                await asyncio.to_thread(lambda: urllib.request.urlopen(url + "/metrics", timeout=5).read())
            ).decode()
            assert "firstwatch_check_up{" in text and 'check_name="shop"' in text

            loop = asyncio.get_running_loop()
            doc = json.loads(await asyncio.wait_for(loop.sock_recv(emf, 65536), 10))
            assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "fw-test"
            assert doc["check"] in ("shop", "host")
        finally:
            agent.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(agent.communicate(), 15)
            emf.close()
    assert agent.returncode == 0 and "Traceback" not in err.decode()
