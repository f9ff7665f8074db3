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

The target is the command itself, as written in the config (``check_load -w 8,6,4 -c 16,12,8``,
shell-quoted, cut to 80 characters): that is what logs, ``firstwatch check``, the status page
and events show, and, as for every check, part of an alert's fingerprint (so changing the
arguments starts a new alert). An argument holding the value of an environment variable (which a
``${VAR}`` in the config may have put there) is shown as ``<redacted>``.

Values:

    exit_code   1  the plugin's exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; 128+N when
                   killed by signal N)
    perf.LABEL  any each performance data item the plugin printed, in firstwatch's base unit:
                   seconds for s/ms/us, % for %, bytes for B/KB/MB/GB/TB (1000-based, as the
                   plugin guidelines define them; KiB/MiB/GiB/TiB are 1024-based), the number as
                   printed for any other unit. Thresholds are in these base units, as plain
                   numbers or with a unit: ``perf.time > 500ms``, ``perf./ > 90GB``

Nagios states. The plugin's exit code is its state, and the result keeps it (``Result.status``
and the ``error_kind``), so a WARNING or an UNKNOWN never reads as "down"/CRITICAL:

    exit 0                         ok        passes
    exit 1                         warning   error_kind ``warning``, error ``WARNING: <first line>``
    exit 2                         critical  error_kind ``command``, error ``CRITICAL: <first line>``
    exit 3, any other code, killed unknown   error_kind ``unknown``, error ``UNKNOWN: <first line>``
                                             (``UNKNOWN (exit 42): ...``, ``UNKNOWN (killed by SIGSEGV): ...``)
    cannot start                   critical  error_kind ``command``, ``cannot run PROGRAM: why``
    runs past ``timeout``          critical  error_kind ``timeout`` (set by the runner)

The first line is the plugin's status text without its performance data, kept as is when it
names the state near its start, as plugins do (``WARNING: load average: 5.1``, ``DISK CRITICAL -
/ 95%``), else prefixed with it (``UNKNOWN: no such device``); with
no output, ``CRITICAL (exit 2): no output`` (stderr's first line shown when there is one). Every
non-OK state fails ``when: down``. ``firstwatch check`` maps them to its exit code as Nagios does:
a WARNING exits 1 and an UNKNOWN 3 whatever the ``down`` rule's severity, unless another failing
rule is major or critical (exit 2); a CRITICAL follows the rules' severity. The daemon judges the
rules as they are written: to page on CRITICAL only, add ``{when: exit_code == 2, severity:
critical}`` and make ``down`` minor. Only the first 64 KiB of output are read (and 4 KiB of
stderr, shown when stdout is empty): a plugin flooding its output has the pipe closed on it. The
plugin and every process it started (its whole process group) are killed on timeout; a plugin's
children still running when it exits are killed too.

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
import shlex
from typing import ClassVar

from pydantic import ValidationInfo, field_validator

from agent.core.subprocesses import Completed, base_env, resolve_program, run_capped, signal_name
from agent.core.validators import program_argv, string_args
from checks.base import BaseCheck, CheckConfig, Observation, ProbeContext, Values, ValueSpec
from checks.perfdata import parse_output

PLUGIN_DIRS = ("/usr/lib/nagios/plugins", "/usr/lib64/nagios/plugins", "/usr/local/nagios/libexec")
STDOUT_CAP = 64 * 1024
STDERR_CAP = 4 * 1024
_TEXT_CAP = 1000  # characters of the status line kept in an error
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STATES = {1: ("WARNING", "warning"), 2: ("CRITICAL", "command")}  # exit code -> (state word, error kind)
_TARGET_CAP = 80  # characters of the command shown as the target
_NOT_SECRET = frozenset({"PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "LANG", "TERM", "TZ", "SHLVL"})


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

    _strings_only = field_validator("command", mode="before")(string_args)

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return program_argv(v, info.data.get("env") or {}, also=PLUGIN_DIRS)

    def program(self) -> str:
        """The absolute path of the program to run."""
        return resolve_program(self.command[0], base_env(self.env)["PATH"], PLUGIN_DIRS)


def describe(code: int, text: str, stderr: str) -> tuple[str, str]:
    """The error kind and text for a plugin that exited with ``code`` (negative: killed by a
    signal): ``("warning", "WARNING: load average: 5.1")``; see the module docstring."""
    shown = text or (f"no output; stderr: {stderr}" if stderr else "no output")
    if len(shown) > _TEXT_CAP:
        shown = shown[:_TEXT_CAP] + "…"
    if code < 0:
        return "unknown", f"UNKNOWN (killed by {signal_name(-code)}): {shown}"
    if code not in (1, 2, 3):
        return "unknown", f"UNKNOWN (exit {code}): {shown}"
    word, kind = _STATES.get(code, ("UNKNOWN", "unknown"))
    if not text:
        return kind, f"{word} (exit {code}): {shown}"
    if re.search(rf"\b{word}\b", shown[:40]):  # "WARNING: ...", "DISK WARNING - ..." say it already
        return kind, shown
    return kind, f"{word}: {shown}"


def shown_command(argv: list[str], environ: dict[str, str] | None = None) -> str:
    """The command as a target: shell-quoted, cut to 80 characters, any argument holding an
    environment variable's value (a ``${VAR}`` may have put it there: the whole argument, or a value
    of 8 characters or more inside it) as ``<redacted>``."""
    env = os.environ if environ is None else environ
    values = [v for k, v in env.items() if k not in _NOT_SECRET and not k.startswith("LC_") and len(v) >= 3]
    args = ["<redacted>" if any(v == arg or (len(v) >= 8 and v in arg) for v in values) else arg for arg in argv]
    text = shlex.join(args).replace("'<redacted>'", "<redacted>")
    return text if len(text) <= _TARGET_CAP else text[: _TARGET_CAP - 1] + "…"


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
        self._target = shown_command(list(config.command))

    def targets(self) -> list[str]:
        return [self._target]

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
        values = Values(exit_code=float(code))
        output = parse_output(run.stdout.decode("utf-8", errors="replace"))
        for item in output.perfdata:
            name = f"perf.{item.label}"
            if name not in values:
                values[name], values.units[name] = item.base()
        if returncode == 0:
            return Observation(ok=True, values=values)
        stderr = run.stderr.decode("utf-8", errors="replace").strip().split("\n", 1)[0].strip()
        kind, error = describe(returncode if returncode is not None else 3, output.text, stderr)
        if run.stdout_cut:
            error += f" (output cut at {STDOUT_CAP // 1024} KiB)"
        return Observation(ok=False, values=values, error_kind=kind, error=error)
