"""Documentation derived from the registries: a check type's example config, from its docstring.

Each check module's docstring ends with an ``Example::`` block (indented YAML); ``list-checks
--sample TYPE`` prints it and ``tests/config/test_registry.py`` proves every example validates.
"""

from __future__ import annotations

import sys
import textwrap


def example_of(cls: type) -> str:
    """The indented block after ``Example::`` in the docstring of ``cls``'s module."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    _, sep, rest = doc.partition("Example::")
    if not sep:
        return ""
    lines = []
    for line in rest.splitlines()[1:]:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"
