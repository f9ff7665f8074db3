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


DEFAULT_SCRAPE_INTERVAL = "1m"  # Prometheus' own default scrape_interval


def add_parsers(
    sub: argparse._SubParsersAction[_P],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    duration: Callable[[str], float],
) -> None:
    """Add ``rules`` to ``sub``; ``duration`` parses a DURATION argument (a usage error if bad)."""
    p = with_config(
        sub.add_parser("rules", help="print Prometheus alerting rules for the config (judged across agents)")
    )
    p.add_argument("--format", choices=FORMATS, default="prometheus", help="the rule file format (default: prometheus)")

    def scrape_interval(text: str) -> float:
        seconds = duration(text)
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"the scrape interval must be above 0, got {text!r}")
        return seconds

    p.add_argument(
        "--scrape-interval",
        type=scrape_interval,
        default=DEFAULT_SCRAPE_INTERVAL,  # a string: argparse parses it with type, only for `rules`
        metavar="DURATION",
        help="how often the central Prometheus scrapes the agents: its scrape_interval"
        f" (default: {DEFAULT_SCRAPE_INTERVAL}, Prometheus' default); sets duration rules' window",
    )


def cmd_rules(config: str, fmt: str, scrape_interval_s: float) -> int:
    """Print the rule file of ``config`` for a Prometheus scraping every ``scrape_interval_s``;
    78 with ``validate``'s error lines when it is bad. Each rule Prometheus cannot judge is a
    comment in the file and one ``firstwatch: warning:`` line on stderr, and still exit 0: CI
    regenerating the rules must not break on a config with a plugin's ``perf.*`` rules."""
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
    groups = rule_groups(cfg.checks, scrape_interval_s)
    for group in groups:
        for s in group.skipped:
            print(f"firstwatch: warning: {s.check}: skipped {s.rule!r}: {s.why}", file=sys.stderr)
    sys.stdout.write(render(groups, scrape_interval_s))
    return 0
