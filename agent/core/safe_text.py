"""Text from the outside world (plugin output, HTTP bodies, human notes) made safe to print.

A terminal or a log line must show what was said, never obey it: raw escape sequences can
repaint a terminal, and a newline inside a note could forge a line of the timeline. Every
terminal and log output passes untrusted text through :func:`printable` (one copy, used by the
CLI, the report, the timeline and the logging formatter). :func:`web_url` says which addresses
from the config may become links (runbooks: http and https only).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# C0 controls but tab, DEL, C1 controls, and the Unicode line/paragraph separators and bidi
# overrides that can reorder or break what a reader sees
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def web_url(text: str) -> bool:
    """Whether ``text`` is an ``http://`` or ``https://`` URL with a host: the only addresses
    that may become links (a runbook never links ``javascript:`` or ``data:``). Each output
    format still escapes or refuses what it cannot carry (spaces in Slack, quotes in HTML)."""
    try:
        parts = urlsplit(text.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed port or IPv6 address
        return False


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\n``, ``\\x1b``); tabs kept."""
    return _UNSAFE.sub(_escape, text)
