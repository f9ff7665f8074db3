"""Hostile text (a plugin printing terminal escapes, a note with a newline) is shown, never obeyed:
the logs, ``timeline``, ``report`` and ``note`` print control characters as escapes, JSON stays
JSON, and a note is capped. The real agent runs a real plugin; the CLI runs as subprocesses."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from agent.cli.incidents import NOTE_MAX_CHARS
from tests.support.agent import read_events

# what agent.core.safe_text escapes, but the newline that ends each output line
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
PLUGIN = "printf 'CRITICAL \\033[2J\\033]0;pwned\\007 disk\\nsecond line\\n'; exit 2"
FORGED = "rolled back\n2026-11-24T03:20:00.000Z  RESOLVED    critical evil [x] all fine \x1b[31m\u202e"


@dataclass
class Agent:
    config: str
    log: str
    incident: str


def firstwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    """An agent whose plugin prints escape sequences, run until its incident fires."""
    tmp = tmp_path_factory.mktemp("safe")
    events = tmp / "events.jsonl"
    config = tmp / "config.yaml"
    config.write_text(
        f'agent: {{name: ops, state_dir: "{tmp / "state"}", listen: ""}}\n'
        "checks:\n"
        f"  - {{name: evil, type: command, interval: 0.2s, command: [sh, -c, {json.dumps(PLUGIN)}]}}\n"
        f'sinks: [{{type: file, path: "{events}"}}]\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(config)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not any(e["kind"] == "firing" for e in read_events(events)) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, log = proc.communicate(timeout=15)
    (firing,) = [e for e in read_events(events) if e["kind"] == "firing"]
    assert "\x1b[2J" in firing["summary"]  # the event carries what the plugin said (JSON escapes it)
    return Agent(str(config), log, firing["incident"])


def test_log_lines_show_plugin_escapes_as_text(agent: Agent) -> None:
    assert not RAW.search(agent.log), agent.log
    assert r"down (CRITICAL \x1b[2J\x1b]0;pwned\x07 disk)" in agent.log


def test_a_note_cannot_forge_a_timeline_line_or_drive_the_terminal(agent: Agent) -> None:
    noted = firstwatch("note", "-c", agent.config, agent.incident, FORGED, "--by", "eve\x1b[8m")
    assert noted.returncode == 0, noted.stderr
    assert not RAW.search(noted.stdout) and r"\x1b[2J" in noted.stdout
    text = firstwatch("timeline", "-c", agent.config)
    entries = json.loads(firstwatch("timeline", "-c", agent.config, "--format", "json").stdout)
    assert text.returncode == 0
    assert len(text.stdout.splitlines()) == len(entries)  # one line per entry, whatever a note says
    assert not RAW.search(text.stdout), text.stdout
    (note_line,) = [line for line in text.stdout.splitlines() if " NOTE " in line]
    assert note_line.endswith(
        r"rolled back\n2026-11-24T03:20:00.000Z  RESOLVED    critical evil [x] all fine \x1b[31m\u202e (by eve\x1b[8m)"
    )
    assert r"eve\x1b[8m" in note_line
    assert FORGED in [e["text"] for e in entries]  # stored as said; JSON escapes it itself


def test_report_escapes_every_line_and_json_keeps_the_text(agent: Agent) -> None:
    firstwatch("note", "-c", agent.config, agent.incident, "report\x1b]0;title\x07 note")
    report = firstwatch("report", "-c", agent.config, agent.incident)
    assert report.returncode == 0, report.stderr
    assert not RAW.search(report.stdout), report.stdout
    assert report.stdout.startswith(r"# Incident " + agent.incident + r": evil: down (CRITICAL \x1b[2J")
    assert r"**report\x1b]0;title\x07 note**" in report.stdout
    as_json = json.loads(firstwatch("report", "-c", agent.config, agent.incident, "--format", "json").stdout)
    assert "report\x1b]0;title\x07 note" in [n["text"] for n in as_json["notes"]]


def test_a_note_longer_than_the_cap_is_refused_and_nothing_is_written(agent: Agent) -> None:
    before = firstwatch("timeline", "-c", agent.config, "--format", "json").stdout
    long = firstwatch("note", "-c", agent.config, agent.incident, "x" * (NOTE_MAX_CHARS + 1))
    assert long.returncode == 64
    assert long.stderr == "firstwatch: the note is 2,001 characters long; at most 2,000 are allowed\n"
    assert firstwatch("timeline", "-c", agent.config, "--format", "json").stdout == before
    by = firstwatch("note", "-c", agent.config, agent.incident, "ok", "--by", "b" * 101)
    assert (by.returncode, by.stderr) == (
        64,
        "firstwatch: the --by name is 101 characters long; at most 100 are allowed\n",
    )
    ack = firstwatch("ack", "-c", agent.config, agent.incident, "--by", "b" * 101)
    assert ack.returncode == 64
    assert firstwatch("timeline", "-c", agent.config, "--format", "json").stdout == before
    fits = firstwatch("note", "-c", agent.config, agent.incident, "y" * NOTE_MAX_CHARS)
    assert fits.returncode == 0, fits.stderr
