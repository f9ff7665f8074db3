"""The event loop firstwatch runs on, and the garbage collector around a long-lived config.

- :func:`run`: the standard asyncio loop, or uvloop with ``FIRSTWATCH_EVENT_LOOP=uvloop`` when
  it is installed (a warning and the standard loop when it is not). The standard loop is the
  default because it is cheaper for this workload: at 200 HTTP probes a second the whole daemon
  used 1.09x the CPU on uvloop 0.23, and a bare aiohttp loop 1.5x (``bench/cpu_per_probe.py``
  with ``firstwatch-uvloop`` and ``bare-uvloop``, bench/RESULTS.md section (12)); uvloop is not a
  dependency.
- :func:`settle`: once a runtime is built and scheduled, a full collection and ``gc.freeze()``,
  so the later full collections skip the tens of megabytes of config, compiled rules and
  runtime that live as long as the process (10,000 checks: the first round's collections
  stalled the loop for 150-210 ms each). :func:`thaw` before a reload drops the old runtime, so
  its cycles can be collected instead of staying frozen for good.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("firstwatch")

T = TypeVar("T")
ENV = "FIRSTWATCH_EVENT_LOOP"


def loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """The loop to run on: ("uvloop", its factory) or ("asyncio", None)."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", "uvloop", "asyncio"):
        log.warning("%s=%r: expected uvloop or asyncio; using the default", ENV, wanted)
        wanted = ""
    if wanted != "uvloop":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        log.warning("%s=uvloop, but uvloop is not installed: running on the standard asyncio loop", ENV)
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def running() -> str:
    """The name of the loop running now ("uvloop" or "asyncio"), for the start log line."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the chosen loop (see the module's docstring)."""
    _, factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def settle() -> None:
    """Collect once, then freeze what survives: it lives as long as the process."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """Unfreeze, so what a reload drops can be collected (call before dropping a runtime)."""
    gc.unfreeze()
