"""Why a rule that reached its ``for:`` is not paged now: a failing parent, or quiet time.

One root cause, one page. A check's ``depends_on`` names the checks its failure would follow
from (the database under the shop). When a rule of a child fires while a parent is failing (its
``down`` rule pending or firing, or an open incident on it), the child is *held*: no incident,
nothing delivered, recorded as affected on the parent's incident. It is judged again at each of
its own runs: when no parent fails any more and it still fails, it fires at once (its ``for:``
counted from when it began to fail). A child that fires before its parent has run since the
child began failing waits for that run (at most about one parent interval), so a database and
the pages above it failing in the same second still make one page.

Maintenance windows and silences (``agent.alerting.quiet``) hold a firing the same way; the
book asks ``quiet`` at each run of a held rule, so a silence that ends releases it at the next
run. A resolution is never held: an incident that paged before is resolved as usual.

This module keeps the indexes the judgement needs (each check's alerts, when each check last
ran, which children are held under which parent); :class:`agent.alerting.book.AlertBook` owns the
alerts and makes the changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from agent.alerting.quiet import Quiet
from agent.alerting.records import Alert, Key

DEPENDS = "depends:"  # held: a parent fails (the child is affected by the parent's incident)
AWAITING = "awaiting:"  # held: the parent has not run since the child began failing
QUIET = "quiet"  # held: a maintenance window or a silence


@dataclass(frozen=True)
class Hold:
    """Why a firing is held: ``code`` is stored with the alert (``depends:db``, ``awaiting:db``,
    ``quiet``); ``quiet`` says which window or silence; ``parent`` which check is failing."""

    code: str
    parent: str | None = None
    quiet: Quiet | None = None

    def describe(self) -> str:
        if self.quiet is not None:
            return self.quiet.describe()
        if self.code.startswith(DEPENDS):
            return f"depends on {self.parent}"
        return f"waiting for {self.parent}'s next run"


def describe_hold(code: str) -> str:
    """A stored hold code in words (``depends:db`` -> ``depends on db``)."""
    if code.startswith(DEPENDS):
        return f"depends on {code[len(DEPENDS) :]}"
    if code.startswith(AWAITING):
        return f"waiting for {code[len(AWAITING) :]}'s next run"
    return "in a maintenance window or silenced"


@dataclass
class Run:
    """When a check last ran (the book's clock) and its interval."""

    started: float
    interval: float


@dataclass
class Dependencies:
    """The indexes: every alert key by check, each check's last run, held children by parent."""

    keys_of: dict[str, dict[Key, bool]] = field(default_factory=dict)  # check -> key -> is a down rule
    runs: dict[str, Run] = field(default_factory=dict)
    held_by: dict[str, dict[Key, None]] = field(default_factory=dict)  # parent -> children's keys held
    waiting: dict[str, dict[Key, None]] = field(default_factory=dict)  # parent -> children awaiting its run

    def register(self, key: Key, down: bool) -> None:
        self.keys_of.setdefault(key[0], {})[key] = down

    def ran(self, check: str, started: float, interval: float) -> None:
        run = self.runs.get(check)
        if run is None:
            self.runs[check] = Run(started, interval)
        else:
            run.started, run.interval = started, interval

    def failing(self, check: str, alerts: Mapping[Key, Alert]) -> bool:
        """A parent fails while its ``down`` rule is pending or firing (on any member, or its
        group) or any of its rules has an open incident."""
        for key, down in self.keys_of.get(check, {}).items():
            alert = alerts.get(key)
            if alert is None:
                continue
            if alert.incident is not None or (down and alert.state.phase != "inactive"):
                return True
        return False

    def unjudged(self, parent: str, since: float, now: float, own_interval: float) -> bool:
        """Whether ``parent`` has not run since ``since`` (when the child began failing) and is
        worth waiting for: a parent that never ran here (another shard's) is waited for one of
        the child's intervals, a known one for one of its own (plus a second)."""
        run = self.runs.get(parent)
        if run is None:
            return now - since < own_interval
        return run.started < since - 1e-6 and now - since < run.interval + own_interval + 1.0

    def incident_of(self, check: str, alerts: Mapping[Key, Alert]) -> str | None:
        """The open incident a child is recorded on: the parent's ``down`` one if any, else its
        first open one."""
        found = None
        for key, down in self.keys_of.get(check, {}).items():
            alert = alerts.get(key)
            if alert is not None and alert.incident is not None:
                if down:
                    return alert.incident
                found = found or alert.incident
        return found

    def affected(self, parent: str) -> list[str]:
        """The checks held under ``parent`` now (the ``affected`` field of its events)."""
        return sorted({key[0] for key in self.held_by.get(parent, ())})

    def hold(self, key: Key, code: str | None) -> None:
        """Index ``key`` under its new hold code (None: no longer held)."""
        for index in (self.held_by, self.waiting):
            for parent in [p for p, keys in index.items() if key in keys]:
                del index[parent][key]
                if not index[parent]:
                    del index[parent]
        if code is not None and code.startswith(DEPENDS):
            self.held_by.setdefault(code[len(DEPENDS) :], {})[key] = None
        elif code is not None and code.startswith(AWAITING):
            self.waiting.setdefault(code[len(AWAITING) :], {})[key] = None

    def waiting_on(self, parent: str) -> list[Key]:
        return list(self.waiting.get(parent, ()))


def judge(
    deps: Dependencies,
    alerts: Mapping[Key, Alert],
    parents: Iterable[str],
    since: float,
    now: float,
    interval: float,
    quiet: Quiet | None,
) -> Hold | None:
    """Whether a firing of a child of ``parents`` (failing since ``since``) is held now: a
    failing parent first (the page that explains it goes out for the parent), then a parent not
    yet judged, then quiet time."""
    parents = list(parents)
    for parent in parents:
        if deps.failing(parent, alerts):
            return Hold(DEPENDS + parent, parent)
    for parent in parents:
        if deps.unjudged(parent, since, now, interval):
            return Hold(AWAITING + parent, parent)
    if quiet is not None:
        return Hold(QUIET, quiet=quiet)
    return None


def held_keys(alerts: Mapping[Key, Alert], check: str, keys: Iterable[Key]) -> Iterator[Key]:
    """The keys of ``check`` whose alert is held now."""
    for key in keys:
        alert = alerts.get(key)
        if alert is not None and alert.held is not None and key[0] == check:
            yield key
