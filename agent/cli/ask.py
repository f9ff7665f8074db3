"""The commands that ask the running agent over its status endpoint: ``firstwatch status`` and
``firstwatch slo``. Their parsers and dispatch; the asking itself is ``agent.web.client``
(``status``) and ``agent.web.slos`` (``slo``), imported only when one of them runs.

This module's top level imports only the standard library: ``main`` adds its parsers for every
command, and ``firstwatch check`` must start fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

_P = TypeVar("_P", bound=argparse.ArgumentParser)
COMMANDS = ("status", "slo")


def add_parsers(
    sub: argparse._SubParsersAction[_P],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    duration: Callable[[str], float],
) -> None:
    """Add ``status`` and ``slo`` to ``sub``; ``duration`` parses ``--timeout``."""
    helps = {
        "status": "ask the running agent for its status (exit code: worst open)",
        "slo": "ask the running agent for its SLOs (exit code: worst burn alert firing)",
    }
    for name in COMMANDS:
        p = with_config(sub.add_parser(name, help=helps[name]))
        p.add_argument("--format", choices=["text", "json"], default="text")
        p.add_argument("--timeout", type=duration, default=5.0, metavar="DURATION", help="for the answer (default 5s)")


def dispatch(args: argparse.Namespace) -> int:
    """Run ``status`` or ``slo``."""
    if args.command == "slo":
        from agent.web.slos import cmd_slo

        return cmd_slo(args.config, args.format, args.timeout)
    from agent.web.client import cmd_status

    return cmd_status(args.config, args.format, args.timeout)
