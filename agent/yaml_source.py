"""Load YAML safely and remember where every key and value was written.

Errors are user interface: ``config.yaml:42:5: checks[7].intervall: unknown option``. PyYAML's
``safe_load`` forgets positions, so we compose the node tree with the safe loader and build plain
Python data ourselves, recording ``path -> (line, column)`` for each key and value. Duplicate keys
(which ``safe_load`` silently lets the last one win) are reported, and ``${VAR}`` references in
strings are expanded from the environment, a missing variable being an error at its position.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


@dataclass(frozen=True)
class Issue:
    """One problem in a config file, at a position, about a dotted path."""

    file: str
    line: int
    col: int
    path: Path
    message: str

    def __str__(self) -> str:
        where = dotted(self.path)
        return f"{self.file}:{self.line}:{self.col}: {where + ': ' if where else ''}{self.message}"


def dotted(path: Path) -> str:
    """``("checks", 7, "intervall")`` -> ``checks[7].intervall``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class Source:
    """Parsed YAML data plus the positions of its keys and values (1-based line and column)."""

    file: str
    data: Any
    value_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_pos: dict[Path, tuple[int, int]] = field(default_factory=dict)
    secret_paths: set[Path] = field(default_factory=set)
    issues: list[Issue] = field(default_factory=list)  # duplicate keys, missing ${VAR}s

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Where ``path`` was written; falls back to the nearest enclosing node."""
        table = self.key_pos if key else self.value_pos
        p = path
        while p:
            if p in table:
                return table[p]
            if p in self.value_pos:
                return self.value_pos[p]
            p = p[:-1]
        return self.value_pos.get((), (1, 1))

    def issue(self, path: Path, message: str, *, key: bool = False, shown: Path | None = None) -> Issue:
        line, col = self.position(path, key=key)
        return Issue(self.file, line, col, path if shown is None else shown, self.redact(message))

    def redact(self, text: str) -> str:
        """Mask every value that came from a ``${VAR}`` reference: errors never show secrets."""
        for path in self.secret_paths:
            value: Any = self.data
            for part in path:
                value = value[part]
            if isinstance(value, str) and value:
                text = text.replace(value, "<redacted>")
        return text


class ConfigError(Exception):
    """Raised with every issue found, never just the first."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


def load_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Source:
    """Parse ``text`` into a :class:`Source`; raise :class:`ConfigError` on syntax errors.

    Duplicate keys and missing ``${VAR}`` references are collected in ``Source.issues`` so the
    caller can report them together with every other problem."""
    env = os.environ if env is None else env
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Issue(file, line, col, (), f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(file, 1, 1, (), f"YAML error: {exc}")]) from None
    src = Source(file=file, data=None)
    constructor = yaml.SafeLoader("")
    src.data = {} if node is None else _build(node, (), src, constructor, env, src.issues)
    return src


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node, path: Path, src: Source, ctor: yaml.SafeLoader, env: Mapping[str, str], issues: list[Issue]
) -> Any:
    src.value_pos[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                issues.append(Issue(src.file, *_pos(key_node), path, "mapping keys must be plain scalars"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in out:
                first = src.key_pos[child]
                issues.append(Issue(src.file, *_pos(key_node), child, f"duplicate key (first set on line {first[0]})"))
                continue
            src.key_pos[child] = _pos(key_node)
            out[key] = _build(value_node, child, src, ctor, env, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), src, ctor, env, issues) for i, item in enumerate(node.value)]
    value = ctor.construct_object(node, deep=True)
    if isinstance(value, str) and "$" in value:
        value = _expand(value, path, node, src, env, issues)
    return value


def _expand(value: str, path: Path, node: yaml.Node, src: Source, env: Mapping[str, str], issues: list[Issue]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        if name not in env:
            issues.append(Issue(src.file, *_pos(node), path, f"environment variable {name} is not set"))
            return ""
        src.secret_paths.add(path)
        return env[name]

    return _ENV_REF.sub(sub, value)
