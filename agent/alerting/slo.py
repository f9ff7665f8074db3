"""Service level objectives (issue 16): the ``slo`` key of a check, the arithmetic of an error
budget, and the pure multiwindow burn-rate judgement, with time and counts passed in.

A check with ``slo: {objective: 99.9%, window: 28d, latency: 800ms}`` promises that at least
99.9% of its runs over any 28 days are *good*: ok, and (with ``latency``) no slower than it.

- ``sli(good, runs)``: the share of good runs (None with no runs).
- ``budget_remaining(sli, objective)``: ``1 - (1 - sli) / (1 - objective)``, the share of the
  error budget still unspent. Never above 1.0 (100%); *not* clamped at 0: a negative value says
  by how much the budget is overspent (-0.5: half a budget too many bad runs).
- ``burn_rate(good, runs, objective)``: the error rate over the error budget's rate
  (``(1 - sli) / (1 - objective)``): 1.0 spends the budget exactly over the window, 14.4 spends
  2% of a 30-day budget in one hour.

Burn alerts (the SRE workbook's multiwindow, multi-burn-rate alerts): an alert
``{burn, long, short, severity}`` *fires* when the burn rate over both its ``long`` and its
``short`` window is strictly greater than ``burn``, and *resolves* when the burn over ``short``
is no longer greater (``<= burn``). A window with no runs is not burning (it cannot fire); a
firing alert whose short window has no runs stays as it is (no data changes nothing, as in
``agent.alerting.state``). A burn within a relative 1e-9 of the threshold counts as equal to it,
so float noise (14.4 computed from counts as 14.400000000000002) neither fires nor holds.

:func:`step_burn` judges one alert, :func:`judge_slo` all of a check's; both take the counts per
window (a mapping ``window_seconds -> (good, runs)`` or a callable) and the previous
:class:`BurnState` of that (check, target, alert), and return the new state and what happened.
No clock, no I/O: :mod:`agent.alerting.slo_windows` counts runs per window and turns burn alerts
into rules of the check; the runtime (``agent.engine.slo_watch``) feeds it and owns events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from agent.core.severity import Severity
from agent.core.units import Seconds, format_duration, format_number, quantity_pattern

DAY = 86400.0
_CLOSE = 1e-9  # relative: a burn this close to its threshold is at it, not above


def _objective_share(value: object) -> object:
    """``"99.9%"`` -> 0.999 (exactly the float nearest 0.999, not 0.9990000000000001)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid objective {value!r}: write a percentage such as 99.9% or a share such as 0.999")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = Decimal(text[:-1].strip()) / 100 if text.endswith("%") else Decimal(text)
        except InvalidOperation:
            raise ValueError(
                f"invalid objective {value!r}: write a percentage such as 99.9% or a share such as 0.999"
            ) from None
        return float(number)
    return value


def _objective_range(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"invalid objective {value!r}: write a percentage such as 99.9% or a share such as 0.999")
    if value <= 0:
        raise ValueError("an objective must be above 0%: write a percentage such as 99.9% or a share such as 0.999")
    if value == 1:
        raise ValueError("an objective of 100% leaves no error budget")
    if value > 1:
        raise ValueError(
            f"invalid objective {format_number(value)}: a share is below 1; write 0.999 or a percentage such as 99.9%"
        )
    return value


_OBJECTIVE_INPUT = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            {"type": "string", "pattern": quantity_pattern(["%"]), "examples": ["99.9%", "0.999"]},
        ]
    }
)
Objective = Annotated[float, BeforeValidator(_objective_share), AfterValidator(_objective_range), _OBJECTIVE_INPUT]


def span(seconds: float) -> str:
    """A window for humans: whole days as ``28d`` or ``3d``, anything else as
    :func:`agent.core.units.format_duration` writes it (``1h``, ``5m``, ``30s``)."""
    if seconds >= DAY and seconds % DAY == 0:
        return f"{int(seconds // DAY)}d"
    return format_duration(seconds)


class BurnAlert(BaseModel):
    """``{burn: 14.4, long: 1h, short: 5m, severity: critical}``: page when both windows burn
    the error budget faster than ``burn`` times the sustainable rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    burn: float = Field(gt=0)
    long: Seconds = Field(gt=0)
    short: Seconds = Field(gt=0)
    severity: Severity

    @field_validator("short")
    @classmethod
    def _shorter(cls, value: float, info: ValidationInfo) -> float:
        long = info.data.get("long")
        if long is not None and value >= long:
            raise ValueError(f"the short window ({span(value)}) must be shorter than the long window ({span(long)})")
        return value


DEFAULT_BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert.model_validate({"burn": 14.4, "long": "1h", "short": "5m", "severity": "critical"}),
    BurnAlert.model_validate({"burn": 6, "long": "6h", "short": "30m", "severity": "major"}),
    BurnAlert.model_validate({"burn": 1, "long": "3d", "short": "6h", "severity": "minor"}),
)
"""The SRE workbook's defaults: 2% of a 30-day budget in 1 h, 5% in 6 h, 10% in 3 days."""


class SloConfig(BaseModel):
    """A check's ``slo:`` key: ``objective`` (99.9% or 0.999), ``window``, optional ``latency``
    (a slower run is not good) and the burn ``alerts`` (default: :data:`DEFAULT_BURN_ALERTS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: Objective
    window: Seconds = Field(gt=0)
    latency: Seconds | None = Field(default=None, gt=0)
    alerts: list[BurnAlert] = Field(default_factory=lambda: list(DEFAULT_BURN_ALERTS))

    @model_validator(mode="after")
    def _fits_window(self) -> SloConfig:
        """Every long window must fit in the SLO window: a written alert's ``long`` is the error;
        with the default alerts, the ``window`` is (once, naming the longest that does not fit)."""
        errors: list[InitErrorDetails] = []
        if "alerts" in self.model_fields_set:
            for j, alert in enumerate(self.alerts):
                if alert.long > self.window:
                    msg = f"the long window ({span(alert.long)}) must not exceed the SLO window ({span(self.window)})"
                    errors.append(_error(("alerts", j, "long"), msg, alert.long))
        else:
            longest = max(a.long for a in self.alerts)
            if longest > self.window:
                msg = (
                    f"the window ({span(self.window)}) is shorter than the default alerts' long window "
                    f"({span(longest)}): make it at least {span(longest)} or write slo alerts that fit"
                )
                errors.append(_error(("window",), msg, self.window))
        most = 1.0 / (1.0 - self.objective)  # every run bad: the fastest a window can burn
        for j, alert in enumerate(self.alerts):
            if above(most, alert.burn):  # a burn must be exceeded: at exactly the most, never
                continue
            need = f"{format_number(round((1 - 1 / alert.burn) * 100, 3))}%"
            if "alerts" in self.model_fields_set:
                msg = (
                    f"a burn of {format_number(alert.burn)}x can never be reached: with an objective of"
                    f" {_percent(self.objective)} a window burns at most {format_number(round(most, 3))}x (every run"
                    f" bad); lower burn below that or raise the objective above {need}"
                )
                errors.append(_error(("alerts", j, "burn"), msg, alert.burn))
            else:
                msg = (
                    f"the default {alert.severity} burn alert ({format_number(alert.burn)}x) can never fire with an"
                    f" objective of {_percent(self.objective)} (a window burns at most"
                    f" {format_number(round(most, 3))}x): raise the objective above {need} or write slo alerts"
                )
                errors.append(_error(("objective",), msg, self.objective))
                break
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    def windows(self) -> tuple[float, ...]:
        """Every window (in seconds, ascending) whose counts the judgement asks for."""
        return tuple(sorted({self.window, *(a.long for a in self.alerts), *(a.short for a in self.alerts)}))


def _percent(share: float) -> str:
    return f"{format_number(round(share * 100, 6))}%"


def _error(loc: tuple[str | int, ...], message: str, value: float) -> InitErrorDetails:
    """A positioned error from a model validator (pydantic prefixes the outer path)."""
    return InitErrorDetails(type=PydanticCustomError("value_error", message), loc=loc, input=value)


# --- arithmetic


class Counts(NamedTuple):
    """Runs over one window: how many were good, out of how many."""

    good: int
    runs: int


def is_good(ok: bool, duration: float, latency: float | None) -> bool:
    """A good run: ok, and no slower than ``latency`` (when the SLO sets one)."""
    return ok and (latency is None or duration <= latency)


def sli(good: int, runs: int) -> float | None:
    """The share of good runs; None with no runs."""
    if not 0 <= good <= runs:
        raise ValueError(f"need 0 <= good <= runs, got {good} of {runs}")
    return good / runs if runs else None


def budget_remaining(sli: float, objective: float) -> float:
    """The share of the error budget left: 1.0 with no bad runs, 0.0 when exactly spent,
    negative when overspent (not clamped at 0); never above 1.0."""
    return min(1.0, 1.0 - (1.0 - sli) / (1.0 - objective))


def burn_rate(good: int, runs: int, objective: float) -> float | None:
    """The error rate as a multiple of the budget's sustainable rate ``1 - objective``; None
    with no runs."""
    share = sli(good, runs)
    return None if share is None else (1.0 - share) / (1.0 - objective)


def above(rate: float | None, burn: float) -> bool:
    """Strictly above the threshold; no runs is not above, nor is a rate within 1e-9 of it."""
    return rate is not None and rate > burn and not math.isclose(rate, burn, rel_tol=_CLOSE)


# --- judgement

BurnTransition = Literal["firing", "resolved"]
CountsOf = Mapping[float, tuple[int, int]] | Callable[[float], tuple[int, int]]


@dataclass(frozen=True)
class BurnState:
    """One burn alert of one (check, target): firing or not, and since when (``now`` at the
    run that fired it)."""

    firing: bool = False
    since: float | None = None


CALM = BurnState()


@dataclass(frozen=True)
class BurnJudgement:
    """What changed for one burn alert, with the numbers and the sentence that explain it."""

    alert: BurnAlert
    transition: BurnTransition
    long_burn: float | None
    short_burn: float | None
    budget: float | None  # budget_remaining over the SLO window; None with no runs in it
    summary: str  # "NAME: TEXT"
    text: str  # the summary without the name


def _getter(counts: CountsOf) -> Callable[[float], tuple[int, int]]:
    return counts.__getitem__ if isinstance(counts, Mapping) else counts


def burning_text(alert: BurnAlert, long_rate: float | None, short_rate: float | None, left: str) -> str:
    """``error budget burning 15.2x (1h) and 18.0x (5m); 41% of 28d budget left``."""

    def rate(r: float | None) -> str:
        return "no runs" if r is None else f"{r:.1f}x"

    long, short = f"{rate(long_rate)} ({span(alert.long)})", f"{rate(short_rate)} ({span(alert.short)})"
    return f"error budget burning {long} and {short}; {left}"


def budget_text(budget: float | None, window: float) -> str:
    """``41% of 28d budget left``, ``28d budget overspent by 12%``, or no runs."""
    if budget is None:
        return f"no runs in the {span(window)} window"
    if budget < 0:
        return f"{span(window)} budget overspent by {round(-budget * 100)}%"
    return f"{round(budget * 100)}% of {span(window)} budget left"


def step_burn(
    name: str, slo: SloConfig, alert: BurnAlert, counts: CountsOf, state: BurnState, now: float
) -> tuple[BurnState, BurnJudgement | None]:
    """Judge one burn ``alert`` of ``slo`` at ``now``. ``name`` starts the summary (the check,
    or check and target); ``counts`` gives ``(good, runs)`` for a window in seconds."""
    get = _getter(counts)
    long_rate = burn_rate(*get(alert.long), slo.objective)
    short_rate = burn_rate(*get(alert.short), slo.objective)
    whole = sli(*get(slo.window))
    budget = None if whole is None else budget_remaining(whole, slo.objective)
    left = budget_text(budget, slo.window)
    if not state.firing:
        if not (above(long_rate, alert.burn) and above(short_rate, alert.burn)):
            return state, None
        assert long_rate is not None and short_rate is not None
        text = burning_text(alert, long_rate, short_rate, left)
        return BurnState(True, now), BurnJudgement(
            alert, "firing", long_rate, short_rate, budget, f"{name}: {text}", text
        )
    if short_rate is None or above(short_rate, alert.burn):
        return state, None
    text = (
        f"error budget burn down to {short_rate:.1f}x ({span(alert.short)}), at or below {format_number(alert.burn)}x"
    )
    text += f"; {left}"
    return CALM, BurnJudgement(alert, "resolved", long_rate, short_rate, budget, f"{name}: {text}", text)


def judge_slo(
    name: str, slo: SloConfig, counts: CountsOf, states: Sequence[BurnState], now: float
) -> tuple[tuple[BurnState, ...], tuple[BurnJudgement, ...]]:
    """Judge every burn alert of ``slo``; ``states`` holds one state per alert, in order (an
    empty sequence: all calm). Returns the new states and the judgements of those that changed."""
    if states and len(states) != len(slo.alerts):
        raise ValueError(f"expected {len(slo.alerts)} states, one per alert, got {len(states)}")
    new: list[BurnState] = []
    changed: list[BurnJudgement] = []
    for alert, state in zip(slo.alerts, states or [CALM] * len(slo.alerts), strict=True):
        after, judgement = step_burn(name, slo, alert, counts, state, now)
        new.append(after)
        if judgement is not None:
            changed.append(judgement)
    return tuple(new), tuple(changed)
