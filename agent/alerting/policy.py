"""A check's alerting keys as written in the config: ``alerts`` (parsed into rules by
``agent.alerting.rules``), ``impact`` (blast radius), ``flapping``, ``depends_on``, ``runbook``
and ``slo`` (an objective and its burn alerts, :class:`agent.alerting.slo.SloConfig`). They live here, not in
``checks``: a probe measures, the alerting room judges; the config loader joins the two."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from agent.alerting.flapping import FlappingConfig
from agent.alerting.slo import SloConfig
from agent.core.severity import Severity
from agent.core.units import Seconds, quantity_pattern


def _count(value: object) -> object:
    if isinstance(value, bool):  # pydantic would take true for 1
        raise ValueError("quorum is a number of agents (an integer >= 1), not true or false")
    return value


class AlertConfig(BaseModel):
    """``{when: "duration > 2s", for: 5m, recover_for: 1m, severity: major}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: str = Field(description="`down` (the probe failed), or `VALUE OP QUANTITY` such as `duration > 2s`")
    for_: Seconds = Field(
        default=0.0, alias="for", ge=0, description="true at every run for this long before it fires (0: at once)"
    )
    recover_for: Seconds = Field(default=0.0, ge=0, description="firing until false this long (0: at once)")
    severity: Severity = Field(description="critical, major, medium or minor")
    runbook: str | None = Field(default=None, description="an http(s) URL; wins over the check's runbook")
    quorum: Annotated[int | None, BeforeValidator(_count)] = Field(
        default=None, ge=1, description="judged across agents (firstwatch rules): at least N agents must see it"
    )


def _share(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"invalid share {value!r}: write 0.5 or 50%") from None
    return value


_SHARE_INPUT = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        {"type": "string", "pattern": quantity_pattern(["%"], bare=False)},
    ]
}


class ImpactLevel(BaseModel):
    """``{share: 0.5, severity: major}``: at least half the members firing makes the group major."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: Annotated[float, BeforeValidator(_share), Field(gt=0, le=1), WithJsonSchema(_SHARE_INPUT)]
    severity: Severity


_DEFAULT_FLAPPING = FlappingConfig()


class AlertPolicy(BaseModel):
    """The alerting keys every check has (validated with the check's own keys, in one mapping)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alerts: list[AlertConfig] | None = Field(
        default=None, description="the alert rules (default: `{when: down, severity: critical}`, none with an slo)"
    )
    impact: list[ImpactLevel] | None = Field(
        default=None, description="with targets: the group's severity by the share of members firing"
    )
    flapping: FlappingConfig | bool = Field(default=True, description="flap detection settings; false turns it off")
    depends_on: list[str] = Field(
        default=[], description="checks whose failure explains this one's (no page of its own then)"
    )
    runbook: str | None = Field(default=None, description="an http(s) URL for every rule of the check that names none")
    slo: SloConfig | None = Field(default=None, description="a service level objective and its burn-rate alerts")

    def flap_config(self) -> FlappingConfig | None:
        """The flap detector's settings, or None when ``flapping: false``."""
        if self.flapping is False:
            return None
        return self.flapping if isinstance(self.flapping, FlappingConfig) else _DEFAULT_FLAPPING


POLICY_KEYS = frozenset(AlertPolicy.model_fields)
