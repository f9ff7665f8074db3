"""The Nagios plugin output format: a status line, optional long output, and performance data.

What a plugin prints (Nagios plugin API, "Plugin Output for Nagios")::

    DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968
    / 15272 MB (77%);
    /var/log 819 MB (84%); | /boot=68MB;88;93;0;98
    /home=69357MB;253404;253409;0;253414
    'free space'=12%;;;0;100

The first line is the status text; ``|`` starts its performance data. Later lines are long
output until the first ``|`` among them; everything after it, over any number of lines, is more
performance data. Each item is ``label=value[UOM];[warn];[crit];[min];[max]``; a label holding
spaces, ``=``, ``|`` or quotes is written in single quotes, with ``''`` for a quote inside.

Parsing never raises: garbage is skipped and whatever parses is returned. A value of ``U``
("undetermined") or one that is not a number is left out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")

# UOM -> (firstwatch base unit, multiplier, divisor). Bytes are 1000-based as the plugin
# guidelines define KB/MB/GB/TB; the binary KiB... forms some plugins print are 1024-based.
_UNITS: dict[str, tuple[str, float, float]] = {
    "s": ("s", 1.0, 1.0),
    "ms": ("s", 1.0, 1e3),
    "us": ("s", 1.0, 1e6),
    "µs": ("s", 1.0, 1e6),
    "%": ("%", 1.0, 1.0),
    "B": ("bytes", 1.0, 1.0),
    "KB": ("bytes", 1e3, 1.0),
    "kB": ("bytes", 1e3, 1.0),
    "MB": ("bytes", 1e6, 1.0),
    "GB": ("bytes", 1e9, 1.0),
    "TB": ("bytes", 1e12, 1.0),
    "KiB": ("bytes", 1024.0, 1.0),
    "MiB": ("bytes", 1024.0**2, 1.0),
    "GiB": ("bytes", 1024.0**3, 1.0),
    "TiB": ("bytes", 1024.0**4, 1.0),
}


@dataclass(frozen=True)
class PerfValue:
    """One performance data item, as the plugin wrote it (``warn``/``crit`` are raw ranges)."""

    label: str
    value: float
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    min: float | None = None
    max: float | None = None

    def base(self) -> tuple[float, str]:
        """The value in firstwatch's base unit: ``(0.0123, "s")`` for ``12.3ms``."""
        return to_base_unit(self.value, self.uom)


@dataclass(frozen=True)
class PluginOutput:
    """A plugin's output split into its parts."""

    text: str  # the first line without its performance data
    long_text: str  # the following lines up to the first ``|`` among them
    perfdata: tuple[PerfValue, ...]


def to_base_unit(value: float, uom: str) -> tuple[float, str]:
    """``(12.3, "ms")`` -> ``(0.0123, "s")``; a UOM firstwatch has no base unit for gives ``"1"``."""
    unit = _UNITS.get(uom)
    if unit is None:
        return value, "1"
    name, mul, div = unit
    return value * mul / div, name


def parse_output(output: str) -> PluginOutput:
    """Split a plugin's whole stdout into status text, long output and performance data."""
    lines = [line.rstrip("\r") for line in output.split("\n")]
    text, _, perf = lines[0].partition("|")
    long_text, _, long_perf = "\n".join(lines[1:]).partition("|")
    return PluginOutput(text.strip(), long_text.rstrip(), (*parse_perfdata(perf), *parse_perfdata(long_perf)))


def parse_perfdata(text: str) -> list[PerfValue]:
    """Parse the performance data part (what follows ``|``); skips what does not parse."""
    out: list[PerfValue] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace() or text[i] == "|":  # a stray "|" separates like a space
            i += 1
            continue
        label: str | None = None
        if text[i] == "'":
            label, end = _quoted(text, i + 1)
            if label is None:  # an unterminated quote: treat the quote as garbage and go on
                i += 1
                continue
            i = end
        else:
            j = i
            while j < n and text[j] not in "=|" and not text[j].isspace():
                j += 1
            label, i = text[i:j], j
        if i >= n or text[i] != "=":  # a word that is not an item: skip it
            while i < n and text[i] != "|" and not text[i].isspace():
                i += 1
            continue
        j = i + 1
        while j < n and text[j] != "|" and not text[j].isspace():
            j += 1
        item = _item(label, text[i + 1 : j]) if label else None
        if item is not None:
            out.append(item)
        i = j
    return out


def _quoted(text: str, i: int) -> tuple[str | None, int]:
    """The label of a quoted item starting after its opening quote, and where it ends."""
    buf: list[str] = []
    n = len(text)
    while i < n:
        if text[i] == "'":
            if i + 1 < n and text[i + 1] == "'":
                buf.append("'")
                i += 2
                continue
            return "".join(buf), i + 1
        buf.append(text[i])
        i += 1
    return None, i


def _number(field: str) -> float | None:
    m = _NUMBER.match(field)
    if not m:
        return None
    value = float(m.group())
    return value if math.isfinite(value) else None


def _item(label: str, fields: str) -> PerfValue | None:
    parts = fields.split(";")
    m = _NUMBER.match(parts[0])
    if not m:
        return None  # "U" (undetermined) or garbage
    value = float(m.group())
    if not math.isfinite(value):
        return None
    parts += [""] * (5 - len(parts))
    return PerfValue(
        label=label,
        value=value,
        uom=parts[0][m.end() :],
        warn=parts[1] or None,
        crit=parts[2] or None,
        min=_number(parts[3]),
        max=_number(parts[4]),
    )


def format_label(label: str) -> str:
    """A label as a plugin writes it: quoted when it holds spaces, ``=``, ``|`` or quotes."""
    if any(c.isspace() or c in "'=|" for c in label):
        return "'" + label.replace("'", "''") + "'"
    return label


def format_perfdata(items: Iterable[PerfValue]) -> str:
    """The inverse of :func:`parse_perfdata`: ``label=value[UOM];warn;crit;min;max`` items."""
    out = []
    for p in items:
        fields = [
            f"{p.value!r}{p.uom}",
            p.warn or "",
            p.crit or "",
            "" if p.min is None else repr(p.min),
            "" if p.max is None else repr(p.max),
        ]
        while len(fields) > 1 and not fields[-1]:
            fields.pop()
        out.append(f"{format_label(p.label)}={';'.join(fields)}")
    return " ".join(out)
