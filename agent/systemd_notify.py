"""systemd's notification protocol (``sd_notify``): ``READY=1``, ``STOPPING=1``, ``STATUS=...``.

A datagram to the socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). Without the variable (not run by systemd) every call is a no-op. Failures are logged
once and never stop the agent: a missing notification makes systemd restart us, which is the
right outcome for an agent that cannot talk to its supervisor.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("firstwatch.systemd")


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
