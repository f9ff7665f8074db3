"""What the config says across entries: maintenance windows, ``depends_on`` and runbook links.

The loader validates each check alone; this module judges what needs the whole file: a
``maintenance:`` entry (validated one by one, then compiled into
:class:`agent.alerting.windows.Window`) and a ``depends_on`` may only name checks that exist (with
the usual "did you mean"), dependencies must not form a cycle (``dependency cycle: a -> b -> a``,
reported once, at the ``depends_on`` key of the first check of the cycle in the file), and a
``runbook`` (a check's or a rule's) must be an http(s) URL. Every problem is an :class:`Issue` at
its line and column, like every other config error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agent.alerting.policy import AlertPolicy
from agent.alerting.windows import MaintenanceConfig, Window, compile_window
from agent.config.messages import issues_from_validation, suggest
from agent.config.yaml_source import Path, Source
from agent.core.errors import Issue
from agent.core.safe_text import web_url


@dataclass(frozen=True)
class Dependencies:
    """One check's ``depends_on`` and where it was written (the check's entry or ``defaults``)."""

    check: str
    at: Path  # the path of the depends_on key
    names: tuple[str, ...]


def runbook_issues(policy: AlertPolicy, src: Source, where: Callable[[Path], Path]) -> list[Issue]:
    """A check's ``runbook`` and each rule's must be an http(s) URL. ``where`` places a key of the
    check (in its entry, or in ``defaults`` when it came from there)."""
    found: list[tuple[Path, str | None]] = [(("runbook",), policy.runbook)]
    found += [(("alerts", j, "runbook"), a.runbook) for j, a in enumerate(policy.alerts or [])]
    issues = []
    for loc, url in found:
        if url is not None and not web_url(url):
            issues.append(src.issue(where(loc), f"runbook must be an http:// or https:// URL, got {url!r}"))
    return issues


def dependency_issues(deps: Sequence[Dependencies], src: Source, known: set[str]) -> list[Issue]:
    """Unknown names in ``depends_on`` (``known``: every check name written, valid entry or not)
    and dependency cycles among the valid checks (a check depending on itself is one)."""
    issues: list[Issue] = []
    graph: dict[str, list[str]] = {}
    for d in deps:
        for j, name in enumerate(d.names):
            if name not in known:
                issues.append(src.issue((*d.at, j), suggest(name, known - {d.check}, {}, what="check")))
        graph.setdefault(d.check, []).extend(d.names)
    where: dict[str, Path] = {}
    for d in deps:
        where.setdefault(d.check, d.at)
    graph = {name: [n for n in succ if n in graph] for name, succ in graph.items()}  # edges among valid checks
    for cycle in _cycles(graph):
        issues.append(src.issue(where[cycle[0]], f"dependency cycle: {' -> '.join(cycle)}", key=True))
    return issues


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm, iterative:
    a 10,000-check config must not hit the recursion limit), as ``[a, b, a]`` starting from the
    component's first check in ``graph`` order."""
    order = {name: i for i, name in enumerate(graph)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            succ = graph.get(node, [])
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    cycles = []
    for component in components:
        members = set(component)
        first = min(component, key=order.__getitem__)
        if len(component) > 1 or first in graph.get(first, []):
            cycles.append(_path_back(graph, first, members))
    return sorted(cycles, key=lambda c: order[c[0]])


def _path_back(graph: Mapping[str, list[str]], start: str, members: set[str]) -> list[str]:
    """The shortest way from ``start`` back to itself inside its component (breadth first)."""
    came: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in graph.get(node, []):
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came[path[-1]])
                    return [*reversed(path), start]
                if nxt not in came:
                    came[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start, start]  # not reached: a component with a cycle has a way back


def maintenance_windows(
    raws: Sequence[dict[str, Any]], src: Source, check_names: set[str]
) -> tuple[list[Window], list[Issue]]:
    """Validate each ``maintenance:`` entry on its own and compile the valid ones. Window names
    (unique) and check names are judged even in an entry with other errors: all show at once."""
    windows: list[Window] = []
    issues: list[Issue] = []
    seen: dict[str, Path] = {}
    for i, raw in enumerate(raws):
        path: Path = ("maintenance", i)
        window = raw.get("name")
        if isinstance(window, str) and window in seen:
            first = src.position(seen[window])[0]
            msg = f"duplicate maintenance window name {window!r} (first used on line {first})"
            issues.append(src.issue((*path, "name"), msg))
        elif isinstance(window, str):
            seen[window] = (*path, "name")
        names = raw.get("checks")
        for j, name in enumerate(names if isinstance(names, list) else []):
            if isinstance(name, str) and name not in check_names:
                issues.append(src.issue((*path, "checks", j), suggest(name, check_names, {}, what="check")))
        try:
            config = MaintenanceConfig.model_validate(raw)
        except ValidationError as exc:
            issues.extend(issues_from_validation(exc, src, MaintenanceConfig, path, {}))
            continue
        windows.append(compile_window(config))
    return windows, issues
