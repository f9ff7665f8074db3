"""The ``alerts:`` entry of a check as written in the config (parsed into rules by ``agent.rules``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent.core.severity import Severity
from agent.core.units import Seconds


class AlertConfig(BaseModel):
    """``{when: "duration > 2s", for: 5m, recover_for: 1m, severity: major}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: str
    for_: Seconds = Field(default=0.0, alias="for", ge=0)
    recover_for: Seconds = Field(default=0.0, ge=0)
    severity: Severity


def _share(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"invalid share {value!r}: write 0.5 or 50%") from None
    return value


class ImpactLevel(BaseModel):
    """``{share: 0.5, severity: major}``: at least half the members firing makes the group major."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: Annotated[float, BeforeValidator(_share), Field(gt=0, le=1)]
    severity: Severity
