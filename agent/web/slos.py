"""``firstwatch slo``: the running agent's service level objectives, as a table or as JSON.

It asks the agent of the config exactly as ``firstwatch status`` does (:func:`agent.web.client.ask`:
the same discovery, the same one-line ``UNKNOWN: ...`` and exit 3 when no agent of this config
answers) and shows the ``slos`` of its status document (:class:`agent.web.snapshot.SloView`), read
forgivingly: a number that is missing or not a finite number is None (``-`` in the table), a
record that is not an object is skipped. An agent from before SLOs (no ``slos`` list in its
document) is UNKNOWN too, with a line saying to upgrade it.

Exit code as ``status``'s, over the burn alerts firing now: 0 none, 1 the worst is medium or
minor, 2 major or critical.

The table: objective ``99.9%``; window ``28d`` (:func:`agent.alerting.slo.span`); SLI ``99.95%``
(two decimals, rounded down, so it never looks better than it is; ``100%`` only when every run
was good; ``-`` without runs); budget left ``41%`` (rounded down; overspent ``-12% (overspent)``);
burn rates ``5m 18.0x  1h 15.2x`` from the shortest window (a window without runs ``5m -``; ``-``
when no window has runs); status ``ok`` or the severities of the burn alerts firing, worst first
(``critical burn``). A member without a target (a host check) is ``this host``, as in ``status``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TypedDict

from agent.core.errors import StatusUnavailable
from agent.core.severity import rank, worst
from agent.core.units import parse_duration
from agent.web.client import ask, exit_code, show, unknown
from agent.web.snapshot import FiringRule, Snapshot
from agent.web.view import as_list, as_map, as_num, as_text

_NOISE = 1e-6  # 0.999 * 10000 is 9989.999999999998: round down what float arithmetic took off


class SloJson(TypedDict):
    """One record of ``firstwatch slo --format json``: a :class:`SloView` as read from the agent,
    every number None when the agent sent none (or not a finite number); ``burn_rates`` in
    window order, shortest first."""

    check: str
    target: str
    objective: float | None
    window_s: float | None
    latency_s: float | None
    runs: int | None
    good: int | None
    sli: float | None
    budget_remaining: float | None
    burn_rates: dict[str, float | None]
    firing: list[FiringRule]


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _window_order(key: str) -> float:
    try:
        return parse_duration(key)
    except ValueError:
        return math.inf  # a window this client cannot read goes last, in the agent's order


def read_slo(raw: Mapping[str, object]) -> SloJson:
    """One ``slos`` record of a status document, typed field by field."""
    rates = {str(k): as_num(v) for k, v in as_map(raw.get("burn_rates")).items()}
    firing = [as_map(f) for f in as_list(raw.get("firing"))]
    return {
        "check": as_text(raw.get("check")),
        "target": as_text(raw.get("target")),
        "objective": as_num(raw.get("objective")),
        "window_s": as_num(raw.get("window_s")),
        "latency_s": as_num(raw.get("latency_s")),
        "runs": _count(raw.get("runs")),
        "good": _count(raw.get("good")),
        "sli": as_num(raw.get("sli")),
        "budget_remaining": as_num(raw.get("budget_remaining")),
        "burn_rates": {k: rates[k] for k in sorted(rates, key=_window_order)},
        "firing": [{"rule": as_text(f.get("rule")), "severity": as_text(f.get("severity"))} for f in firing],
    }


def slos_of(doc: Snapshot) -> list[SloJson]:
    """The SLO records of ``doc``; :class:`StatusUnavailable` when the agent reports none (an
    agent from before SLOs: no ``slos`` list)."""
    raw = as_map(doc).get("slos")
    if not isinstance(raw, list):
        agent = as_map(as_map(doc).get("agent"))
        version = f" (firstwatch {as_text(agent.get('version'))})" if agent.get("version") else ""
        raise StatusUnavailable(
            f"the agent {as_text(agent.get('name'), '?')}{version} does not report SLOs: upgrade it"
        )
    return [read_slo(as_map(r)) for r in raw if isinstance(r, Mapping)]


def percent(share: float | None) -> str:
    """A configured share as a percentage: 0.999 -> ``99.9%``, 0.9995 -> ``99.95%``."""
    if share is None:
        return "-"
    return f"{round(share * 100, 6):f}".rstrip("0").rstrip(".") + "%"


def sli_text(sli: float | None) -> str:
    """``99.95%``: two decimals, rounded down (``100%`` only when it is 1)."""
    if sli is None:
        return "-"
    if sli >= 1:
        return "100%"
    return f"{math.floor(sli * 10000 + _NOISE) / 100:.2f}%"


def budget_text(budget: float | None) -> str:
    """``41%`` left, rounded down; ``-12% (overspent)`` past the budget."""
    if budget is None:
        return "-"
    left = math.floor(budget * 100 + _NOISE)
    return f"{left}% (overspent)" if left < 0 else f"{left}%"


def burn_text(rates: Mapping[str, float | None]) -> str:
    """``5m 18.0x  1h 15.2x`` (already in window order); ``-`` when no window has runs."""
    if all(r is None for r in rates.values()):
        return "-"
    return "  ".join(f"{w} {'-' if r is None else f'{r:.1f}x'}" for w, r in rates.items())


def status_text(firing: list[FiringRule]) -> str:
    """``ok``, or the severities of the burn alerts firing, worst first: ``critical burn``."""
    severities = sorted({f["severity"] for f in firing}, key=lambda s: (-rank(s), s))
    return ", ".join(f"{s or '?'} burn" for s in severities) or "ok"


def render_slos(slos: list[SloJson], agent: str) -> str:
    """The table of ``firstwatch slo`` (one line saying so when no check has an SLO)."""
    from agent.alerting.slo import span
    from agent.web.text import table

    if not slos:
        return f"no SLOs configured: no check of agent {agent} has an slo\n"
    rows = [
        [
            s["check"] or "?",
            s["target"] or "this host",
            percent(s["objective"]),
            span(window) if (window := s["window_s"]) is not None and window > 0 else "-",
            sli_text(s["sli"]),
            budget_text(s["budget_remaining"]),
            burn_text(s["burn_rates"]),
            status_text(s["firing"]),
        ]
        for s in slos
    ]
    headers = ["CHECK", "TARGET", "OBJECTIVE", "WINDOW", "SLI", "BUDGET LEFT", "BURN RATES", "STATUS"]
    return "\n".join(table(headers, rows)) + "\n"


def cmd_slo(config: str, fmt: str, timeout: float = 5.0) -> int:
    """``firstwatch slo``: 0 no burn alert firing, 1 the worst firing is medium or minor, 2 major
    or critical, 3 UNKNOWN (no agent of this config answered, or it does not report SLOs)."""
    try:
        doc = ask(config, timeout)
        slos = slos_of(doc)
    except StatusUnavailable as exc:
        return unknown(fmt, exc)
    if fmt == "json":
        show(json.dumps({"slos": slos}, indent=2))
    else:
        show(render_slos(slos, doc["agent"]["name"]))
    firing: list[str | None] = [f["severity"] for s in slos for f in s["firing"]]
    return exit_code(worst(firing))
