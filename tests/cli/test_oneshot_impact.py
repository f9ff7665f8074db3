"""``firstwatch check`` judges a check with ``impact:`` as a group, as the daemon does: with the
README's shop-web (minor per member, major at half, critical at all), 1 of 3 real servers answering
503 exits 1 (minor) and 3 of 3 exits 2 (critical), in text, json and nagios formats."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.agent import firstwatch


class Servers:
    """Three web servers on 127.0.0.1, each with its own status."""

    def __init__(self) -> None:
        self.status = [200, 200, 200]
        self.runners: list[web.AppRunner] = []
        self.urls: list[str] = []

    async def start(self) -> None:
        for i in range(3):

            async def handle(request: web.Request, i: int = i) -> web.Response:
                return web.Response(status=self.status[i], text="ok" if self.status[i] == 200 else "oops")

            app = web.Application()
            app.router.add_get("/", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/")


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    s = Servers()
    await s.start()
    yield s
    for r in s.runners:
        await r.cleanup()


def shop_web(tmp_path: Path, servers: Servers) -> str:
    urls = ", ".join(f'"{u}"' for u in servers.urls)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
agent: {{name: web-01, state_dir: "{tmp_path / "state"}", listen: ""}}
checks:
  - name: shop-web
    type: http
    targets: [{urls}]
    timeout: 2s
    alerts: [{{when: down, for: 1m, severity: minor}}]
    impact:
      - {{share: 0.5, severity: major}}
      - {{share: 1.0, severity: critical}}
"""
    )
    return str(path)


async def run(cfg: str, fmt: str) -> tuple[int, str]:
    code, out, err = await firstwatch("check", "-c", cfg, "--format", fmt)
    assert "Traceback" not in err, err
    return code, out


async def test_one_of_three_down_is_minor(tmp_path: Path, servers: Servers) -> None:
    servers.status[1] = 503
    cfg = shop_web(tmp_path, servers)
    code, out = await run(cfg, "text")
    assert code == 1, out
    lines = out.splitlines()
    assert "shop-web: 1 of 3 targets failing -> minor [down for 1m]" in lines
    assert lines[-1] == "WARNING: 3 target(s) checked, 1 failing (worst: minor)"

    code, out = await run(cfg, "json")
    doc = json.loads(out)
    assert (code, doc["exit_code"], doc["status"]) == (1, 1, "warning")
    assert doc["groups"] == [
        {
            "check": "shop-web",
            "rule": "down for 1m",
            "members": 3,
            "failing": 1,
            "severity": "minor",
            "status": "warning",
        }
    ]

    code, out = await run(cfg, "nagios")
    assert code == 1
    assert out.startswith("WARNING - shop-web: 1 of 3 targets failing -> minor [down for 1m]; 1 of 3 failing: ")


async def test_two_of_three_down_is_major(tmp_path: Path, servers: Servers) -> None:
    servers.status[0] = servers.status[2] = 503
    code, out = await run(shop_web(tmp_path, servers), "text")
    assert code == 2, out
    assert "shop-web: 2 of 3 targets failing -> major [down for 1m]" in out.splitlines()
    assert out.splitlines()[-1] == "CRITICAL: 3 target(s) checked, 2 failing (worst: major)"


async def test_all_three_down_is_critical(tmp_path: Path, servers: Servers) -> None:
    servers.status = [503, 503, 503]
    cfg = shop_web(tmp_path, servers)
    code, out = await run(cfg, "text")
    assert code == 2, out
    lines = out.splitlines()
    rows = [line for line in lines if line.startswith("shop-web  http://")]
    assert len(rows) == 3 and all("MINOR" in row and "down (HTTP 503 from 127.0.0.1:" in row for row in rows)
    assert lines[-2:] == [
        "shop-web: 3 of 3 targets failing -> critical [down for 1m]",
        "CRITICAL: 3 target(s) checked, 3 failing (worst: critical)",
    ]

    code, out = await run(cfg, "json")
    doc = json.loads(out)
    assert (code, doc["exit_code"], doc["status"]) == (2, 2, "critical")
    assert [(g["failing"], g["severity"], g["status"]) for g in doc["groups"]] == [(3, "critical", "critical")]
    assert all(r["severity"] == "minor" for r in doc["results"])  # each member's own rule

    code, out = await run(cfg, "nagios")
    first, *rest = out.splitlines()
    assert code == 2
    assert first.startswith("CRITICAL - shop-web: 3 of 3 targets failing -> critical [down for 1m]; 3 of 3 failing:")
    assert len(rest) == 3


async def test_all_up_is_ok_and_groups_report_zero(tmp_path: Path, servers: Servers) -> None:
    cfg = shop_web(tmp_path, servers)
    code, out = await run(cfg, "text")
    assert code == 0 and out.splitlines()[-1] == "OK: 3 target(s) checked, 0 failing"
    assert "targets failing" not in out
    code, out = await run(cfg, "json")
    assert (
        json.loads(out)["groups"][0] | {"failing": 0, "severity": None, "status": "ok"} == json.loads(out)["groups"][0]
    )
