"""The book's records: an :class:`Alert` (one check, target and rule: its debounce state, its
incident, its story), what a firing adds to open an incident (:class:`NewIncident`), and a
:class:`Change` worth recording (a timeline entry and the event to deliver, if any). Plain data,
so alert state survives restarts (``Alert.to_dict`` / ``from_dict``, times shifted by
:func:`shift` between the state machine's clock and wall time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from agent.alerting.flapping import FlapDetector, FlappingConfig
from agent.alerting.policy import AlertPolicy
from agent.alerting.rules import Rule
from agent.alerting.state import INACTIVE, AlertState
from agent.core.events import Event
from checks.base import CheckConfig

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
    last_value: float | None = None  # the value judged then (the event's ``value``)
    lower_seen: str | None = None  # a group: the lower severity its last round judged
    hold: float | None = None  # a group: since when it waits for members whose for: is about to end
    flap: FlapDetector | None = None
    held: str | None = None  # firing but not paged: why (agent.alerting.holds codes)
    held_on: str | None = None  # held under a parent: the parent's incident it is recorded on

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
    runbook: str | None = None


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


def shift(d: dict[str, Any], by: float) -> dict[str, Any]:
    """A stored alert with its times moved by ``by`` seconds (clock <-> wall)."""
    state = {k: (v + by if k != "phase" and isinstance(v, int | float) else v) for k, v in d["state"].items()}
    out = {**d, "state": state}
    if isinstance(d.get("hold"), int | float):
        out["hold"] = d["hold"] + by
    return out


def name_of(spec: Watched, target: str) -> str:
    """How summaries name a member: the check alone when it has one target."""
    return spec.config.name if len(spec.config.targets or ()) <= 1 else f"{spec.config.name} {target}"
