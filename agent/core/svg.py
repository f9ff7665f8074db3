"""Small SVG pictures for people: the one helper the status page and the post-mortem chart use.

Pure functions that return SVG text (``<svg>`` with ``xmlns``, so it is well-formed XML on its
own and valid inline in HTML5). Every picture has ``role="img"``, an ``aria-label`` and a
``<title>`` that say its numbers in words: a screen reader reads them, a test can assert on them,
and a reader hovering it on a desktop sees them.

Pictures carry CSS classes, never ``style`` attributes (the status page's Content-Security-Policy
allows only its own style block); a standalone file (the report's chart) passes ``fill`` and
``stroke`` as presentation attributes instead. All text, in labels as in classes, is escaped
(:func:`esc`); classes are built from states reduced to letters, digits and ``-``
(:func:`state_class`).

- :func:`day_bar`: one rect per day, coloured by class (``d-up``, ``d-critical``, ...).
- :func:`sparkline`: a line through values, broken where a value is None.
- :func:`band_strip`: stretches of time at a state (an incident's severity), scaled to a span.
- :func:`svg`, :func:`rect`, :func:`path`, :func:`text`, :func:`path_d`: the parts they are made of.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import NamedTuple

from agent.core.units import format_duration

XMLNS = "http://www.w3.org/2000/svg"
# characters XML 1.0 does not allow at all (a check name may hold any of them): shown as U+FFFD
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Span(NamedTuple):
    """A stretch of time (seconds since the epoch) at one state."""

    start: float
    end: float
    state: str


def esc(value: object) -> str:
    """Text made safe for SVG and HTML: escaped, quotes too; characters XML forbids replaced."""
    return escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


def num(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros (``12``, ``3.5``, ``0.33``)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def state_class(prefix: str, state: str) -> str:
    """``prefix`` + ``state`` reduced to lowercase letters, digits and ``-`` (``d-critical``)."""
    return prefix + ("".join(ch for ch in state.lower() if ch.isascii() and (ch.isalnum() or ch == "-")) or "unknown")


def _attrs(**attrs: str | float | None) -> str:
    out = []
    for name, value in attrs.items():
        if value is None:
            continue
        shown = num(value) if isinstance(value, int | float) else esc(value)
        out.append(f' {name.rstrip("_").replace("_", "-")}="{shown}"')
    return "".join(out)


def svg(width: float, height: float, label: str, body: str, *, cls: str | None = None, sized: bool = False,
        stretch: bool = False) -> str:  # fmt: skip
    """An ``<svg>`` of ``width`` x ``height`` user units around ``body``, labelled in words.
    ``sized`` gives it that size in pixels too (a file on its own); ``stretch`` lets the page's
    CSS scale it to any box (``preserveAspectRatio="none"``: a bar as wide as its column)."""
    size = _attrs(width=width, height=height) if sized else ""
    aspect = ' preserveAspectRatio="none"' if stretch else ""
    return (
        f'<svg xmlns="{XMLNS}" viewBox="0 0 {num(width)} {num(height)}"{size}{aspect} role="img"'
        f"{_attrs(aria_label=label, class_=cls)}><title>{esc(label)}</title>{body}</svg>"
    )


def rect(x: float, y: float, width: float, height: float, *, cls: str | None = None, fill: str | None = None,
         opacity: float | None = None, title: str | None = None) -> str:  # fmt: skip
    """A rectangle; ``title`` (shown on hover) says what it stands for."""
    a = _attrs(x=x, y=y, width=max(0.0, width), height=max(0.0, height), class_=cls, fill=fill, opacity=opacity)
    return f"<rect{a}><title>{esc(title)}</title></rect>" if title else f"<rect{a}/>"


def path(d: str, *, cls: str | None = None, stroke: str | None = None, width: float | None = None) -> str:
    """An unfilled path with round joins and caps (so a lone point shows as a dot)."""
    a = _attrs(d=d, class_=cls, fill="none", stroke=stroke, stroke_width=width)
    return f'<path{a} stroke-linejoin="round" stroke-linecap="round"/>'


def text(x: float, y: float, words: str, *, anchor: str = "start", fill: str | None = None, size: float = 12) -> str:
    """A line of text at (x, y) (its baseline)."""
    return f"<text{_attrs(x=x, y=y, text_anchor=anchor, fill=fill, font_size=size)}>{esc(words)}</text>"


def path_d(points: Sequence[tuple[float, float] | None]) -> str:
    """Path data through ``points``: a None ends a run (a gap in the line), each run starts with
    ``M``; a run of one point is a zero-length segment (a dot, with round caps)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    parts = []
    for run in (r for r in runs if r):
        head = f"M{num(run[0][0])} {num(run[0][1])}"
        parts.append(head + ("".join(f" L{num(x)} {num(y)}" for x, y in run[1:]) if len(run) > 1 else " h0"))
    return " ".join(parts)


DAY_W = 4  # user units per day in a day bar (a 1-unit gap between days)
DAY_H = 20


def day_bar(states: Sequence[str], label: str, *, slots: int = 90, titles: Sequence[str] | None = None,
            names: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """One rect per day, oldest first, right-aligned in ``slots`` places (fewer days than slots:
    the oldest places stay empty), classed ``d-STATE``. The label says ``label``, then how many
    days were in each state (``names`` words a state: ``{"none": "without runs"}``)."""
    n = len(states)
    slots = max(slots, n)
    first = slots - n
    counts = Counter(states)
    words = names or {}
    said = ", ".join(f"{count} {words.get(state, state)}" for state, count in counts.most_common())
    classes = {s: state_class("d-", s) for s in counts}
    head = f'" y="0" width="{DAY_W - 1}" height="{DAY_H}" class="'  # written out: 90 rects per check per page
    body = "".join(
        f'<rect x="{(first + i) * DAY_W}{head}{classes[s]}"'
        + (f"><title>{esc(titles[i])}</title></rect>" if titles else "/>")
        for i, s in enumerate(states)
    )
    days = "1 day" if n == 1 else f"{n} days"
    return svg(slots * DAY_W, DAY_H, f"{label}: {days}: {said}" if n else f"{label}: no days", body,
               cls="days", stretch=True)  # fmt: skip


SPARK_W = 300
SPARK_H = 40
SPARK_PAD = 3  # room for the line's width at the top and bottom


def sparkline(values: Sequence[float | None], label: str, fmt: Callable[[float], str] = format_duration) -> str:
    """A line through ``values`` (oldest first, evenly spaced, 0 at the bottom, the highest at the
    top), broken where a value is None, with a dot (class ``last``) on the newest value. The label
    says ``label``, then the lowest, highest and newest values (``fmt``) and how many are missing."""
    known = [v for v in values if v is not None]
    if not known:
        return svg(SPARK_W, SPARK_H, f"{label}: no data", "", cls="spark", stretch=True)
    top = max(known) or 1.0
    step = SPARK_W / max(1, len(values) - 1)

    def at(i: int, v: float) -> tuple[float, float]:
        return (i * step if len(values) > 1 else SPARK_W / 2, SPARK_H - SPARK_PAD - v / top * (SPARK_H - 2 * SPARK_PAD))

    points = [None if v is None else at(i, v) for i, v in enumerate(values)]
    last = next(p for p in reversed(points) if p is not None)
    said = f"{label}: lowest {fmt(min(known))}, highest {fmt(max(known))}, newest {fmt(known[-1])}"
    missing = len(values) - len(known)
    if missing:
        said += f"; no runs in {missing} of {len(values)}"
    body = path(path_d(points), cls="line") + path(path_d([last]), cls="last")
    return svg(SPARK_W, SPARK_H, said, body, cls="spark", stretch=True)


BAND_W = 1000
BAND_H = 12


def band_strip(spans: Sequence[Span], start: float, end: float, label: str) -> str:
    """``spans`` as rects classed ``b-STATE`` on a strip from ``start`` to ``end`` (each clipped
    to it). The label says ``label``, then each stretch in order with how long it lasted."""
    total = max(end - start, 1e-9)
    body = []
    said = []
    for s in spans:
        a, b = max(s.start, start), min(s.end, end)
        if b < a:
            continue
        x = (a - start) / total * BAND_W
        body.append(rect(x, 0, (b - a) / total * BAND_W, BAND_H, cls=state_class("b-", s.state),
                         title=f"{s.state} for {format_duration(b - a)}"))  # fmt: skip
        said.append(f"{s.state} for {format_duration(b - a)}")
    words = f"{label}: {', then '.join(said)}" if said else f"{label}: no data"
    return svg(BAND_W, BAND_H, words, "".join(body), cls="bands", stretch=True)
