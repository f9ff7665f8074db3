"""Flap detection, the Nagios/Icinga way: percent state change over the last runs, weighted
toward the most recent, with a high threshold to start flapping and a low one to stop.

An alert whose condition flips on most runs is neither healthy nor reliably broken; paging on
every flip teaches people to ignore the pager. While an alert flaps, ``agent.alerting.book`` holds its
condition as true (one incident, one page, "flapping" in its summary and timeline) until the
state change rate falls below the low threshold. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FlappingConfig(BaseModel):
    """``flapping: {window: 21, high: 50, low: 25}`` (percent of weighted state changes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(default=21, ge=3, le=200)
    high: float = Field(default=50.0, gt=0, le=100)
    low: float = Field(default=25.0, ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> FlappingConfig:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


@dataclass
class FlapDetector:
    """Tracks one alert's recent condition values and whether it is flapping."""

    config: FlappingConfig
    history: list[bool] = field(default_factory=list)
    flapping: bool = False

    def change_percent(self) -> float:
        """Weighted percent of state changes in the window (recent changes weigh 1.25x the oldest)."""
        h = self.history
        if len(h) < 2:
            return 0.0
        changes = len(h) - 1
        total = weight_sum = 0.0
        for i in range(1, len(h)):
            weight = 0.8 + 0.4 * (i - 1) / max(changes - 1, 1)
            weight_sum += weight
            if h[i] != h[i - 1]:
                total += weight
        return 100.0 * total / weight_sum

    def observe(self, holds: bool) -> str | None:
        """Record one run; returns ``"start"`` or ``"stop"`` when the flapping state changes."""
        self.history.append(holds)
        if len(self.history) > self.config.window:
            del self.history[0]
        if len(self.history) < self.config.window // 2:
            return None
        pct = self.change_percent()
        if not self.flapping and pct >= self.config.high:
            self.flapping = True
            return "start"
        if self.flapping and pct < self.config.low:
            self.flapping = False
            return "stop"
        return None
