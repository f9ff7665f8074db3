"""Alert rules: ``when: down`` or ``when: VALUE OP QUANTITY``, compiled at load, judged per result.

Checks measure, rules judge, and the judgement keeps its explanation (Gatus renders
``[STATUS] (500) == 200``; we render ``duration (2.71s) > 2s``). A rule naming a value its check
type does not declare is a config error at load. When the value was not measured on a run (a
``tls.days_left`` rule on a site that is down), the verdict is *no data*: the state machine then
holds its current state instead of resolving a real problem because another one hides it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from agent.alerting.policy import AlertConfig
from agent.core.units import COMPARISONS, format_duration, format_value, parse_quantity
from checks.base import Result, ValueSpec, find_value

_COMPARISON = re.compile(
    r"\s*(perf\.\S+?|[A-Za-z_][\w.\-]*(?:\[[^\]]+\][\w.\-]*)*)\s*(>=|<=|==|!=|>|<)\s*([-+.\d].*?)\s*\Z"
)


@dataclass(frozen=True)
class Verdict:
    """The judgement of one rule on one result. ``holds`` is None when there is no data."""

    holds: bool | None
    value: float | None
    explanation: str


@dataclass(frozen=True)
class Rule:
    """One compiled alert rule of a check."""

    index: int
    when: str  # normalised condition text: "down", "duration > 2s"
    value_name: str | None  # None for "down"
    op: str | None
    threshold: float | None
    unit: str
    for_s: float
    recover_for_s: float
    severity: str
    runbook: str | None = None
    quorum: int | None = None  # judged across agents centrally: this agent never pages it alone

    @property
    def text(self) -> str:
        """The ``rule`` field of events: ``duration > 2s for 5m``."""
        return self.when + (f" for {format_duration(self.for_s)}" if self.for_s > 0 else "")

    def evaluate(self, result: Result) -> Verdict:
        if self.value_name is None:
            if result.ok:
                return Verdict(False, None, "up")
            if result.error_kind == "agent":  # our own tool failed: no verdict on the target
                return Verdict(None, None, f"no verdict ({result.error})")
            return Verdict(True, None, f"down ({result.error or result.error_kind or 'failed'})")
        value = result.values.get(self.value_name)
        if value is None:
            return Verdict(None, None, f"{self.value_name} not measured")
        assert self.op is not None and self.threshold is not None
        holds = COMPARISONS[self.op](value, self.threshold)
        shown = format_value(value, self.unit)
        return Verdict(holds, value, f"{self.value_name} ({shown}) {self.when.split(' ', 1)[1]}")


def compile_rule(index: int, alert: AlertConfig, values: tuple[ValueSpec, ...], check_type: str) -> Rule:
    """Compile one ``alerts:`` entry; raises ValueError with a message for the user."""
    when = alert.when.strip()
    if when == "down":
        return Rule(
            index, "down", None, None, None, "", alert.for_, alert.recover_for, alert.severity, alert.runbook,
            alert.quorum,
        )  # fmt: skip
    m = _COMPARISON.match(when)
    if not m:
        hint = "; did you mean 'down'?" if difflib.get_close_matches(when.lower(), ["down"], cutoff=0.6) else ""
        raise ValueError(
            f"invalid rule {alert.when!r}: expected 'down' or VALUE OP QUANTITY, like 'duration > 2s'{hint}"
        )
    name, op, quantity = m.groups()
    spec = find_value(values, name)
    if spec is None:
        known = [v.name for v in values]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{check_type} checks do not measure {name!r}{hint} (they measure: {', '.join(known) or 'nothing'})"
        )
    threshold = parse_quantity(quantity, spec.unit, name)
    when = f"{name} {op} {quantity}"
    return Rule(
        index, when, name, op, threshold, spec.unit, alert.for_, alert.recover_for, alert.severity, alert.runbook,
        alert.quorum,
    )  # fmt: skip
