"""A registry of plugin classes by type name whose modules are imported on first use.

``checks.CHECKS`` and ``agent.delivery.sinks.SINKS`` are :class:`LazyRegistry` mappings: the
names are known at once (validation, "did you mean", the JSON Schema's list of types), and a
type's module is imported only when its class is asked for. ``firstwatch check`` of an http and a
tcp check then never builds the pydantic models of the seven other check types and eight sink
types (about a tenth of its start-up; bench/RESULTS.md section (11)).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Mapping[str, T], Generic[T]):
    """``{name: "package.module:Class"}``, read as ``{name: Class}``. Iterating yields the names
    in the given order without importing anything; ``registry[name]``, ``.get``, ``.values`` and
    ``.items`` import what they return (once)."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)
        self._loaded: dict[str, T] = {}

    def __getitem__(self, name: str) -> T:
        found = self._loaded.get(name)
        if found is None:
            module, _, attr = self._paths[name].partition(":")  # KeyError for an unknown name
            found = self._loaded[name] = getattr(importlib.import_module(module), attr)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)
