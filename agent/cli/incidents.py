"""``firstwatch timeline``, ``note``, ``ack`` and ``report``: the humans' side of an incident.

They open the state database directly (local authority: whoever may write the agent's state
directory may note and acknowledge; no network port changes state). They only need
``agent.state_dir`` from the config, so they keep working at 2 AM even if someone broke another
part of the config. Incident ids may be abbreviated to any unique prefix, as git does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from agent.config.settings import agent_setting, state_dir_of
from agent.core.errors import StoreError
from agent.core.events import iso_time
from agent.core.safe_text import printable
from agent.incidents.model import Entry, Incident
from agent.incidents.store import Store

_P = TypeVar("_P", bound=argparse.ArgumentParser)

EX_NOINPUT = 66
EX_USAGE = 64
NOTE_MAX_CHARS = 2000  # a note is a step in a timeline, not a log dump (and it is shown on the status page)
NAME_MAX_CHARS = 100  # --by


def open_store(config_path: str) -> Store:
    """The state database of ``config_path``'s agent. A config that does not exist is an error
    (a mistyped -c must not silently use another agent's ``./state``); a broken one still
    names its ``agent.state_dir``."""
    if not os.path.exists(config_path):
        raise StoreError(f"no config file {config_path}: give the agent's config with -c (or $FIRSTWATCH_CONFIG)")
    state_dir = state_dir_of(agent_setting(config_path, "state_dir") or "")
    if not os.path.exists(os.path.join(state_dir, "firstwatch.db")):
        raise StoreError(f"no state database in {state_dir}: has 'firstwatch run' started with this config?")
    return Store(state_dir)


def parse_since(text: str, now: float | None = None) -> float:
    """``1h`` (that long ago) or an ISO 8601 time (``2026-11-24T02:00Z``; UTC if no zone)."""
    from agent.core.units import parse_duration

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid --since {text!r}: use a duration (30m, 2h) or a time (2026-11-24T02:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def whoami() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def cmd_timeline(config: str, since: str | None, check: str | None, fmt: str) -> int:
    from agent.incidents.report import SHOWN_KINDS

    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        print(f"firstwatch: {exc}", file=sys.stderr)
        return EX_USAGE
    store = open_store(config)
    entries = store.entries(since=start, check=check)
    if fmt == "json":
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    for e in entries:
        what = e.check or "-"  # a change marker or a silence for everything has no check
        by = f" (by {e.author})" if e.author else ""
        incident = f"[{e.incident}]" if e.incident else ""
        sev = e.severity or ""
        kind = SHOWN_KINDS.get(e.kind, e.kind)
        line = f"{iso_time(e.time)}  {kind:<11} {sev:<8} {what:<16} {incident:<14} {e.text}{by}"
        print(printable(line))  # a note's newline or a plugin's escape codes never reach the terminal raw
    if not entries:
        print("(no timeline entries)", file=sys.stderr)
    return 0


def _too_long(what: str, text: str, limit: int) -> bool:
    if len(text) <= limit:
        return False
    print(f"firstwatch: the {what} is {len(text):,} characters long; at most {limit:,} are allowed", file=sys.stderr)
    return True


def cmd_note(config: str, ref: str, words: list[str], by: str | None) -> int:
    text = " ".join(words).strip()
    if not text:
        print("firstwatch: the note is empty", file=sys.stderr)
        return EX_USAGE
    if _too_long("note", text, NOTE_MAX_CHARS) or (by is not None and _too_long("--by name", by, NAME_MAX_CHARS)):
        return EX_USAGE
    store = open_store(config)
    inc = store.incident(ref)
    with store.transaction():
        store.add_entry("note", text, incident=inc.id, check=inc.check, target=inc.target, author=by or whoami())
    print(printable(f"noted on incident {inc.id} ({inc.summary})"))
    return 0


def cmd_ack(config: str, ref: str, by: str | None) -> int:
    if by is not None and _too_long("--by name", by, NAME_MAX_CHARS):
        return EX_USAGE
    store = open_store(config)
    inc = store.incident(ref)
    who = by or whoami()
    if store.ack(inc.id, who):
        print(printable(f"incident {inc.id} acknowledged by {who}: reminders and escalation stop"))
    else:
        again = store.incident(inc.id)
        when = iso_time(again.acked_at) if again.acked_at is not None else "?"  # set: the ack found it set
        acked = f"incident {inc.id} was already acknowledged by {again.acked_by} at {when}"
        print(printable(acked))
    return 0


def add_report_parser(
    sub: argparse._SubParsersAction[_P], with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """``report``, on ``main``'s subcommands."""
    r = with_config(sub.add_parser("report", help="write a post-mortem draft for an incident"))
    r.add_argument("incident", metavar="INCIDENT")
    r.add_argument("--format", choices=["markdown", "json"], default="markdown")
    r.add_argument(
        "-o", "--output", metavar="FILE",
        help="write the draft to FILE, and a chart of the check's latency and failed runs around the incident"
        " (from its run history) to FILE's name with .svg (inc-42.md: inc-42.svg), linked from the Markdown;"
        " without -o the draft goes to stdout, with no chart",
    )  # fmt: skip


def cmd_report(config: str, ref: str, fmt: str, output: str | None = None) -> int:
    from agent.incidents.report import changes_before, render_json, render_markdown
    from agent.incidents.report_facts import dependent_checks

    if output is not None and Path(output).suffix.lower() == ".svg":
        print(f"firstwatch: -o {output}: the chart is written beside the report as .svg; name it .md", file=sys.stderr)
        return EX_USAGE
    store = open_store(config)
    inc = store.incident(ref)
    entries = store.entries(incident=inc.id)
    changes = changes_before(inc, _change_candidates(store, inc), dependent_checks(entries))
    if output is None:
        render = render_json if fmt == "json" else render_markdown
        print(render(inc, entries, changes, store.state_dir))
        return 0
    path = Path(output)
    chart_path = path.with_suffix(".svg")
    section, drawn = _chart(store, inc, entries, chart_path)
    if fmt == "json":
        text = render_json(inc, entries, changes, store.state_dir)
    else:
        text = render_markdown(inc, entries, changes, store.state_dir, chart=section)
    path.write_text(text + "\n", encoding="utf-8")
    also = f" and its chart to {chart_path}" if drawn else " (no run history to chart)"
    print(printable(f"wrote the report on incident {inc.id} to {path}{also}"))
    return 0


def _chart(store: Store, inc: Incident, entries: list[Entry], chart_path: Path) -> tuple[list[str], bool]:
    """Write the chart of ``inc`` to ``chart_path`` if there is history to draw: the report's
    lines for it, and whether it was written."""
    from agent.incidents import report_chart
    from agent.incidents.report_facts import affected_targets

    now = time.time()
    since, until = report_chart.span(inc, now)
    targets = [t["target"] for t in affected_targets(inc, entries)]
    chart = report_chart.build(inc, report_chart.read(store, inc, targets, since, until), since, until, now)
    if chart is not None:
        chart_path.write_text(chart.svg + "\n", encoding="utf-8")
    return report_chart.section(chart_path.name, chart, since, until, inc.check), chart is not None


def _change_candidates(store: Store, inc: Incident) -> list[Entry]:
    """The change markers (``firstwatch annotate``) of the hour before ``inc`` was detected."""
    from agent.incidents.report import CHANGE_WINDOW

    since = store.entries(since=inc.fired_at - CHANGE_WINDOW)
    return [e for e in since if e.kind == "change" and e.time <= inc.fired_at]
