"""Everything derived from the registries stays complete: every check and sink type documents its
options, values and an example, has ``config/examples/TYPE.yaml``, and both examples validate."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent.cli.docs import example_of
from agent.config.load import load_config, parse_config
from agent.delivery.sinks import SINKS
from checks import CHECKS
from checks.base import ERROR_KINDS
from checks.browser_pool import install_problems

EXAMPLES = Path(__file__).parents[2] / "config" / "examples"
ENV = {"API_TOKEN": "t", "API_SYNTHETIC_PASSWORD": "p"}


def validating_needs_a_browser(name: str) -> None:
    """A browser config validates only where Playwright and Chromium are installed: skip it
    without them (fail under CI, which installs both)."""
    if name != "browser" or not (missing := install_problems(None)):
        return
    reason = "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_module_documents_options_values_and_example(name: str) -> None:
    cls = CHECKS[name]
    doc = sys.modules[cls.__module__].__doc__ or ""
    assert name == cls.TYPE
    for option in cls.Config.model_fields:
        if option not in ("name", "type", "interval", "timeout", "labels", "alerts", "targets", "impact", "flapping"):
            assert option in doc, f"{name}: option {option!r} is not documented in the module docstring"
    for value in cls.VALUES:
        assert value.name in doc, f"{name}: value {value.name!r} is not documented"
        assert value.unit and value.meaning
    example = example_of(cls)
    assert f"type: {name}" in example
    validating_needs_a_browser(name)
    cfg = parse_config("checks:\n" + "\n".join("  " + line for line in example.splitlines()), "sample", env={})
    assert all(c.config.type == name for c in cfg.checks)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_type_has_a_valid_example_config(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    validating_needs_a_browser(name)
    cfg = load_config(str(EXAMPLES / f"{name}.yaml"))
    assert any(c.config.type == name for c in cfg.checks)


def test_the_main_example_validates() -> None:
    cfg = load_config(str(EXAMPLES.parent / "example.yaml"))
    assert {c.config.type for c in cfg.checks} >= {"host", "tcp"}


@pytest.mark.parametrize("name", sorted(SINKS))
def test_sink_module_documents_itself_with_an_example(name: str) -> None:
    cls = SINKS[name]
    doc = sys.modules[cls.__module__].__doc__ or ""
    assert f"type: {name}" in doc and "Example::" in doc


def test_error_kinds_are_documented_where_defined() -> None:
    import checks.base

    for kind in ERROR_KINDS:
        assert f"    {kind} " in (checks.base.__doc__ or "")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_config_validates(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = {"API_TOKEN": "t", "API_SYNTHETIC_PASSWORD": "p", "SMTP_PASSWORD": "p"}
    # fleet.yaml is one file for every location: each agent's environment says which (the loader
    # has no ${VAR:-default}, so the example names them and this test provides them)
    secrets |= {"FIRSTWATCH_LOCATION": "eu-west", "FIRSTWATCH_LISTEN": "127.0.0.1:9464"}
    secrets |= {"FIRSTWATCH_STATE": str(tmp_path / "state"), "SHOP_URL": "https://shop.example.com/"}
    secrets |= {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/x"}
    secrets |= {"PAGERDUTY_ROUTING_KEY": "r" * 32, "PAGERDUTY_BACKUP_ROUTING_KEY": "b" * 32}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    validating_needs_a_browser(path.stem)
    load_config(str(path))
