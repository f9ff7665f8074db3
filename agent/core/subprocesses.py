"""Run an argv (never through a shell) in its own session, keep a capped share of its output, and
never leave its process group behind: the group is killed when the program exits (a leftover
child holding the pipes must not stall the caller) and when the caller cancels (its deadline).

A program never inherits the agent's environment: :func:`base_env` is all it gets (``PATH``,
``LANG=C``, then the config's ``env``), for the ``command`` check and the ``exec`` sink alike, and
:func:`resolve_program` finds it at load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DRAIN = 1.0  # seconds to wait for the rest of the output once the program has exited
REAP = 2.0  # seconds to wait for a killed program to be reaped


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A program's whole environment: PATH and ``LANG=C`` (the POSIX locale: present on every
    system, and what Nagios plugins expect), then ``extra``."""
    return {"PATH": os.environ.get("PATH") or os.defpath, "LANG": "C", **extra}


def resolve_program(name: str, path: str, also: Sequence[str] = ()) -> str:
    """The absolute path of the program ``name``, looked up on ``path`` and then in the folders
    ``also``; raises ValueError saying why there is none."""
    if os.path.isabs(name):
        if not os.path.exists(name):
            raise ValueError(f"program {name!r} not found")
        if not os.path.isfile(name) or not os.access(name, os.X_OK):
            raise ValueError(f"program {name!r} is not an executable file")
        return name
    if not name or os.sep in name:
        raise ValueError(f"program {name!r}: write an absolute path, or a program name found on PATH")
    found = shutil.which(name, path=os.pathsep.join([path, *also]))
    if found is None:
        elsewhere = f" nor in {', '.join(also)}" if also else ""
        raise ValueError(f"program {name!r} not found on PATH ({path}){elsewhere}")
    return os.path.abspath(found)


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # the exit code; -N when killed by signal N; None if it was not reaped
    stdout: bytes
    stderr: bytes
    stdout_cut: bool  # stdout went past its cap: the rest was dropped (or the pipe closed)


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first ``stdout_cap`` bytes of stdout and ``stderr_cap`` of stderr. Past the stdout
    cap, either closes the pipe (the program gets EPIPE/SIGPIPE) or reads and drops the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stdout_cap: int, stderr_cap: int, close_at_cap: bool) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.cut = False
        self.caps = (stdout_cap, stderr_cap)
        self.close_at_cap = close_at_cap
        self.exited: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()  # process gone, pipes closed
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 1 and not self.cut:
            room = self.caps[0] - len(self.out)
            self.out += data[:room]
            if len(data) > room:
                self.cut = True
                pipe = self.transport.get_pipe_transport(1) if self.transport is not None else None
                if self.close_at_cap and pipe is not None:
                    pipe.close()  # the program gets EPIPE/SIGPIPE instead of filling our memory
        elif fd == 2:
            self.err += data[: max(0, self.caps[1] - len(self.err))]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(None)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, signal.SIGKILL)


def signal_name(num: int) -> str:
    """``SIGKILL`` for 9; ``signal 99`` for a number with no name."""
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


async def run_capped(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None = None,
    stdin: bytes | None,
    stdout_cap: int,
    stderr_cap: int,
    close_stdout_at_cap: bool,
) -> Completed:
    """Run ``argv`` with ``stdin`` on its standard input (``None``: /dev/null) until it exits.

    Raises OSError when the program cannot be started. Cancelling (the caller's deadline) kills
    the whole process group and reaps the program before the cancellation goes on."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.subprocess_exec(
        lambda: _Collector(loop, stdout_cap, stderr_cap, close_stdout_at_cap),
        *argv,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as a whole
    )
    pgid = transport.get_pid()
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            assert isinstance(pipe, asyncio.WriteTransport)
            pipe.write(stdin)  # buffered by the loop: never blocks
            pipe.write_eof()
        await proto.exited
        _kill_group(pgid)  # processes it left behind would hold the pipes open
        with contextlib.suppress(TimeoutError):  # one that left the group holds a pipe: use what came
            async with asyncio.timeout(DRAIN):
                await proto.finished  # the rest of the output
    finally:
        _kill_group(pgid)
        if not proto.exited.done():
            await asyncio.wait([proto.exited], timeout=REAP)  # reap it
        transport.close()
    return Completed(transport.get_returncode(), bytes(proto.out), bytes(proto.err), proto.cut)
