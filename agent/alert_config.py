"""The ``alerts:`` entry of a check as written in the config (parsed into rules by ``agent.rules``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.severity import Severity
from agent.units import Seconds


class AlertConfig(BaseModel):
    """``{when: "duration > 2s", for: 5m, recover_for: 1m, severity: major}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: str
    for_: Seconds = Field(default=0.0, alias="for", ge=0)
    recover_for: Seconds = Field(default=0.0, ge=0)
    severity: Severity
