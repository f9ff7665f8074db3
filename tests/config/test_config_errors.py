"""A corpus of bad configs, each with the exact messages users must see (error text is UI).

Each ``tests/config/configs/invalid-*.yaml`` starts with ``# expect: FILE:LINE:COL: path: message`` lines;
loading it must report exactly those issues, in that order, and ``firstwatch validate`` must exit
78 and print them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config.load import load_config, parse_config
from agent.core.errors import ConfigError

CONFIGS = Path(__file__).parent / "configs"
CORPUS = sorted(CONFIGS.glob("invalid-*.yaml"))


def expected(path: Path) -> list[str]:
    return [line.removeprefix("# expect: ") for line in path.read_text().splitlines() if line.startswith("# expect: ")]


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_config_reports_every_issue_exactly(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIGS)
    monkeypatch.delenv("FIRSTWATCH_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(path.name)
    assert [str(i) for i in info.value.issues] == expected(path)


def test_validate_command_prints_errors_and_exits_78() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "validate", "-c", "invalid-typo.yaml"],
        cwd=CONFIGS,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 78
    assert proc.stderr.splitlines()[0] == expected(CONFIGS / "invalid-typo.yaml")[0]
    assert "Traceback" not in proc.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yaml"))
    assert str(info.value.issues[0]) == f"{tmp_path / 'nope.yaml'}: config file not found"  # no :0:0


def test_env_reference_is_expanded_and_dollar_escaped() -> None:
    text = """
checks:
  - name: api
    type: http
    url: https://shop.example.com/
    headers: {Authorization: "Bearer ${TOKEN}", X-Price: "$$5"}
"""
    cfg = parse_config(text, "c.yaml", env={"TOKEN": "s3cret"})
    headers = cfg.checks[0].config.headers  # type: ignore[attr-defined]
    assert headers == {"Authorization": "Bearer s3cret", "X-Price": "$5"}


def test_defaults_apply_per_type_and_inherited_timeout_shrinks_to_interval() -> None:
    text = """
defaults: {interval: 20s, timeout: 10s, method: HEAD}
checks:
  - {name: web, type: http, url: "http://127.0.0.1/"}
  - {name: api, type: tcp, target: "127.0.0.1:80", interval: 2s}
"""
    cfg = parse_config(text, "c.yaml", env={})
    web, api = cfg.checks
    assert (web.config.interval, web.config.timeout, web.config.method) == (20, 10, "HEAD")  # type: ignore[attr-defined]
    assert (api.config.interval, api.config.timeout) == (2, 2)


def test_no_alerts_means_down_is_critical_and_no_sinks_means_stdout() -> None:
    cfg = parse_config("checks: [{name: api, type: tcp, target: '127.0.0.1:80'}]", "c.yaml", env={})
    (rule,) = cfg.checks[0].rules
    assert (rule.text, rule.severity) == ("down", "critical")
    assert [s.name for s in cfg.sinks] == ["stdout"]


def test_values_from_the_environment_never_appear_in_errors() -> None:
    text = """
checks:
  - name: api
    type: http
    url: "${SHOP_URL}"
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={"SHOP_URL": "ftp://user:hunter2@shop.example.com/"})
    (issue,) = info.value.issues
    assert "hunter2" not in str(issue)
    assert str(issue).startswith("c.yaml:5:10: checks[0].url: invalid URL '<redacted>'")


def test_a_broken_entry_does_not_hide_the_other_errors() -> None:
    """Every error at once, even across stages: a malformed alert still has its `when:` judged,
    and a check whose keys are wrong still counts for duplicate names."""
    text = """checks:
  - name: x
    type: http
    url: http://127.0.0.1:1/
    alerts:
      - {when: latency > 2s}
  - name: x
    type: tcp
    target: nothost
"""
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml", env={})
    assert [str(i) for i in err.value.issues] == [
        "c.yaml:6:9: checks[0].alerts[0]: missing required option 'severity'",
        "c.yaml:6:16: checks[0].alerts[0].when: http checks do not measure 'latency' (they measure: duration, dns,"
        " connect, tls, first_byte, status, body_bytes, tls.days_left, json.PATH)",
        "c.yaml:7:11: checks[1].name: duplicate check name 'x' (first used on line 2)",
        "c.yaml:9:13: checks[1].target: invalid target 'nothost': expected HOST:PORT",
    ]


@pytest.mark.parametrize(("when", "hinted"), [("dwn", True), ("Down", True), ("up", False), ("latency", False)])
def test_a_misspelled_down_rule_gets_a_hint(when: str, hinted: bool) -> None:
    text = f"checks: [{{name: x, type: tcp, target: 'a:1', alerts: [{{when: {when}, severity: minor}}]}}]\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "c.yaml", env={})
    (issue,) = err.value.issues
    assert str(issue).endswith("did you mean 'down'?") == hinted


def test_an_unset_variable_is_the_only_error_at_its_value() -> None:
    """The empty string standing in for an unset ``${VAR}`` is not also reported as an invalid
    URL or missing credential: one line, the cause."""
    text = """
checks:
  - {name: shop, type: http, url: "${SHOP_URL}"}
  - {name: api, type: http, url: "https://api.example.com/", auth: {bearer: "${API_TOKEN}"}}
  - {name: typo, type: http, url: "https://example.com/", intervall: 5s}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={})
    shown = [str(i) for i in info.value.issues]
    assert shown == [
        "c.yaml:3:35: checks[0].url: environment variable SHOP_URL is not set",
        "c.yaml:4:77: checks[1].auth.bearer: environment variable API_TOKEN is not set",
        "c.yaml:5:59: checks[2].intervall: unknown option; did you mean 'interval'?",
    ]
