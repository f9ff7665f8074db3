"""Load and validate the whole configuration at once: every error, each at its line and column.

``load_config(path)`` returns an :class:`AgentConfig` or raises :class:`ConfigError` holding every
issue found. The schema is the pydantic models: the top level here, each check type's ``Config``
in ``checks/``, each sink type's ``Config`` in ``agent/delivery/sinks/``; the registries ``checks.CHECKS``
and ``agent.delivery.sinks.SINKS`` say which exist. What spans entries (``maintenance:`` windows,
``depends_on``, runbook links) is judged in ``agent.config.relations``. Error text is user
interface (see ``config_errors``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from agent.alerting.policy import AlertConfig, AlertPolicy
from agent.alerting.rules import Rule, compile_rule
from agent.alerting.slo_windows import burn_rules
from agent.alerting.windows import Window
from agent.config.messages import issues_from_validation, suggest
from agent.config.relations import Dependencies, dependency_issues, maintenance_windows, runbook_issues
from agent.config.settings import DEFAULT_LISTEN, parse_listen, state_dir_of
from agent.config.yaml_source import Path, Source, load_yaml, read_config
from agent.core.errors import ConfigError, Issue
from agent.core.units import Seconds
from agent.core.validators import LABEL_NAME, NAME
from agent.delivery.sinks import SINKS
from agent.delivery.sinks.base import Sink
from agent.telemetry.config import TelemetryConfig
from checks import CHECKS
from checks.base import Check, CheckConfig
from checks.browser_pool import BrowserSettings, find_executable, install_problems

DEFAULT_CONFIG = "/etc/firstwatch/config.yaml"
_DEFAULT_ALERTS: list[dict[str, Any]] = [{"when": "down", "severity": "critical"}]

# Contract keys whose features land in later releases: a clear message instead of "unknown option".
PLANNED: dict[str, str] = {}


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not LABEL_NAME.match(key):
            raise ValueError(f"invalid label name {key!r}: use letters, digits and underscores")
    return value


class HeartbeatConfig(BaseModel):
    """``heartbeat: {every: 5m, sinks: [deadman]}``: an ``agent`` event to those sinks while healthy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Seconds = Field(gt=0, description="how often, while healthy")
    sinks: list[str] = Field(min_length=1, description="the names of the sinks to tell")


class BrowserSection(BaseModel):
    """``agent.browser``: the Chromium the browser checks share (nothing is ever downloaded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executable: str | None = Field(
        default=None, description="default: the first of chromium, chromium-browser, google-chrome on PATH"
    )
    concurrency: int = Field(default=2, ge=1, le=32, description="pages at once")


class AgentSection(BaseModel):
    """``agent``: the agent itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", description="default: the host name")
    labels: dict[str, str] = Field(default={}, description="added to every event and metric")
    state_dir: str = Field(default="", description="SQLite state; default $STATE_DIRECTORY, else ./state")
    outage_tolerance: Seconds = Field(
        default=3600.0, description="pending `for:` timers survive a restart shorter than this"
    )
    heartbeat: HeartbeatConfig | None = Field(default=None, description="an agent event to those sinks while healthy")
    listen: str = Field(
        default=DEFAULT_LISTEN, description='/healthz, /status, /metrics and the status page; "" turns it off'
    )
    browser: BrowserSection = Field(default=BrowserSection(), description="the browser checks' Chromium")

    _labels = field_validator("labels")(_check_labels)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.strip():
            parse_listen(value)
        return value.strip()


class TopLevel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentSection = AgentSection()
    defaults: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    sinks: list[dict[str, Any]] | None = None
    telemetry: TelemetryConfig = TelemetryConfig()
    maintenance: list[dict[str, Any]] = []  # each entry validated on its own (relations.maintenance_windows)


@dataclass(frozen=True)
class CheckSpec:
    """A validated check: its class, its typed probe config, its alerting policy and compiled
    rules. The probe config is the check module's own model (``checks`` knows nothing of
    alerting); the policy is ``agent.alerting.policy.AlertPolicy``."""

    cls: type[Check]
    config: CheckConfig
    rules: tuple[Rule, ...]
    line: int
    policy: AlertPolicy = field(default_factory=AlertPolicy)

    def build(self) -> Check:
        return self.cls(self.config)


@dataclass(frozen=True)
class SinkSpec:
    cls: type[Sink]
    config: Any
    name: str

    def build(self) -> Sink:
        return self.cls(self.config, self.name)


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``run`` and ``check`` need, validated."""

    file: str
    agent_name: str
    labels: dict[str, str]
    state_dir: str
    outage_tolerance: float
    heartbeat: HeartbeatConfig | None
    listen: str
    telemetry: TelemetryConfig
    checks: tuple[CheckSpec, ...]
    sinks: tuple[SinkSpec, ...]
    maintenance: tuple[Window, ...] = ()
    browser: BrowserSettings = field(default_factory=BrowserSettings)  # agent.browser; executable found on PATH


def default_config_path() -> str:
    return os.environ.get("FIRSTWATCH_CONFIG") or DEFAULT_CONFIG


def load_config(path: str) -> AgentConfig:
    """Read, parse and validate ``path``; raise :class:`ConfigError` with every issue."""
    text = read_config(path)  # bounded: a config file past MAX_BYTES is an error, not read on
    return parse_config(text, path)


def _shown(issues: list[Issue], src: Source) -> list[Issue]:
    """In file order, each once (an issue in defaults is found once per check that inherits it),
    and at a value whose ``${VAR}`` is not set, only that: the empty string it stands in for is
    invalid in its own ways ("invalid URL ''"), which would only hide the cause."""
    unset = {(i.line, i.col) for i in src.issues if "environment variable" in i.message}
    kept = [i for i in issues if i in src.issues or (i.line, i.col) not in unset]
    return sorted(dict.fromkeys(kept), key=lambda i: (i.line, i.col))


def parse_config(text: str, file: str, env: dict[str, str] | None = None) -> AgentConfig:
    src = load_yaml(text, file, env)
    issues: list[Issue] = list(src.issues)
    if not isinstance(src.data, dict):
        raise ConfigError([src.issue((), "the config must be a mapping with agent, defaults, checks and sinks")])
    try:
        top = TopLevel.model_validate(src.data)
    except ValidationError as exc:
        issues.extend(issues_from_validation(exc, src, TopLevel, (), PLANNED))
        raise ConfigError(_shown(issues, src)) from None
    deps: list[Dependencies] = []
    checks = _validate_checks(top, src, issues, deps)
    browser = _first_browser(top)
    if browser is not None:  # what the machine lacks to run them, at the first browser check
        issues.extend(src.issue(("checks", browser), p) for p in install_problems(top.agent.browser.executable))
    sinks = _validate_sinks(top, src, issues, {c.config.name for c in checks})
    written = {name for raw in top.checks if isinstance(name := raw.get("name"), str)}  # a broken entry's too
    issues.extend(dependency_issues(deps, src, written))
    windows, window_issues = maintenance_windows(top.maintenance, src, written)
    issues.extend(window_issues)
    if top.agent.heartbeat is not None:
        names = {s.name for s in sinks}
        for j, name in enumerate(top.agent.heartbeat.sinks):
            if name not in names:
                issues.append(src.issue(("agent", "heartbeat", "sinks", j), suggest(name, names, {}, what="sink")))
    if issues:
        raise ConfigError(_shown(issues, src))
    return AgentConfig(
        file=file,
        agent_name=top.agent.name or socket.gethostname(),
        labels=dict(top.agent.labels),
        state_dir=state_dir_of(top.agent.state_dir),
        outage_tolerance=top.agent.outage_tolerance,
        heartbeat=top.agent.heartbeat,
        listen=top.agent.listen,
        telemetry=top.telemetry,
        checks=tuple(checks),
        sinks=tuple(sinks),
        maintenance=tuple(windows),
        browser=BrowserSettings(
            find_executable(top.agent.browser.executable) if browser is not None else top.agent.browser.executable,
            top.agent.browser.concurrency,
        ),
    )


def _first_browser(top: TopLevel) -> int | None:
    """The index of the first browser check (a config without one never looks for a browser)."""
    return next((i for i, raw in enumerate(top.checks) if raw.get("type") == "browser"), None)


_ENTRIES: dict[type[Check], type[BaseModel]] = {}


def entry_model(cls: type[Check]) -> type[BaseModel]:
    """The model of one ``checks:`` entry of type ``cls``: the check's own keys and the alerting
    keys, validated together (one mapping, one set of errors and "did you mean" hints)."""
    model = _ENTRIES.get(cls)
    if model is None:
        model = _ENTRIES[cls] = create_model(f"{cls.__name__}Entry", __base__=(cls.Config, AlertPolicy))
    return model


def _known_keys(cls: type[Check]) -> set[str]:
    fields = entry_model(cls).model_fields
    return {f.alias or name for name, f in fields.items()}


def _split(cls: type[Check], entry: BaseModel) -> tuple[CheckConfig, AlertPolicy]:
    """An entry as the check's config and the alerting policy (validated already: no copies
    are validated again)."""
    own = {name: getattr(entry, name) for name in cls.Config.model_fields}
    policy = {name: getattr(entry, name) for name in AlertPolicy.model_fields}
    return cls.Config.model_construct(**own), AlertPolicy.model_construct(**policy)


def _validate_checks(top: TopLevel, src: Source, issues: list[Issue], deps: list[Dependencies]) -> list[CheckSpec]:
    # every type's keys: only for `defaults:` (it imports every check type and builds its model)
    all_keys = set().union(*(_known_keys(c) for c in CHECKS.values())) - {"name", "type"} if top.defaults else set()
    for key in top.defaults:
        if key not in all_keys:
            issues.append(src.issue(("defaults", key), suggest(key, all_keys, PLANNED), key=True))
    out: list[CheckSpec] = []
    seen: dict[str, Path] = {}
    for i, raw in enumerate(top.checks):
        path: Path = ("checks", i)
        kind = raw.get("type")
        if kind is None:
            issues.append(src.issue(path, "missing required option 'type'"))
            continue
        cls = CHECKS.get(str(kind))
        if cls is None:
            msg = suggest(str(kind), set(CHECKS), {}, what="check type")
            issues.append(src.issue((*path, "type"), f"{msg} (known: {', '.join(sorted(CHECKS))})"))
            continue
        known = _known_keys(cls)
        merged = {k: v for k, v in top.defaults.items() if k in known}
        merged.update(raw)
        if "alerts" not in merged and "slo" not in merged:  # with an slo, its burn alerts page instead
            merged["alerts"] = _DEFAULT_ALERTS
        from_defaults = {k for k in merged if k not in raw and k in top.defaults}

        def where(loc: Path, path: Path = path, from_defaults: set[str] = from_defaults) -> Path:
            if loc and loc[0] in from_defaults:
                return ("defaults", *loc)
            return (*path, *loc)

        rules, rule_issues = _compile_rules(cls, merged.get("alerts"), src, where)
        issues.extend(rule_issues)
        name = raw.get("name")  # judged here, so a broken entry still shows a duplicate name
        if isinstance(name, str):
            if not NAME.match(name):
                msg = f"invalid name {name!r}: use letters, digits, '.', '_' and '-'"
                issues.append(src.issue((*path, "name"), msg))
            elif name in seen:
                first = src.position(seen[name])[0]
                msg = f"duplicate check name {name!r} (first used on line {first})"
                issues.append(src.issue((*path, "name"), msg))
            seen.setdefault(name, (*path, "name"))
        try:
            cfg, policy = _split(cls, entry_model(cls).model_validate(merged))
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc, src, entry_model(cls), path, PLANNED, relocate=where))
            continue
        issues.extend(_check_shape(cls, cfg, policy, src, path))
        issues.extend(runbook_issues(policy, src, where))
        deps.append(Dependencies(cfg.name, where(("depends_on",)), tuple(policy.depends_on)))
        if cfg.timeout > cfg.interval:
            if "timeout" in raw:
                msg = f"timeout ({cfg.timeout:g}s) must not exceed interval ({cfg.interval:g}s)"
                issues.append(src.issue((*path, "timeout"), msg))
            else:  # an inherited timeout shrinks to fit the check's own interval
                cfg = cfg.model_copy(update={"timeout": cfg.interval})
        if policy.slo is not None:
            rules.extend(burn_rules(policy.slo, len(rules)))
            if not policy.slo.alerts and "alerts" not in merged:
                msg = (
                    "no burn alerts and no alerts: nothing would ever page for this check; write burn alerts,"
                    " or `alerts: []` on the check to follow the SLO without paging"
                )
                issues.append(src.issue(where(("slo", "alerts")), msg))
        out.append(CheckSpec(cls, cfg, tuple(rules), src.position(path)[0], policy))
    return out


def _compile_rules(
    cls: type[Check], raw_alerts: Any, src: Source, where: Callable[[Path], Path]
) -> tuple[list[Rule], list[Issue]]:
    """Compile each well-formed alert. A malformed one is reported by the model validation, but
    its ``when:`` is still judged, so both of its errors show at once."""
    rules: list[Rule] = []
    issues: list[Issue] = []
    for j, raw in enumerate(raw_alerts if isinstance(raw_alerts, list) else []):
        well_formed = True
        try:
            alert = AlertConfig.model_validate(raw)
        except ValidationError:
            when = raw.get("when") if isinstance(raw, dict) else None
            if not isinstance(when, str):
                continue
            well_formed, alert = False, AlertConfig(when=when, severity="minor")
        try:
            rule = compile_rule(j, alert, cls.VALUES, cls.TYPE)
        except ValueError as exc:
            issues.append(src.issue(where(("alerts", j, "when")), str(exc)))
            continue
        if well_formed:
            rules.append(rule)
    return rules, issues


def _check_shape(cls: type[Check], cfg: CheckConfig, policy: AlertPolicy, src: Source, path: Path) -> list[Issue]:
    issues: list[Issue] = []
    key = cls.TARGET_KEY
    one = getattr(cfg, key, None) if key else None
    if key is None and cfg.targets is not None:
        issues.append(src.issue((*path, "targets"), f"{cls.TYPE} checks take no target", key=True))
    elif key is not None and one is None and not cfg.targets:
        issues.append(src.issue(path, f"missing required option {key!r} (or 'targets', a list)"))
    elif key is not None and one is not None and cfg.targets is not None:
        issues.append(src.issue((*path, "targets"), f"set either {key!r} or 'targets', not both", key=True))
    if policy.impact and not cfg.targets:
        issues.append(src.issue((*path, "impact"), "impact goes with 'targets' (a group of members)", key=True))
    if cfg.targets is not None and len(set(cfg.targets)) != len(cfg.targets):
        issues.append(src.issue((*path, "targets"), "targets must be unique"))
    return issues


def _validate_sinks(top: TopLevel, src: Source, issues: list[Issue], check_names: set[str]) -> list[SinkSpec]:
    raws = top.sinks if top.sinks is not None else [{"type": "stdout"}]
    out: list[SinkSpec] = []
    names: dict[str, int] = {}
    for i, raw in enumerate(raws):
        path: Path = ("sinks", i)
        kind = raw.get("type")
        cls = SINKS.get(str(kind)) if kind is not None else None
        if kind is None:
            issues.append(src.issue(path, "missing required option 'type'"))
            continue
        if cls is None:
            msg = suggest(str(kind), set(SINKS), {}, what="sink type")
            issues.append(src.issue((*path, "type"), f"{msg} (known: {', '.join(sorted(SINKS))})"))
            continue
        try:
            cfg = cls.Config.model_validate(raw)
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc, src, cls.Config, path, PLANNED))
            continue
        for j, name in enumerate(cfg.checks or []):
            if name not in check_names:
                issues.append(src.issue((*path, "checks", j), suggest(name, check_names, {}, what="check")))
        name = cfg.name or (str(kind) if str(kind) not in names else f"{kind}-{i}")
        if name in names:
            issues.append(src.issue((*path, "name"), f"duplicate sink name {name!r}"))
        names[name] = i
        out.append(SinkSpec(cls, cfg, name))
    return out
