"""Documentation derived from the registries: a check type's example config, from its docstring.

``firstwatch list-checks`` prints the check types and the values they measure. Each check
module's docstring ends with an ``Example::`` block (indented YAML); ``list-checks
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


def cmd_list_checks(sample: str | None) -> int:
    from checks import CHECKS

    if sample is not None:
        cls = CHECKS.get(sample)
        if cls is None:
            print(f"firstwatch: unknown check type {sample!r} (known: {', '.join(sorted(CHECKS))})", file=sys.stderr)
            return 64  # EX_USAGE
        print(example_of(cls))
        return 0
    for name, cls in sorted(CHECKS.items()):
        target = f"{cls.TARGET_KEY} or targets" if cls.TARGET_KEY else "no target"
        print(f"{name}  ({target})")
        for v in cls.VALUES:
            print(f"    {v.name:<18} {v.unit:<6} {v.meaning}")
    return 0
