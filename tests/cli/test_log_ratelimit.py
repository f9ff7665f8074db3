"""Repeated log lines are rate-limited: a flood (accept() errors, outbox-full drops) costs a few
lines a minute, and one line says how many were dropped. Driven by an injected clock, then end to
end through ``setup_logging`` in a real process."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from agent.cli.main import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def setup() -> tuple[logging.Logger, Collect, Clock, RepeatFilter]:
    clock = Clock()
    out = Collect()
    repeats = RepeatFilter(out.handle, limit=5, window=60.0, clock=clock, template_limit=20)
    out.addFilter(repeats)
    log = logging.getLogger("test.ratelimit")
    log.handlers[:] = [out]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, out, clock, repeats


Setup = tuple[logging.Logger, Collect, Clock, RepeatFilter]


def test_a_repeated_line_passes_five_times_then_one_summary_per_window(setup: Setup) -> None:
    log, out, clock, _ = setup
    for _ in range(1239):
        log.error("status listener: accept() failed: %s", "[Errno 24] Too many open files")
        clock.now += 0.01
    line = "ERROR test.ratelimit: status listener: accept() failed: [Errno 24] Too many open files"
    assert out.lines == [line] * 5
    clock.now = 1000.0 + 60.0
    log.info("something else")
    assert out.lines[5:] == [
        f"{line} (repeated 1,234 more times in the last 60s)",
        "INFO test.ratelimit: something else",
    ]
    # a new window: the first five pass again
    for _ in range(7):
        log.error("status listener: accept() failed: %s", "[Errno 24] Too many open files")
    assert out.lines[7:] == [line] * 5


def test_one_line_per_target_passes_a_flood_of_distinct_lines_is_capped(setup: Setup) -> None:
    log, out, clock, _ = setup
    for i in range(15):  # an outage of 15 targets: every one is logged
        log.warning("%s: down (%s)", f"web-{i}", "connection refused")
    assert len(out.lines) == 15
    for i in range(15, 1015):  # 1,000 more, each different: 20 per window in all
        log.warning("%s: down (%s)", f"web-{i}", "connection refused")
    assert len(out.lines) == 20
    clock.now += 61
    log.info("tick")
    assert out.lines[20:] == [
        "WARNING test.ratelimit: web-1014: down (connection refused) (and 995 more like it in the last 60s)",
        "INFO test.ratelimit: tick",
    ]


def test_keys_are_logger_level_and_template(setup: Setup) -> None:
    log, out, _, _ = setup
    other = logging.getLogger("test.ratelimit.other")
    for _ in range(10):
        log.warning("drop %d", 1)
        log.error("drop %d", 1)
        log.warning("full %d", 1)
        other.warning("drop %d", 1)  # propagates to the same handler
    assert len(out.lines) == 4 * 5


def test_under_the_limit_nothing_is_suppressed_or_summarized(setup: Setup) -> None:
    log, out, clock, repeats = setup
    for _ in range(5):
        log.warning("up")
    clock.now += 120
    log.warning("down")
    repeats.flush()
    assert out.lines == ["WARNING test.ratelimit: up"] * 5 + ["WARNING test.ratelimit: down"]


def test_flush_reports_what_is_still_suppressed(setup: Setup) -> None:
    log, out, clock, repeats = setup
    for _ in range(8):
        log.error("sink %s: outbox full, event dropped", "pager")
    clock.now += 3
    repeats.flush()
    summary = "ERROR test.ratelimit: sink pager: outbox full, event dropped (repeated 3 more times in the last 3s)"
    assert out.lines[-1] == summary


FLOOD = """
import logging
from agent.cli.main import setup_logging
setup_logging("info")
log = logging.getLogger("firstwatch.http")
for i in range(20000):
    log.error("status listener: accept() failed: %s", "[Errno 24] Too many open files")
log.info("done")
"""


def test_a_flood_through_setup_logging_is_a_few_lines() -> None:
    proc = subprocess.run([sys.executable, "-c", FLOOD], capture_output=True, text=True, timeout=60)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 0
    assert len(lines) == 7, lines
    assert all("accept() failed: [Errno 24] Too many open files" in line for line in lines[:5])
    assert lines[5].endswith(" INFO firstwatch.http: done")
    summary = " ERROR firstwatch.http: status listener: accept() failed: [Errno 24] Too many open files"
    assert f"{summary} (repeated 19,995 more times in the last " in lines[6]


def test_log_lines_escape_control_characters_but_tracebacks_keep_their_lines() -> None:
    code = """
import logging
from agent.cli.main import setup_logging
setup_logging("info")
log = logging.getLogger("firstwatch")
log.warning("plugin said: %s", "ok\\n2026-01-01T00:00:00.000Z INFO firstwatch: forged \\x1b[2J")
try:
    raise ValueError("bad \\x1b]0;title\\x07")
except ValueError:
    log.exception("probe crashed")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = proc.stderr.splitlines()
    assert lines[0].endswith(
        r"WARNING firstwatch: plugin said: ok\n2026-01-01T00:00:00.000Z INFO firstwatch: forged \x1b[2J"
    )
    assert lines[1].endswith("ERROR firstwatch: probe crashed")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == r"ValueError: bad \x1b]0;title\x07"
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
