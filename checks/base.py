"""The one interface every probe type implements, and the facts a probe returns.

A check type is a class with:

- ``TYPE``: its name in the config (``type: http``),
- ``TARGET_KEY``: the config key naming one target (``url`` for http, ``target`` for tcp,
  ``None`` for types without a target such as ``host``); ``targets:`` is the list form,
- ``Config``: a pydantic model (a subclass of :class:`CheckConfig`) holding every option,
- ``VALUES``: the values it measures (:class:`ValueSpec`), which ``when:`` rules may name,
- ``async probe(target, ctx) -> Observation``: measure once. A target that fails is data
  (``Observation(ok=False, error_kind=..., error=...)``), never an exception.

The runner (``agent.engine.probe_runner``) owns the total deadline, timing and crash capture, so a
probe only measures. Error kinds are stable strings that rules, events and users can rely on:

    timeout      the total deadline passed
    refused      the port answered with a reset to our SYN (nothing listens)
    dns          the name did not resolve
    tls          the TLS handshake or certificate verification failed
    reset        the peer closed or reset the connection mid-exchange
    connection   any other network error (unreachable host, ...)
    http_status  the HTTP status was not one of the expected ones
    body         the body broke an expectation (too large, pattern missing, undecodable)
    expect       a protocol expectation failed (tcp ``expect``, header mismatch)
    command      a command check's plugin said CRITICAL (exit 2), or its program could not start
    warning      a command check's plugin said WARNING (exit 1)
    unknown      a command check's plugin said UNKNOWN (exit 3, any other code, or killed by a signal)
    internal     a bug in firstwatch itself: reported, never hidden
    agent        firstwatch could not probe: its own tool failed (the browser crashed, was killed
                 or could not start). No verdict on the target: ``down`` keeps its state, and
                 the agent raises a ``probe_unavailable`` problem instead of paging the site

A result's :attr:`Result.status` is the Nagios state it stands for: ``ok`` when it passed,
``warning`` and ``unknown`` for those error kinds (``internal`` and ``agent`` are ``unknown``
too: firstwatch could not decide), ``critical`` for every other failure. ``ok`` stays "the probe passed".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agent.core.units import Seconds, format_value

ERROR_KINDS = (
    "timeout",
    "refused",
    "dns",
    "tls",
    "reset",
    "connection",
    "http_status",
    "body",
    "expect",
    "command",
    "warning",
    "unknown",
    "internal",
    "agent",
)
STATUSES = ("ok", "warning", "critical", "unknown")


@dataclass(frozen=True)
class ValueSpec:
    """One value a check type measures: ``name`` (may be a template such as
    ``disk[MOUNT]``), its ``unit`` (``s``, ``%``, ``bytes``, ``days``, ``1``), and what it means."""

    name: str
    unit: str
    meaning: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """A regex matching concrete value names: ``disk[MOUNT]`` matches ``disk[/var]``."""
        out = ""
        for part in re.split(r"([A-Z][A-Z_]+)", self.name):
            if part and part.isupper():
                out += r"(.+)"
            else:
                out += re.escape(part)
        return re.compile(out + r"\Z")


class Values(dict[str, float]):
    """A result's values; ``units`` holds the unit of those whose declared unit is ``any`` (a
    plugin's perfdata: ``s``, ``%``, ``bytes`` or ``1``), so output and metrics can tell seconds
    from bytes. A plain dict works everywhere a ``Values`` does (no units known)."""

    __slots__ = ("units",)

    def __init__(self, *args: object, **kwargs: float) -> None:
        super().__init__(*args, **kwargs)
        self.units: dict[str, str] = {}


@dataclass
class Observation:
    """What one probe of one target found. ``values`` maps value names to numbers in the
    unit their :class:`ValueSpec` declares."""

    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    error_kind: str | None = None
    error: str | None = None
    artifact: str | None = None  # a file the probe saved under ctx.artifacts_dir (a screenshot)


@dataclass
class Result:
    """An observation with its context: which check and target, when, and how long it took."""

    check: str
    type: str
    target: str
    ok: bool
    values: dict[str, float]
    error_kind: str | None
    error: str | None
    started_at: float  # wall clock, seconds since the epoch
    duration_s: float
    artifact: str | None = None  # the observation's artifact: a file name under the artifacts dir

    @property
    def status(self) -> str:
        """The Nagios state of this result: ``ok``, ``warning``, ``critical`` or ``unknown``."""
        return status_of(self.ok, self.error_kind)


def status_of(ok: bool, error_kind: str | None) -> str:
    """The Nagios state of a probe that passed (``ok``) or failed with ``error_kind``."""
    if ok:
        return "ok"
    if error_kind == "warning":
        return "warning"
    if error_kind in ("unknown", "internal", "agent"):
        return "unknown"
    return "critical"


class CheckConfig(BaseModel):
    """Keys every check has. Each type's ``Config`` subclasses this and adds its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique among the checks: letters, digits, '.', '_' and '-'")
    type: str = Field(description="the check type")
    interval: Seconds = Field(default=30.0, gt=0, description="how often the check runs")
    timeout: Seconds = Field(default=10.0, gt=0, description="the total deadline of one run, never more than interval")
    labels: dict[str, str] = Field(default={}, description="added to the check's events and metrics")
    targets: list[str] | None = Field(
        default=None, description="several targets instead of one target key: one member each (not both)"
    )


class ProbeContext(Protocol):
    """Shared resources a probe may use; owned by the runtime and closed by it."""

    agent_name: str
    artifacts_dir: str | None  # where a probe may save files (screenshots); None: nowhere

    def http_session(self) -> Any:
        """The shared ``aiohttp.ClientSession`` (created on first use)."""

    def browser(self) -> Any:
        """The shared ``checks.browser_pool.BrowserPool``: one Chromium, a context per run (created on first use)."""


class Check(Protocol):
    """The interface the runtime sees (see the module docstring)."""

    TYPE: ClassVar[str]
    TARGET_KEY: ClassVar[str | None]
    Config: ClassVar[type[CheckConfig]]
    VALUES: ClassVar[tuple[ValueSpec, ...]]

    config: CheckConfig

    def __init__(self, config: CheckConfig) -> None:
        """A check is built from its validated config (``CHECKS[type](config)``)."""

    def targets(self) -> list[str]:
        """The targets this check probes, one member each."""

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        """Measure ``target`` once; the caller enforces the deadline."""


class BaseCheck:
    """Shared plumbing for check classes: holds the config and lists the targets."""

    TYPE: ClassVar[str] = ""
    TARGET_KEY: ClassVar[str | None] = "target"
    Config: ClassVar[type[CheckConfig]] = CheckConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = ()

    def __init__(self, config: CheckConfig) -> None:
        self.config = config

    def targets(self) -> list[str]:
        if self.config.targets:
            return list(self.config.targets)
        if self.TARGET_KEY is None:
            return ["localhost"]
        one = getattr(self.config, self.TARGET_KEY, None)
        return [str(one)] if one is not None else []

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        raise NotImplementedError


def unit_of(specs: tuple[ValueSpec, ...], values: dict[str, float], name: str) -> str | None:
    """The unit of the concrete value ``name``: the one its source reported for an ``any`` value
    (when ``values`` is a :class:`Values` that knows it), else the declared one; None if unknown."""
    spec = find_value(specs, name)
    if isinstance(values, Values) and name in values.units and (spec is None or spec.unit == "any"):
        return values.units[name]
    return spec.unit if spec is not None else None


def find_value(specs: tuple[ValueSpec, ...], name: str) -> ValueSpec | None:
    """The spec declaring the concrete value ``name``, or None."""
    for spec in specs:
        if spec.name == name or spec.pattern.match(name):
            return spec
    return None


def describe_values(specs: tuple[ValueSpec, ...], values: dict[str, float], limit: int = 8) -> str:
    """``cpu 12%, memory 41%, disk[/] 55%``: the measured values in their units."""
    return ", ".join(
        f"{name} {format_value(value, unit_of(specs, values, name))}" for name, value in list(values.items())[:limit]
    )
