"""``firstwatch schema``: the config's JSON Schema (draft 2020-12) on stdout, for editors and CI.

The schema is generated from the models that validate the config (``agent.config.schema``),
imported only when the command runs; this module's top level imports only the standard library.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "print the config's JSON Schema (draft 2020-12); no config needed"
DESCRIPTION = """\
Print the JSON Schema (draft 2020-12) of the config file on stdout, generated from the models
that validate it: point an editor at it (yaml-language-server:
`# yaml-language-server: $schema=firstwatch.schema.json`) or a CI linter. Unknown keys fail it,
as they fail `firstwatch validate`; what needs the whole file (unique names, depends_on, rules
naming values their check type measures, files present) is judged by `firstwatch validate` only.
"""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``schema`` to ``sub``."""
    sub.add_parser("schema", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)


def dispatch(args: argparse.Namespace) -> int:
    """Run ``schema``."""
    from agent.config.schema import cmd_schema

    return cmd_schema()
