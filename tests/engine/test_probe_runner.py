"""The runner owns the deadline and crash capture: a hung or broken probe is data, not a stall."""

from __future__ import annotations

import asyncio
import time

from agent.engine.probe_runner import SharedResources, run_probe
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext


class Hangs(BaseCheck):
    TYPE = "hangs"

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        await asyncio.sleep(3600)
        return Observation(ok=True)


class Crashes(BaseCheck):
    TYPE = "crashes"

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        raise KeyError("oops")


class Fine(BaseCheck):
    TYPE = "fine"

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        return Observation(ok=True, values={"answers": 3.0})


def make(cls: type[BaseCheck], timeout: float = 0.3) -> BaseCheck:
    return cls(CheckConfig(name=cls.TYPE, type=cls.TYPE, timeout=f"{timeout}s", interval="1s", targets=["t"]))  # type: ignore[arg-type]


async def test_hung_probe_is_cut_at_its_total_deadline() -> None:
    t0 = time.perf_counter()
    r = await run_probe(make(Hangs), "t", SharedResources("a"))
    assert (r.ok, r.error_kind, r.error) == (False, "timeout", "no answer within 0.3s")
    assert 0.3 <= time.perf_counter() - t0 < 1.5


async def test_a_crashing_probe_is_an_internal_error_and_the_others_carry_on() -> None:
    ctx = SharedResources("a")
    crashed, fine = await asyncio.gather(run_probe(make(Crashes), "t", ctx), run_probe(make(Fine), "t", ctx))
    assert (crashed.ok, crashed.error_kind) == (False, "internal")
    assert crashed.error == "internal error: KeyError: 'oops'"
    assert fine.ok and fine.values["answers"] == 3.0 and fine.values["duration"] >= 0
