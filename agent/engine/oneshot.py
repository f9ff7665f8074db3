"""``firstwatch check``: run the selected checks once, concurrently, and judge them now.

Every rule is evaluated on the one result while ignoring ``for:`` (what is wrong right now). The
exit code follows the Nagios plugin convention: 0 all fine, 1 the worst failing rule is medium or
minor, 2 it is major or critical, 3 firstwatch could not decide (bad config, internal error).
Worst first: 2, then 3, then 1.

- A check with ``targets:`` and ``impact:`` is also judged as a group, as the daemon does
  (:mod:`agent.alerting.impact`): per rule, the highest of the rule's severity and every impact level the
  share of members failing reaches. "3 of 3 down" is critical (exit 2) when ``impact`` says so,
  even though each member's rule is minor.
- A Nagios plugin's own state counts for ``when: down`` (see :mod:`checks.command`): a WARNING
  exits 1 and an UNKNOWN 3 whatever the ``down`` rule's severity, unless another failing rule is
  major or critical; an internal error is UNKNOWN too.
- A rule with ``quorum: N`` pages only from a central Prometheus (``firstwatch rules``), but
  ``check`` answers "what does this place see now": it fails here like any other rule, with
  "here; quorum of 2 judged centrally" in its detail, so ``--until-green`` never reports a dead
  target green.
``--until-green D`` re-runs the failing targets every few seconds until all pass or D runs out:
the "is the mitigation working?" command after a rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.alerting.impact import group_severity
from agent.alerting.policy import ImpactLevel
from agent.alerting.rules import Rule, Verdict
from agent.config.load import CheckSpec
from agent.core.severity import rank, worst
from agent.engine.probe_runner import SharedResources, run_probe
from checks.base import Check, Result
from checks.browser_pool import BrowserSettings

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_PRECEDENCE = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}  # which exit code wins


def worst_state(states: list[int]) -> int:
    """The state that wins among Nagios ``states``: CRITICAL, then UNKNOWN, then WARNING."""
    return max(states, key=_PRECEDENCE.__getitem__, default=OK)


def severity_state(severity: str | None) -> int:
    """The exit code of a failing rule of ``severity``: 2 for major or critical, 1 below, 0 none."""
    if rank(severity) >= rank("major"):
        return CRITICAL
    return WARNING if severity else OK


@dataclass
class Finding:
    """One target's result, judged: the rules failing now and the worst severity among them."""

    spec: CheckSpec
    result: Result
    failing: list[tuple[Rule, Verdict]]
    parents_failing: tuple[str, ...] = ()  # checks it depends_on that fail in the same run

    @property
    def severity(self) -> str | None:
        return worst([rule.severity for rule, _ in self.failing])

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def internal_error(self) -> bool:
        return self.result.error_kind == "internal"

    @property
    def plugin_state(self) -> int | None:
        """WARNING or UNKNOWN when the result itself says so (a plugin's state, an internal error)."""
        return {"warning": WARNING, "unknown": UNKNOWN}.get(self.result.status)

    def rule_state(self, rule: Rule) -> int:
        """The exit code one failing rule stands for: ``down`` on a WARNING or UNKNOWN result is
        that state; any other rule its severity's."""
        if rule.value_name is None and self.plugin_state is not None:
            return self.plugin_state
        return severity_state(rule.severity)

    @property
    def state(self) -> int:
        """This target's exit code: its failing rules, and UNKNOWN when the result is UNKNOWN."""
        states = [self.rule_state(rule) for rule, _ in self.failing]
        if self.result.status == "unknown":
            states.append(UNKNOWN)
        return worst_state(states)

    @property
    def judged_severity(self) -> str | None:
        """The worst severity among failing rules that count by severity (not a ``down`` rule on
        a plugin's WARNING or UNKNOWN, which counts as that state)."""
        return worst([rule.severity for rule, _ in self.failing if not (rule.value_name is None and self.plugin_state)])

    @property
    def label(self) -> str:
        """The STATUS column: ``OK``, the plugin's ``WARNING``/``UNKNOWN``, else the worst severity."""
        state = self.state
        if state == OK:
            return "OK"
        if self.plugin_state == state:
            return "WARNING" if state == WARNING else "UNKNOWN"
        return (self.severity or "unknown").upper()


@dataclass
class GroupFinding:
    """A check with ``targets:`` and ``impact:``, judged as a group for one rule."""

    check: str
    rule: Rule
    members: int
    failing: int
    impact: tuple[ImpactLevel, ...]

    @property
    def severity(self) -> str | None:
        return group_severity(self.rule.severity, self.impact, self.failing, self.members)

    @property
    def state(self) -> int:
        return severity_state(self.severity)

    @property
    def text(self) -> str:
        """``shop-web: 3 of 3 targets failing -> critical [down for 1m]``."""
        return (
            f"{self.check}: {self.failing} of {self.members} targets failing -> {self.severity or 'ok'}"
            f" [{self.rule.text}]"
        )


def judge(spec: CheckSpec, result: Result) -> Finding:
    failing = []
    for rule in spec.rules:
        verdict = rule.evaluate(result)
        if verdict.holds:
            failing.append((rule, verdict))
    return Finding(spec, result, failing)


def groups(findings: list[Finding]) -> list[GroupFinding]:
    """Every (check with ``targets:`` and ``impact:``, rule) among ``findings``, in their order."""
    members: dict[str, list[Finding]] = {}
    for f in findings:
        cfg = f.spec.config
        if f.spec.policy.impact and cfg.targets:
            members.setdefault(cfg.name, []).append(f)
    out = []
    for name, group in members.items():
        spec = group[0].spec
        for rule in spec.rules:
            failing = sum(any(r is rule for r, _ in f.failing) for f in group)
            out.append(GroupFinding(name, rule, len(group), failing, tuple(spec.policy.impact or ())))
    return out


def worst_severity(findings: list[Finding]) -> str | None:
    """The worst severity failing now, members and groups alike (a plugin's WARNING or UNKNOWN
    counts as that state, not as the severity of ``when: down``)."""
    return worst([f.judged_severity for f in findings] + [g.severity for g in groups(findings)])


def exit_code(findings: list[Finding]) -> int:
    """The Nagios exit code of ``findings``: every target's state and every group's."""
    return worst_state([f.state for f in findings] + [g.state for g in groups(findings)])


def mark_dependencies(findings: list[Finding]) -> list[Finding]:
    """Note on each failing finding which of the checks it ``depends_on`` fail too: the daemon
    would page for those, not for it (``shop-web ... (depends on db)``)."""
    failing = {f.result.check for f in findings if f.state != OK}
    for f in findings:
        f.parents_failing = tuple(p for p in f.spec.policy.depends_on if p in failing) if f.state != OK else ()
    return findings


async def _probe_all(pairs: list[tuple[CheckSpec, Check, str]], ctx: SharedResources) -> list[Finding]:
    results = await asyncio.gather(*(run_probe(check, target, ctx) for _, check, target in pairs))
    return [judge(spec, r) for (spec, _, _), r in zip(pairs, results, strict=True)]


async def check_once(
    specs: list[CheckSpec],
    agent_name: str,
    until_green: float | None = None,
    every: float = 3.0,
    on_round: Callable[[list[Finding]], None] | None = None,
    browser: BrowserSettings | None = None,
) -> list[Finding]:
    """Probe every target of ``specs``; with ``until_green``, retry the failing ones every
    ``every`` seconds (or their check's interval, if shorter) until all pass or time runs out.
    ``browser`` is ``agent.browser`` (which Chromium, how many pages at once)."""
    ctx = SharedResources(agent_name, browser_settings=browser)
    try:
        pairs = [(spec, check, t) for spec in specs for check in (spec.build(),) for t in check.targets()]
        findings = await _probe_all(pairs, ctx)
        if until_green is None:
            return mark_dependencies(findings)
        deadline = time.monotonic() + until_green
        while any(not f.ok for f in findings):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if on_round is not None:
                on_round(findings)
            redo = [i for i, f in enumerate(findings) if not f.ok]
            pause = min([every] + [findings[i].spec.config.interval for i in redo])
            await asyncio.sleep(min(pause, left))
            again = await _probe_all([pairs[i] for i in redo], ctx)
            for i, f in zip(redo, again, strict=True):
                findings[i] = f
        return mark_dependencies(findings)
    finally:
        await ctx.close()
