"""Load YAML safely and remember where every key and value was written.

Errors are user interface: ``config.yaml:42:5: checks[7].intervall: unknown option``. PyYAML's
``safe_load`` forgets positions, so we compose the node tree with the safe loader and build plain
Python data ourselves, recording ``path -> (line, column)`` for each key and value. Duplicate keys
(which ``safe_load`` silently lets the last one win) are reported, and ``${VAR}`` references in
strings are expanded from the environment, a missing variable being an error at its position.

A config is hostile input too. The file is read only up to :data:`MAX_BYTES`; while composing,
nesting is limited to :data:`MAX_DEPTH` levels (PyYAML composes recursively) and the document to
:data:`MAX_NODES` values after alias expansion, an aliased subtree counting each time it is used
(:data:`MAX_ALIASED` of them through aliases), so an alias bomb ("billion laughs") is refused while
composing, after a few hundred nodes of text and before any data is built.
Each limit is an ordinary config error at a line and column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.core.errors import ConfigError, ConfigPath, Issue

Path = ConfigPath

MAX_BYTES = 8 * 1024 * 1024  # a 10,000-check config is about 2.5 MB
MAX_DEPTH = 64  # levels of nesting, after alias expansion (a real config needs about 8)
MAX_NODES = 500_000  # values after alias expansion (a 10,000-check config has about 300,000)
MAX_ALIASED = 200_000  # of which brought in by aliases: a small file never costs more than ~60 MB

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


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


def read_config(path: str) -> str:
    """The text of the config file at ``path``, refused past :data:`MAX_BYTES` without reading on.

    Raises :class:`ConfigError`: not found, unreadable, not UTF-8, or too large (at the line and
    column where the limit is crossed)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise ConfigError([Issue(path, 0, 0, (), "config file not found")]) from None
    except OSError as exc:
        raise ConfigError([Issue(path, 0, 0, (), f"cannot read config file: {exc}")]) from None
    if len(data) > MAX_BYTES:
        line = data.count(b"\n", 0, MAX_BYTES) + 1
        col = MAX_BYTES - data.rfind(b"\n", 0, MAX_BYTES)
        shown = f"{size:,} bytes" if size > MAX_BYTES else "more"
        message = f"config file too large: {shown}, the limit is {MAX_BYTES // 2**20} MiB"
        raise ConfigError([Issue(path, line, col, (), message)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Issue(path, 0, 0, (), f"cannot read config file: {exc}")]) from None


class _Limit(Exception):
    """A bound of :class:`_BoundedLoader` crossed, at a place in the text."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.line: int = mark.line + 1 if mark is not None else 1
        self.col: int = mark.column + 1 if mark is not None else 1
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, composing with bounded nesting and a bounded expanded size.

    ``_measure`` holds, for each finished node, its size and height with every alias expanded; a
    node still being composed is absent, so an alias to it (``&a [*a]``) is a cycle."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._total = 0
        self._aliased = 0
        self._measure: dict[yaml.Node, tuple[int, int]] = {}

    def _count(self, n: int, mark: Any) -> None:
        self._total += n
        if self._total > MAX_NODES:
            raise _Limit(mark, f"more than {MAX_NODES:,} values after expanding aliases (each use counts)")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor) if event.anchor is not None else None
            if target is not None and target not in self._measure:
                raise _Limit(event.start_mark, f"alias *{event.anchor} refers to a node that contains it")
            alias = super().compose_node(parent, index)  # an undefined alias: PyYAML's error
            assert alias is not None
            size = self._measure[alias][0]
            self._aliased += size
            if self._aliased > MAX_ALIASED:
                message = f"aliases expand to more than {MAX_ALIASED:,} values (each use counts its whole subtree)"
                raise _Limit(event.start_mark, message)
            self._count(size, event.start_mark)
            return alias
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        assert node is not None
        self._depth -= 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        size, height = 1, 1
        for child in children:
            child_size, child_height = self._measure[child]
            size += child_size
            height = max(height, child_height + 1)
        if height > MAX_DEPTH:
            raise _Limit(node.start_mark, f"nested more than {MAX_DEPTH} levels deep after expanding aliases")
        self._measure[node] = size, height
        node.end_mark = node.start_mark  # never used; a Mark per node less is a third of the memory
        self._count(1, node.start_mark)
        return node


def _compose(text: str, file: str) -> tuple[yaml.Node | None, _BoundedLoader]:
    if len(text) > MAX_BYTES:  # callers should read with read_config(); a last guard for others
        line = text.count("\n", 0, MAX_BYTES) + 1
        message = f"config file too large: more than {MAX_BYTES // 2**20} MiB"
        raise ConfigError([Issue(file, line, MAX_BYTES - text.rfind("\n", 0, MAX_BYTES), (), message)])
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node(), loader
    except _Limit as exc:
        raise ConfigError([Issue(file, exc.line, exc.col, (), exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Issue(file, line, col, (), f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(file, 1, 1, (), f"YAML error: {exc}")]) from None
    except RecursionError:  # not expected with MAX_DEPTH; never a traceback if it happens anyway
        line, col = loader.line + 1, loader.column + 1
        raise ConfigError([Issue(file, line, col, (), "nested too deeply")]) from None
    finally:
        loader.dispose()


def load_yaml(text: str, file: str, env: Mapping[str, str] | None = None) -> Source:
    """Parse ``text`` into a :class:`Source`; raise :class:`ConfigError` on syntax errors and
    when a limit (:data:`MAX_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_NODES`) is crossed.

    Duplicate keys and missing ``${VAR}`` references are collected in ``Source.issues`` so the
    caller can report them together with every other problem."""
    env = os.environ if env is None else env
    node, loader = _compose(text, file)
    src = Source(file=file, data=None)
    src.data = {} if node is None else _build(node, (), src, loader, env, src.issues)
    return src


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node, path: Path, src: Source, ctor: yaml.SafeLoader, env: Mapping[str, str], issues: list[Issue]
) -> Any:
    src.value_pos[path] = _pos(node)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        try:
            ctor.flatten_mapping(node)  # resolves YAML merge keys (<<)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            issues.append(Issue(src.file, mark.line + 1, mark.column + 1, path, f"YAML error: {exc.problem}"))
            return out
        for key_node, value_node in node.value:
            before = len(issues)
            key = _construct(ctor, key_node, path, src, issues)
            if len(issues) > before:
                continue
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
    value = _construct(ctor, node, path, src, issues)
    if isinstance(value, str) and "$" in value:
        value = _expand(value, path, node, src, env, issues)
    return value


def _construct(ctor: yaml.SafeLoader, node: yaml.Node, path: Path, src: Source, issues: list[Issue]) -> Any:
    """A scalar (or a key) as Python data; an unknown tag or a bad ``!!int`` is an issue, not a crash."""
    try:
        return ctor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        issues.append(Issue(src.file, *_pos(node), path, f"cannot read this value: {exc.problem or exc}"))
    except (ValueError, TypeError, OverflowError) as exc:
        issues.append(Issue(src.file, *_pos(node), path, f"cannot read this value: {exc}"))
    return None


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
