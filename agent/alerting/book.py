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

``observe`` returns :class:`Change` records: the timeline entries and the events to deliver.
State is plain data (``snapshot``/``restore``) so incidents survive restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from agent.alerting.flapping import FlapDetector, FlappingConfig
from agent.alerting.impact import group_severity
from agent.alerting.policy import AlertPolicy
from agent.alerting.rules import Rule
from agent.alerting.state import INACTIVE, AlertState, step
from agent.core.events import Event, Kind, fingerprint, new_incident_id
from agent.core.severity import rank, worst
from agent.core.units import format_duration
from checks.base import CheckConfig, Result

Key = tuple[str, str, str]  # check, target ("*" for a group), rule text


class Watched(Protocol):
    """What the book needs of a check (``agent.config.load.CheckSpec`` is one): its probe config,
    its alerting policy and its compiled rules."""

    @property
    def config(self) -> CheckConfig: ...
    @property
    def policy(self) -> AlertPolicy: ...
    @property
    def rules(self) -> tuple[Rule, ...]: ...


@dataclass
class Alert:
    """One (check, target, rule): its debounce state, its incident while firing, its story."""

    state: AlertState = INACTIVE
    incident: str | None = None
    severity: str | None = None
    max_severity: str | None = None
    first_error: str | None = None  # the explanation when the condition first held
    last_text: str | None = None  # the latest explanation while the condition holds
    lower_seen: str | None = None  # a group: the lower severity its last round judged
    hold: float | None = None  # a group: since when it waits for members whose for: is about to end
    flap: FlapDetector | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("state", "flap")}
        d["state"] = asdict(self.state)
        if self.flap is not None:
            d["flap"] = {"history": self.flap.history, "flapping": self.flap.flapping}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], flapping: FlappingConfig | None) -> Alert:
        a = cls(**{k: v for k, v in d.items() if k not in ("state", "flap")})
        a.state = AlertState(**d["state"])
        if flapping is not None:
            a.flap = FlapDetector(flapping, list(d.get("flap", {}).get("history", [])))
            a.flap.flapping = bool(d.get("flap", {}).get("flapping", False))
        return a


@dataclass(frozen=True)
class NewIncident:
    """What a firing change adds to open its incident (the change itself says the check, target,
    rule, fingerprint, summary and when it fired): the id and severity, both certain here, the
    first error and when the condition started."""

    id: str
    severity: str
    first_error: str | None
    started_at: float  # the first failing run


@dataclass
class Change:
    """Something worth recording: a timeline entry, and the event to deliver if there is one."""

    kind: str  # pending reset firing changed resolved flapping-start flapping-stop
    time: float
    check: str
    target: str
    rule: str
    fingerprint: str
    text: str
    incident: str | None = None
    severity: str | None = None
    event: Event | None = None
    opened: NewIncident | None = None  # when this change opens an incident
    max_severity: str | None = None  # a change: the worst severity the incident reached
    headline: str | None = None  # a change: the incident's summary from now on


@dataclass
class AlertBook:
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

    @property
    def offset(self) -> float:
        return self._offset if self._offset is not None else self.clock_offset()

    def wall(self, t: float) -> float:
        """A time on the state machine's clock as wall time (for events and the timeline)."""
        return t + self.offset

    def observe(self, spec: Watched, result: Result, mono: float | None = None) -> list[Change]:
        """Judge ``result`` against every rule of ``spec``; return what changed. ``mono`` is the
        monotonic time the run started: ``for:`` and ``recover_for:`` are measured on it, so a
        clock step neither fires a pending rule early nor delays it (wall time is for display)."""
        changes: list[Change] = []
        cfg = spec.config
        grouped = bool(spec.policy.impact) and bool(cfg.targets)
        flapping = spec.policy.flap_config()
        now = result.started_at if mono is None else mono
        wall = result.started_at
        self._offset = wall - now
        slack = min(cfg.interval / 10, 1.0)  # run start times jitter by milliseconds
        for rule in spec.rules:
            key = (result.check, result.target, rule.text)
            alert = self.alerts.get(key)
            if alert is None:
                alert = self.alerts[key] = Alert(flap=FlapDetector(flapping) if flapping else None)
            verdict = rule.evaluate(result)
            holds = verdict.holds
            fp = self._fps.get(key)
            if fp is None:  # a sha256 per run is measurable at thousands of runs a second: once per alert
                fp = self._fps[key] = fingerprint(self.agent_name, result.check, result.target, rule.text)

            def change(kind: str, text: str, **kw: Any) -> Change:
                return Change(kind, wall, result.check, result.target, rule.text, fp, text, **kw)  # noqa: B023

            if holds:
                alert.last_text = verdict.explanation
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
                alert.incident, alert.severity, alert.max_severity = self.new_id(), rule.severity, rule.severity
                text = self._firing_summary(spec, result.target, rule, alert)
                changes.append(self._incident_change("firing", spec, result.target, rule, alert, fp, now, text, None))
            elif transition == "resolved":
                prefix = _prefix(spec, result.target)
                changes.append(
                    self._resolution(
                        spec, prefix, result.target, rule, alert, fp, now, verdict.explanation, before.since
                    )
                )
        if grouped:
            for rule in spec.rules:
                changes.extend(self._update_group(spec, rule, result.target, now))
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
            self.dirty.add(key)
            since = min(m.state.since or now for _, m in firing)
            group.state = AlertState("firing", since=since, fired_at=now)
            group.incident, group.severity, group.max_severity = self.new_id(), severity, severity
            group.first_error = firing[0][1].first_error
            return [self._incident_change("firing", spec, target, rule, group, fp, now, headline, len(firing), failing)]
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
            return [change]
        group.lower_seen = None
        if not firing and group.incident is not None:
            self.dirty.add(key)
            started, group.state = group.state.since, INACTIVE
            recovered = f"all {len(targets)} targets recovered"
            return [self._resolution(spec, cfg.name, target, rule, group, fp, now, recovered, started)]
        return []

    # --- events -------------------------------------------------------------------------------

    def _firing_summary(self, spec: Watched, target: str, rule: Rule, alert: Alert) -> str:
        prefix = _prefix(spec, target)
        flapping = " (flapping)" if alert.flap is not None and alert.flap.flapping else ""
        text = alert.last_text or rule.when
        return f"{prefix}: {text}" + (f" for {format_duration(rule.for_s)}" if rule.for_s else "") + flapping

    def _resolution(
        self, spec: Watched, prefix: str, target: str, rule: Rule, alert: Alert, fp: str, now: float,
        now_text: str, started: float | None,
    ) -> Change:  # fmt: skip
        lasted = format_duration(now - started) if started is not None else "?"
        text = f"{prefix}: resolved after {lasted}: {rule.text} (now {now_text})"
        change = self._incident_change("resolved", spec, target, rule, alert, fp, now, text, None, started=started)
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
            labels={**self.labels, **spec.config.labels},
            members=members,
        )
        opened = None
        if kind == "firing" and alert.incident is not None:  # a firing alert always has its new id
            started_at = wall_started if wall_started is not None else at
            opened = NewIncident(alert.incident, severity, alert.first_error, started_at)
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
        return _shift(alert.to_dict(), self.offset)

    def restore(self, key: Key, data: dict[str, Any], flapping: FlappingConfig | None) -> None:
        self.alerts[key] = Alert.from_dict(_shift(data, -self.offset), flapping)

    def firing(self) -> list[tuple[Key, Alert]]:
        return [(k, a) for k, a in self.alerts.items() if a.incident is not None]


def _shift(d: dict[str, Any], by: float) -> dict[str, Any]:
    """A stored alert with its times moved by ``by`` seconds (clock <-> wall)."""
    state = {k: (v + by if k != "phase" and isinstance(v, int | float) else v) for k, v in d["state"].items()}
    out = {**d, "state": state}
    if isinstance(d.get("hold"), int | float):
        out["hold"] = d["hold"] + by
    return out


def _members(names: list[str], shown: int = 3) -> str:
    """The failing members, for a summary: at most ``shown`` named, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _prefix(spec: Watched, target: str) -> str:
    """How summaries name a member: the check alone when it has one target."""
    return spec.config.name if len(spec.config.targets or ()) <= 1 else f"{spec.config.name} {target}"
