"""The config's JSON Schema (draft 2020-12), generated from the models that validate it.

``config_schema()`` is what ``firstwatch schema`` prints, for editors (yaml-language-server) and
CI linters. It is built from the loader's own models, so it cannot drift from them: the top
level's sections (:class:`agent.config.load.TopLevel`), each check type's entry
(:func:`agent.config.load.entry_model`: its ``Config`` and the alerting keys), each sink type's
``Config`` and a ``maintenance:`` entry. Every model forbids unknown keys, and so does the schema
(``additionalProperties: false``): a typo in a key fails here as it does at load.

A ``checks:`` entry is chosen by its ``type`` (``allOf`` of ``if: {type: {const: T}}, then: {$ref:
T's entry}``, with ``type`` an ``enum`` of the known types), and so is a ``sinks:`` entry. The schema
describes values as they are written, not as they are parsed: durations are text (``5m``,
``1h30m``) or a bare 0, shares ``0.5`` or ``50%``, sizes ``1048576`` or ``1MB`` (the annotated types
carry their written form). ``${VAR}`` is expanded before validation, so a value the schema expects
to be a number, a boolean, one of a few words or a pattern may also be a string holding a
``${VAR}`` reference (its value is judged at load).

What a schema cannot see stays the loader's: names unique, ``depends_on`` naming checks that
exist, rules naming values their type measures, a ``url`` or ``targets`` present, files present.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema

from agent import __version__
from agent.alerting.windows import MaintenanceConfig
from agent.config.load import AgentSection, TopLevel, entry_model
from agent.core.units import DURATION_PATTERN, format_duration
from agent.delivery.sinks import SINKS
from agent.telemetry.config import TelemetryConfig
from checks import CHECKS

SCHEMA_ID = "urn:firstwatch:config"
ENV = "EnvReference"
_ENV_REF = {"$ref": f"#/$defs/{ENV}"}
_ENV_SCHEMA = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*\}",
    "description": "${VAR}: taken from the environment at load, and judged then",
}
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"  # agent.core.validators.NAME
_LABEL_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # agent.core.validators.LABEL_NAME
_SCHEMA_KEYS = ("items", "additionalProperties", "not", "if", "then", "else", "propertyNames", "contains")
_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")
_ANNOTATIONS = ("title", "description", "default", "examples")
_ROLE = re.compile(r":[a-z]+:(`[^`]+`)")  # :data:`X`, :class:`X`

_SECTIONS = {
    "agent": "The agent itself: its name, labels, state directory, status endpoint, heartbeat and browser.",
    "defaults": "Any check key, applied to every check whose type has it; each check may override.",
    "checks": "The checks: each one a `type` (see the check types) and its keys, with its alerts.",
    "sinks": "Where events go. Without a sinks: key at all, events go to stdout.",
    "telemetry": "Where metrics go: OTLP push, the Prometheus endpoint, CloudWatch EMF.",
    "maintenance": "Planned windows: checks still run, nobody is paged.",
}


class _InputSchema(GenerateJsonSchema):
    """Pydantic's generator, without a title on every field (the key says it)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def literal_schema(self, schema: core_schema.LiteralSchema) -> dict[str, Any]:
        out = super().literal_schema(schema)
        if "const" in out and "enum" not in out:  # one-word literals read better as enums in editors
            out["enum"] = [out.pop("const")]
        return out


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, as a JSON-ready dict."""
    entries = {kind: entry_model(cls) for kind, cls in sorted(CHECKS.items())}
    sinks = {kind: cls.Config for kind, cls in sorted(SINKS.items())}
    models: list[type[BaseModel]] = [AgentSection, TelemetryConfig, MaintenanceConfig, *entries.values()]
    models += [m for m in sinks.values() if m not in models]
    refs, doc = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/$defs/{model}", schema_generator=_InputSchema
    )
    defs: dict[str, Any] = {name: _written(d) for name, d in doc["$defs"].items()}

    def name_of(model: type[BaseModel]) -> str:
        return str(refs[(model, "validation")]["$ref"]).rsplit("/", 1)[1]

    later: dict[str, list[str]] = {}  # check type -> keys it requires that defaults may supply
    for kind, model in entries.items():
        d = defs[name_of(model)]
        later[kind] = [k for k in d.get("required", []) if k not in ("name", "type")]
        d["required"] = ["name", "type"]
        d["properties"]["type"] = {"const": kind}
        d["properties"]["name"] = {**d["properties"]["name"], "pattern": _NAME_PATTERN}
        d["description"] = _doc(CHECKS[kind])
    sink_defs: dict[str, str] = {}
    for kind, model in sinks.items():
        name = sink_defs[kind] = name_of(model)
        if list(sinks.values()).count(model) > 1:  # a model serving two types: one copy each
            name = sink_defs[kind] = f"{name}-{kind}"
            defs[name] = copy.deepcopy(defs[name_of(model)])
        defs[name]["properties"]["type"] = {"const": kind}
        defs[name]["description"] = _doc(SINKS[kind])
    agent = defs[name_of(AgentSection)]
    agent["properties"]["labels"]["propertyNames"] = {"pattern": _LABEL_PATTERN}
    defs["CheckEntry"] = _one_of("check", {k: name_of(m) for k, m in entries.items()})
    defs["SinkEntry"] = _one_of("sink", sink_defs)
    defs["Defaults"] = _defaults([defs[name_of(m)] for m in entries.values()])
    defs[ENV] = _ENV_SCHEMA
    properties: dict[str, Any] = {
        "agent": {"$ref": f"#/$defs/{name_of(AgentSection)}"},
        "defaults": {"$ref": "#/$defs/Defaults"},
        "checks": {"type": "array", "items": {"$ref": "#/$defs/CheckEntry"}},
        "sinks": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/SinkEntry"}}, {"type": "null"}]},
        "telemetry": {"$ref": f"#/$defs/{name_of(TelemetryConfig)}"},
        "maintenance": {"type": "array", "items": {"$ref": f"#/$defs/{name_of(MaintenanceConfig)}"}},
    }
    assert set(properties) == set(TopLevel.model_fields)  # a new section needs its schema here
    for key, text in _SECTIONS.items():
        properties[key]["description"] = text
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "firstwatch config",
        "description": f"The configuration of firstwatch {__version__} (`firstwatch schema` prints this).",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "allOf": _required_unless_defaulted(later),
        "$defs": dict(sorted(defs.items())),
    }


def _doc(cls: type) -> str:
    """The first paragraph of the docstring of ``cls``'s module, on one line."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    return _plain(doc.strip().split("\n\n")[0])


def _one_of(what: str, defs: dict[str, str]) -> dict[str, Any]:
    """An entry chosen by its ``type``: an unknown type fails the enum, a known one its own schema."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(defs), "description": f"the {what} type"}},
        "allOf": [
            {"if": {"properties": {"type": {"const": kind}}, "required": ["type"]}, "then": {"$ref": f"#/$defs/{d}"}}
            for kind, d in defs.items()
        ],
    }


def _defaults(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``defaults:``: any key some check type has (but ``name`` and ``type``), each as any of the
    forms the types that have it take."""
    forms: dict[str, list[Any]] = {}
    for entry in entries:
        for key, schema in entry["properties"].items():
            if key in ("name", "type"):
                continue
            seen = forms.setdefault(key, [])
            if all(_canonical(schema) != _canonical(s) for s in seen):
                seen.append(schema)
    properties: dict[str, Any] = {}
    for key, schemas in sorted(forms.items()):
        if len(schemas) == 1:
            properties[key] = schemas[0]
        else:
            described = next((s["description"] for s in schemas if "description" in s), None)
            properties[key] = {"anyOf": [_bare(s) for s in schemas]}
            if described:
                properties[key]["description"] = described
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _required_unless_defaulted(later: dict[str, list[str]]) -> list[dict[str, Any]]:
    """A key a check type requires may come from ``defaults:``: required in the entry unless there."""
    rules = []
    for kind, keys in sorted(later.items()):
        for key in keys:
            entry = {"if": {"properties": {"type": {"const": kind}}, "required": ["type"]}, "then": {"required": [key]}}
            rules.append(
                {
                    "if": {"properties": {"defaults": {"required": [key]}}, "required": ["defaults"]},
                    "else": {"properties": {"checks": {"items": entry}}},
                }
            )
    return rules


def _canonical(schema: Any) -> str:
    return json.dumps(_bare(schema), sort_keys=True)


def _bare(schema: Any) -> Any:
    """``schema`` without its annotations (the same form, described otherwise, is the same form)."""
    if not isinstance(schema, dict):
        return schema
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS}


def _written(node: Any, wrap: bool = True) -> Any:
    """A generated schema as the config is written: a value that is not free text may also be a
    ``${VAR}`` reference, and a duration's default is shown as a duration (``30s``, not 30.0)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_KEYS and isinstance(value, dict):
            out[key] = _written(value)
        elif key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
            out[key] = {k: _written(v) for k, v in value.items()}
        elif key in _LIST_KEYS:
            out[key] = [_written(v, wrap=key != "anyOf") for v in value]
        else:
            out[key] = value
    if isinstance(out.get("description"), str):
        out["description"] = _plain(out["description"])
    if _is_duration(out) and isinstance(out.get("default"), int | float) and not isinstance(out["default"], bool):
        out["default"] = format_duration(out["default"]) if out["default"] else "0"
    if not wrap or not _needs_env(out):
        return out
    if "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], _ENV_REF]
        return out
    annotations = {k: out.pop(k) for k in _ANNOTATIONS if k in out}
    return {**annotations, "anyOf": [out, _ENV_REF]}


def _plain(doc: str) -> str:
    """A docstring as one line of Markdown: ``x`` and :data:`x` are `x`."""
    return " ".join(_ROLE.sub(r"\1", doc).replace("``", "`").split())


def _free_text(node: dict[str, Any]) -> bool:
    """Whether any string at all is valid here."""
    if "anyOf" in node:
        return any(_free_text(m) for m in node["anyOf"])
    return node.get("type") == "string" and not {"pattern", "enum", "const"} & node.keys()


def _needs_env(node: dict[str, Any]) -> bool:
    """Whether a ``${VAR}`` string would fail here though the loader could accept what it expands to."""
    if "anyOf" in node:
        return not _free_text(node) and any(_needs_env(m) for m in node["anyOf"])
    if "$ref" in node:
        return False
    return node.get("type") in ("integer", "number", "boolean") or bool({"pattern", "enum", "const"} & node.keys())


def _is_duration(node: dict[str, Any]) -> bool:
    return node.get("pattern") == DURATION_PATTERN or any(_is_duration(m) for m in node.get("anyOf", []))


def cmd_schema() -> int:
    """Print the schema (``firstwatch schema``)."""
    print(json.dumps(config_schema(), indent=2))
    return 0
