"""SLOs at run time: runs counted over sliding windows, and burn alerts as rules of the check.

- :class:`WindowCounter`: good and total runs over the last ``span`` seconds, in at most about
  :data:`SLOTS` slots of ``span / SLOTS`` seconds (a few hundred bytes whatever the window: a
  28-day window counts in slots of 5.6 hours). A slot counts in full until its end leaves the
  window, so a window may count up to one slot (1/120 of it) more than its span.
- :class:`BurnRule`: one ``slo.alerts`` entry as a rule of the check, so a burn alert is an
  incident like any other (severity, sinks, holds, timeline, ack, report). Its verdict does not
  come from one result but from a :class:`SloTracker`, whose verdicts the book takes in place of
  ``evaluate``'s (which judges one run alone, for ``firstwatch check``: a bad run burns at
  ``1 / (1 - objective)``). While a more severe burn alert of the
  same SLO fires, the less severe ones are held off (one page per SLO: a fast burn is critical,
  and the slow burn under it says nothing new; it pages on its own once the fast one resolves).
- :class:`SloTracker`: one (check, target)'s windows. :meth:`SloTracker.observe` adds a run and
  judges every burn alert (``agent.alerting.slo.step_burn``), given whether each is firing now
  (the book's state is the one truth, so a restart or a reload keeps an incident open until its
  short window calms down); :meth:`SloTracker.reading` gives the numbers for the status page,
  ``firstwatch slo`` and the metrics.

Times are on one clock passed in (the daemon's monotonic clock; seeded history is shifted onto
it), so a wall-clock step neither empties a window nor fills it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.alerting.rules import Rule, Verdict
from agent.alerting.slo import (
    CALM,
    BurnAlert,
    BurnState,
    Counts,
    SloConfig,
    above,
    budget_remaining,
    budget_text,
    burn_rate,
    burning_text,
    is_good,
    sli,
    span,
    step_burn,
)
from agent.core.severity import rank
from agent.core.units import format_duration, format_number
from checks.base import Result

SLOTS = 120


class WindowCounter:
    """Good and total runs over the last ``span`` seconds (see the module docstring)."""

    __slots__ = ("_slots", "good", "runs", "span", "width")

    def __init__(self, span: float, slots: int = SLOTS) -> None:
        self.span = span
        self.width = span / slots
        self._slots: deque[list[float]] = deque()  # [slot start, good, runs]
        self.good = 0
        self.runs = 0

    def add(self, t: float, good: int, runs: int = 1) -> None:
        """``runs`` runs at time ``t``, ``good`` of them good. A time before the newest slot (a
        seeded bucket out of order) counts in the newest slot."""
        start = t // self.width * self.width
        last = self._slots[-1] if self._slots else None
        if last is not None and start <= last[0]:
            last[1] += good
            last[2] += runs
        else:
            self._slots.append([start, good, runs])
        self.good += good
        self.runs += runs

    def counts(self, now: float) -> Counts:
        """The runs of the window ending at ``now``."""
        edge = now - self.span
        slots = self._slots
        while slots and slots[0][0] + self.width <= edge:
            _, good, runs = slots.popleft()
            self.good -= int(good)
            self.runs -= int(runs)
        return Counts(self.good, self.runs)


@dataclass(frozen=True)
class BurnRule(Rule):
    """A burn alert of the check's ``slo`` as one of its rules (judged by a :class:`SloTracker`)."""

    burn: BurnAlert | None = None
    slo: SloConfig | None = None

    def evaluate(self, result: Result) -> Verdict:
        """One run alone (``firstwatch check``: no windows): a bad run burns at
        ``1 / (1 - objective)``, a good one at 0. The daemon judges over windows instead."""
        assert self.burn is not None and self.slo is not None
        if result.error_kind == "agent":  # our own tool failed: no verdict on the target
            return Verdict(None, None, f"no verdict ({result.error})")
        if is_good(result.ok, result.duration_s, self.slo.latency):
            return Verdict(False, 0.0, "a good run")
        rate = 1.0 / (1.0 - self.slo.objective)
        if result.ok:
            why = f"slower than {format_duration(self.slo.latency or 0.0)}"
        else:
            why = f"down ({result.error or result.error_kind or 'failed'})"
        covered = any(  # one page per SLO: the most severe burn alert this run exceeds
            rank(a.severity) > rank(self.burn.severity) and above(rate, a.burn) for a in self.slo.alerts
        )
        holds = above(rate, self.burn.burn) and not covered
        return Verdict(holds, rate, f"{why}: a run like this burns the budget at {rate:.0f}x")


def burn_rules(slo: SloConfig, first_index: int) -> list[BurnRule]:
    """The check's rules for ``slo``'s burn alerts (``rule`` field:
    ``error budget burn > 14.4x over 1h and 5m``)."""
    return [
        BurnRule(
            index=first_index + i,
            when=f"error budget burn > {format_number(a.burn)}x over {span(a.long)} and {span(a.short)}",
            value_name="slo.burn_rate",
            op=">",
            threshold=a.burn,
            unit="",
            for_s=0.0,
            recover_for_s=0.0,
            severity=a.severity,
            burn=a,
            slo=slo,
        )
        for i, a in enumerate(slo.alerts)
    ]


@dataclass(frozen=True)
class SloReading:
    """One (check, target)'s SLO now: runs and good runs over the window, the SLI, the budget
    left, and the burn rate over each alert window (keyed by its span, ``5m``; None: no runs)."""

    check: str
    target: str
    slo: SloConfig
    runs: int
    good: int
    sli: float | None
    budget_remaining: float | None
    burn_rates: dict[str, float | None]


class SloTracker:
    """One (check, target)'s windows and burn judgements. ``interval`` is the check's: a window
    is judged over at least the runs it should hold (``window / interval``), the runs it did not
    hold (the agent was not running, or has just started) counting as good, so a young agent's
    first failed run is one run of a window's worth, not one of the few seen so far."""

    def __init__(self, check: str, target: str, slo: SloConfig, rules: list[BurnRule], interval: float = 0.0) -> None:
        self.check = check
        self.target = target
        self.slo = slo
        self.rules = rules
        self.interval = interval
        self.windows = {w: WindowCounter(w) for w in slo.windows()}
        self.covered: dict[str, tuple[float, str]] = {}  # rule text -> until when, by which severity

    def add(self, t: float, good: int, runs: int = 1) -> None:
        for counter in self.windows.values():
            counter.add(t, good, runs)

    def expected(self, window: float) -> int:
        return int(window / self.interval) if self.interval > 0 else 0

    def counts(self, now: float) -> Callable[[float], tuple[int, int]]:
        """(good, runs) over a window, padded with good runs up to the runs it should hold."""

        def get(window: float) -> tuple[int, int]:
            good, runs = self.windows[window].counts(now)
            missing = max(0, self.expected(window) - runs) if runs else 0
            return good + missing, runs + missing

        return get

    def observe(self, name: str, result: Result, now: float, firing: Mapping[str, bool]) -> dict[str, Verdict]:
        """Add ``result`` (run at ``now``) and judge each burn alert; ``firing`` says which rule
        texts are firing now. Returns a verdict per rule text: it holds while the alert fires.
        A run our own tool could not make (``error_kind`` ``agent``) counts for nothing."""
        if result.error_kind != "agent":
            self.add(now, int(is_good(result.ok, result.duration_s, self.slo.latency)))
        counts = self.counts(now)
        verdicts: dict[str, Verdict] = {}
        for rule in self.rules:
            assert rule.burn is not None
            before = BurnState(True, now) if firing.get(rule.text) else CALM
            after, judgement = step_burn(name, self.slo, rule.burn, counts, before, now)
            long_rate = burn_rate(*counts(rule.burn.long), self.slo.objective)
            if judgement is not None:
                text = judgement.text
            else:
                whole = sli(*counts(self.slo.window))
                budget = None if whole is None else budget_remaining(whole, self.slo.objective)
                short_rate = burn_rate(*counts(rule.burn.short), self.slo.objective)
                text = burning_text(rule.burn, long_rate, short_rate, budget_text(budget, self.slo.window))
            verdicts[rule.text] = Verdict(after.firing, long_rate, text)
        return self._cover(verdicts, now)

    def _cover(self, verdicts: dict[str, Verdict], now: float) -> dict[str, Verdict]:
        """One page per SLO: while a burn alert fires, the less severe ones do not, nor for their
        own short window after it (which still holds the runs it paged for)."""
        for top in self.rules:
            if not verdicts[top.text].holds:
                continue
            for rule in self.rules:
                if rank(rule.severity) < rank(top.severity) and rule.burn is not None:
                    until = now + rule.burn.short
                    if until > self.covered.get(rule.text, (0.0, ""))[0]:
                        self.covered[rule.text] = (until, top.severity)
        for rule in self.rules:
            v = verdicts[rule.text]
            until, by = self.covered.get(rule.text, (0.0, ""))
            if v.holds and now < until:
                verdicts[rule.text] = Verdict(False, v.value, f"{v.explanation} (covered by the {by} burn alert)")
        return verdicts

    def reading(self, now: float) -> SloReading:
        good, runs = self.windows[self.slo.window].counts(now)
        share = sli(good, runs)
        padded = sli(*self.counts(now)(self.slo.window))
        alert_windows = sorted({w for a in self.slo.alerts for w in (a.long, a.short)})
        rates = {span(w): burn_rate(*self.counts(now)(w), self.slo.objective) for w in alert_windows}
        budget = None if padded is None else budget_remaining(padded, self.slo.objective)
        return SloReading(self.check, self.target, self.slo, runs, good, share, budget, rates)
