"""``type: host``: CPU, memory, swap, load, disk and file-descriptor usage of the machine the agent
runs on, and whether the daemons it should run are there.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    mounts   the mount points whose disk and inode usage is measured (default ``["/"]``).
             A mount that is missing, or a directory that is not a mount point (an unmounted
             volume), fails the observation with ``error_kind: expect``; the other values are
             still reported.
    processes  processes to watch, each ``{name: LABEL, match: REGEX}`` (the whole process name
             must match: a plain name matches just that name) or ``{name: LABEL, cmdline: REGEX}``
             (searched in the command line joined by spaces), with an optional ``user`` (name or
             uid, the effective user as ``pgrep -u`` sees it). Zombies and the agent itself never
             count; an unknown user fails the observation with ``error_kind: expect``.

There is no target: the check probes the local machine, shown as target ``localhost``.

Values:

    cpu            %  CPU utilization across all cores since the previous run of this check
    memory         %  RAM in use (psutil ``virtual_memory().percent``)
    swap           %  swap in use (0 without swap)
    load1          1  load average over 1 minute (raw, not divided by the number of cores)
    load5          1  load average over 5 minutes
    load15         1  load average over 15 minutes
    disk[MOUNT]    %  space used on MOUNT, as ``df`` reports it (blocks reserved for root count as full)
    inodes[MOUNT]  %  inodes used on MOUNT (absent on filesystems reporting no inodes, e.g. btrfs)
    fds            %  open file descriptors of the whole machine, of its limit (``/proc/sys/fs/file-nr``)
    process[LABEL].count  1      processes matching LABEL (``process[nginx].count < 1``: nginx is down)
    process[LABEL].rss    bytes  their resident memory, summed (pages they share count once per process)
    process[LABEL].cpu    %      their CPU use since the previous run, summed, in % of one core like
                                 ``top`` (two busy cores: 200%); absent on the first run

Example::

    - name: box
      type: host
      interval: 1m
      mounts: [/, /var/lib/postgresql]
      processes:
        - {name: nginx, match: nginx}
        - {name: workers, cmdline: "celery .*worker", user: app}
      alerts:
        - {when: "disk[/var/lib/postgresql] > 90%", severity: major}
        - {when: cpu > 95%, for: 10m, severity: minor}
        - {when: "process[nginx].count < 1", for: 30s, severity: critical}
        - {when: "process[workers].rss > 4GB", for: 10m, severity: medium}
        - {when: fds > 90%, severity: major}
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, ClassVar

from pydantic import field_validator

from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.processes import ProcessMatch, ProcessTable

_MIN_CPU_SAMPLE = 0.05  # seconds: shorter windows give meaningless CPU percentages


def _busy_and_total(t: Any) -> tuple[float, float]:
    """CPU seconds busy and in total, as psutil.cpu_percent counts them."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)  # already in user/nice
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


class HostConfig(CheckConfig):
    mounts: list[str] = ["/"]
    processes: list[ProcessMatch] = []

    @field_validator("mounts")
    @classmethod
    def _check_mounts(cls, v: list[str]) -> list[str]:
        for m in v:
            if not os.path.isabs(m):
                raise ValueError(f"mount {m!r} must be an absolute path")
        return v

    @field_validator("processes")
    @classmethod
    def _distinct_labels(cls, v: list[ProcessMatch]) -> list[ProcessMatch]:
        labels = [p.name for p in v]
        if dup := next((label for label in labels if labels.count(label) > 1), None):
            raise ValueError(f"process name {dup!r} is used twice: each entry needs its own")
        return v


class HostCheck(BaseCheck):
    TYPE: ClassVar[str] = "host"
    TARGET_KEY: ClassVar[str | None] = None
    Config: ClassVar[type[CheckConfig]] = HostConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("cpu", "%", "CPU utilization across all cores since the previous run"),
        ValueSpec("memory", "%", "RAM in use"),
        ValueSpec("swap", "%", "swap in use"),
        ValueSpec("load1", "1", "load average over 1 minute"),
        ValueSpec("load5", "1", "load average over 5 minutes"),
        ValueSpec("load15", "1", "load average over 15 minutes"),
        ValueSpec("disk[MOUNT]", "%", "space used on MOUNT, as df reports it"),
        ValueSpec("inodes[MOUNT]", "%", "inodes used on MOUNT"),
        ValueSpec("fds", "%", "open file descriptors of the machine, of its limit"),
        ValueSpec("process[LABEL].count", "1", "processes matching LABEL"),
        ValueSpec("process[LABEL].rss", "bytes", "resident memory of the processes matching LABEL, summed"),
        ValueSpec("process[LABEL].cpu", "%", "CPU use of the processes matching LABEL since the previous run"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, HostConfig):
            raise TypeError(f"expected HostConfig, got {type(config).__name__}")
        import psutil  # imported when the check is built: loading a config never pays for it

        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        self._cpu_lock = threading.Lock()
        self._cpu_prev = (time.monotonic(), psutil.cpu_times())
        self._pending: asyncio.Future[Observation] | None = None
        self._processes = ProcessTable(config.processes) if config.processes else None

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        if self._pending is not None:
            # A collection thread is stuck (a hung NFS statvfs): don't pile up more of them.
            return Observation(
                ok=False, error_kind="timeout", error="the previous measurement is still running (a hung filesystem?)"
            )
        pending = asyncio.ensure_future(asyncio.to_thread(self._collect))
        self._pending = pending
        pending.add_done_callback(self._collected)
        # Shielded: if the runner's deadline cancels us, the thread's end still clears _pending.
        return await asyncio.shield(pending)

    def _collected(self, fut: asyncio.Future[Observation]) -> None:
        self._pending = None
        if not fut.cancelled():
            fut.exception()  # retrieved here so an abandoned failure is not logged as unretrieved

    def _collect(self) -> Observation:
        """Runs in a worker thread: every call here may touch /proc or the filesystems."""
        import psutil

        values: dict[str, float] = {"cpu": self._cpu_percent()}
        values["memory"] = float(psutil.virtual_memory().percent)
        values["swap"] = float(psutil.swap_memory().percent)
        values["load1"], values["load5"], values["load15"] = (float(x) for x in psutil.getloadavg())
        if (fds := _fds_percent()) is not None:
            values["fds"] = fds
        problems: list[str] = []
        if self._processes is not None:
            found, trouble = self._processes.scan()
            values.update(found)
            problems += trouble
        for mount in self._cfg.mounts:
            try:
                st = os.statvfs(mount)
            except FileNotFoundError:
                problems.append(f"mount {mount} not found")
                continue
            if not _is_mount(mount):  # e.g. an unmounted volume: measuring its parent would mislead
                problems.append(f"mount {mount} not found: it is a path on another filesystem, not a mount point")
                continue
            used = st.f_blocks - st.f_bfree
            usable = used + st.f_bavail
            values[f"disk[{mount}]"] = 100.0 * used / usable if usable else 0.0
            if st.f_files:
                values[f"inodes[{mount}]"] = 100.0 * (st.f_files - st.f_ffree) / st.f_files
        if problems:
            return Observation(ok=False, values=values, error_kind="expect", error="; ".join(problems))
        return Observation(ok=True, values=values)

    def _cpu_percent(self) -> float:
        """Utilization since this instance last measured (psutil.cpu_percent(interval=None)
        semantics, but private, so two host checks never disturb each other)."""
        import psutil

        with self._cpu_lock:
            then, prev = self._cpu_prev
            waited = time.monotonic() - then
            if waited < _MIN_CPU_SAMPLE:
                time.sleep(_MIN_CPU_SAMPLE - waited)
            now = psutil.cpu_times()
            self._cpu_prev = (time.monotonic(), now)
        busy0, total0 = _busy_and_total(prev)
        busy1, total1 = _busy_and_total(now)
        if total1 <= total0:
            return 0.0
        return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))


def _is_mount(path: str) -> bool:
    """True if ``path`` is a mount point; the mount table catches bind mounts ismount misses."""
    import psutil

    if os.path.ismount(path):
        return True
    real = os.path.realpath(path)
    return any(p.mountpoint == real for p in psutil.disk_partitions(all=True))


def _fds_percent() -> float | None:
    """Allocated file handles of the machine in % of ``fs.file-max`` (None where Linux's
    ``/proc/sys/fs/file-nr`` is missing). Its middle field, the free handles, is 0 since Linux 2.6."""
    try:
        with open("/proc/sys/fs/file-nr", encoding="ascii") as f:
            allocated, free, limit = (int(x) for x in f.read().split()[:3])
    except (OSError, ValueError):
        return None
    return 100.0 * (allocated - free) / limit if limit > 0 else None
