"""The ``firstwatch`` command line (docs/contract.md). Each command imports only what it needs, so
``firstwatch check`` starts fast enough to run from cron and deploy pipelines."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from agent import __version__

EX_USAGE, EX_CONFIG, UNKNOWN = 64, 78, 3


class _Formatter(logging.Formatter):
    """``2026-11-24T03:17:15.501Z LEVEL logger: message``, one line per message whatever it says.

    The message (with its arguments: plugin output, HTTP bodies, notes) has its control characters
    escaped, so it can neither drive the terminal nor forge a second log line. A traceback keeps
    its line breaks; each of its lines is escaped the same way."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def formatMessage(self, record: logging.LogRecord) -> str:
        from agent.core.safe_text import printable

        raw = record.message
        record.message = printable(raw)
        try:
            return super().formatMessage(record)
        finally:
            record.message = raw

    def formatException(self, ei: Any) -> str:
        return _escape_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _escape_lines(super().formatStack(stack_info))


def _escape_lines(text: str) -> str:
    from agent.core.safe_text import printable

    return "\n".join(printable(line) for line in text.split("\n"))


class RepeatFilter(logging.Filter):
    """Rate-limits repeated log lines, so a flood (accept() errors, a crashing probe) cannot grow
    the log by megabytes a second.

    Per ``window`` seconds (counted from the first occurrence), the same line (logger, level and
    message) passes ``limit`` times, and the same (logger, level, message template) with varying
    arguments ``template_limit`` times: one "down" line per target in an outage of a few hundred
    targets, but not a line per event of an endless flood. When the window ends, one line (at the
    same level, through ``emit``) says how many were dropped. Windows end when anything is next
    logged, or at :meth:`flush` (the handler's close, at exit)."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        limit: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        template_limit: int = 200,
    ) -> None:
        super().__init__()
        self.emit, self.limit, self.window, self.clock = emit, limit, window, clock
        self.template_limit = template_limit
        self._lock = threading.Lock()
        # in order of their window's start: the expired ones are always at the front
        self._seen: OrderedDict[tuple[object, ...], _Repeats] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeat_summary", False):
            return True
        template = (record.name, record.levelno, str(record.msg))
        with self._lock:  # records come from worker threads too
            now = self.clock()
            due = self._expire(now)
            passed = self._admit(template, record, now)
        for summary in due:
            self.emit(summary)
        return passed

    def _admit(self, template: tuple[str, int, str], record: logging.LogRecord, now: float) -> bool:
        by_template = self._seen.get(template)
        if by_template is not None and by_template.passed >= self.template_limit:
            by_template.drop(record)  # checked first: a flood of distinct lines adds no entries
            return False
        line = (*template, record.getMessage())
        exact = self._seen.get(line)
        if exact is None:
            exact = self._seen[line] = _Repeats(now, " (repeated {:,} more times in the last {:.0f}s)")
        if exact.passed >= self.limit:
            exact.drop(record)
            return False
        exact.passed += 1
        if by_template is None:
            by_template = self._seen[template] = _Repeats(now, " (and {:,} more like it in the last {:.0f}s)")
        by_template.passed += 1
        return True

    def flush(self) -> None:
        """Report every suppressed repeat now (at shutdown)."""
        with self._lock:
            due = self._expire(None)
        for summary in due:
            self.emit(summary)

    def _expire(self, now: float | None) -> list[logging.LogRecord]:
        due: list[logging.LogRecord] = []
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if now is not None and now - seen.start < self.window:
                break
            del self._seen[key]
            if seen.last is not None:
                elapsed = (now if now is not None else self.clock()) - seen.start
                due.append(seen.summary(min(self.window, elapsed)))
        return due


class _Repeats:
    """One line, or one template, within its window."""

    __slots__ = ("dropped", "last", "passed", "start", "suffix")

    def __init__(self, start: float, suffix: str) -> None:
        self.start, self.suffix = start, suffix
        self.passed = self.dropped = 0
        self.last: logging.LogRecord | None = None  # the latest dropped one

    def drop(self, record: logging.LogRecord) -> None:
        self.dropped += 1
        self.last = record

    def summary(self, span: float) -> logging.LogRecord:
        last = self.last
        assert last is not None
        text = last.getMessage() + self.suffix.format(self.dropped, span)
        record = logging.LogRecord(last.name, last.levelno, last.pathname, last.lineno, text, None, None)
        record.repeat_summary = True
        return record


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, rate-limited; closing (at exit) reports what is still suppressed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.repeats = RepeatFilter(self.handle)
        self.addFilter(self.repeats)

    def close(self) -> None:
        self.repeats.flush()
        super().close()


def setup_logging(level: str) -> None:
    handler = _Handler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shard {text!r}: expected K/N, like 1/4") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"invalid shard {text!r}: K must be between 1 and N")
    return k, n


def _duration(text: str) -> float:
    from agent.core.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), not argparse's 2: to Nagios and Icinga, which run
    ``firstwatch check`` as a plugin, 2 means CRITICAL; anything above 3 reads as UNKNOWN."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from agent.config.load import default_config_path

    p = _Parser(prog="firstwatch", description="Synthetic monitoring and health-check agent.")
    p.add_argument("--version", action="version", version=f"firstwatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "-c",
            "--config",
            default=default_config_path(),
            help="config file (default: $FIRSTWATCH_CONFIG, else /etc/firstwatch/config.yaml)",
        )
        return sp

    r = with_config(sub.add_parser("run", help="run the agent in the foreground"))
    r.add_argument("--shard", type=_shard, help="run only share K of N of the checks (K/N)")
    r.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    c = with_config(sub.add_parser("check", help="run checks once and exit with a Nagios code"))
    c.add_argument("--only", action="append", metavar="NAME", help="run only this check (repeatable)")
    c.add_argument("--format", choices=["text", "json", "nagios"], default="text")
    c.add_argument("--until-green", type=_duration, metavar="DURATION", help="re-run failing checks until all pass")

    with_config(sub.add_parser("validate", help="validate the config; exit 78 on errors"))
    lc = sub.add_parser("list-checks", help="list the check types and the values they measure")
    lc.add_argument("--sample", metavar="TYPE", help="print an example config for TYPE")

    t = with_config(sub.add_parser("timeline", help="print the incident timeline"))
    t.add_argument("--since", metavar="DURATION|TIME", help="only entries since then (30m, 2026-11-24T02:00Z)")
    t.add_argument("--check", metavar="NAME", help="only entries of this check")
    t.add_argument("--format", choices=["text", "json"], default="text")
    n = with_config(sub.add_parser("note", help="add a human step to an incident's timeline"))
    n.add_argument("incident", metavar="INCIDENT")
    n.add_argument("text", nargs="+", metavar="TEXT")
    n.add_argument("--by", metavar="NAME", help="who (default: the user running the command)")
    a = with_config(sub.add_parser("ack", help="acknowledge an incident: stops reminders and escalation"))
    a.add_argument("incident", metavar="INCIDENT")
    a.add_argument("--by", metavar="NAME", help="who (default: the user running the command)")
    from agent.cli.incidents import add_report_parser
    from agent.cli.silences import add_parsers

    add_report_parser(sub, with_config)  # report, with its chart
    add_parsers(sub, with_config)  # silence add|list|expire, annotate
    from agent.cli import ask

    ask.add_parsers(sub, with_config, _duration)  # status, slo: ask the running agent
    from agent.cli import rules, schema

    rules.add_parsers(sub, with_config, _duration)  # rules: Prometheus rule groups for a central Prometheus
    schema.add_parser(sub)  # the config's JSON Schema
    return p


def _print_issues(exc: Exception) -> None:
    issues = getattr(exc, "issues", [])
    for issue in issues:
        print(issue, file=sys.stderr)
    print(f"firstwatch: {len(issues)} config error(s)", file=sys.stderr)


def cmd_validate(config: str) -> int:
    from agent.config.load import load_config
    from agent.core.errors import ConfigError

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _print_issues(exc)
        return EX_CONFIG
    targets = sum(len(s.build().targets()) for s in cfg.checks)
    print(f"{config}: ok ({len(cfg.checks)} checks, {targets} targets, {len(cfg.sinks)} sinks)")
    return 0


def _undecided(fmt: str, why: str) -> int:
    """``check`` could not run: exit 3, and say so on stdout too in the machine formats (a Nagios
    plugin's status line, a JSON document), since their readers see only stdout."""
    import json

    from agent.core.safe_text import printable

    if fmt == "nagios":
        print(f"UNKNOWN - firstwatch: {printable(why)}")
    elif fmt == "json":
        print(json.dumps({"status": "unknown", "exit_code": UNKNOWN, "error": why, "results": []}))
    return UNKNOWN


def cmd_check(args: argparse.Namespace) -> int:
    import asyncio
    import difflib

    from agent.cli.output import RENDERERS
    from agent.config.load import load_config
    from agent.core.errors import ConfigError
    from agent.engine.oneshot import Finding, check_once, exit_code

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        _print_issues(exc)
        return _undecided(args.format, f"{len(exc.issues)} config error(s) in {args.config}")
    specs = list(cfg.checks)
    if args.only:
        names = {s.config.name for s in specs}
        for name in args.only:
            if name not in names:
                close = difflib.get_close_matches(name, sorted(names), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                print(f"firstwatch: no check named {name!r}{hint}", file=sys.stderr)
                return _undecided(args.format, f"no check named {name!r}{hint}")
        specs = [s for s in specs if s.config.name in args.only]
    if not specs:
        print("firstwatch: no checks to run", file=sys.stderr)
        return _undecided(args.format, "no checks to run")

    def progress(findings: list[Finding]) -> None:
        failing = [f"{f.result.check} {f.result.target}" for f in findings if not f.ok]
        print(f"still failing ({len(failing)}): {', '.join(failing[:5])}", file=sys.stderr, flush=True)

    findings = asyncio.run(check_once(specs, cfg.agent_name, args.until_green, on_round=progress, browser=cfg.browser))
    print(RENDERERS[args.format](findings))
    return exit_code(findings)


def incident_command(args: argparse.Namespace) -> int:
    import sqlite3

    from agent.cli import incidents as incident_cli
    from agent.core.errors import StoreError
    from agent.incidents.store import is_corruption

    try:
        if args.command in ("silence", "annotate"):
            from agent.cli.silences import dispatch

            return dispatch(args)
        if args.command == "timeline":
            return incident_cli.cmd_timeline(args.config, args.since, args.check, args.format)
        if args.command == "note":
            return incident_cli.cmd_note(args.config, args.incident, args.text, args.by)
        if args.command == "ack":
            return incident_cli.cmd_ack(args.config, args.incident, args.by)
        return incident_cli.cmd_report(args.config, args.incident, args.format, args.output)
    except StoreError as exc:
        print(f"firstwatch: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # damaged, locked past the wait, or unwritable: say which, no traceback
        hint = " (the file is damaged; the agent sets it aside at its next start)" if is_corruption(exc) else ""
        print(f"firstwatch: the state database cannot be used: {exc}{hint}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            setup_logging(args.log_level)
            from agent.engine.daemon import run

            return run(args.config, args.shard)
        setup_logging("warning")
        if args.command == "check":
            return cmd_check(args)
        if args.command == "validate":
            return cmd_validate(args.config)
        if args.command == "list-checks":
            from agent.cli.docs import cmd_list_checks

            return cmd_list_checks(args.sample)
        if args.command == "schema":
            from agent.cli import schema

            return schema.dispatch(args)
        if args.command in ("status", "slo"):
            from agent.cli import ask

            return ask.dispatch(args)
        if args.command == "rules":
            from agent.cli.rules import cmd_rules

            return cmd_rules(args.config, args.format, args.scrape_interval)
        return incident_command(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one clear line (the daemon logs tracebacks itself)
        print(f"firstwatch: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return UNKNOWN
