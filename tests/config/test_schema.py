"""``firstwatch schema``: the JSON Schema accepts what the loader accepts and fails what it refuses.

Every shipped config validates; each broken config of a set fails both the schema and the loader
(so the schema is neither stricter nor looser than the loader on them); every check and sink type
is in it with exactly its model's keys; the command prints it as JSON and exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agent.cli.docs import example_of
from agent.config.load import entry_model, parse_config
from agent.config.schema import config_schema
from agent.config.yaml_source import load_yaml
from agent.core.errors import ConfigError
from agent.delivery.sinks import SINKS
from checks import CHECKS

ROOT = Path(__file__).parents[2]
CONFIGS = [ROOT / "config" / "example.yaml", *sorted((ROOT / "config" / "examples").glob("*.yaml"))]

SCHEMA = config_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class _Unexpanded(dict[str, str]):
    """An environment in which every ``${VAR}`` stays as written: the file as an editor sees it."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return "${" + key + "}"


def as_written(text: str) -> Any:
    """The YAML as JSON data, ``${VAR}`` unexpanded (timestamps as ISO text, as editors read them)."""
    data = load_yaml(text, "c.yaml", _Unexpanded()).data
    return json.loads(json.dumps(data, default=lambda o: o.isoformat()))


def schema_errors(text: str) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(as_written(text))]


def loader_errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    try:
        parse_config(text, "c.yaml", env=env or {})
    except ConfigError as exc:
        return [str(i) for i in exc.issues]
    return []


BASE = """\
agent: {name: edge-1}
defaults: {interval: 1m}
checks:
  - name: web
    type: http
    url: https://example.com/
    alerts: [{when: down, for: 2m, severity: critical, quorum: 2}]
sinks:
  - {type: webhook, name: pager, url: https://hooks.example.com/x}
"""

BROKEN = {
    "top-level key typo": ("agent:", "agnet:"),
    "check key typo": ("    url:", "    urll:"),
    "alert key typo": ("severity: critical", "severty: critical"),
    "unknown severity": ("severity: critical", "severity: urgent"),
    "unknown check type": ("type: http", "type: htp"),
    "unknown sink type": ("type: webhook", "type: webhok"),
    "sink key typo": ("name: pager, url:", "name: pager, urll:"),
    "negative quorum": ("quorum: 2", "quorum: -1"),
    "zero quorum": ("quorum: 2", "quorum: 0"),
    "quorum not a number": ("quorum: 2", "quorum: two"),
    "defaults key typo": ("{interval: 1m}", "{intervall: 1m}"),
    "duration without a unit": ("{interval: 1m}", "{interval: 5}"),
    "duration in words": ("for: 2m", "for: 2 minutes"),
    "agent key typo": ("{name: edge-1}", "{nmae: edge-1}"),
    "check without a name": ("  - name: web\n    type: http", "  - type: http"),
    "check without a type": ("    type: http\n", ""),
    "check name with a space": ("name: web\n", "name: web site\n"),
    "agent label name": ("{name: edge-1}", "{name: edge-1, labels: {team-a: x}}"),
    "telemetry key typo": ("sinks:", "telemetry: {prometeus: true}\nsinks:"),
    "maintenance key typo": ("sinks:", "maintenance: [{name: m, checks: [web], shedule: '0 3 * * *'}]\nsinks:"),
    "command check without a command": ("type: http\n    url: https://example.com/", "type: command"),
    "flapping as text": ("severity: critical, quorum: 2}]", "severity: critical}]\n    flapping: sometimes"),
    "sinks not a list": ("sinks:\n  - {type: webhook, name: pager, url: https://hooks.example.com/x}", "sinks: stdout"),
}


def broken(case: str) -> str:
    old, new = BROKEN[case]
    assert old in BASE, case
    return BASE.replace(old, new, 1)


def test_the_base_config_is_valid_for_both() -> None:
    assert schema_errors(BASE) == []
    assert loader_errors(BASE) == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_config_fails_the_schema_and_the_loader(case: str) -> None:
    text = broken(case)
    assert schema_errors(text), f"the schema accepts {case}"
    assert loader_errors(text), f"the loader accepts {case}"


VALID = {
    "env in a number": ("quorum: 2", "quorum: '${QUORUM}'"),
    "env in a duration": ("{interval: 1m}", "{interval: '${INTERVAL}'}"),
    "env in a severity": ("severity: critical", "severity: '${SEVERITY}'"),
    "env in a boolean": ("    url: https://example.com/", "    url: https://example.com/\n    tls_verify: ${VERIFY}"),
    "a bare zero duration": ("for: 2m", "for: 0"),
    "combined duration": ("for: 2m", "for: 1h30m"),
    "method in lower case": ("    url: https://example.com/", "    url: https://example.com/\n    method: get"),
    "a size with a unit": ("    url: https://example.com/", "    url: https://example.com/\n    max_body: 2MB"),
    "ip_version as text": ("    url: https://example.com/", "    url: https://example.com/\n    ip_version: '6'"),
    "bearer as a token": ("    url: https://example.com/", "    url: https://example.com/\n    auth: {bearer: t0k}"),
    "json expectations as a mapping": (
        "    url: https://example.com/",
        "    url: https://example.com/\n    expect: {json: {status: ok, count: {op: '>', value: 1}}}",
    ),
    "a share in percent": (
        "    url: https://example.com/",
        "    targets: [https://a.example.com/, https://b.example.com/]\n    impact: [{share: 50%, severity: major}]",
    ),
    "an objective in percent": (
        "severity: critical, quorum: 2}]",
        "severity: critical}]\n    slo: {objective: 99.9%, window: 28d}",
    ),
    "flapping off": ("severity: critical, quorum: 2}]", "severity: critical}]\n    flapping: false"),
    "sinks: null": ("sinks:\n  - {type: webhook, name: pager, url: https://hooks.example.com/x}", "sinks:"),
    "tls min_version as a number": (
        "type: http\n    url: https://example.com/",
        "type: tls\n    target: example.com:443\n    min_version: 1.3",
    ),
    "a required key from defaults": (
        "{interval: 1m}",
        "{interval: 1m, command: [/bin/true]}",
    ),
}
ENV = {"QUORUM": "3", "INTERVAL": "30s", "SEVERITY": "major", "VERIFY": "false"}


@pytest.mark.parametrize("case", sorted(VALID))
def test_a_written_form_the_loader_takes_is_valid(case: str) -> None:
    old, new = VALID[case]
    assert old in BASE, case
    text = BASE.replace(old, new, 1)
    if case == "a required key from defaults":  # a command check taking its command from defaults
        text = text.replace("type: http\n    url: https://example.com/", "type: command")
    assert schema_errors(text) == []
    assert loader_errors(text, ENV) == []


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    assert schema_errors(path.read_text()) == []


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_types_docstring_example_is_valid(name: str) -> None:
    example = example_of(CHECKS[name])
    assert schema_errors("checks:\n" + "\n".join("  " + line for line in example.splitlines())) == []


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] and SCHEMA["title"]
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_check_and_sink_type_is_there_with_exactly_its_keys() -> None:
    defs = SCHEMA["$defs"]
    assert defs["CheckEntry"]["properties"]["type"]["enum"] == sorted(CHECKS)
    assert defs["SinkEntry"]["properties"]["type"]["enum"] == sorted(SINKS)
    picked = {rule["if"]["properties"]["type"]["const"]: rule["then"]["$ref"] for rule in defs["CheckEntry"]["allOf"]}
    assert set(picked) == set(CHECKS)
    every_key: set[str] = set()
    for name, cls in CHECKS.items():
        entry = defs[picked[name].rsplit("/", 1)[1]]
        keys = {f.alias or k for k, f in entry_model(cls).model_fields.items()}
        assert set(entry["properties"]) == keys
        assert entry["additionalProperties"] is False
        assert entry["properties"]["type"] == {"const": name}
        assert entry["description"]
        every_key |= keys
    assert set(defs["Defaults"]["properties"]) == every_key - {"name", "type"}
    sinks = {rule["if"]["properties"]["type"]["const"]: rule["then"]["$ref"] for rule in defs["SinkEntry"]["allOf"]}
    assert set(sinks) == set(SINKS)
    for name, sink in SINKS.items():
        entry = defs[sinks[name].rsplit("/", 1)[1]]
        assert set(entry["properties"]) == {f.alias or k for k, f in sink.Config.model_fields.items()}
        assert entry["additionalProperties"] is False


def _with_defaults(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if "default" in node:
            found.append((path, node))
        for key, value in node.items():
            if key not in ("default", "examples", "const", "enum"):
                found += _with_defaults(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _with_defaults(value, f"{path}/{i}")
    return found


def test_every_default_is_shown_in_its_written_form() -> None:
    """A default valid against its own schema: ``30s``, not the parsed 30.0."""
    wrong = []
    for path, node in _with_defaults(SCHEMA["$defs"], "/$defs"):
        sub = {**{k: v for k, v in node.items() if k != "default"}, "$defs": SCHEMA["$defs"]}
        if not jsonschema.Draft202012Validator(sub).is_valid(node["default"]):
            wrong.append(f"{path}: {node['default']!r}")
    assert not wrong, wrong


def test_the_command_prints_the_schema_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "agent", "schema"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert json.loads(out.stdout) == json.loads(json.dumps(SCHEMA))
    helped = subprocess.run([sys.executable, "-m", "agent", "schema", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "JSON Schema" in helped.stdout
