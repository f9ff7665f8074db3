"""``firstwatch silence add|list|expire`` and ``firstwatch annotate``: quiet time and change markers.

Like ``note`` and ``ack`` they open the state database directly (local authority: whoever may
write the agent's state directory); the running agent polls the silences from it. A silence
names checks (``--check``) and/or labels (``--label K=V``: a check must have every one, and be
named too when names are given), lasts ``--for`` a duration or ``--until`` a time, at most
:data:`MAX_SILENCE` (30 days: a check that must stay quiet longer should be fixed or taken out
of the config), and always says why (``--reason``). Check names are verified against the config,
with a suggestion for a typo; when the config cannot be loaded (it may be what is being fixed,
at 2 AM) the silence is still made, with a warning, from ``agent.state_dir`` alone.
``annotate`` marks a change (a deploy, a config push) on the timeline, so the timeline and an
incident's report show what changed just before things went wrong.

Usage errors exit 64 with one line; no state database exits 66; an unknown, ambiguous or
already ended silence exits 1 (``main.incident_command`` reports a StoreError). This module's
top level imports only the standard library: ``main`` adds its parsers for every command, and
``firstwatch check`` must start fast.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict, TypeVar

if TYPE_CHECKING:
    from agent.alerting.quiet import Silence
    from agent.incidents.store import Store

EX_USAGE, EX_NOINPUT = 64, 66
MAX_SILENCE = 30 * 86400.0  # 30 days
REASON_MAX_CHARS = 500  # it is shown with every firing it keeps quiet
_P = TypeVar("_P", bound=argparse.ArgumentParser)


class SilenceJson(TypedDict):
    """One silence in ``firstwatch silence list --format json`` (times in ISO 8601, UTC)."""

    id: str
    checks: list[str] | None
    labels: dict[str, str] | None
    starts: str
    ends: str
    reason: str
    by: str
    created: str
    active: bool


class _Refused(Exception):
    """A command refused to run: one line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EX_USAGE) -> None:
        super().__init__(message)
        self.code = code


# --- the command line ------------------------------------------------------------------------


def _label(text: str) -> tuple[str, str]:
    from agent.core.validators import LABEL_NAME  # label names as the config accepts them

    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value:
        raise argparse.ArgumentTypeError(f"invalid label {text!r}: use K=V, like env=prod")
    if not LABEL_NAME.match(key.strip()):
        raise argparse.ArgumentTypeError(f"invalid label name {key.strip()!r}: use letters, digits and underscores")
    return key.strip(), value


_CAP = "a silence lasts at most 30 days (fix the check, or take it out of the config)"


def _for(text: str) -> float:
    from agent.core.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration to silence for: give one longer than zero")
    if seconds > MAX_SILENCE:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 30 days: {_CAP}")
    return seconds


def _until(text: str) -> float:
    """An ISO 8601 time (``2026-12-02T14:15Z``; UTC when it names no zone)."""
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        hint = f" (for a duration, use --for {text})" if re.fullmatch(r"\s*[\d.]+(ms|s|m|h|d)\S*\s*", text) else ""
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use ISO 8601, like 2026-12-02T14:15Z{hint}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def add_parsers(
    sub: argparse._SubParsersAction[_P], with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    """``silence add|list|expire`` and ``annotate``, on ``main``'s subcommands."""
    by_help = "who (default: the user running the command)"
    s = sub.add_parser("silence", help="keep checks from paging for a while (add, list, expire)")
    actions = s.add_subparsers(dest="silence_command", required=True, metavar="ACTION")
    a = with_config(actions.add_parser("add", help="silence checks by name or label"))
    a.add_argument("--check", action="append", metavar="NAME", help="silence this check (repeatable)")
    a.add_argument(
        "--label", action="append", type=_label, metavar="K=V",
        help="silence checks with this label (repeatable: all must match, and the name too with --check)",
    )  # fmt: skip
    span = a.add_mutually_exclusive_group(required=True)
    span.add_argument("--for", dest="duration", type=_for, metavar="DURATION", help="from now, that long (2h; <= 30d)")
    span.add_argument("--until", type=_until, metavar="TIME", help="from now until then (2026-12-02T14:15Z)")
    a.add_argument("--reason", required=True, metavar="TEXT", help="why (shown with every firing it keeps quiet)")
    a.add_argument("--by", metavar="NAME", help=by_help)
    ls = with_config(actions.add_parser("list", help="list the silences in effect or scheduled"))
    ls.add_argument("--format", choices=["text", "json"], default="text")
    e = with_config(actions.add_parser("expire", help="end a silence now"))
    e.add_argument("id", metavar="ID", help="the silence's id (or a unique prefix of it)")

    n = with_config(sub.add_parser("annotate", help="mark a change (a deploy, a config push) on the timeline"))
    n.add_argument("text", nargs="+", metavar="TEXT")
    n.add_argument("--check", action="append", metavar="NAME", help="the change is to this check (repeatable)")
    n.add_argument("--by", metavar="NAME", help=by_help)


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed ``silence`` or ``annotate`` command; a refusal is one line on stderr."""
    from agent.core.safe_text import printable

    try:
        if args.command == "annotate":
            return cmd_annotate(args.config, args.text, args.check or [], args.by)
        if args.silence_command == "add":
            return cmd_silence_add(
                args.config, args.check or [], args.label or [], args.duration, args.until, args.reason, args.by
            )
        if args.silence_command == "list":
            return cmd_silence_list(args.config, args.format)
        return cmd_silence_expire(args.config, args.id)
    except _Refused as exc:
        print(printable(f"firstwatch: {exc}"), file=sys.stderr)
        return exc.code


# --- the commands ----------------------------------------------------------------------------


def cmd_silence_add(
    config: str,
    checks: Sequence[str],
    labels: Sequence[tuple[str, str]],
    duration: float | None,
    until: float | None,
    reason: str,
    by: str | None,
) -> int:
    from agent.cli.incidents import whoami
    from agent.core.events import iso_time
    from agent.core.safe_text import printable
    from agent.incidents.silences import add_silence, describe_selector

    now = time.time()
    if not checks and not labels:
        raise _Refused("say what to silence: --check NAME or --label K=V (at least one)")
    if until is not None and until <= now:
        raise _Refused(f"--until {iso_time(until)} is in the past (it is now {iso_time(now)})")
    if until is not None and until - now > MAX_SILENCE:
        raise _Refused(f"--until {iso_time(until)} is more than 30 days away: {_CAP}")
    ends = until if until is not None else now + (duration or 0.0)
    pairs: dict[str, str] = {}
    for key, value in labels:
        if pairs.setdefault(key, value) != value:
            raise _Refused(f"--label {key} is given twice ({pairs[key]!r} and {value!r}): a check has one value")
    reason = reason.strip()
    if not reason:
        raise _Refused("the reason is empty: say why, like --reason 'deploy 1.5.0'")
    _limit("reason", reason, REASON_MAX_CHARS)
    names = _check_names(checks)
    _limit_by(by)
    known = _configured(config)
    if known is not None:
        _verify(config, known, names, pairs)
    store = _open(config)
    who = by or whoami()
    made = add_silence(store, checks=names, labels=pairs or None, starts=now, ends=ends, reason=reason, by=who, now=now)
    what = describe_selector(made.checks, made.labels)
    print(printable(f"silence {made.id}: {what} silenced by {who} until {iso_time(made.ends)} ({reason})"))
    return 0


def cmd_silence_list(config: str, fmt: str) -> int:
    import json

    from agent.core.events import iso_time
    from agent.core.safe_text import printable
    from agent.incidents.silences import describe_selector, silences

    now = time.time()
    found = silences(_open(config), now)
    if fmt == "json":
        print(json.dumps([silence_json(s, now) for s in found], indent=2))
        return 0
    if not found:
        print("(no silences in effect or scheduled)", file=sys.stderr)
        return 0
    rows = [("ID", "SELECTS", "FROM", "UNTIL", "BY", "STATE", "REASON")]
    for s in found:
        state = "active" if s.active(now) else "scheduled"
        what = describe_selector(s.checks, s.labels)
        rows.append((s.id, what, iso_time(s.starts), iso_time(s.ends), s.by, state, s.reason))
    cells = [[printable(c) for c in row] for row in rows]  # a reason's newline never breaks the table
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]) - 1)]
    for row in cells:
        print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    return 0


def silence_json(s: Silence, now: float) -> SilenceJson:
    from agent.core.events import iso_time

    return {
        "id": s.id,
        "checks": sorted(s.checks) if s.checks is not None else None,
        "labels": dict(s.labels) if s.labels is not None else None,
        "starts": iso_time(s.starts),
        "ends": iso_time(s.ends),
        "reason": s.reason,
        "by": s.by,
        "created": iso_time(s.created),
        "active": s.active(now),
    }


def cmd_silence_expire(config: str, ref: str) -> int:
    from agent.cli.incidents import whoami
    from agent.core.safe_text import printable
    from agent.incidents.silences import describe_selector, expire_silence

    store = _open(config)
    who = whoami()
    ended = expire_silence(store, ref, who, time.time())
    what = describe_selector(ended.checks, ended.labels)
    print(printable(f"silence {ended.id} expired by {who}: {what} may page again ({ended.reason})"))
    return 0


def cmd_annotate(config: str, words: Sequence[str], checks: Sequence[str], by: str | None) -> int:
    from agent.cli.incidents import NOTE_MAX_CHARS, whoami
    from agent.core.events import iso_time
    from agent.core.safe_text import printable
    from agent.incidents.silences import add_change, describe_selector

    text = " ".join(words).strip()
    if not text:
        raise _Refused("the change text is empty: say what changed, like 'deploy shop 1.5.0'")
    _limit("change text", text, NOTE_MAX_CHARS)
    names = _check_names(checks)
    _limit_by(by)
    if names is not None and (known := _configured(config)) is not None:
        _verify(config, known, names, {})
    store = _open(config)
    who = by or whoami()
    now = time.time()
    add_change(store, text, who, sorted(names or ()), now)
    on = f" ({describe_selector(names, None)})" if names else ""
    print(printable(f"change marked at {iso_time(now)} by {who}{on}: {text}"))
    return 0


# --- shared ----------------------------------------------------------------------------------


def _limit(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise _Refused(f"the {what} is {len(text):,} characters long; at most {limit:,} are allowed")


def _limit_by(by: str | None) -> None:
    from agent.cli.incidents import NAME_MAX_CHARS

    if by is not None:
        if not by.strip():
            raise _Refused("--by is empty: give a name, or leave it out to be the user running the command")
        _limit("--by name", by, NAME_MAX_CHARS)


def _check_names(checks: Iterable[str]) -> frozenset[str] | None:
    from agent.cli.incidents import NAME_MAX_CHARS

    names = frozenset(c.strip() for c in checks)
    if "" in names:
        raise _Refused("--check is empty: give a check's name")
    for name in names:
        _limit("--check name", name, NAME_MAX_CHARS)
    return names or None


def _configured(config: str) -> list[tuple[str, Mapping[str, str]]] | None:
    """Each configured check's name and labels (the agent's with its own), or None (with a
    warning) when the config cannot be loaded: the command goes on unverified."""
    from agent.config.load import load_config
    from agent.core.errors import ConfigError
    from agent.core.safe_text import printable

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        why = f"{config} cannot be loaded ({len(exc.issues)} config error(s)): check names are not verified"
        print(printable(f"firstwatch: warning: {why}"), file=sys.stderr)
        return None
    return [(s.config.name, {**cfg.labels, **s.config.labels}) for s in cfg.checks]


def _verify(
    config: str, known: list[tuple[str, Mapping[str, str]]], names: frozenset[str] | None, labels: Mapping[str, str]
) -> None:
    """Refuse a check name the config does not have (suggesting a close one); warn when what is
    named selects no configured check now (labels no check has: kept for checks added later)."""
    import difflib

    from agent.alerting.quiet import selects
    from agent.core.safe_text import printable

    configured = sorted({name for name, _ in known})
    for name in sorted(names or ()):
        if name not in configured:
            close = difflib.get_close_matches(name, configured, n=1)
            raise _Refused(f"no check named {name!r} in {config}" + (f"; did you mean {close[0]!r}?" if close else ""))
    if labels and not any(selects(names, labels, name, have) for name, have in known):
        why = f"no check in {config} matches it now; it is kept for checks that match later"
        print(printable(f"firstwatch: warning: {why}"), file=sys.stderr)


def _open(config: str) -> Store:
    from agent.cli.incidents import open_store
    from agent.core.errors import StoreError

    try:
        return open_store(config)
    except StoreError as exc:
        raise _Refused(str(exc), EX_NOINPUT) from None
