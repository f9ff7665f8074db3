"""JSON bodies for ``type: http``: paths such as ``$.status`` or ``data.items[0].id``, assertions on
what they point at (``expect.json``), and numbers exposed as values (``values_from_json``).

A path is an optional ``$``, then keys separated by dots and ``[N]`` list indexes (``[-1]`` is the
last item); a key holding dots or spaces is written ``["a.b"]``. ``.a``, ``a`` and ``$.a`` are one
path, and a key of digits indexes a list (``items.0.sku`` is ``items[0].sku``). There are no
wildcards: each path names at most one JSON value.

``expect.json`` is a list of ``{path, TEST}`` or a mapping ``{PATH: {TEST}}``; a TEST is one of
``equals: V``, ``matches: REGEX``, ``op: '>'`` with ``value: N``, or ``exists: true|false``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from agent.core import validators
from agent.core.units import COMPARISONS

Step = str | int
_STEP = re.compile(r"""\.?([^.\[\]'"\s]+)|\[(-?\d+)\]|\["([^"]*)"\]|\['([^']*)'\]""")
_NAME_KEY = re.compile(r"[\w\-]+\Z")


def parse_path(text: str) -> tuple[Step, ...]:
    """``"$.data.items[0].id"`` -> ``("data", "items", 0, "id")``; raises ValueError."""
    if not text:
        raise ValueError("empty JSON path: write $ for the whole body")
    rest = text[1:] if text[:1] == "$" and text[1:2] in ("", ".", "[") else text
    steps: list[Step] = []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if not m or (pos and rest[pos] not in ".["):
            raise ValueError(
                f"invalid JSON path {text!r}: expected keys separated by dots and [N] indexes, like $.data.items[0].id"
            )
        key, index, dq, sq = m.groups()
        steps.append(int(index) if index is not None else next(s for s in (key, dq, sq) if s is not None))
        pos = m.end()
    return tuple(steps)


def _path(text: str) -> str:
    parse_path(text)
    return text


JsonPath = Annotated[str, AfterValidator(_path)]


def lookup(doc: Any, steps: Sequence[Step]) -> tuple[bool, Any]:
    """``(True, value)`` at ``steps`` in ``doc``, or ``(False, None)`` when the path leads nowhere."""
    for step in steps:
        if isinstance(step, str) and step.isdigit() and isinstance(doc, list):
            step = int(step)  # items.0.sku: a key of digits on a list is an index
        if isinstance(step, int):
            if not isinstance(doc, list) or not -len(doc) <= step < len(doc):
                return False, None
        elif not isinstance(doc, dict) or step not in doc:
            return False, None
        doc = doc[step]
    return True, doc


def value_name(text: str) -> str:
    """The value a ``values_from_json`` path is exposed as: ``$.queue.depth`` -> ``json.queue.depth``."""
    steps = parse_path(text)
    if not steps:
        raise ValueError(f"JSON path {text!r} names the whole body: name a field, like $.queue.depth")
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _NAME_KEY.match(step):
            out += f".{step}"
        else:
            raise ValueError(f"JSON path {text!r}: key {step!r} cannot be in a value name (use letters, digits, _, -)")
    return "json." + out.removeprefix(".")


def _number(value: Any) -> float | None:
    """A JSON number as a float (true/false count as 1/0); None for anything else."""
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` and ``"1"`` is not ``1``; ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, int | float) or isinstance(b, int | float):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    return bool(a == b)


def show(value: Any) -> str:
    """A JSON value for an error text: strings quoted, the rest as JSON, at most 80 characters."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def assertions(value: object) -> object:
    """``expect.json`` as a list: the mapping form ``{PATH: {TEST}}`` becomes ``[{path: PATH, TEST}]``."""
    if isinstance(value, dict):
        return [
            {"path": path, **test} if isinstance(test, dict) else {"path": path, "equals": test}
            for path, test in value.items()
        ]
    return value


class JsonAssertion(BaseModel):
    """One ``expect.json`` entry: ``path`` and one of ``equals``, ``matches``, ``op`` + ``value`` or
    ``exists``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: JsonPath
    equals: Any = None
    matches: Annotated[str, AfterValidator(validators.regex)] | None = None
    op: Literal[">", ">=", "<", "<=", "==", "!="] | None = None
    value: float | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> JsonAssertion:
        given = self.model_fields_set & {"equals", "matches", "op", "exists"}
        if len(given) != 1:
            raise ValueError(f"json {self.path}: give exactly one of equals, matches, op (with value) or exists")
        if ("op" in given) != ("value" in self.model_fields_set):
            raise ValueError(f"json {self.path}: op and value go together, like {{op: '>', value: 3}}")
        return self


class JsonRules:
    """The JSON expectations of one check, compiled once: judge a parsed body and extract values."""

    def __init__(self, assertions: Sequence[JsonAssertion], value_paths: Sequence[str]) -> None:
        self._tests = [
            (a, parse_path(a.path), re.compile(a.matches) if a.matches is not None else None) for a in assertions
        ]
        self._values = [(value_name(p), parse_path(p)) for p in value_paths]

    def __bool__(self) -> bool:
        return bool(self._tests or self._values)

    def values(self, doc: Any) -> dict[str, float]:
        """``json.PATH`` for every listed path holding a number (or true/false) in ``doc``."""
        out: dict[str, float] = {}
        for name, steps in self._values:
            found, value = lookup(doc, steps)
            if found and (number := _number(value)) is not None:
                out[name] = number
        return out

    def failure(self, doc: Any) -> str | None:
        """The first broken assertion, explained, or None."""
        for test, steps, rx in self._tests:
            found, got = lookup(doc, steps)
            where = f"json {test.path}"
            if test.exists is not None:
                if found != test.exists:
                    return f"{where} missing" if test.exists else f"{where} is {show(got)}, expected it absent"
                continue
            if not found:
                return f"{where} missing"
            if rx is not None:
                text = got if isinstance(got, str) else json.dumps(got)
                if not rx.search(text):
                    return f"{where} is {show(got)}, expected to match /{rx.pattern}/"
            elif test.op is not None and test.value is not None:
                number = _number(got) if not isinstance(got, bool) else None
                if number is None:
                    return f"{where} is {show(got)}, expected a number"
                if not COMPARISONS[test.op](number, test.value):
                    return f"{where} is {show(got)}, expected {test.op} {test.value:g}"
            elif not _same(got, test.equals):
                return f"{where} is {show(got)}, expected {show(test.equals)}"
        return None


def parse_body(body: bytes) -> Any:
    """The JSON document in ``body``; raises ValueError with the reason (``body is not JSON: ...``)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("body is not JSON: nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("body is not JSON: not UTF-8 text") from None
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
