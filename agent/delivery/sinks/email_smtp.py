"""The SMTP client of the ``email`` sink: :class:`smtplib.SMTP` that speaks implicit TLS when asked
and can be aborted from another thread.

:mod:`agent.delivery.sinks.email` imports this module when it sends its first mail, so loading a config
never pays for smtplib.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl


class SmtpClient(smtplib.SMTP):
    """smtplib.SMTP that speaks implicit TLS when asked and can be aborted from another thread."""

    def __init__(self, host: str, timeout: float, implicit_tls: ssl.SSLContext | None) -> None:
        super().__init__(timeout=timeout, local_hostname="")  # connects later; the EHLO name too
        self._host = host  # the name STARTTLS and implicit TLS verify the certificate against
        self._implicit_tls = implicit_tls
        self.aborted = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self.sock = sock  # abort() can now interrupt the TLS handshake too
        if self.aborted:
            sock.close()
            raise TimeoutError("aborted")
        if self._implicit_tls is not None:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self._host)
        return sock

    def abort(self) -> None:
        self.aborted = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)  # unblocks the thread's recv/send at once
