"""The SLO gauges (issue 16): what the runtime reports of each (check, target) with an ``slo``, and
the series :meth:`agent.telemetry.metrics.Telemetry.observe_slos` exports from it::

    firstwatch.slo.sli                     gauge  1  the share of good runs over the SLO window
    firstwatch.slo.error_budget.remaining  gauge  1  the share of the error budget left (negative: overspent)
    firstwatch.slo.burn_rate               gauge  1  the error rate over the budget's rate, per window

All carry ``check.name`` and ``check.target`` (as the check metrics do); ``burn_rate`` also
``window`` (``5m``, ``1h``, ``3d``: as the SLO writes it). A number that is None (no runs in
that window) or not finite is no point at all, never 0. On ``/metrics`` they are
``firstwatch_slo_sli``, ``firstwatch_slo_error_budget_remaining`` and ``firstwatch_slo_burn_rate``
(unit ``1`` adds no suffix).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Rows = list[tuple[float, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class SloReading:
    """One (check, target)'s SLO now: its SLI and budget left over the SLO window, and its burn
    rate per window (keyed ``5m``, ``1h``, ...); None where a window has no runs."""

    check: str
    target: str
    sli: float | None
    budget_remaining: float | None
    burn_rates: Mapping[str, float | None]


def _attrs(r: SloReading) -> dict[str, str]:
    return {"check.name": r.check, "check.target": r.target}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def sli_rows(readings: Iterable[SloReading]) -> Rows:
    return [(v, _attrs(r)) for r in readings if (v := _finite(r.sli)) is not None]


def budget_rows(readings: Iterable[SloReading]) -> Rows:
    return [(v, _attrs(r)) for r in readings if (v := _finite(r.budget_remaining)) is not None]


def burn_rows(readings: Iterable[SloReading]) -> Rows:
    return [
        (v, {**_attrs(r), "window": window})
        for r in readings
        for window, rate in r.burn_rates.items()
        if (v := _finite(rate)) is not None
    ]


#: (name, unit, description, rows) of each SLO gauge, in the order they are registered.
GAUGES: tuple[tuple[str, str, str, Callable[[Iterable[SloReading]], Rows]], ...] = (
    ("firstwatch.slo.sli", "1", "share of good runs over the SLO window", sli_rows),
    (
        "firstwatch.slo.error_budget.remaining",
        "1",
        "share of the SLO's error budget left (negative: overspent)",
        budget_rows,
    ),
    ("firstwatch.slo.burn_rate", "1", "error rate over the error budget's sustainable rate", burn_rows),
)


def reading(rows: Callable[[Iterable[SloReading]], Rows], fn: Callable[[], Iterable[SloReading]]) -> Callable[[], Rows]:
    """An observer: ``rows`` of what ``fn`` reads at the time of each call."""
    return lambda: rows(fn())
