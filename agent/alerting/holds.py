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

:class:`Dependencies` keeps the indexes the judgement needs (each check's alerts, when each
check last ran, which children are held under which parent); :func:`judge` says whether a
firing is held and why; :class:`HeldFirings` is the part of the alert book that records holds
and pages when they end (the book owns the alerts and the incident ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.alerting.quiet import Quiet, QuietFn, never_quiet
from agent.alerting.records import Alert, Change, Key, Watched, name_of
from agent.alerting.rules import Rule
from agent.core.events import Kind, fingerprint

DEPENDS = "depends:"  # held: a parent fails (the child is affected by the parent's incident)
AWAITING = "awaiting:"  # held: the parent has not run since the child began failing
QUIET = "quiet"  # held: a maintenance window or a silence
QUORUM = "quorum:"  # held for good: a rule with quorum: N is judged across agents, centrally


@dataclass(frozen=True)
class Hold:
    """Why a firing is held: ``code`` is stored with the alert (``depends:db``, ``awaiting:db``,
    ``quiet``); ``quiet`` says which window or silence; ``parent`` which check is failing."""

    code: str
    parent: str | None = None
    quiet: Quiet | None = None

    def describe(self) -> str:
        return self.quiet.describe() if self.quiet is not None else describe_hold(self.code)


def describe_hold(code: str) -> str:
    """A stored hold code in words (``depends:db`` -> ``depends on db``)."""
    if code.startswith(DEPENDS):
        return f"depends on {code[len(DEPENDS) :]}"
    if code.startswith(AWAITING):
        return f"waiting for {code[len(AWAITING) :]}'s next run"
    if code.startswith(QUORUM):
        return f"down here; quorum judged centrally (at least {code[len(QUORUM) :]} agents)"
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


class HeldFirings:
    """The part of :class:`agent.alerting.book.AlertBook` that holds firings and lets them go:
    it judges a firing (:func:`judge`), records why it is held (once per reason), judges it
    again at each run, pages when nothing holds it, and records a held one that recovers."""

    if TYPE_CHECKING:  # the book's own fields and methods, used here
        agent_name: str
        labels: dict[str, str]
        new_id: Callable[[], str]
        alerts: dict[Key, Alert]
        dirty: set[Key]
        quiet: QuietFn
        deps: Dependencies
        _fps: dict[Key, str]
        _specs: dict[str, Watched]

        def wall(self, t: float) -> float: ...
        def _firing_summary(self, spec: Watched, target: str, rule: Rule, alert: Alert) -> str: ...
        def _incident_change(
            self, kind: Kind, spec: Watched, target: str, rule: Rule, alert: Alert, fp: str, now: float,
            summary: str, value: float | None, members: list[str] | None = None, started: float | None = None,
        ) -> Change: ...  # fmt: skip

    def _labels(self, spec: Watched) -> dict[str, str]:
        return {**self.labels, **spec.config.labels}

    def _fp(self, key: Key) -> str:
        fp = self._fps.get(key)
        if fp is None:
            fp = self._fps[key] = fingerprint(self.agent_name, *key)
        return fp

    def _judge(self, spec: Watched, since: float, now: float, rule: Rule) -> Hold | None:
        if rule.quorum is not None:  # never paged by one agent's view: the fleet's Prometheus judges it
            return Hold(QUORUM + str(rule.quorum))
        if not spec.policy.depends_on and self.quiet is never_quiet:
            return None
        quiet = self.quiet(spec.config.name, self._labels(spec), self.wall(now))
        return judge(self.deps, self.alerts, spec.policy.depends_on, since, now, spec.config.interval, quiet)

    def _fire(self, spec: Watched, key: Key, rule: Rule, alert: Alert, now: float) -> list[Change]:
        """A rule reached its ``for:``: page, or hold the firing and say why."""
        text = self._firing_summary(spec, key[1], rule, alert)
        hold = self._judge(spec, alert.state.since if alert.state.since is not None else now, now, rule)
        if hold is not None:
            return self._hold(key, alert, hold, text, now, rule.severity)
        return self._open(spec, key, rule, alert, now, text)

    def _open(self, spec: Watched, key: Key, rule: Rule, alert: Alert, now: float, text: str) -> list[Change]:
        self.deps.hold(key, None)
        alert.held = alert.held_on = None
        alert.incident, alert.severity, alert.max_severity = self.new_id(), rule.severity, rule.severity
        value = alert.last_value
        change = self._incident_change("firing", spec, key[1], rule, alert, self._fp(key), now, text, value)
        return [change, *self._affected_entries(spec.config.name, alert.incident, now)]

    def _rejudge(self, spec: Watched, key: Key, rule: Rule, alert: Alert, now: float) -> list[Change]:
        """A held firing judged again at a run: still held (maybe for another reason now), or
        paged at once (its ``for:`` was met long ago)."""
        if key[1] == "*":
            return []  # a group is judged again at its next round
        text = self._firing_summary(spec, key[1], rule, alert)
        hold = self._judge(spec, alert.state.since if alert.state.since is not None else now, now, rule)
        if hold is not None:
            return self._hold(key, alert, hold, text, now, rule.severity)
        self.dirty.add(key)
        released = self._leave_parent(key, alert, now, "still failing: pages on its own")
        return released + self._open(spec, key, rule, alert, now, text)

    def _hold(self, key: Key, alert: Alert, hold: Hold, text: str, now: float, severity: str) -> list[Change]:
        """Hold a firing: recorded once per reason, not at every run."""
        if alert.held == hold.code:
            return []
        self.dirty.add(key)
        out = self._leave_parent(key, alert, now, hold.describe())
        alert.held = hold.code
        self.deps.hold(key, hold.code)
        check, target, rule = key
        if hold.parent is not None and hold.code.startswith(DEPENDS):
            alert.held_on = self.deps.incident_of(hold.parent, self.alerts)
            note = f"{text}: depends on {hold.parent}; not paged"
            out.append(
                Change("affected", self.wall(now), check, target, rule, self._fp(key), note, alert.held_on, severity)
            )
        elif hold.quiet is not None:
            note = f"{text}: {hold.describe()}; not sent"
            out.append(Change("silenced", self.wall(now), check, target, rule, self._fp(key), note, None, severity))
        return out

    def _leave_parent(self, key: Key, alert: Alert, now: float, why: str) -> list[Change]:
        """A held child no longer held under its parent: a line on the parent's incident."""
        if alert.held is None or not alert.held.startswith(DEPENDS):
            return []
        parent, incident = alert.held[len(DEPENDS) :], alert.held_on
        alert.held_on = None
        text = f"{key[0]}: {parent} no longer fails; {key[0]} {why}"
        return [Change("unaffected", self.wall(now), *key, self._fp(key), text, incident)]

    def _recovered_held(
        self, spec: Watched, key: Key, rule: Rule, alert: Alert, now_text: str, now: float
    ) -> list[Change]:
        """A held firing ended before anyone was paged: recorded; nothing to resolve at the sinks."""
        self.dirty.add(key)
        prefix = spec.config.name if key[1] == "*" else name_of(spec, key[1])
        held, alert.held = alert.held, None
        self.deps.hold(key, None)
        if held is not None and held.startswith(DEPENDS):
            incident, alert.held_on = alert.held_on, None
            text = f"{prefix}: recovered (now {now_text}); it was failing under {held[len(DEPENDS) :]} [{rule.text}]"
            return [Change("unaffected", self.wall(now), *key, self._fp(key), text, incident)]
        text = f"{prefix}: recovered (now {now_text}) before it was paged [{rule.text}]"
        return [Change("recovered", self.wall(now), *key, self._fp(key), text)]

    def _affected_entries(self, parent: str, incident: str | None, now: float) -> list[Change]:
        """The children already held under ``parent`` when it opens an incident: recorded on it."""
        out = []
        for key in self.deps.held_by.get(parent, {}):
            alert = self.alerts.get(key)
            if alert is None:
                continue
            alert.held_on = incident
            self.dirty.add(key)
            text = f"{key[0]}: {alert.last_text or 'failing'}: depends on {parent}; not paged"
            out.append(Change("affected", self.wall(now), *key, self._fp(key), text, incident))
        return out

    def held(self, wall: float) -> list[tuple[Key, str]]:
        """The alerts firing but not paged at ``wall``, each with why (for the status page)."""
        out = []
        for key, alert in self.alerts.items():
            if alert.held is not None and alert.state.phase == "firing":
                spec = self._specs.get(key[0])
                quiet = self.quiet(key[0], self._labels(spec), wall) if alert.held == QUIET and spec else None
                out.append((key, quiet.describe() if quiet is not None else describe_hold(alert.held)))
        return out
