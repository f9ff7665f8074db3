"""``firstwatch silence add|list|expire`` and ``firstwatch annotate`` as the on-call runs them: the
real command line as a subprocess, on a real state database; every usage error is one line and
exit 64, never a traceback, and writes nothing."""

from __future__ import annotations

import getpass
import json
import os
import re
import time
from pathlib import Path

import pytest

from agent.core.events import iso_time, parse_iso
from agent.incidents.silences import add_silence, silences
from agent.incidents.store import Store
from tests.support.agent import firstwatch

ME = os.environ.get("SUDO_USER") or getpass.getuser()  # the default author, as the CLI sees it


def config(tmp_path: Path, *, state: bool = True, checks: str = "") -> str:
    """Two checks (``shop-web`` with label ``team: web``, ``api``) and the agent's label
    ``env: prod``; the state database exists unless ``state`` is False."""
    checks = checks or (
        '  - {name: shop-web, type: tcp, target: "127.0.0.1:9", labels: {team: web}}\n'
        '  - {name: api, type: tcp, target: "127.0.0.1:9"}\n'
    )
    path = tmp_path / "config.yaml"
    path.write_text(f'agent: {{state_dir: "{tmp_path / "state"}", labels: {{env: prod}}}}\nchecks:\n{checks}')
    if state:
        Store(str(tmp_path / "state")).close()
    return str(path)


def made_id(out: str) -> str:
    m = re.match(r"silence ([0-9a-f]{8}): ", out)
    assert m, out
    return m.group(1)


def no_silences(tmp_path: Path) -> bool:
    store = Store(str(tmp_path / "state"))
    try:
        return silences(store, 0) == [] and store.entries() == []
    finally:
        store.close()


async def test_add_list_and_expire_a_silence(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    before = time.time()
    code, out, err = await firstwatch(
        "silence", "add", "-c", cfg, "--check", "shop-web", "--for", "2h", "--reason", "deploy 1.5.0", "--by", "sam"
    )
    assert (code, err) == (0, ""), err
    web = made_id(out)
    assert re.fullmatch(
        rf"silence {web}: check shop-web silenced by sam until \S+Z \(deploy 1\.5\.0\)\n", out
    ), out  # fmt: skip
    code, out, err = await firstwatch(
        "silence", "add", "-c", cfg, "--label", "team=web", "--label", "env=prod", "--until",
        iso_time(time.time() + 3600), "--reason", "network work",
    )  # fmt: skip
    assert code == 0, err
    team = made_id(out)

    code, out, err = await firstwatch("silence", "list", "-c", cfg)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "SELECTS", "FROM", "UNTIL", "BY", "STATE", "REASON"]
    assert [r.split()[0] for r in rows] == [web, team]  # by start
    assert re.fullmatch(rf"{web}\s+check shop-web\s+\S+Z\s+\S+Z\s+sam\s+active\s+deploy 1\.5\.0", rows[0]), rows[0]
    assert re.fullmatch(rf"{team}\s+labels env=prod, team=web\s+\S+Z\s+\S+Z\s+{ME}\s+active\s+network work", rows[1])

    code, out, _ = await firstwatch("silence", "list", "-c", cfg, "--format", "json")
    first, second = json.loads(out)
    assert set(first) == {"id", "checks", "labels", "starts", "ends", "reason", "by", "created", "active"}
    assert (first["id"], first["checks"], first["labels"], first["by"], first["active"]) == (
        web, ["shop-web"], None, "sam", True,
    )  # fmt: skip
    assert before <= parse_iso(first["starts"]) == parse_iso(first["created"]) <= time.time()
    assert parse_iso(first["ends"]) - parse_iso(first["starts"]) == pytest.approx(7200, abs=0.002)
    assert (second["checks"], second["labels"], second["reason"]) == (
        None,
        {"env": "prod", "team": "web"},
        "network work",
    )

    code, out, err = await firstwatch("silence", "expire", "-c", cfg, web[:5])
    assert code == 0 and out == f"silence {web} expired by {ME}: check shop-web may page again (deploy 1.5.0)\n", err
    code, out, _ = await firstwatch("silence", "list", "-c", cfg, "--format", "json")
    assert [s["id"] for s in json.loads(out)] == [team]
    code, _, err = await firstwatch("silence", "expire", "-c", cfg, web)
    assert code == 1 and f"firstwatch: silence {web} has already ended: it was expired at 20" in err
    code, _, err = await firstwatch("silence", "expire", "-c", cfg, "zzz")
    assert code == 1 and f"no silence 'zzz' (recent: {team}, {web})" in err and "Traceback" not in err

    code, out, _ = await firstwatch("timeline", "-c", cfg, "--check", "shop-web", "--format", "json")
    made, expired = json.loads(out)
    assert (made["kind"], made["author"], expired["kind"], expired["author"]) == ("silence", "sam", "silence", ME)
    assert re.fullmatch(rf"silence {web} by sam until \S+Z: deploy 1\.5\.0 \(check shop-web\)", made["text"])
    assert expired["text"] == f"silence {web} expired by {ME}: deploy 1.5.0 (check shop-web)"


async def test_a_scheduled_silence_is_listed_as_scheduled(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = Store(str(tmp_path / "state"))
    now = time.time()
    later = add_silence(
        store, checks=frozenset({"api"}), labels=None, starts=now + 3600, ends=now + 7200,
        reason="db failover", by="ben", now=now,
    )  # fmt: skip
    store.close()
    code, out, _ = await firstwatch("silence", "list", "-c", cfg)
    assert code == 0 and re.search(rf"^{later.id}\s+check api\s.*\sben\s+scheduled\s+db failover$", out, re.M), out
    code, out, _ = await firstwatch("silence", "list", "-c", cfg, "--format", "json")
    assert [(s["id"], s["active"]) for s in json.loads(out)] == [(later.id, False)]


async def test_a_reason_is_shown_escaped_never_raw(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    reason = "deploy\n2026-12-02T14:00:00.000Z  FIRING \x1b[2Jgone"
    code, out, err = await firstwatch("silence", "add", "-c", cfg, "--check", "api", "--for", "1h", "--reason", reason)
    assert code == 0, err
    assert "\x1b" not in out and out.count("\n") == 1 and "deploy\\n2026" in out and "\\x1b[2Jgone" in out
    code, out, _ = await firstwatch("silence", "list", "-c", cfg)
    assert "\x1b" not in out and len(out.splitlines()) == 2 and out.rstrip().endswith("FIRING \\x1b[2Jgone")
    code, out, _ = await firstwatch("silence", "list", "-c", cfg, "--format", "json")
    assert json.loads(out)[0]["reason"] == reason  # the JSON keeps the text as given


async def test_annotate_marks_a_change_on_the_timeline_with_its_author(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    code, out, err = await firstwatch(
        "annotate", "-c", cfg, "deploy", "shop", "1.5.0", "--check", "shop-web", "--check", "api", "--by", "sam"
    )
    assert code == 0 and re.fullmatch(
        r"change marked at \S+Z by sam \(checks api, shop-web\): deploy shop 1\.5\.0\n", out
    )
    code, out, err = await firstwatch("annotate", "-c", cfg, "config push")
    assert code == 0 and out.endswith(f"by {ME}: config push\n"), err

    code, out, _ = await firstwatch("timeline", "-c", cfg)
    lines = out.splitlines()
    assert len(lines) == 3 and all(re.search(r"\sCHANGE\s", line) for line in lines)
    assert re.search(r"\sapi\s+deploy shop 1\.5\.0 \(by sam\)$", lines[0])  # the check, then who
    assert re.search(rf"\s-\s+config push \(by {ME}\)$", lines[2])  # a change of everything
    code, out, _ = await firstwatch("timeline", "-c", cfg, "--check", "shop-web", "--format", "json")
    (entry,) = json.loads(out)
    assert (entry["kind"], entry["check"], entry["author"], entry["text"]) == (
        "change",
        "shop-web",
        "sam",
        "deploy shop 1.5.0",
    )
    code, out, _ = await firstwatch("timeline", "-c", cfg, "--format", "json")
    assert [e["check"] for e in json.loads(out)] == ["api", "shop-web", None]


@pytest.mark.parametrize(
    "command",
    [
        ["silence", "add", "--check", "api", "--for", "1h", "--reason", "x"],
        ["silence", "list"],
        ["silence", "expire", "3f2a"],
        ["annotate", "deploy"],
    ],
    ids=["add", "list", "expire", "annotate"],
)
async def test_no_state_database_is_exit_66(tmp_path: Path, command: list[str]) -> None:
    cfg = config(tmp_path, state=False)
    code, out, err = await firstwatch(*command[:2], "-c", cfg, *command[2:])
    assert (code, out) == (66, "") and "no state database in" in err and "Traceback" not in err
    assert not (tmp_path / "state").exists()


async def test_an_unknown_check_is_refused_with_the_close_name(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    code, out, err = await firstwatch(
        "silence", "add", "-c", cfg, "--check", "shop-wbe", "--for", "1h", "--reason", "x"
    )
    assert (code, out) == (
        64,
        "",
    ) and err == f"firstwatch: no check named 'shop-wbe' in {cfg}; did you mean 'shop-web'?\n"
    code, out, err = await firstwatch("annotate", "-c", cfg, "deploy", "--check", "shop-wbe")
    assert (code, out) == (64, "") and "did you mean 'shop-web'?" in err
    assert no_silences(tmp_path)


async def test_labels_no_check_has_are_kept_with_a_warning(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    code, out, err = await firstwatch("silence", "add", "-c", cfg, "--label", "team=db", "--for", "1h", "--reason", "x")
    assert code == 0 and out.startswith("silence ") and f"warning: no check in {cfg} matches it now" in err
    code, out, err = await firstwatch(
        "silence", "add", "-c", cfg, "--check", "api", "--label", "env=prod", "--for", "1h", "--reason", "x"
    )
    assert (code, err) == (0, "")  # the agent's labels are every check's


async def test_a_config_that_cannot_be_loaded_still_allows_a_silence(tmp_path: Path) -> None:
    cfg = config(tmp_path, checks="  - {name: shop-web, type: no-such-type}\n")
    code, out, err = await firstwatch(
        "silence", "add", "-c", cfg, "--check", "anything", "--for", "1h", "--reason", "fixing the config"
    )
    assert code == 0 and out.startswith("silence ") and "Traceback" not in err
    assert f"firstwatch: warning: {cfg} cannot be loaded (1 config error(s)): check names are not verified" in err
    code, _, err = await firstwatch("annotate", "-c", cfg, "hotfix", "--check", "anything")
    assert code == 0 and "cannot be loaded" in err


def _in(days: float) -> str:
    return iso_time(time.time() + days * 86400)


CFG = "<config>"  # the test's config file


def add(*args: str) -> list[str]:
    return ["silence", "add", "-c", CFG, *args]


USAGE_ERRORS = {
    "nothing named": (add("--for", "1h", "--reason", "x"), "say what to silence: --check NAME or --label K=V"),
    "no span": (add("--check", "api", "--reason", "x"), "one of the arguments --for --until is required"),
    "both spans": (
        add("--check", "api", "--for", "1h", "--until", "2099-01-01", "--reason", "x"),
        "argument --until: not allowed with argument --for",
    ),
    "zero": (add("--check", "api", "--for", "0s", "--reason", "x"), "give one longer than zero"),
    "too long": (add("--check", "api", "--for", "31d", "--reason", "x"), "'31d' is longer than 30 days"),
    "bad duration": (add("--check", "api", "--for", "soon", "--reason", "x"), "invalid duration 'soon'"),
    "past": (add("--check", "api", "--until", "2020-01-01T00:00Z", "--reason", "x"), "is in the past (it is now"),
    "too far": (add("--check", "api", "--until", _in(40), "--reason", "x"), "more than 30 days away"),
    "duration as time": (add("--check", "api", "--until", "2h", "--reason", "x"), "(for a duration, use --for 2h)"),
    "bad time": (add("--check", "api", "--until", "tomorrow", "--reason", "x"), "invalid time 'tomorrow'"),
    "not K=V": (add("--label", "team", "--for", "1h", "--reason", "x"), "invalid label 'team': use K=V"),
    "bad label name": (add("--label", "1x=y", "--for", "1h", "--reason", "x"), "invalid label name '1x'"),
    "label twice": (
        add("--label", "env=a", "--label", "env=b", "--for", "1h", "--reason", "x"),
        "--label env is given twice ('a' and 'b')",
    ),
    "no reason": (add("--check", "api", "--for", "1h"), "the following arguments are required: --reason"),
    "empty reason": (add("--check", "api", "--for", "1h", "--reason", " "), "the reason is empty"),
    "long reason": (add("--check", "api", "--for", "1h", "--reason", "x" * 501), "501 characters long; at most 500"),
    "long by": (add("--check", "api", "--for", "1h", "--reason", "x", "--by", "b" * 101), "at most 100 are allowed"),
    "empty check": (add("--check", "", "--for", "1h", "--reason", "x"), "--check is empty"),
    "no action": (["silence"], "the following arguments are required: ACTION"),
    "bad format": (["silence", "list", "-c", CFG, "--format", "xml"], "invalid choice: 'xml'"),
    "no id": (["silence", "expire", "-c", CFG], "the following arguments are required: ID"),
    "empty change": (["annotate", "-c", CFG, " "], "the change text is empty"),
    "long change": (["annotate", "-c", CFG, "x" * 2001], "2,001 characters long; at most 2,000"),
    "no text": (["annotate", "-c", CFG, "--check", "api"], "the following arguments are required: TEXT"),
}


@pytest.mark.parametrize(("args", "message"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
async def test_a_usage_error_exits_64_with_its_message_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    cfg = config(tmp_path)
    code, out, err = await firstwatch(*(cfg if a == CFG else a for a in args))
    assert (code, out) == (64, ""), err
    assert message in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith(("firstwatch: ", "firstwatch silence", "firstwatch annotate")), err
    assert no_silences(tmp_path)


@pytest.mark.parametrize("command", [["silence", "list"], ["annotate", "deploy"], ["timeline"]])
async def test_a_mistyped_config_path_is_an_error_not_another_agents_state(tmp_path: Path, command: list[str]) -> None:
    config(tmp_path)  # a real agent's ./state-like directory next to the typo
    missing = str(tmp_path / "conifg.yaml")
    code, out, err = await firstwatch(*command[:2], "-c", missing, *command[2:])
    assert code != 0 and out == "" and f"no config file {missing}" in err and "Traceback" not in err
