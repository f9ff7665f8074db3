"""The runtime's SLOs: a :class:`agent.alerting.slo_windows.SloTracker` per (check, target) of
every check with an ``slo``, fed by each run, seeded from the run history at start.

:meth:`SloWatch.judge` adds a run and returns the burn alerts' verdicts, which the alert book
takes in place of the burn rules' own (``AlertBook.observe(..., judged=...)``): a burn alert then
opens, holds, pages and resolves like any other rule. Whether an alert fires *now* is read from
the book, so a restart or a reload keeps an incident open until its short window calms down.

At start (:meth:`SloWatch.seed`) the windows are filled from the state database's history plus
the runs a previous runtime has not flushed yet (a reload), on the database thread. Seeded
buckets are 1 minute wide at best (coarser for older runs); with ``latency`` a seeded run counts
as good only if its histogram bin lies wholly under the latency (a conservative estimate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from agent.alerting.book import AlertBook
from agent.alerting.records import name_of
from agent.alerting.rules import Verdict
from agent.alerting.slo import SloConfig, above, span
from agent.alerting.slo_windows import BurnRule, SloReading, SloTracker
from agent.config.load import CheckSpec
from agent.core.units import format_duration
from agent.incidents import history_store as hs
from agent.incidents.history import EDGES, Bucket
from agent.incidents.store import Store
from agent.incidents.writer import StoreWriter
from agent.telemetry.slos import SloReading as MetricReading
from agent.web.snapshot import FiringRule, SloView
from checks.base import Check, Result

log = logging.getLogger("firstwatch")


def one_run_pages(check: str, slo: SloConfig, rule: BurnRule, interval: float) -> str | None:
    """A warning when one failed run in a burn alert's long window is enough to fire it (few
    runs per window: each is a big share of the budget), with what would change that."""
    assert rule.burn is not None
    runs = int(rule.burn.long / interval)
    if runs < 1:
        return None
    rate = (1 / runs) / (1 - slo.objective)
    if not above(rate, rule.burn.burn):
        return None
    most = rule.burn.burn * (1 - slo.objective) * rule.burn.long  # one failed run then burns at exactly `burn`
    return (
        f"{check}: at one run every {format_duration(interval)}, one failed run in {span(rule.burn.long)} burns the"
        f" error budget at {rate:.1f}x, so a single failed run pages {rule.severity} ({rule.text}); probe every"
        f" {format_duration(most)} or less, or lower the objective"
    )


def good_of(bucket: Bucket, latency: float | None) -> int:
    """A stored bucket's good runs for an SLO: ok runs, and with ``latency`` no more than the
    runs whose histogram bin ends at or under it."""
    if latency is None:
        return bucket.good
    fast = sum(c for edge, c in zip(EDGES, bucket.hist, strict=False) if edge <= latency)
    return min(bucket.good, fast)


class SloWatch:
    def __init__(self, checks: Iterable[tuple[CheckSpec, Check]], book: AlertBook) -> None:
        self.book = book
        self.trackers: dict[tuple[str, str], SloTracker] = {}
        self.specs: dict[str, CheckSpec] = {}
        for spec, check in checks:
            slo = spec.policy.slo
            if slo is None:
                continue
            self.specs[spec.config.name] = spec
            rules = [r for r in spec.rules if isinstance(r, BurnRule)]
            for target in check.targets():
                tracker = SloTracker(spec.config.name, target, slo, rules, spec.config.interval)
                self.trackers[(spec.config.name, target)] = tracker
            for rule in rules:
                warning = one_run_pages(spec.config.name, slo, rule, spec.config.interval)
                if warning:
                    log.warning("%s", warning)
        self.latest: dict[tuple[str, str], MetricReading] = {}

    @property
    def longest(self) -> float:
        """The longest SLO window (0 without SLOs): how long history must be kept."""
        return max((t.slo.window for t in self.trackers.values()), default=0.0)

    def judge(self, spec: CheckSpec, result: Result, mono: float) -> dict[str, Verdict] | None:
        """Add ``result`` (run at monotonic ``mono``) to its windows; the burn verdicts, or None
        when its check has no SLO."""
        tracker = self.trackers.get((result.check, result.target))
        if tracker is None:
            return None
        firing = {r.text: self._firing(result.check, result.target, r.text) for r in tracker.rules}
        verdicts = tracker.observe(name_of(spec, result.target), result, mono, firing)
        self.latest[(result.check, result.target)] = _metric(tracker.reading(mono))
        return verdicts

    def metric_readings(self) -> list[MetricReading]:
        """The readings as of each (check, target)'s last run, for the metrics exporter (which
        may call from its own thread: this only reads what the loop last wrote)."""
        return list(self.latest.values())

    def _firing(self, check: str, target: str, rule: str) -> bool:
        alert = self.book.alerts.get((check, target, rule))
        return alert is not None and alert.state.phase == "firing"

    def seed(self, store: Store, pending: list[Bucket], offset: float, now: float) -> int:
        """Fill the windows from history (on the database thread): what the store holds over
        each window back from wall time ``now``, plus ``pending`` (runs not flushed yet);
        ``offset`` is wall time minus monotonic time. Returns how many runs were seeded."""
        if not self.trackers:
            return 0
        since = now - self.longest
        found = hs.load_many(store, list(self.trackers), since, now)
        for b in pending:
            if (b.check, b.target) in self.trackers:
                found.setdefault((b.check, b.target), []).append(b)
        seeded = 0
        for key, buckets in found.items():
            tracker = self.trackers[key]
            for b in sorted(buckets, key=lambda b: b.start):
                tracker.add(b.start - offset, good_of(b, tracker.slo.latency), b.runs)
                seeded += b.runs
        return seeded

    def readings(self, mono: float | None = None) -> list[SloReading]:
        now = time.monotonic() if mono is None else mono
        return [t.reading(now) for t in self.trackers.values()]

    def views(self, mono: float | None = None) -> dict[str, list[SloView]]:
        """Per check, one record per target (``Snapshot.slos``, ``firstwatch slo``)."""
        out: dict[str, list[SloView]] = {}
        for r in self.readings(mono):
            firing: list[FiringRule] = []
            for rule in self.trackers[(r.check, r.target)].rules:
                alert = self.book.alerts.get((r.check, r.target, rule.text))
                if alert is not None and alert.state.phase == "firing":
                    firing.append({"rule": rule.text, "severity": alert.severity or rule.severity})
            out.setdefault(r.check, []).append(_view(r, r.slo, firing))
        return out


def _metric(r: SloReading) -> MetricReading:
    return MetricReading(r.check, r.target, r.sli, r.budget_remaining, dict(r.burn_rates))


def _view(r: SloReading, slo: SloConfig, firing: list[FiringRule]) -> SloView:
    return {
        "check": r.check,
        "target": r.target,
        "objective": slo.objective,
        "window_s": slo.window,
        "latency_s": slo.latency,
        "runs": r.runs,
        "good": r.good,
        "sli": r.sli,
        "budget_remaining": r.budget_remaining,
        "burn_rates": dict(r.burn_rates),
        "firing": firing,
    }


async def seed_from_history(watch: SloWatch, writer: StoreWriter, pending: list[Bucket]) -> None:
    """:meth:`SloWatch.seed` on the database thread, once what waits in the journal is written.
    A database that cannot be read leaves the windows empty (said in the log), not the agent down."""
    if not watch.trackers:
        return
    await writer.drain(2.0)
    offset = time.time() - time.monotonic()
    try:
        runs = await writer.call(watch.seed, writer.store, pending, offset, time.time())
    except Exception as exc:
        log.error("SLOs: cannot read the run history (%s); their windows start empty", exc)
        return
    log.info("SLOs: %d run(s) of history counted in %d window(s)", runs, len(watch.trackers))
