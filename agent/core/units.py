"""Durations and quantities as users write them (``500ms``, ``5m``, ``90%``, ``2MB``), parsed
once at load, and formatted back for humans: one formatter per unit, used by ``firstwatch
check``, the daemon's log, the status page and rule explanations alike.

- durations (``s``): ``0.781ms``, ``11ms``, ``2.71s``, ``5m30s``, ``1h30m``
- percent: ``41%``, ``3.2%``, ``92.3%``
- bytes (1000-based, as written in rules): ``512B``, ``1.2MB``, ``3.5GB``
- days: ``12.5 days``
- plain numbers: integers as they are; others with 3 significant digits, never in exponent form
  (``0.41``, ``12.3``, ``0.0112``, ``1235``)

:data:`COMPARISONS` are the operators a value is compared with (alert rules, JSON assertions).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")

# Quantity units by the value unit they apply to, as multipliers into that base unit.
QUANTITY_UNITS: dict[str, dict[str, float]] = {
    "s": _DURATION_UNITS,
    "%": {"%": 1.0},
    "bytes": {
        "B": 1.0,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "TB": 1e12,
        "KiB": 1024.0,
        "MiB": 1024.0**2,
        "GiB": 1024.0**3,
        "TiB": 1024.0**4,
    },
    "days": {"d": 1.0, "days": 1.0},
}
_QUANTITY = re.compile(r"\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)\s*\Z")


def parse_duration(text: object) -> float:
    """``"1m30s"`` -> 90.0. Raises ValueError with a message fit for a config error."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration such as 30s, 5m or 500ms, got {text!r}")
    if isinstance(text, int | float):
        if text == 0:
            return 0.0
        raise ValueError(f"duration {text!r} needs a unit: write {text}s, {text}m or {text}ms")
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), like 30s or 1m30s")
    return total


def _duration_field(value: object) -> float:
    return parse_duration(value)


DURATION_PATTERN = r"^\s*(?:0|(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+)\s*$"
"""What :func:`parse_duration` accepts as text, as a JSON Schema (ECMA-262) pattern."""

DURATION_INPUT: dict[str, object] = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30s", "5m", "1h30m", "500ms"]},
        {"const": 0},
    ]
}
"""The JSON Schema of a duration as written: text with units, or a bare 0 (any other bare number needs a unit)."""

Seconds = Annotated[float, BeforeValidator(_duration_field), WithJsonSchema(DURATION_INPUT)]
"""A pydantic field type: a duration string in the config, seconds (float) in the model (its JSON
Schema describes the written form, ``DURATION_INPUT``)."""


def quantity_pattern(suffixes: Iterable[str], *, bare: bool = True) -> str:
    """A JSON Schema (ECMA-262) pattern for text holding a number and one of ``suffixes`` (or no
    suffix when ``bare``): ``2MB``, ``50%``, ``0.999``."""
    units = "|".join(re.escape(s) for s in suffixes)
    return rf"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*(?:{units}){'?' if bare else ''}\s*$"


def parse_quantity(text: str, unit: str, name: str = "this value") -> float:
    """Parse ``"2s"`` or ``"90%"`` or ``"500"`` into the base ``unit`` of a value.

    A bare number is taken in the base unit. Raises ValueError naming the allowed units."""
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"invalid quantity {text!r}: expected a number with an optional unit")
    number, suffix = float(m.group(1)), m.group(2)
    if not suffix:
        return number
    if unit == "any":  # a value in whatever base unit its source used (Nagios perfdata)
        allowed = {k: v for units in QUANTITY_UNITS.values() for k, v in units.items() if k != "m"}
    else:
        allowed = QUANTITY_UNITS.get(unit, {})
    if suffix not in allowed:
        hint = f"use one of {', '.join(allowed)}" if allowed else "write a plain number"
        raise ValueError(f"unit {suffix!r} does not fit {name} (measured in {unit}): {hint}")
    return number * allowed[suffix]


def format_number(value: float) -> str:
    """A plain number for humans: ``3``, ``0.41``, ``12.3``, ``0.0112``, ``1235`` (never ``1e-05``)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 1e15:
        return f"{value:.3g}"
    if magnitude >= 100:
        return str(round(value))
    decimals = max(0, 2 - math.floor(math.log10(magnitude)))
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_duration(seconds: float) -> str:
    """Short human form: ``0.781ms``, ``350ms``, ``2.71s``, ``5m``, ``1h30m``."""
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:.0f}ms" if ms >= 10 else f"{format_number(ms)}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m{s}s" if s else f"{m}m"
    h, rest = divmod(round(seconds), 3600)
    m = rest // 60
    return f"{h}h{m}m" if m else f"{h}h"


def format_value(value: float, unit: str | None) -> str:
    """A value in its unit for humans: ``2.71s``, ``92.3%``, ``1.2MB``, ``12.5 days``, ``0.41``.
    ``unit`` is a declared unit (``s % bytes days 1``); ``any``, ``None`` or another: a plain number."""
    if unit == "s":
        return format_duration(value)
    if unit == "%":
        return f"{format_number(value)}%"
    if unit == "bytes":
        for suffix, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if abs(value) >= size:
                return f"{format_number(value / size)}{suffix}"
        return f"{value:.0f}B"
    if unit == "days":
        return f"{format_number(value)} days"
    return format_number(value)
