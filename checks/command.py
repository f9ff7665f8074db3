"""``type: command``: run a Nagios plugin (or any script) and judge it by its exit code.

Options (besides the common ``name``, ``interval``, ``timeout``, ``labels``, ``alerts``):

    command  the program and its arguments, as a list: ``[check_load, -w, "5,4,3"]``. Run
             directly, never through a shell, so ``$(...)``, ``;`` or ``*`` reach the program
             literally. Quote numbers (``"5432"``): every argument must be a string. The program
             is an absolute path, or a name looked up (at load) on PATH and then in the usual
             plugin directories (/usr/lib/nagios/plugins, /usr/lib64/nagios/plugins,
             /usr/local/nagios/libexec); it must exist and be executable when the config loads.
    env      variables added to the plugin's environment. The plugin does not inherit the
             agent's environment: it gets only PATH, ``LANG=C`` and these.
    cwd      the working directory of the plugin (default: the agent's); must exist

There is no target: the check runs on the agent's machine, shown as target ``localhost``.

Values:

    exit_code   1  the plugin's exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; 128+N when
                   killed by signal N)
    perf.LABEL  any each performance data item the plugin printed, in firstwatch's base unit:
                   seconds for s/ms/us, % for %, bytes for B/KB/MB/GB/TB (1000-based, as the
                   plugin guidelines define them; KiB/MiB/GiB/TiB are 1024-based), the number as
                   printed for any other unit. Thresholds are in these base units, as plain
                   numbers or with a unit: ``perf.time > 500ms``, ``perf./ > 90GB``

Failures: ``command`` when the exit code is not 0, with the plugin's first output line (without
its performance data), e.g. ``WARNING: load average: 5.1``; exit code 3 or anything else (a
signal, an exit code above 3) reads ``UNKNOWN (exit 3): ...``; a plugin that cannot be started
is ``command`` too. Only the first 64 KiB of output are read (and 4 KiB of stderr, shown when
stdout is empty): a plugin flooding its output has the pipe closed on it. ``timeout`` (set by the
runner) when the plugin runs longer than ``timeout``: the plugin and every process it started
(its whole process group) are killed. A plugin's children still running when it exits are
killed too.

Example::

    - name: load
      type: command
      command: [check_load, -w, "8,6,4", -c, "16,12,8"]
      interval: 1m
    - name: backup-fresh
      type: command
      command: [check_file_age, -w, "90000", -c, "180000", -f, /srv/backup/latest.tar]
      env: {TZ: UTC}
      alerts:
        - {when: down, for: 1h, severity: major}
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any, ClassVar

from pydantic import ValidationInfo, field_validator

from agent.subprocess_run import Completed, run_capped, signal_name
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, ValueSpec
from checks.perfdata import parse_output

PLUGIN_DIRS = ("/usr/lib/nagios/plugins", "/usr/lib64/nagios/plugins", "/usr/local/nagios/libexec")
STDOUT_CAP = 64 * 1024
STDERR_CAP = 4 * 1024
_TEXT_CAP = 1000  # characters of the status line kept in an error
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STATES = {1: "WARNING", 2: "CRITICAL"}


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The plugin's whole environment: PATH and ``LANG=C``, then ``extra``."""
    return {"PATH": os.environ.get("PATH") or os.defpath, "LANG": "C", **extra}


def resolve_program(name: str, path: str) -> str:
    """The absolute path of the program ``name``; raises ValueError saying why there is none."""
    if os.path.isabs(name):
        if not os.path.exists(name):
            raise ValueError(f"program {name!r} not found")
        if not os.path.isfile(name) or not os.access(name, os.X_OK):
            raise ValueError(f"program {name!r} is not an executable file")
        return name
    if not name or os.sep in name:
        raise ValueError(f"program {name!r}: write an absolute path, or a program name found on PATH")
    found = shutil.which(name, path=os.pathsep.join([path, *PLUGIN_DIRS]))
    if found is None:
        raise ValueError(f"program {name!r} not found on PATH ({path}) nor in {', '.join(PLUGIN_DIRS)}")
    return os.path.abspath(found)


class CommandConfig(CheckConfig):
    # env and cwd come first: validating command reads env (PATH may be set there)
    env: dict[str, str] = {}
    cwd: str | None = None
    command: list[str]

    @field_validator("env")
    @classmethod
    def _check_env(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not _ENV_NAME.match(key):
                raise ValueError(f"invalid environment variable name {key!r}")
            if "\0" in value:
                raise ValueError(f"env {key}: the value must not contain NUL bytes")
        return v

    @field_validator("cwd")
    @classmethod
    def _check_cwd(cls, v: str | None) -> str | None:
        if v is not None and not os.path.isdir(v):
            raise ValueError(f"cwd {v!r} is not a directory")
        return v

    @field_validator("command", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, arg in enumerate(v):
                if not isinstance(arg, str):  # never echo the value: it may be a secret
                    raise ValueError(
                        f"command[{i}] is not a string: quote every argument"
                        " (YAML reads 5432, yes or 0755 as numbers or booleans)"
                    )
        return v

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if not v:
            raise ValueError("command must name a program: [PROGRAM, ARG, ...]")
        if any("\0" in arg for arg in v):
            raise ValueError("command arguments must not contain NUL bytes")
        resolve_program(v[0], base_env(info.data.get("env") or {})["PATH"])  # missing: a load error
        return v

    def program(self) -> str:
        """The absolute path of the program to run."""
        return resolve_program(self.command[0], base_env(self.env)["PATH"])


def describe(code: int, text: str, stderr: str) -> str:
    """The error text for a plugin that exited with ``code`` (negative: killed by a signal)."""
    shown = text or (f"no output; stderr: {stderr}" if stderr else "no output")
    if len(shown) > _TEXT_CAP:
        shown = shown[:_TEXT_CAP] + "…"
    if code in _STATES:
        return shown if text else f"{_STATES[code]} (exit {code}): {shown}"
    if code < 0:
        return f"UNKNOWN (killed by {signal_name(-code)}): {shown}"
    return f"UNKNOWN (exit {code}): {shown}"


class CommandCheck(BaseCheck):
    TYPE: ClassVar[str] = "command"
    TARGET_KEY: ClassVar[str | None] = None
    Config: ClassVar[type[CheckConfig]] = CommandConfig
    VALUES: ClassVar[tuple[ValueSpec, ...]] = (
        ValueSpec("exit_code", "1", "the plugin's exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"),
        ValueSpec("perf.LABEL", "any", "a performance data item, in base units (s, %, bytes)"),
    )

    def __init__(self, config: CheckConfig) -> None:
        if not isinstance(config, CommandConfig):
            raise TypeError(f"expected CommandConfig, got {type(config).__name__}")
        super().__init__(config)
        self._cfg = config  # typed view; `config` stays CheckConfig to satisfy the Check protocol
        self._argv = [config.program(), *config.command[1:]]
        self._env = base_env(config.env)

    async def probe(self, target: str, ctx: ProbeContext) -> Observation:
        try:
            run = await run_capped(
                self._argv,
                env=self._env,
                cwd=self._cfg.cwd,
                stdin=None,
                stdout_cap=STDOUT_CAP,
                stderr_cap=STDERR_CAP,
                close_stdout_at_cap=True,  # a flooding plugin gets SIGPIPE
            )
        except OSError as exc:
            return Observation(
                ok=False, error_kind="command", error=f"cannot run {self._argv[0]}: {exc.strerror or exc}"
            )
        return self._observe(run)

    def _observe(self, run: Completed) -> Observation:
        returncode = run.returncode
        code = 128 + -returncode if returncode is not None and returncode < 0 else returncode or 0
        values: dict[str, float] = {"exit_code": float(code)}
        output = parse_output(run.stdout.decode("utf-8", errors="replace"))
        for item in output.perfdata:
            values.setdefault(f"perf.{item.label}", item.base()[0])
        if returncode == 0:
            return Observation(ok=True, values=values)
        stderr = run.stderr.decode("utf-8", errors="replace").strip().split("\n", 1)[0].strip()
        error = describe(returncode if returncode is not None else 3, output.text, stderr)
        if run.stdout_cut:
            error += f" (output cut at {STDOUT_CAP // 1024} KiB)"
        return Observation(ok=False, values=values, error_kind="command", error=error)
