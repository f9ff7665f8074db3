"""``firstwatch.alert.active``: 1 per (check, target, severity) while any rule fires there.

The runtime feeds it every firing, changed and resolved change, and the alerts still firing
after a restart or a reload; it counts rules per severity so one rule resolving does not clear a
severity another rule of the same target still holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from agent.alerting.book import Alert, Change, Key
from agent.telemetry.metrics import Telemetry


class ActiveAlerts:
    def __init__(self, telemetry: Telemetry | None) -> None:
        self.telemetry = telemetry
        self._active: Counter[tuple[str, str, str]] = Counter()  # firing alerts per (check, target, severity)
        self._severity_of: dict[tuple[str, str, str], str] = {}  # (check, target, rule) -> severity firing

    def restore(self, firing: Iterable[tuple[Key, Alert]], sizes: Mapping[str, int]) -> None:
        """Alerts still firing after a restart or reload show as active right away (``sizes``:
        each check's number of targets, for its group's name)."""
        if self.telemetry is None:
            return
        for (check, target, rule), alert in firing:
            shown = f"{sizes.get(check, 0)} targets" if target == "*" else target
            severity = alert.severity or "minor"
            self._severity_of[(check, shown, rule)] = severity
            self._active[(check, shown, severity)] += 1
            self.telemetry.set_alert_active(check, shown, severity, True)

    def track(self, change: Change) -> None:
        if self.telemetry is None or change.kind not in ("firing", "changed", "resolved"):
            return
        key = (change.check, change.target, change.rule)
        old = self._severity_of.pop(key, None)
        touched = set()
        if old is not None:
            self._active[(change.check, change.target, old)] -= 1
            touched.add(old)
        if change.kind != "resolved" and change.severity:
            self._severity_of[key] = change.severity
            self._active[(change.check, change.target, change.severity)] += 1
            touched.add(change.severity)
        for severity in touched:
            count = self._active[(change.check, change.target, severity)]
            self.telemetry.set_alert_active(change.check, change.target, severity, count > 0)
