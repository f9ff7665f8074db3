"""Turn results into incidents: judge each rule, debounce it, group it, and say what changed.

One :class:`AlertBook` per runtime holds an :class:`Alert` per (check, target, rule) and, for
checks with ``impact:``, one more per (check, rule) for the group (target ``"*"``). It is the only
place that creates incident ids and writes summaries, so sinks, the timeline and the CLI tell the
same story.

- Without ``impact:`` each target is its own alert and incident.
- With ``impact:`` the members' alerts still debounce one by one (``for:``, ``recover_for:``), but
  the group raises one incident: it fires when the first member fires, its severity is the
  highest of the rule's own severity and the ``impact`` level reached by the share of members
  firing, a ``changed`` event follows the share as it grows and shrinks, and it resolves when the
  last member recovers. One of ten servers down stays minor; all of them is critical.
- Flapping alerts (see ``agent.alerting.flapping``) are held as firing, once, instead of paging per flip.
- A firing is held, not paged, while a check it ``depends_on`` fails or a maintenance window or
  silence applies (see ``agent.alerting.holds``); it pages when that ends and it still fails.

``observe`` returns :class:`Change` records: the timeline entries and the events to deliver.
State is plain data (``snapshot``/``restore``) so incidents survive restarts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.alerting.flapping import FlapDetector, FlappingConfig
from agent.alerting.holds import Dependencies, HeldFirings
from agent.alerting.impact import group_severity
from agent.alerting.quiet import QuietFn, never_quiet
from agent.alerting.records import Alert, Change, Key, NewIncident, Watched, name_of, shift
from agent.alerting.rules import Rule, Verdict
from agent.alerting.state import INACTIVE, AlertState, step
from agent.core.events import Event, Kind, fingerprint, new_incident_id
from agent.core.severity import rank, worst
from agent.core.units import format_duration
from checks.base import Result

__all__ = ["Alert", "AlertBook", "Change", "Key", "NewIncident", "Watched"]


@dataclass
class AlertBook(HeldFirings):
    agent_name: str
    labels: dict[str, str]
    new_id: Callable[[], str] = new_incident_id
    alerts: dict[Key, Alert] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    rounds: dict[tuple[str, str], tuple[float, set[str]]] = field(default_factory=dict)
    # wall time minus the clock the state machine runs on: 0 when results' wall times are the
    # clock (tests); the daemon passes monotonic times to observe() and the real offset here
    clock_offset: Callable[[], float] = lambda: 0.0
    _offset: float | None = None
    _fps: dict[Key, str] = field(default_factory=dict)
    quiet: QuietFn = never_quiet  # maintenance windows and silences
    deps: Dependencies = field(default_factory=Dependencies)
    _specs: dict[str, Watched] = field(default_factory=dict)  # the last spec seen per check

    @property
    def offset(self) -> float:
        return self._offset if self._offset is not None else self.clock_offset()

    def wall(self, t: float) -> float:
        """A time on the state machine's clock as wall time (for events and the timeline)."""
        return t + self.offset

    def observe(
        self, spec: Watched, result: Result, mono: float | None = None, judged: Mapping[str, Verdict] | None = None
    ) -> list[Change]:
        """Judge ``result`` against every rule of ``spec``; return what changed. ``mono`` is the
        monotonic time the run started: ``for:`` and ``recover_for:`` are measured on it, so a
        clock step neither fires a pending rule early nor delays it (wall time is for display).
        ``judged`` gives verdicts judged elsewhere, by rule text (the SLO burn alerts)."""
        changes: list[Change] = []
        cfg = spec.config
        grouped = bool(spec.policy.impact) and bool(cfg.targets)
        flapping = spec.policy.flap_config()
        now = result.started_at if mono is None else mono
        wall = result.started_at
        self._offset = wall - now
        slack = min(cfg.interval / 10, 1.0)  # run start times jitter by milliseconds
        self._specs[cfg.name] = spec
        self.deps.ran(cfg.name, now, cfg.interval)
        for rule in spec.rules:
            key = (result.check, result.target, rule.text)
            alert = self.alerts.get(key)
            if alert is None:
                alert = self.alerts[key] = Alert(flap=FlapDetector(flapping) if flapping else None)
                self.deps.register(key, rule.value_name is None)
            verdict = judged[rule.text] if judged and rule.text in judged else rule.evaluate(result)
            holds = verdict.holds
            fp = self._fps.get(key)
            if fp is None:  # a sha256 per run is measurable at thousands of runs a second: once per alert
                fp = self._fps[key] = fingerprint(self.agent_name, result.check, result.target, rule.text)

            def change(kind: str, text: str, **kw: Any) -> Change:
                return Change(kind, wall, result.check, result.target, rule.text, fp, text, **kw)  # noqa: B023

            if holds:
                alert.last_text, alert.last_value = verdict.explanation, verdict.value
            if holds is not None and alert.flap is not None:
                flip = alert.flap.observe(holds)
                if flip == "start":
                    changes.append(
                        change("flapping-start", f"flapping: {alert.flap.change_percent():.0f}% state change")
                    )
                elif flip == "stop":
                    changes.append(change("flapping-stop", "stopped flapping"))
                if flip:
                    self.dirty.add(key)
                if alert.flap.flapping:
                    holds = True  # held: one incident while it flaps, not one page per flip
            before = alert.state
            alert.state, transition = step(before, holds, now, rule.for_s, rule.recover_for_s, slack)
            if transition is None:
                if alert.held is not None and alert.state.phase == "firing" and not grouped:
                    changes.extend(self._rejudge(spec, key, rule, alert, now))
                continue
            self.dirty.add(key)
            if before.phase == "inactive":
                alert.first_error = verdict.explanation if verdict.holds else alert.last_text
            if transition == "pending":
                changes.append(change("pending", f"pending: {verdict.explanation} (fires after {rule.text})"))
            elif transition == "reset":
                changes.append(change("reset", f"cleared before firing: {verdict.explanation}"))
            elif grouped:
                changes.append(change(f"member-{transition}", f"{result.target}: {transition}: {verdict.explanation}"))
            elif transition == "firing":
                changes.extend(self._fire(spec, key, rule, alert, now))
            elif transition == "resolved" and alert.incident is None:
                changes.extend(self._recovered_held(spec, key, rule, alert, verdict.explanation, now))
            elif transition == "resolved":
                prefix, since, value = name_of(spec, result.target), before.since, verdict.value
                text = verdict.explanation
                changes.append(self._resolution(spec, prefix, result.target, rule, alert, fp, now, text, since, value))
        if grouped:
            for rule in spec.rules:
                changes.extend(self._update_group(spec, rule, result.target, now))
        for key in self.deps.waiting_on(cfg.name) if cfg.name in self.deps.waiting else ():  # waited for this run
            child, alert = self._specs.get(key[0]), self.alerts.get(key)
            held = next((r for r in child.rules if r.text == key[2]), None) if child else None
            if child is not None and alert is not None and held is not None:
                woken = self._rejudge(child, key, held, alert, now)
                changes.extend(woken)
                if any(c.kind == "affected" for c in woken):  # this run's own page names them
                    affected = self.deps.affected(cfg.name)
                    for c in changes:
                        if c.event is not None and c.check == cfg.name and c.kind in ("firing", "changed"):
                            c.event = replace(c.event, affected=affected)
        return changes

    # --- groups -----------------------------------------------------------------------------

    def _update_group(self, spec: Watched, rule: Rule, member: str, now: float) -> list[Change]:
        """Judge the group once per round: when every member has reported since the last
        judgement (or an interval has passed). Only members that are firing (that held their
        ``for:``) count toward the share, so a blip of two members never pages at the severity
        of two. Members whose ``for:`` ends by their next run are waited for, up to about one
        interval, so an outage of all members is one page at the right severity, not a minor
        page followed by changes."""
        cfg = spec.config
        targets = cfg.targets or []
        round_start, seen = self.rounds.setdefault((cfg.name, rule.text), (now, set()))
        seen.add(member)
        if len(seen) < len(set(targets)) and now - round_start < cfg.interval:
            return []
        self.rounds[(cfg.name, rule.text)] = (now, set())
        members = [(t, self.alerts.get((cfg.name, t, rule.text))) for t in targets]
        key = (cfg.name, "*", rule.text)
        group = self.alerts.setdefault(key, Alert())
        firing = [(t, m) for t, m in members if m is not None and m.state.phase == "firing"]
        due = now - rule.for_s + cfg.interval * 1.1
        imminent = any(
            m is not None and m.state.phase == "pending" and (m.state.since or now) <= due for _, m in members
        )
        fp = fingerprint(self.agent_name, cfg.name, "*", rule.text)
        severity = group_severity(rule.severity, spec.policy.impact, len(firing), len(targets))
        target = f"{len(targets)} targets"
        failing = [t for t, _ in firing]
        share = f"{len(firing)} of {len(targets)} targets"
        if 0 < len(firing) < len(targets):  # which ones, when not all
            share += f" ({_members(failing)})"
        example = next((m.last_text for _, m in firing if m.last_text), rule.when)
        headline = f"{cfg.name}: {share}: {example}" + (f" for {format_duration(rule.for_s)}" if rule.for_s else "")
        rising = firing and (group.incident is None or rank(severity) > rank(group.severity))
        if rising and imminent:  # more members are about to fire: wait (a little) for them
            if group.hold is None:
                group.hold = now
            if now - group.hold < cfg.interval * 1.5:
                return []
        group.hold = None
        if firing and group.incident is None:
            since = min(m.state.since or now for _, m in firing)
            if group.state.phase != "firing":
                self.dirty.add(key)
                group.state = AlertState("firing", since=since, fired_at=now)
                group.first_error = firing[0][1].first_error
            hold = self._judge(spec, since, now, rule)
            if hold is not None:
                return self._hold(key, group, hold, headline, now, severity or rule.severity)
            self.dirty.add(key)
            self.deps.hold(key, None)
            group.held = group.held_on = None
            group.incident, group.severity, group.max_severity = self.new_id(), severity, severity
            change = self._incident_change("firing", spec, target, rule, group, fp, now, headline, len(firing), failing)
            return [change, *self._affected_entries(cfg.name, group.incident, now)]
        if firing and severity != group.severity:
            if rank(severity) < rank(group.severity) and group.lower_seen != severity:
                # escalate at once, de-escalate only when two rounds in a row agree: members
                # recovering a few seconds apart end in one resolution, not a cascade of changes
                group.lower_seen = severity
                return []
            self.dirty.add(key)
            group.lower_seen = None
            old, group.severity = group.severity, severity
            group.max_severity = worst([group.max_severity, severity])
            text = f"{cfg.name}: now {share}: {example} ({old} -> {severity})"
            change = self._incident_change("changed", spec, target, rule, group, fp, now, text, len(firing), failing)
            change.max_severity, change.headline = group.max_severity, headline
            quiet = self.quiet(cfg.name, self._labels(spec), self.wall(now))
            if quiet is not None:  # recorded, not sent: nobody is paged in quiet time
                change.event, change.text = None, f"{text}; {quiet.describe()}: not sent"
            return [change]
        group.lower_seen = None
        if not firing and group.incident is None and group.held is not None:
            self.dirty.add(key)
            group.state = INACTIVE
            return self._recovered_held(spec, key, rule, group, f"all {len(targets)} targets recovered", now)
        if not firing and group.incident is not None:
            self.dirty.add(key)
            started, group.state = group.state.since, INACTIVE
            recovered = f"all {len(targets)} targets recovered"
            return [self._resolution(spec, cfg.name, target, rule, group, fp, now, recovered, started)]
        return []

    # --- events -------------------------------------------------------------------------------

    def _firing_summary(self, spec: Watched, target: str, rule: Rule, alert: Alert) -> str:
        prefix = name_of(spec, target)
        flapping = " (flapping)" if alert.flap is not None and alert.flap.flapping else ""
        text = alert.last_text or rule.when
        return f"{prefix}: {text}" + (f" for {format_duration(rule.for_s)}" if rule.for_s else "") + flapping

    def _resolution(
        self, spec: Watched, prefix: str, target: str, rule: Rule, alert: Alert, fp: str, now: float,
        now_text: str, started: float | None, value: float | None = None,
    ) -> Change:  # fmt: skip
        """The resolution of ``alert``'s incident; ``value`` is the value judged now (if any)."""
        lasted = format_duration(now - started) if started is not None else "?"
        text = f"{prefix}: resolved after {lasted}: {rule.text} (now {now_text})"
        change = self._incident_change("resolved", spec, target, rule, alert, fp, now, text, value, started=started)
        alert.incident = alert.severity = alert.max_severity = None
        return change

    def _incident_change(
        self,
        kind: Kind,
        spec: Watched,
        target: str,
        rule: Rule,
        alert: Alert,
        fp: str,
        now: float,
        summary: str,
        value: float | None,
        members: list[str] | None = None,
        started: float | None = None,
    ) -> Change:
        started = started if started is not None else alert.state.since
        wall_started = self.wall(started) if started is not None else None
        at = self.wall(now)
        severity = alert.severity or rule.severity
        event = Event(
            kind=kind,
            severity=severity,
            summary=summary,
            agent=self.agent_name,
            time=at,
            incident=alert.incident,
            fingerprint=fp,
            check=spec.config.name,
            target=target,
            type=spec.config.type,
            rule=rule.text,
            value=value,
            started_at=wall_started,
            labels=self._labels(spec),
            runbook=rule.runbook or spec.policy.runbook,
            affected=self.deps.affected(spec.config.name),
            members=members,
        )
        opened = None
        if kind == "firing" and alert.incident is not None:  # a firing alert always has its new id
            started_at = wall_started if wall_started is not None else at
            opened = NewIncident(alert.incident, severity, alert.first_error, started_at, event.runbook)
        return Change(
            kind, at, spec.config.name, target, rule.text, fp, summary, alert.incident, severity, event, opened
        )

    # --- persistence ----------------------------------------------------------------------------

    def snapshot(self, key: Key) -> dict[str, Any] | None:
        """The stored form of ``key``'s alert, or None when there is nothing worth keeping.
        Times are stored as wall times (the monotonic clock restarts with the machine)."""
        alert = self.alerts.get(key)
        if alert is None or (alert.state.phase == "inactive" and not (alert.flap and alert.flap.history)):
            return None
        return shift(alert.to_dict(), self.offset)

    def restore(self, key: Key, data: dict[str, Any], flapping: FlappingConfig | None) -> None:
        alert = self.alerts[key] = Alert.from_dict(shift(data, -self.offset), flapping)
        self.deps.register(key, key[2] == "down" or key[2].startswith("down for "))
        self.deps.hold(key, alert.held)

    def firing(self) -> list[tuple[Key, Alert]]:
        return [(k, a) for k, a in self.alerts.items() if a.incident is not None]


def _members(names: list[str], shown: int = 3) -> str:
    """The failing members, for a summary: at most ``shown`` named, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
