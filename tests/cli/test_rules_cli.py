"""``firstwatch rules`` as a command: the rule file on stdout and exit 0, 78 with ``validate``'s
very error lines on a bad config, 64 on a usage error (an unknown ``--format``, a bad
``--scrape-interval``); a rule Prometheus cannot judge is a ``firstwatch: warning:`` line on
stderr as well as a comment in the file, and still exit 0; ``--scrape-interval`` (default 1m)
sets a duration rule's window and is said in the file's header."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.agent import firstwatch

GOOD = """
checks:
  - name: shop-home
    type: http
    url: https://shop.example.com/
    interval: 10s
    alerts: [{when: down, for: 1m, severity: critical, quorum: 2}, {when: duration > 2s, severity: major}]
  - name: plugin
    type: command
    command: [/bin/true]
    alerts: [{when: perf.time > 2s, severity: minor}]
"""


async def test_a_good_config_prints_the_rule_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    code, out, err = await firstwatch("rules", "-c", str(cfg))
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert [g["name"] for g in doc["groups"]] == ["firstwatch.shop-home", "firstwatch.plugin"]
    assert doc["groups"][0]["rules"][0]["expr"].endswith("== 0) >= 2")
    assert (
        err
        == "firstwatch: warning: plugin: skipped 'perf.time > 2s': perf.time's metric depends on the unit the plugin"
        " reports at run time (firstwatch_check_perf_seconds, _bytes, _ratio or firstwatch_check_perf)\n"
    )
    code, again, _ = await firstwatch("rules", "-c", str(cfg), "--format", "prometheus", "--scrape-interval", "1m")
    assert code == 0 and again == out  # 1m is the default
    assert "[4m]" in doc["groups"][0]["rules"][1]["expr"]  # 4 x the 1m scrape interval
    assert "# Assumes Prometheus scrapes the agents every 1m (firstwatch rules --scrape-interval 1m)" in out


async def test_the_scrape_interval_sets_the_duration_window(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD)
    code, out, _ = await firstwatch("rules", "-c", str(cfg), "--scrape-interval", "1s")
    assert code == 0
    assert "[40s]" in yaml.safe_load(out)["groups"][0]["rules"][1]["expr"]  # 4 x the 10s interval
    assert "every 1s (firstwatch rules --scrape-interval 1s)" in out
    for bad in ("0s", "soon", "15"):
        code, out, err = await firstwatch("rules", "-c", str(cfg), "--scrape-interval", bad)
        assert code == 64 and out == "" and "argument --scrape-interval" in err, (bad, err)


async def test_a_bad_config_exits_78_with_validates_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "checks:\n  - {name: a, type: tcp, target: '127.0.0.1:9', alerts: [{when: dwon, severity: major}]}\n"
    )
    code, out, err = await firstwatch("rules", "-c", str(cfg))
    assert code == 78 and out == ""
    assert "did you mean 'down'?" in err and err.endswith("firstwatch: 1 config error(s)\n")
    assert (await firstwatch("validate", "-c", str(cfg)))[2] == err
    missing = await firstwatch("rules", "-c", str(tmp_path / "nope.yaml"))
    assert missing[0] == 78 and missing[1] == "" and "not found" in missing[2]


async def test_a_usage_error_exits_64() -> None:
    code, out, err = await firstwatch("rules", "--format", "json")
    assert code == 64 and out == "" and "invalid choice: 'json'" in err
    assert (await firstwatch("rules", "extra"))[0] == 64
