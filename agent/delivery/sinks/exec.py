"""``type: exec``: each event handed to a program you write (a script that pages, posts, logs).

Options (besides the routing keys every sink has):

    command  the program and its arguments, as a list: ``[/usr/local/bin/notify-team, --urgent]``.
             Run directly, never through a shell: ``$(...)``, ``;`` or ``*`` in an argument or
             in the event reach the program literally. The program is an absolute path or a
             name found on PATH; it must exist and be executable when the config loads.
    env      variables added to the program's environment. It does not inherit the agent's
             environment: it gets only PATH, ``LANG=C``, these and the event's variables.
             Pass secrets here, not in ``command`` (arguments show in ``ps``): env values are
             never shown in an error, even when the program prints them on stderr.
    timeout  how long the program may run (default 10s); then it and every process it started
             (its whole process group) are killed and the event is retried.

The program gets the event as one line of JSON on stdin, and its main fields as environment
variables: FIRSTWATCH_EVENT_ID (the idempotency key, the same on every redelivery),
FIRSTWATCH_KIND, FIRSTWATCH_SEVERITY, FIRSTWATCH_CHECK, FIRSTWATCH_TARGET, FIRSTWATCH_INCIDENT,
FIRSTWATCH_SUMMARY and FIRSTWATCH_RUNBOOK (the runbook URL), each empty when the event has none and
cut at 4096 characters. Exit 0 means delivered; exit 64 to 78
(sysexits.h: bad usage, bad data, bad config) means the event can never be delivered and it is
dropped; any other exit is retried, with the first line of stderr (or of stdout, when stderr is
empty) in the error. Only the first
64 KiB of stdout and of stderr are kept (the rest is read and discarded, so a chatty program
never blocks); processes it leaves behind when it exits are killed.

Example::

    sinks:
      - type: exec
        name: notify-team
        command: [/usr/local/bin/notify-team, --channel, ops]
        env: {TEAM_TOKEN: "${TEAM_TOKEN}"}
        min_severity: major
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

from agent.core.events import Event
from agent.core.subprocesses import Completed, base_env, resolve_program, run_capped, signal_name
from agent.core.units import Seconds, format_duration
from agent.core.validators import command_argv, string_args
from agent.delivery.sinks.base import BaseSink, SinkConfig, positive_timeout

OUTPUT_CAP = 64 * 1024  # bytes kept of stdout and of stderr each
EXCERPT = 200  # characters of stderr shown in an error
ENV_CAP = 4096  # characters of an event field in a FIRSTWATCH_* variable
SYSEXITS = range(64, 79)  # EX_USAGE .. EX_CONFIG: retrying cannot help
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")


class ExecConfig(SinkConfig):
    model_config = ConfigDict(hide_input_in_errors=True)  # env values and arguments may be secrets

    # env before command: validating command reads env (PATH may be set there)
    env: dict[str, str] = Field(default={}, repr=False)
    command: list[str]
    timeout: Seconds = 10.0

    @field_validator("env", mode="before")
    @classmethod
    def _check_env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        for key, value in v.items():  # never echo a value
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if key.startswith("FIRSTWATCH_"):
                raise ValueError(f"env {key}: FIRSTWATCH_* variables are set from the event")
            if not isinstance(value, str):
                raise ValueError(f"env {key}: the value must be a string (quote it)")
            if "\0" in value:
                raise ValueError(f"env {key}: the value must not contain NUL bytes")
        return v

    _strings_only = field_validator("command", mode="before")(string_args)
    _check_command = field_validator("command")(command_argv)
    _check_timeout = field_validator("timeout")(positive_timeout)


class ExecSink(BaseSink):
    TYPE = "exec"
    DIRECT = True
    Config: ClassVar[type[SinkConfig]] = ExecConfig

    def __init__(self, config: SinkConfig, name: str) -> None:
        super().__init__(config, name)
        assert isinstance(config, ExecConfig)
        self._cfg = config
        self._env = base_env(config.env)
        self._argv = [resolve_program(config.command[0], self._env["PATH"]), *config.command[1:]]
        self._secrets = sorted((v for v in config.env.values() if len(v) >= 4), key=len, reverse=True)

    def __repr__(self) -> str:  # the config may hold secrets
        return f"<ExecSink {self.name!r} running {self._argv[0]}>"

    def _event_env(self, event: Event) -> dict[str, str]:
        fields = {
            "EVENT_ID": event.id,
            "KIND": event.kind,
            "SEVERITY": event.severity,
            "CHECK": event.check,
            "TARGET": event.target,
            "INCIDENT": event.incident,
            "SUMMARY": event.summary,
            "RUNBOOK": event.runbook,
        }
        # capped: one variable may not exceed 128 KiB (E2BIG), and stdin has the whole event
        return {**self._env, **{f"FIRSTWATCH_{k}": (v or "").replace("\0", "")[:ENV_CAP] for k, v in fields.items()}}

    async def send(self, event: Event) -> None:
        try:
            async with asyncio.timeout(self._cfg.timeout):
                run = await run_capped(
                    self._argv,
                    env=self._event_env(event),
                    stdin=(event.to_json() + "\n").encode(),
                    stdout_cap=OUTPUT_CAP,
                    stderr_cap=OUTPUT_CAP,
                    close_stdout_at_cap=False,  # read and drop: a chatty program never blocks
                )
        except TimeoutError:  # before OSError: TimeoutError is one
            raise self._fail(f"timed out after {format_duration(self._cfg.timeout)}") from None
        except OSError as exc:
            raise self._fail(f"cannot run {self._argv[0]}: {exc.strerror or exc}") from None
        code = run.returncode
        if code == 0:
            return
        if code is None or code < 0:
            how = f"killed by {signal_name(-code)}" if code is not None else "did not exit"
            raise self._fail(how + self._stderr(run))
        raise self._fail(f"exit {code}" + self._stderr(run), permanent=code in SYSEXITS)

    def _stderr(self, run: Completed) -> str:
        """``: the first line of stderr`` (of stdout when stderr is empty), secrets redacted before
        it is cut to EXCERPT characters."""
        text = run.stderr.decode("utf-8", errors="replace").strip()
        text = text or run.stdout.decode("utf-8", errors="replace").strip()
        line = _CONTROL.sub("", text.split("\n", 1)[0]).strip()
        line = self._redact(line)[:EXCERPT]
        return f": {line}" if line else ""
