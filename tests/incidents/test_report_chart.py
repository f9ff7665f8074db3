"""``firstwatch report -o FILE``: the draft in FILE and, beside it, a chart of the check's latency
and failed runs around the incident, drawn from the run history in a real state database.

The database check runs every 10 s at about 20 ms. Forty minutes ago it started timing out
(2.5 s, every run failing); the agent was stopped for five minutes in the middle of it; it
recovered twenty minutes later. The history is written as the agent writes it (1-minute buckets,
``history_store.upsert``), and the report is run as a user runs it, as a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from agent.core.svg import XMLNS
from agent.incidents import report_chart
from agent.incidents.history import BINS, Bucket, bin_of
from agent.incidents.history_store import upsert
from agent.incidents.store import Store

NS = {"s": XMLNS}
ID = "7c2d9e41b0aa"
DB = "postgres://db-1:5432"
NOW = int(time.time()) // 60 * 60
STARTED = NOW - 40 * 60  # the first failing run
FIRED = STARTED + 60
RESOLVED = STARTED + 20 * 60
GAP = range(STARTED + 8 * 60, STARTED + 13 * 60, 60)  # the agent was stopped: no buckets


def minute(start: int, good: int, duration: float, runs: int = 6) -> Bucket:
    hist = [0] * BINS
    hist[bin_of(duration)] = runs
    return Bucket("db", DB, start, 60, runs, good, duration * runs, duration, tuple(hist))


def outage(tmp_path: Path, history: bool = True) -> Path:
    """The state database and a config naming it; returns the config's path."""
    store = Store(str(tmp_path / "state"))
    with store.transaction():
        store.open_incident(
            ID, fingerprint="fp", check="db", target=DB, rule="down for 1m", severity="critical",
            summary="db: down (timeout) for 1m", first_error="timeout after 2.5s", started_at=STARTED,
            fired_at=FIRED,
        )  # fmt: skip
        store.add_entry("firing", "db: down (timeout) for 1m", incident=ID, check="db", target=DB,
                        severity="critical", when=FIRED)  # fmt: skip
        store.resolve_incident(ID, RESOLVED)
        store.add_entry("resolved", "db: resolved", incident=ID, check="db", target=DB, severity="critical",
                        when=RESOLVED)  # fmt: skip
        if history:
            upsert(
                store,
                [
                    minute(t, 0, 2.5) if STARTED <= t < RESOLVED else minute(t, 6, 0.02)
                    for t in range(STARTED - 3600, NOW, 60)
                    if t not in GAP
                ],
            )
    store.close()
    config = tmp_path / "config.yaml"
    config.write_text(f'agent: {{state_dir: "{tmp_path / "state"}"}}\n')
    return config


def report(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "report", "-c", str(config), ID[:6], *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )  # fmt: skip


def section(markdown: str, title: str) -> list[str]:
    body = markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line]


def test_the_report_links_a_chart_of_latency_and_failed_runs_beside_it(tmp_path: Path) -> None:
    config = outage(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    done = report(config, "-o", "inc-42.md", cwd=out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote the report on incident {ID} to inc-42.md and its chart to inc-42.svg"
    assert sorted(p.name for p in out.iterdir()) == ["inc-42.md", "inc-42.svg"]
    markdown = (out / "inc-42.md").read_text()
    titles = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert titles.index("Latency and failures") == titles.index("Time at each severity") + 1
    link, words = section(markdown, "Latency and failures")
    assert link == "![latency and failure rate](inc-42.svg)"
    failing = 20 - len(GAP)  # minutes of failed runs that were recorded
    assert f"{failing * 6} of " in words and "runs failed" in words
    assert "p95 run duration peaked at 2.5s" in words and "failed runs at 100%" in words
    assert "no runs in 5 of " in words  # the agent was stopped

    root = ET.parse(out / "inc-42.svg").getroot()  # well-formed, standalone
    assert root.tag == f"{{{XMLNS}}}svg" and (root.get("width"), root.get("height")) == ("760", "300")
    assert root.findtext("s:title", namespaces=NS) == words == root.get("aria-label")
    bars = [
        r
        for r in root.findall(".//s:rect", NS)
        if r.get("fill") == report_chart.BARS and r.find("s:title", NS) is not None
    ]
    assert len(bars) == failing  # one bar per minute with failed runs, all full height
    assert {float(r.get("height") or 0) for r in bars} == {report_chart.BOTTOM - report_chart.TOP}
    (shade,) = [r for r in root.findall(".//s:rect", NS) if r.get("fill") == report_chart.SHADE]
    x0, span = STARTED - 3600, 3600 + 20 * 60 + 600  # the chart: an hour before to 10 minutes after
    plot = report_chart.RIGHT - report_chart.LEFT
    expect = report_chart.LEFT + (STARTED - x0) / span * plot
    assert abs(float(shade.get("x") or 0) - expect) < 0.02 * plot
    assert abs(float(shade.get("width") or 0) - 20 * 60 / span * plot) < 0.02 * plot
    (line,) = [
        p for p in root.findall(".//s:path", NS) if p.get("stroke") == report_chart.LINE and "L" in p.get("d", "")
    ]
    assert (line.get("d") or "").count("M") == 2  # broken where the agent was stopped


def test_without_output_the_report_goes_to_stdout_as_before_and_draws_nothing(tmp_path: Path) -> None:
    config = outage(tmp_path)
    done = report(config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# Incident {ID}: db: down (timeout) for 1m")
    assert "Latency and failures" not in done.stdout and ".svg" not in done.stdout
    assert list(tmp_path.rglob("*.svg")) == []
    helped = subprocess.run([sys.executable, "-m", "agent", "report", "--help"], capture_output=True, text=True)
    said = " ".join(helped.stdout.split())
    assert "-o FILE, --output FILE" in said and "without -o the draft goes to stdout, with no chart" in said


def test_without_history_the_section_says_so_in_one_line_and_no_chart_is_written(tmp_path: Path) -> None:
    config = outage(tmp_path, history=False)
    done = report(config, "-o", str(tmp_path / "inc.md"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(no run history to chart)" in done.stdout
    assert not (tmp_path / "inc.svg").exists()
    (line,) = section((tmp_path / "inc.md").read_text(), "Latency and failures")
    assert re.fullmatch(r"\(no run history of db from \d{4}-\d\d-\d\d \d\d:\d\d to \d\d:\d\d UTC: no chart\)", line)


def test_an_svg_name_for_the_report_is_refused(tmp_path: Path) -> None:
    done = report(outage(tmp_path), "-o", "inc.svg", cwd=tmp_path)
    assert done.returncode == 64 and "name it .md" in done.stderr
    assert list(tmp_path.glob("inc*")) == []


def test_the_steps_are_as_narrow_as_the_stored_buckets_allow() -> None:
    def b(width: int) -> Bucket:
        return Bucket("db", DB, 0, width, 1, 1, 0.1, 0.1, (0,) * BINS)

    assert report_chart.step_width([b(60)], 0, 2 * 3600) == 60  # 120 steps
    assert report_chart.step_width([b(60)], 0, 3 * 3600) == 300  # 180 would be too many
    assert report_chart.step_width([b(60), b(900)], 0, 3600) == 900  # never narrower than a stored bucket
    assert report_chart.step_width([b(3600)], 0, 40 * 86400) == 86400
