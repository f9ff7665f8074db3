"""The house rules, checked on the source: rooms import one way, checks/ only from agent.core,
no module loose in agent/, every room says what it does and may import (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# bottom to top: a room may import its own modules and the rooms before it, never one after it
ORDER = ["core", "checks", "alerting", "incidents", "telemetry", "delivery", "config", "web", "engine", "cli"]


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "checks":
        return "checks"
    if parts[0] == "agent" and len(parts) > 1 and parts[1] in ORDER:
        return parts[1]
    return None


def modules() -> dict[str, Path]:
    found = {}
    for top in ("agent", "checks"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (lazy imports inside functions count too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            out += _names(node, path, module)
    return out


def test_imports_run_one_way() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        mine = room_of(module)
        if mine is None:
            continue
        for line, name in imports(path, module):
            if name not in known:
                continue  # a class or function imported from a module, or a third-party name
            theirs = room_of(name)
            if theirs is None or theirs == mine:
                continue
            if ORDER.index(theirs) > ORDER.index(mine) or (mine == "checks" and theirs != "core"):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {name} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_module_lives_loose_in_agent() -> None:
    loose = sorted(p.name for p in (ROOT / "agent").glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]
    folders = sorted(p.name for p in (ROOT / "agent").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(set(ORDER) - {"checks"})


def test_every_room_says_what_it_does_and_may_import() -> None:
    for room in [*(r for r in ORDER if r != "checks")]:
        init = ROOT / "agent" / room / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "May import" in doc, f"{init.relative_to(ROOT)}: no docstring saying what it may import"


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in modules().values()
        if not ast.get_docstring(ast.parse(path.read_text())) and path.read_text().strip()
    ]
    assert not missing, missing


def top_level_imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Modules imported when ``module`` is imported (not under TYPE_CHECKING, not in functions)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(name for _, name in _names(node, path, module) if name in known)
    return found


def _names(node: ast.Import | ast.ImportFrom, path: Path, module: str) -> list[tuple[int, str]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if isinstance(node, ast.Import):
        return [(node.lineno, alias.name) for alias in node.names]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        name = ".".join([*base, node.module] if node.module else base)
    else:
        name = node.module or ""
    return [(node.lineno, name), *((node.lineno, f"{name}.{alias.name}") for alias in node.names)]


def test_no_import_cycles() -> None:
    """No cycle among what modules import when they load (lazy imports of heavy libraries inside
    functions, such as a check's probe module, are not loading-time edges)."""
    known = modules()
    graph = {m: top_level_imports(p, m, known) - {m} for m, p in known.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join([*stack[stack.index(n) :], n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)
