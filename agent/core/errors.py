"""The error root: every error firstwatch defines subclasses :class:`FirstwatchError`.

One place, so a caller can catch "anything firstwatch refused" in one clause and a reader can see
every error the product raises on one page. Each keeps its meaning and its message (the message
is shown to users); where it is raised stays with its room:

- :class:`ConfigError` (with the :class:`Issue` records it carries): the config loader;
- :class:`StoreError`: the state database (``agent.incidents.store``);
- :class:`DeliveryError` and :class:`PermanentDeliveryError`: a sink's ``send``;
- :class:`StatusUnavailable`: ``firstwatch status`` could not ask the agent.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.safe_text import printable

ConfigPath = tuple[str | int, ...]
"""Where a value is in a config: ``("checks", 7, "intervall")``."""


class FirstwatchError(Exception):
    """The root of every error firstwatch defines."""


def dotted(path: ConfigPath) -> str:
    """``("checks", 7, "intervall")`` -> ``checks[7].intervall``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass(frozen=True)
class Issue:
    """One problem in a config file, at a position, about a dotted path."""

    file: str
    line: int
    col: int
    path: ConfigPath
    message: str

    def __str__(self) -> str:
        where = dotted(self.path)
        place = f"{self.file}:{self.line}:{self.col}" if self.line else self.file  # 0: the file as a whole
        text = f"{place}: {where + ': ' if where else ''}{self.message}"
        return printable(text)  # keys and values come from the file: never raw escapes on a terminal


class ConfigError(FirstwatchError):
    """Raised with every issue found, never just the first."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


class StoreError(FirstwatchError):
    """A problem with the state database, with a message fit for users. ``corrupt``: the file is
    damaged (not a lock, a permission or a full disk)."""

    def __init__(self, message: str, *, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class DeliveryError(FirstwatchError):
    """Delivery failed; worth retrying with backoff (the target is down, slow or overloaded)."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed in a way retrying cannot fix (the target rejected the event itself)."""


class StatusUnavailable(FirstwatchError):
    """The running agent could not be asked (not running, endpoint off, or it answered an error)."""
