"""``firstwatch check`` run by Nagios, Icinga or a script when it cannot decide: exit 3 (or 64 for
a usage error, which plugin runners read as UNKNOWN, never 2 = CRITICAL), and a machine-readable
answer on stdout in the machine formats."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.agent import firstwatch


async def test_a_broken_config_is_unknown_on_stdout_in_every_machine_format(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    code, out, err = await firstwatch("check", "-c", missing, "--format", "nagios")
    assert code == 3 and out.startswith("UNKNOWN - firstwatch: 1 config error(s)") and "not found" in err
    code, out, _ = await firstwatch("check", "-c", missing, "--format", "json")
    doc = json.loads(out)
    assert code == 3 and doc["status"] == "unknown" and doc["exit_code"] == 3 and doc["results"] == []


async def test_an_unknown_check_name_is_unknown_with_a_hint(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text('checks: [{name: shop-web, type: tcp, target: "127.0.0.1:9"}]\n')
    code, out, _ = await firstwatch("check", "-c", str(cfg), "--only", "shop-wbe", "--format", "json")
    assert code == 3 and "did you mean 'shop-web'" in json.loads(out)["error"]


async def test_a_usage_error_is_never_critical() -> None:
    code, _, err = await firstwatch("check", "--format", "xml")
    assert code == 64 and "invalid choice: 'xml'" in err
