"""Processes for ``type: host`` (its ``processes:`` option): which ones match each entry, how many,
their memory and their CPU since the previous run.

One pass over the process table per run, reading only what the entries need: the name, state,
start time and CPU times all come from ``/proc/PID/stat`` (one read per process); the command
line is read only when an entry matches on it, the owner only when one names a user, and memory
only for the processes that matched. A few hundred processes cost a few milliseconds.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from agent.core import validators

_LABEL = re.compile(r"[A-Za-z0-9_.:@/-]+\Z")


def _label(value: str) -> str:
    if not _LABEL.match(value):
        raise ValueError(f"invalid process name {value!r}: use letters, digits and _ . : @ / -")
    return value


class ProcessMatch(BaseModel):
    """One ``processes:`` entry: ``name`` labels the values, ``match`` is a regex the whole process
    name must match (a plain name matches just that name), ``cmdline`` a regex searched in the
    command line joined by spaces; one of the two. ``user`` (a name or a uid) narrows to processes
    running as that user (the effective one, as ``pgrep -u``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_label)]
    match: Annotated[str, AfterValidator(validators.regex)] | None = None
    cmdline: Annotated[str, AfterValidator(validators.regex)] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> ProcessMatch:
        if (self.match is None) == (self.cmdline is None):
            raise ValueError(f"process {self.name}: give one of match (the process name) or cmdline")
        return self


def _uid(user: str) -> int | None:
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


@dataclass(frozen=True)
class _Entry:
    label: str
    name: re.Pattern[str] | None
    cmdline: re.Pattern[str] | None
    user: str | None

    def matches(self, info: dict[str, Any], uids: dict[str, int | None]) -> bool:
        if self.user is not None:
            uid, ids = uids[self.user], info["uids"]
            if uid is None or ids is None or ids.effective != uid:
                return False
        if self.name is not None:
            return self.name.fullmatch(info["name"]) is not None
        assert self.cmdline is not None
        return self.cmdline.search(" ".join(info["cmdline"] or ())) is not None


class ProcessTable:
    """Scans the process table for a list of entries, keeping each matched process's CPU time
    (keyed by pid and start time, so a reused pid is a new process) until the next scan."""

    def __init__(self, entries: Sequence[ProcessMatch]) -> None:
        self._entries = [
            _Entry(
                e.name,
                re.compile(e.match) if e.match is not None else None,
                re.compile(e.cmdline) if e.cmdline is not None else None,
                e.user,
            )
            for e in entries
        ]
        self._attrs = ["name", "status", "create_time", "cpu_times"]
        if any(e.cmdline is not None for e in entries):
            self._attrs.append("cmdline")
        if any(e.user is not None for e in entries):
            self._attrs.append("uids")
        self._cpu: dict[tuple[int, float], float] = {}  # CPU seconds of the processes matched last time
        self._running: set[tuple[int, float]] = set()  # every process seen last time
        self._scanned: float | None = None  # time.monotonic() of the previous scan

    def scan(self) -> tuple[dict[str, float], list[str]]:
        """``process[LABEL].count/.rss/.cpu`` values (no ``cpu`` on the first scan: it has nothing
        to compare with) and problems worth failing the observation for (an unknown user)."""
        import psutil  # loaded by HostCheck.__init__ already; never when a config loads

        problems: list[str] = []
        uids: dict[str, int | None] = {}
        for entry in self._entries:
            if (user := entry.user) is not None and user not in uids:
                uids[user] = _uid(user)
                if uids[user] is None:
                    problems.append(f"user {user!r} does not exist")
        count = dict.fromkeys((e.label for e in self._entries), 0)
        rss = dict.fromkeys(count, 0.0)
        cpu = dict.fromkeys(count, 0.0)
        now = time.monotonic()
        cpu_now: dict[tuple[int, float], float] = {}
        running: set[tuple[int, float]] = set()
        me = os.getpid()
        for proc in psutil.process_iter():
            try:  # not process_iter(attrs): it stores them on Process objects shared by every thread
                info: dict[str, Any] = proc.as_dict(self._attrs, ad_value=None)
            except psutil.NoSuchProcess:
                continue
            running.add((proc.pid, info["create_time"]))
            if proc.pid == me or info["status"] == psutil.STATUS_ZOMBIE or info["name"] is None:
                continue
            labels = [e.label for e in self._entries if e.matches(info, uids)]
            if not labels:
                continue
            try:
                memory = float(proc.memory_info().rss)
            except psutil.NoSuchProcess:
                continue  # gone since the scan began
            except psutil.AccessDenied:
                memory = 0.0
            used = self._cpu_used(proc.pid, info, cpu_now)
            for label in labels:
                count[label] += 1
                rss[label] += memory
                cpu[label] += used
        values: dict[str, float] = {}
        for label in count:
            values[f"process[{label}].count"] = float(count[label])
            values[f"process[{label}].rss"] = rss[label]
            if self._scanned is not None and now > self._scanned:
                values[f"process[{label}].cpu"] = 100.0 * cpu[label] / (now - self._scanned)
        self._cpu, self._running, self._scanned = cpu_now, running, now
        return values, problems

    def _cpu_used(self, pid: int, info: dict[str, Any], cpu_now: dict[tuple[int, float], float]) -> float:
        """CPU seconds ``pid`` used since the previous scan (all of them if it started since)."""
        times = info["cpu_times"]
        if times is None or info["create_time"] is None:
            return 0.0
        key, total = (pid, float(info["create_time"])), float(times.user + times.system)
        cpu_now[key] = total
        if key in self._cpu:
            return max(0.0, total - self._cpu[key])
        if self._scanned is not None and key not in self._running:
            return total  # started since the previous scan
        return 0.0  # running then but not matched (a fork before its exec): its share of the window is unknown
