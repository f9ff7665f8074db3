"""Turn pydantic validation errors into the messages users read: short, positioned, helpful.

``checks[7].intervall: unknown option; did you mean 'interval'?`` rather than pydantic's
"Extra inputs are not permitted". Error text is user interface: ``tests/config/test_config_errors.py``
asserts it exactly over a corpus of bad configs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.config.yaml_source import Path, Source
from agent.core.errors import Issue

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def yaml_kind(value: object) -> str:
    """How a YAML user would name the type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def suggest(word: str, candidates: Iterable[str], planned: Mapping[str, str], *, what: str = "option") -> str:
    """``unknown option; did you mean 'interval'?`` (or the planned-feature message)."""
    if word in planned:
        return planned[word]
    options = sorted(candidates)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return (
            f"unknown {what} {word!r}; did you mean {close[0]!r}?"
            if what != "option"
            else (f"unknown option; did you mean {close[0]!r}?")
        )
    if what != "option":
        return f"unknown {what} {word!r}"
    return f"unknown option (valid here: {', '.join(options)})"


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The option names allowed at ``loc`` inside ``model`` (for "did you mean")."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            args = typing.get_args(tp)
            tp = args[0] if args else Any
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            field = next((f for n, f in tp.model_fields.items() if (f.alias or n) == part), None)
            tp = field.annotation if field else Any
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else Any
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [f.alias or n for n, f in tp.model_fields.items()]
    return []


def _message(err: Mapping[str, Any], model: type[BaseModel], planned: Mapping[str, str]) -> str:
    kind, loc, value = err["type"], tuple(err["loc"]), err.get("input")
    if kind == "extra_forbidden":
        return suggest(str(loc[-1]), _fields_at(model, loc[:-1]), planned)
    if kind == "missing":
        return f"missing required option {loc[-1]!r}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",") if c.strip()]
        hint = ""
        if isinstance(value, str):
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"invalid value {value!r}{hint} (expected one of: {', '.join(choices)})"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {yaml_kind(value)}"
    if kind == "greater_than":
        return f"must be greater than {err['ctx']['gt']:g}"
    if kind == "greater_than_equal":
        return f"must be at least {err['ctx']['ge']:g}"
    if kind == "less_than_equal":
        return f"must be at most {err['ctx']['le']:g}"
    msg = str(err["msg"])
    return msg[:1].lower() + msg[1:]


def issues_from_validation(
    exc: ValidationError,
    src: Source,
    model: type[BaseModel],
    base: Path,
    planned: Mapping[str, str],
    relocate: Callable[[Path], Path] | None = None,
) -> list[Issue]:
    """One :class:`Issue` per pydantic error, positioned in ``src``."""
    out: list[Issue] = []
    for err in exc.errors():
        loc: Path = tuple(err["loc"])
        path = relocate(loc) if relocate else (*base, *loc)
        message = _message(err, model, planned)
        if err["type"] == "missing":
            out.append(src.issue(path[:-1], message))
        else:
            out.append(src.issue(path, message, key=err["type"] == "extra_forbidden"))
    return out
