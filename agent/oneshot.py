"""``firstwatch check``: run the selected checks once, concurrently, and judge them now.

Every rule is evaluated on the one result while ignoring ``for:`` (what is wrong right now). The
exit code follows the Nagios plugin convention: 0 all fine, 1 the worst failing rule is medium or
minor, 2 it is major or critical, 3 firstwatch could not decide (bad config, internal error).
``--until-green D`` re-runs the failing targets every few seconds until all pass or D runs out:
the "is the mitigation working?" command after a rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import CheckSpec
from agent.probe_runner import SharedResources, run_probe
from agent.rules import Rule, Verdict
from agent.severity import rank, worst
from checks.base import Check, Result

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3


@dataclass
class Finding:
    """One target's result, judged: the rules failing now and the worst severity among them."""

    spec: CheckSpec
    result: Result
    failing: list[tuple[Rule, Verdict]]

    @property
    def severity(self) -> str | None:
        return worst([rule.severity for rule, _ in self.failing])

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def internal_error(self) -> bool:
        return self.result.error_kind == "internal"


def judge(spec: CheckSpec, result: Result) -> Finding:
    failing = []
    for rule in spec.rules:
        verdict = rule.evaluate(result)
        if verdict.holds:
            failing.append((rule, verdict))
    return Finding(spec, result, failing)


def exit_code(findings: list[Finding]) -> int:
    sev = rank(worst([f.severity for f in findings]))
    if sev >= rank("major"):
        return CRITICAL
    if any(f.internal_error for f in findings):
        return UNKNOWN
    return WARNING if sev > 0 else OK


async def _probe_all(pairs: list[tuple[CheckSpec, Check, str]], ctx: SharedResources) -> list[Finding]:
    results = await asyncio.gather(*(run_probe(check, target, ctx) for _, check, target in pairs))
    return [judge(spec, r) for (spec, _, _), r in zip(pairs, results, strict=True)]


async def check_once(
    specs: list[CheckSpec],
    agent_name: str,
    until_green: float | None = None,
    every: float = 3.0,
    on_round: Callable[[list[Finding]], None] | None = None,
) -> list[Finding]:
    """Probe every target of ``specs``; with ``until_green``, retry the failing ones every
    ``every`` seconds (or their check's interval, if shorter) until all pass or time runs out."""
    ctx = SharedResources(agent_name)
    try:
        pairs = [(spec, check, t) for spec in specs for check in (spec.build(),) for t in check.targets()]
        findings = await _probe_all(pairs, ctx)
        if until_green is None:
            return findings
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
        return findings
    finally:
        await ctx.close()
