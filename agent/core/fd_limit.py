"""File descriptors: enough for the probes, and a share of them for the status port.

Each probe needs a socket or a pipe, and a flood of clients on the status port must never take
the last ones (issue 12, item 7). At start the daemon calls :func:`raise_nofile_limit`: the soft
``RLIMIT_NOFILE`` (1024 by default, kept low only for programs that still use ``select()``; the
agent uses epoll) goes up to the hard limit (``LimitNOFILE=`` in the unit). The status listener
then takes at most a quarter of what is left, see :func:`listener_cap`.
"""

from __future__ import annotations

import resource

# Linux caps RLIMIT_NOFILE at fs.nr_open (1048576 by default); "unlimited" is not accepted.
_NR_OPEN = "/proc/sys/fs/nr_open"


def _nr_open() -> int:
    try:
        with open(_NR_OPEN, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (before, after).

    Never lowers it and never fails: when the kernel refuses, the limit stays as it was (then
    ``before == after``); the caller may log the pair."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft
        return soft, target
    return soft, soft


def listener_cap(wanted: int) -> int:
    """At most ``wanted`` connections for the status port, and no more than a quarter of the
    soft file-descriptor limit (at least 4), so probes, sinks and the state store keep theirs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(4, min(wanted, soft // 4))
