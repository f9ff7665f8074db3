"""The steps of ``type: journey`` (:mod:`checks.journey`): a step's options, its ``save:`` sources,
the ``{{ name }}`` templates that use what earlier steps saved, and the checks spanning steps.

A step is one HTTP request judged by http's own ``expect`` model (:class:`checks.http.HttpExpect`).
A template is ``{{ name }}`` (spaces optional) in a step's ``url``, a header value, a ``body`` or a
string inside ``json``; ``name`` is a value an earlier step saved. Everything here is decided when
the config loads: an unknown name, a bad save source or a duplicate step name is a config error at
its line and column, so a journey that loads can only fail on what the servers answer.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.core import validators
from checks.http import _TOKEN, AnyCaseMethod, ByteCount, HttpExpect, _http_url, request_headers
from checks.http_json import Step as JsonStep
from checks.http_json import parse_path

TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # a saved value's name

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class SaveSource:
    """Where a ``save:`` entry takes its value: ``json.PATH``, ``header.NAME`` or ``regex:PATTERN``."""

    kind: Literal["json", "header", "regex"]
    text: str  # as written, for error texts: json.access_token
    arg: str  # the JSON path, the header name or the pattern
    path: tuple[JsonStep, ...] = ()  # the parsed JSON path


def parse_save(text: str) -> SaveSource:
    """``"json.access_token"`` -> ``SaveSource("json", ..., path=("access_token",))``; raises ValueError."""
    if text.startswith("json."):
        arg = text.removeprefix("json.")
        return SaveSource("json", text, arg, parse_path(arg))
    if text.startswith("header."):
        arg = text.removeprefix("header.")
        if not _TOKEN.match(arg):
            raise ValueError(f"invalid header name {arg!r} in {text!r}")
        return SaveSource("header", text, arg)
    if text.startswith("regex:"):
        arg = text.removeprefix("regex:")
        validators.regex(arg)
        return SaveSource("regex", text, arg)
    raise ValueError(f"invalid save source {text!r}: use json.PATH, header.NAME or regex:PATTERN")


def _save_source(text: str) -> str:
    parse_save(text)
    return text


def names_in(text: str) -> list[str]:
    """The names of the templates in ``text``, in order; raises ValueError for a malformed one."""
    names = []
    for m in TEMPLATE.finditer(text):
        name = m.group(1).strip()
        if not _NAME.match(name):
            raise ValueError(f"invalid template {m.group(0)!r}: a name is letters, digits and '_'")
        names.append(name)
    return names


def render(text: str, saved: Mapping[str, str]) -> str:
    """``text`` with each ``{{ name }}`` replaced by the saved value (names are checked at load)."""
    return TEMPLATE.sub(lambda m: saved[m.group(1).strip()], text)


def render_json(value: Any, saved: Mapping[str, str]) -> Any:
    """A ``json`` body with the templates of its strings filled in (keys are left as written)."""
    if isinstance(value, str):
        return render(value, saved) if "{{" in value else value
    if isinstance(value, list):
        return [render_json(v, saved) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, saved) for k, v in value.items()}
    return value


def _step_url(value: str) -> str:
    """An http(s) URL; one with templates is judged with them filled in, unless one starts it (its
    scheme and host are known only when the journey runs: a bad one then fails that step)."""
    if not TEMPLATE.search(value):
        return _http_url(value)
    if value.lstrip().startswith("{{"):
        return value
    filled = TEMPLATE.sub("x", value)
    try:
        _http_url(filled)
    except ValueError as exc:
        raise ValueError(str(exc).replace(repr(filled), repr(value))) from None
    return value


def _step_name(value: str) -> str:
    if not validators.NAME.match(value):
        raise ValueError(f"invalid step name {value!r}: use letters, digits, '.', '_' and '-'")
    return value


class JourneyStep(BaseModel):
    """One ``steps:`` entry: a request, what its answer must look like, and what to keep of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, AfterValidator(_step_name)]
    method: AnyCaseMethod = "GET"
    url: Annotated[str, AfterValidator(_step_url)]
    headers: Annotated[dict[str, str], AfterValidator(request_headers)] = {}
    json_: Any = Field(None, alias="json")  # BaseModel has a json() method
    body: str | None = None
    expect: HttpExpect = HttpExpect()
    save: dict[str, Annotated[str, AfterValidator(_save_source)]] = {}
    follow_redirects: bool = True
    tls_verify: bool = True
    max_body: Annotated[ByteCount, Field(gt=0)] = 1048576  # after decompression

    @field_validator("save")
    @classmethod
    def _save_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"invalid name {name!r} to save as: use letters, digits and '_'")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> JourneyStep:
        if self.json_ is not None and self.body is not None:
            raise ValueError("set json or body, not both")
        return self

    def templated(self) -> Iterator[tuple[Loc, str]]:
        """Every string a template may be in, with where it is in the step."""
        yield ("url",), self.url
        for name, value in self.headers.items():
            yield ("headers", name), value
        if self.body is not None:
            yield ("body",), self.body
        yield from _json_strings(self.json_, ("json",))


def _json_strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_strings(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, (*loc, str(key)))


def step_issues(steps: Sequence[JourneyStep]) -> list[tuple[Loc, str]]:
    """What is wrong across the steps, each at its place (``(1, "headers", "Authorization")``): a
    duplicate step name, a malformed template, a template naming no value saved by an earlier step."""
    issues: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    saved: list[str] = []
    for i, step in enumerate(steps):
        if step.name in seen:
            issues.append(((i, "name"), f"duplicate step name {step.name!r}"))
        seen.add(step.name)
        for loc, text in step.templated():
            try:
                names = names_in(text)
            except ValueError as exc:
                issues.append(((i, *loc), f"step {step.name}: {exc}"))
                continue
            for name in dict.fromkeys(names):
                if name not in saved:
                    close = difflib.get_close_matches(name, saved, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    issues.append(
                        ((i, *loc), f"step {step.name}: {{{{ {name} }}}} is not saved by an earlier step{hint}")
                    )
        saved.extend(n for n in step.save if n not in saved)
    return issues


_STEP_VALUE = re.compile(r"\s*step\.(\S+?)\.(?:duration|status)\s*[<>=!]")


def rule_issue(when: str, step_names: Sequence[str]) -> str | None:
    """Why ``when`` (an alert rule) names a step this journey does not have, or None."""
    m = _STEP_VALUE.match(when)
    if m is None or m.group(1) in step_names:
        return None
    name = m.group(1)
    close = difflib.get_close_matches(name, step_names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"this journey has no step {name!r}{hint} (its steps: {', '.join(step_names)})"
