"""Maintenance windows: planned quiet time, by a cron schedule or once, for checks by name or label.

A window is written in the config (:class:`MaintenanceConfig`, one ``maintenance:`` entry) and
compiled once at load into a :class:`Window`. During a window checks still run and their state is
kept; only pages are held back: :func:`window_quiet` answers the book's question "is this check
quiet now, and until when?" with a :class:`agent.alerting.quiet.Quiet`. Everything here is pure:
no I/O, no clock; wall times (epoch seconds) are passed in.

Time rules, the same as cron's (cronsim's, which follows Debian cron):

- a schedule is read in its ``timezone`` (IANA name, default UTC); ``duration`` is elapsed time,
  so an occurrence that starts before a DST change still lasts exactly ``duration`` (a 3h window
  from 01:00 on the night clocks spring forward ends at 05:00 local time);
- a schedule naming a fixed time (neither minute nor hour starts with ``*``) that falls in the
  hour skipped when clocks spring forward starts when the clocks jump (``30 2 * * *`` in
  Europe/Berlin on 2026-03-29 starts at 03:00 CEST, 01:00Z); one that falls in the hour repeated
  when clocks fall back starts once, the first time (02:30 CEST, 00:30Z on 2026-10-25);
- a schedule with ``*`` in its minute or hour follows the clock as it is shown: both passes of a
  repeated hour, none of a skipped one;
- a window covers ``[start, start + duration)``: start inclusive, end exclusive.

Known limitation (cronsim steps whole hours): in a zone whose clocks move by 30 minutes
(Australia/Lord_Howe), a schedule with ``*`` in its minute or hour may misplace an occurrence in
the hour of the change; fixed-time schedules are exact there too.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from agent.alerting.quiet import Quiet, selects
from agent.core.units import Seconds
from agent.core.validators import NAME

_UTC = ZoneInfo("UTC")
_CRON_FIELDS = "minute hour day-of-month month day-of-week"


@functools.cache
def _zones() -> frozenset[str]:
    """Every IANA zone name known here (the system's and the ``tzdata`` package's); read once."""
    return frozenset(available_timezones())


def _aware(value: object) -> object:
    """A YAML timestamp or an ISO 8601 string, with its offset: a naive time is refused."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"invalid date and time {value!r}: write it as 2026-12-05T22:00:00Z") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(f"expected a date and time such as 2026-12-05T22:00:00Z, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"no time zone in {value.isoformat()}: add Z for UTC or an offset such as +01:00")
    return value


class MaintenanceConfig(BaseModel):
    """One ``maintenance:`` entry: which checks (``checks`` and/or ``labels``) and when: a cron
    ``schedule`` with a ``duration`` (in ``timezone``), or once from ``start`` to ``end`` (or for
    ``duration``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    checks: list[str] | None = None
    labels: dict[str, str] | None = None
    schedule: str | None = None
    duration: Seconds | None = Field(default=None, gt=0)
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"invalid name {value!r}: use letters, digits, '.', '_' and '-'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parts = value.split()
        if len(parts) != 5:
            raise ValueError(f"invalid schedule {value!r}: expected 5 fields ({_CRON_FIELDS}), got {len(parts)}")
        try:
            CronSim(" ".join(parts), datetime(2000, 1, 1))
        except CronSimError as exc:  # "Bad minute", "Bad day-of-week": which field is wrong
            reason = str(exc).replace("Bad ", "bad ") or "not a cron expression"
            raise ValueError(f"invalid schedule {value!r}: {reason} field" if "bad " in reason else reason) from None
        return " ".join(parts)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value in _zones():
            return value
        places = sorted(z for z in _zones() if "/" in z or z == "UTC")  # not EST for CEST: an Area/Location
        close = difflib.get_close_matches(value, places, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (an IANA name such as Europe/Berlin or UTC)"
        raise ValueError(f"unknown time zone {value!r}{hint}")

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("schedule") is not None:
            raise ValueError("set either 'schedule' (a repeating window) or 'start' (a one-off), not both")
        return _aware(value)

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: object, info: ValidationInfo) -> object:
        if info.data.get("schedule") is not None:
            raise ValueError("'end' goes with 'start'; a schedule takes a 'duration'")
        if info.data.get("duration") is not None:
            raise ValueError("set either 'end' or 'duration', not both")
        return _aware(value)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if isinstance(start, datetime) and value <= start:
            raise ValueError(f"end must be after start ({start.isoformat()})")
        return value

    @model_validator(mode="after")
    def _whole(self) -> MaintenanceConfig:
        wrong = []  # one message for the entry, each problem in it
        if not self.checks and not self.labels:
            wrong.append("a maintenance window needs 'checks' or 'labels' (or both)")
        if self.schedule is None and self.start is None:
            wrong.append("missing 'schedule' (with 'duration') or 'start' (with 'end' or 'duration')")
        if self.schedule is not None and self.duration is None:
            wrong.append("missing required option 'duration' (how long each occurrence lasts)")
        if self.start is not None and self.end is None and self.duration is None:
            wrong.append("missing 'end' or 'duration' (when the window ends)")
        if wrong:
            raise ValueError("; ".join(wrong))
        return self


@dataclass(frozen=True)
class Window:
    """A compiled maintenance window: a cron ``schedule`` read in ``zone``, each occurrence lasting
    ``duration`` seconds; or, without a schedule, once from ``start`` for ``duration`` seconds."""

    name: str
    checks: frozenset[str] | None
    labels: Mapping[str, str] | None = field(hash=False)
    duration: float
    schedule: str | None = None
    zone: ZoneInfo = _UTC
    start: float | None = None  # a one-off window's start (wall time)

    def matches(self, check: str, labels: Mapping[str, str]) -> bool:
        """Whether the window covers this check (by name and/or by labels)."""
        return selects(self.checks, self.labels, check, labels)

    def active(self, wall: float) -> float | None:
        """The end of the occurrence covering ``wall`` (the latest end if occurrences overlap),
        or None when the window is not on at ``wall``."""
        last = self.start if self.schedule is None else self._last_start(wall)
        if last is None or not last <= wall < last + self.duration:
            return None
        return last + self.duration

    def next_start(self, wall: float) -> float | None:
        """When the window next starts, strictly after ``wall``; None if it never does again."""
        if self.schedule is None:
            return self.start if self.start is not None and self.start > wall else None
        after = datetime.fromtimestamp(math.floor(wall), self.zone)
        for occurrence in CronSim(self.schedule, after):
            # From a time in an hour repeated by a DST change, cron's (local, first-pass) next
            # times may lie before ``wall``: skip them (at most an hour's worth, once a year).
            if occurrence.timestamp() > wall:
                return occurrence.timestamp()
        return None  # cronsim gives up after 50 years without an occurrence

    def quiet(self, wall: float) -> Quiet | None:
        """The :class:`Quiet` this window gives at ``wall``, or None."""
        until = self.active(wall)
        if until is None:
            return None
        return Quiet("maintenance", self.name, until, f"maintenance window {self.name}")

    def _last_start(self, wall: float) -> float | None:
        """The latest occurrence starting at or before ``wall``: one step of cron backwards.

        Cron walks local time. When ``wall`` is in the second pass of an hour repeated by a DST
        change, occurrences later on the local clock (in the first pass) started earlier in real
        time; so the walk starts that much later and skips what lies after ``wall``."""
        assert self.schedule is not None
        begin = math.floor(wall) + 1  # cronsim steps back one second first: wall itself counts
        local = datetime.fromtimestamp(begin, self.zone)
        if local.fold:
            shift = (local.replace(fold=0).utcoffset() or timedelta()) - (local.utcoffset() or timedelta())
            local = datetime.fromtimestamp(begin + max(shift.total_seconds(), 0), self.zone)
        for occurrence in CronSim(self.schedule, local, reverse=True):
            if occurrence.timestamp() <= wall:
                return occurrence.timestamp()
        return None


def compile_window(config: MaintenanceConfig) -> Window:
    """The :class:`Window` of a validated ``maintenance:`` entry."""
    checks = frozenset(config.checks) if config.checks else None
    labels = dict(config.labels) if config.labels else None
    if config.schedule is not None:
        assert config.duration is not None  # the model requires it with a schedule
        return Window(config.name, checks, labels, config.duration, config.schedule, ZoneInfo(config.timezone))
    assert config.start is not None  # the model requires a schedule or a start
    start = config.start.timestamp()
    duration = config.end.timestamp() - start if config.end is not None else config.duration
    assert duration is not None
    return Window(config.name, checks, labels, duration, start=start)


def window_quiet(windows: Iterable[Window], check: str, labels: Mapping[str, str], wall: float) -> Quiet | None:
    """The quiet the windows give ``check`` at ``wall``: of those that cover it and are on, the
    one that ends last (the first written, on a tie); None when none does."""
    best: Quiet | None = None
    for window in windows:
        if not window.matches(check, labels):
            continue
        quiet = window.quiet(wall)
        if quiet is not None and (best is None or quiet.until > best.until):
            best = quiet
    return best
