"""``firstwatch rules``: the config's alerts as Prometheus rule groups (YAML on stdout), for a
central Prometheus that scrapes several agents and judges alerts across them (``quorum: N``).
The generator is :mod:`agent.config.prometheus_rules`; this module is its command line.

This module's top level imports only the standard library: ``main`` adds its parser for every
command, and ``firstwatch check`` must start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeVar

_P = TypeVar("_P", bound=argparse.ArgumentParser)
EX_CONFIG = 78
FORMATS = ("prometheus",)


def add_parsers(
    sub: argparse._SubParsersAction[_P],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    """Add ``rules`` to ``sub``."""
    p = with_config(
        sub.add_parser("rules", help="print Prometheus alerting rules for the config (judged across agents)")
    )
    p.add_argument("--format", choices=FORMATS, default="prometheus", help="the rule file format (default: prometheus)")


def cmd_rules(config: str, fmt: str) -> int:
    """Print the rule file of ``config``; 78 with ``validate``'s error lines when it is bad. Each
    rule Prometheus cannot judge is a comment in the file and one line on stderr."""
    from agent.cli.main import _print_issues  # validate's lines, exactly
    from agent.config.load import load_config
    from agent.config.prometheus_rules import render, rule_groups
    from agent.core.errors import ConfigError

    assert fmt in FORMATS
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _print_issues(exc)
        return EX_CONFIG
    groups = rule_groups(cfg.checks)
    for group in groups:
        for skipped in group.skipped:
            print(f"firstwatch: {skipped.check}: skipped {skipped.rule!r}: {skipped.why}", file=sys.stderr)
    sys.stdout.write(render(groups))
    return 0
