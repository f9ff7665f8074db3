"""systemd's notification protocol (``sd_notify``): ``READY=1``, ``STOPPING=1``, ``STATUS=...``.

A datagram to the socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). Without the variable (not run by systemd) every call is a no-op. Failures are logged
once and never stop the agent: a missing notification makes systemd restart us, which is the
right outcome for an agent that cannot talk to its supervisor.

The socket is non-blocking: when its reader stalls and the queue is full (``EAGAIN``,
``ENOBUFS``), that notification is dropped, never waited for (a blocked ``sendto`` would freeze
the event loop, probes and SIGTERM included). Drops are logged once per episode.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

log = logging.getLogger("firstwatch.systemd")


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._warned = False
        self.dropped = 0  # in the current episode of a full socket

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                self._sock = socket.socket(socket.AF_UNIX, kind)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except (BlockingIOError, InterruptedError) as exc:
            self._drop(exc)
            return
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self._drop(exc)
                return
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
            return
        if self.dropped:
            log.info("systemd's notification socket takes messages again (%d dropped)", self.dropped)
            self.dropped = 0

    def _drop(self, exc: OSError) -> None:
        if not self.dropped:
            log.warning("systemd's notification socket is full (%s): dropping notifications until it drains", exc)
        self.dropped += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
