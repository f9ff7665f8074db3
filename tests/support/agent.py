"""The shipped agent as a user runs it: the CLI (``firstwatch``) and the daemon (``start_agent``,
``start_daemon`` with its log collected) as real subprocesses, and the events of a file sink."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = tuple[int, str, str]


async def firstwatch(*args: str, timeout: float = 30, env: dict[str, str] | None = None) -> Run:
    """Run the CLI (``env`` is added to this process's environment); its exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def wait_for_events(
    path: Path, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        evs = read_events(path)
        if pred(evs):
            return evs
        await asyncio.sleep(0.05)
    evs = read_events(path)
    raise AssertionError(f"timed out; {len(evs)} events so far, the last: {[e['summary'] for e in evs[-3:]]}")


async def start_agent(config: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", config,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


class Daemon:
    """A daemon subprocess whose log is collected as it runs."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.log += line.decode(errors="replace")

    async def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.log):
                return m
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log:\n{self.log[-3000:]}")

    async def port(self) -> int:
        return int((await self.wait_log(r"status endpoint on 127\.0\.0\.1:(\d+)")).group(1))

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 20)
        await self._reader
        return self.log


async def start_daemon(config: Path, *args: str, env: dict[str, str] | None = None) -> Daemon:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "-c", str(config), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return Daemon(proc)
