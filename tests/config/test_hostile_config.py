"""Hostile configs: alias bombs, deep nesting, huge files. Each is an ordinary config error at a
line and column (exit 78) in ``validate``, ``run`` and on reload, within a second or so of CPU and
a few tens of MB, never a traceback, never gigabytes.

The CLI runs as a real subprocess under an address-space and CPU limit (so a regression fails the
test instead of swapping the machine), and its peak RSS and CPU time come from ``getrusage`` of a
small launcher whose only child it is.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent.config.load import load_config, parse_config
from agent.config.yaml_source import MAX_ALIASED, MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml
from agent.core.errors import ConfigError
from tests.support.agent import read_events, start_agent, wait_for_events

ROOT = Path(__file__).parents[2]


def laughs(width: int, levels: int, word: str = '"lol"') -> str:
    """The classic "billion laughs": ``width ** levels`` words from a few hundred bytes."""
    names = "abcdefghijklmnop"
    lines = [f"{names[0]}: &{names[0]} [{','.join([word] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [{','.join([f'*{names[i - 1]}'] * width)}]")
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    """Merge keys (``<<``) copy the pairs of every merged mapping: 9 ** 8 pairs."""
    lines = ["a0: &a0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 9)}]}}")
    return "\n".join(lines) + "\n"


def big_file() -> str:
    """50 MB of plausible checks: the old loader took 76 s and 2 GB on it."""
    one = (
        "  - name: check-{i}\n    type: tcp\n    target: 127.0.0.1:{i}\n"
        "    alerts: [{{when: down, for: 1m, severity: minor}}]\n"
    )
    body = "".join(one.format(i=i) for i in range(1000))
    return "checks:\n" + body * (50 * 2**20 // len(body) + 1)


HOSTILE: dict[str, tuple[Callable[[], str], str]] = {
    "ten-lols-bomb": (lambda: laughs(10, 10, "lol"), r"6:\d+: aliases expand to more than 200,000 values"),
    "nine-to-the-nine-bomb": (lambda: laughs(9, 9), r"6:\d+: aliases expand to more than 200,000 values"),
    "merge-key-bomb": (merge_bomb, r"6:\d+: aliases expand to more than 200,000 values"),
    "deep-sequences": (lambda: "agent: " + "[" * 10_000 + "]" * 10_000 + "\n", r"1:71: nested more than 64 levels"),
    "deep-mappings": (lambda: "agent: " + "{a: " * 10_000 + "1" + "}" * 10_000, r"1:257: nested more than 64 levels"),
    "recursive-alias": (lambda: "agent: &a {x: [*a]}\n", r"1:16: alias \*a refers to a node that contains it"),
    "50-MB-file": (big_file, r"\d+:\d+: config file too large: 52,\d{3},\d{3} bytes, the limit is 8 MiB"),
}


@dataclass
class Outcome:
    code: int
    stderr: str
    cpu_s: float
    peak_rss_mb: float


# A small launcher measures the command: a child's peak RSS counts the pages of the process it
# was forked from, so forking it from pytest (or from a process that built a 50 MB string) would
# measure that instead.
_LAUNCH = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))  # a regression fails, never swaps the machine
resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
code = subprocess.call(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"code": code, "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss}))
"""


def limited(*args: str, cwd: Path) -> Outcome:
    """``firstwatch ARGS`` capped at 1 GiB of address space and 20 s of CPU, with what it used."""
    proc = subprocess.run(
        [sys.executable, "-c", _LAUNCH, sys.executable, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    used = json.loads(proc.stdout)
    return Outcome(used["code"], proc.stderr, used["cpu"], used["rss_kb"] / 1024)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """``validate`` of an empty config: start-up costs (imports) are not the loader's."""
    where = tmp_path_factory.mktemp("baseline")
    (where / "config.yaml").write_text("checks: []\n")
    out = limited("validate", "-c", "config.yaml", cwd=where)
    assert out.code == 0, out.stderr
    return out


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_config_is_a_positioned_error_quickly_in_bounded_memory(
    name: str, command: str, tmp_path: Path, baseline: Outcome
) -> None:
    make, message = HOSTILE[name]
    (tmp_path / "config.yaml").write_text(make())
    out = limited(command, "-c", "config.yaml", cwd=tmp_path)
    assert out.code == 78, out.stderr[-2000:]
    first = out.stderr.splitlines()[0]
    assert re.match(rf"config\.yaml:{message}", first), first
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert out.cpu_s < baseline.cpu_s + 1.5, f"{out.cpu_s:.2f}s of CPU (empty config: {baseline.cpu_s:.2f}s)"
    assert out.peak_rss_mb < baseline.peak_rss_mb + 40, f"peak RSS {out.peak_rss_mb:.0f} MB"


async def test_reload_of_an_alias_bomb_keeps_the_running_config(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    path = tmp_path / "config.yaml"
    path.write_text(
        f'agent: {{name: ops, state_dir: "{tmp_path / "state"}", listen: ""}}\n'
        'checks: [{name: self, type: command, command: ["true"], interval: 0.2s}]\n'
        f'sinks: [{{type: file, path: "{events}"}}]\n'
    )
    agent = await start_agent(str(path))
    try:
        assert agent.stderr is not None
        while b" started: agent " not in await asyncio.wait_for(agent.stderr.readline(), 30):
            pass  # SIGHUP before the handlers are installed would kill it
        path.write_text(laughs(9, 9))
        agent.send_signal(signal.SIGHUP)
        evs = await wait_for_events(events, lambda e: any(x["kind"] == "agent" for x in e))
        (failed,) = [e for e in evs if e["kind"] == "agent"]
        assert "config reload failed, still running the previous config" in failed["summary"]
        assert re.search(r"config\.yaml:6:\d+: aliases expand to more than 200,000 values", failed["summary"])
        assert agent.returncode is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(agent.communicate(), 15)
    assert "Traceback" not in err.decode()
    assert len(read_events(events)) >= 1


# The limits themselves, in process


def test_a_shared_alias_used_by_many_checks_is_fine() -> None:
    checks = "\n".join(f"  - {{name: c{i}, type: tcp, target: '127.0.0.1:{i + 1}', alerts: *std}}" for i in range(500))
    text = f"x-alerts: &std [{{when: down, for: 1m, severity: minor}}]\nchecks:\n{checks}\n"
    src = load_yaml(text, "c.yaml")
    assert len(src.data["checks"]) == 500
    assert src.data["checks"][499]["alerts"] == [{"when": "down", "for": "1m", "severity": "minor"}]


def nested(depth: int) -> str:
    return "[" * (depth - 1) + "1" + "]" * (depth - 1)


def test_nesting_up_to_the_limit_loads_one_more_is_an_error() -> None:
    assert load_yaml(nested(MAX_DEPTH), "c.yaml").data is not None
    with pytest.raises(ConfigError) as info:
        load_yaml(nested(MAX_DEPTH + 1), "c.yaml")
    assert str(info.value.issues[0]) == f"c.yaml:1:{MAX_DEPTH + 1}: nested more than {MAX_DEPTH} levels deep"


def test_aliases_cannot_nest_past_the_limit() -> None:
    """Each line is shallow, but every alias wraps the previous one: 200 levels once expanded."""
    lines = ["- &a0 [1]"] + [f"- &a{i} [*a{i - 1}]" for i in range(1, 200)]
    with pytest.raises(ConfigError) as info:
        load_yaml("\n".join(lines), "c.yaml")
    assert str(info.value.issues[0]) == f"c.yaml:{MAX_DEPTH}:3: nested more than 64 levels deep after expanding aliases"


def test_node_limit_counts_the_text_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.config.yaml_source.MAX_NODES", 1000)
    with pytest.raises(ConfigError) as info:
        load_yaml("[" + ", ".join(["1"] * 2000) + "]", "c.yaml")
    assert "more than 1,000 values after expanding aliases" in str(info.value.issues[0])


def test_a_10000_check_config_fits_the_limits() -> None:
    """The limits leave room for a large fleet: 10,000 checks with room to spare."""
    one = (
        "  - name: check-{i:05d}\n    type: http\n    url: https://host-{i:05d}.shop.example.com/health\n"
        '    expect: {{status: [200], body_contains: "ok"}}\n    headers: {{Authorization: "Bearer x"}}\n'
        "    alerts:\n      - {{when: down, for: 1m, severity: critical}}\n"
        "      - {{when: duration > 2s, for: 5m, severity: major}}\n"
        "      - {{when: tls.days_left < 14, severity: medium}}\n"
    )
    text = "checks:\n" + "".join(one.format(i=i) for i in range(10_000))
    assert len(text.encode()) < MAX_BYTES / 2
    node = yaml.compose("checks:\n" + one.format(i=0), Loader=yaml.SafeLoader)
    per_check = sum(1 for _ in walk(node)) - 3  # without the top mapping, its key and the list
    assert per_check * 10_000 < MAX_NODES  # 39 values a check: 78% of the limit
    assert MAX_ALIASED < MAX_NODES


def walk(node: yaml.Node) -> list[yaml.Node]:
    out = [node]
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out += walk(k) + walk(v)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            out += walk(v)
    return out


def test_file_size_limit_is_checked_before_reading_on(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("checks: []\n" + "#" * 100 + "\n" + "# x\n" * (MAX_BYTES // 4))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    (issue,) = info.value.issues
    # 112 bytes on the first two lines, then 4-byte lines: the limit falls at the start of a line
    assert (issue.line, issue.col) == (2 + (MAX_BYTES - 112) // 4 + 1, 1)
    assert issue.message == f"config file too large: {path.stat().st_size:,} bytes, the limit is 8 MiB"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: !!python/object:os.system x\n", "c.yaml:1:8: agent: cannot read this value: could not determine"),
        ("defaults: {interval: !!int abc}\n", "c.yaml:1:22: defaults.interval: cannot read this value: invalid"),
        ("checks: [{<<: 5}]\n", "c.yaml:1:15: checks[0]: YAML error: expected a mapping or list of mappings"),
        ("agent: *nowhere\n", "c.yaml:1:8: YAML syntax error: found undefined alias 'nowhere'"),
    ],
)
def test_odd_yaml_is_a_config_error_not_a_crash(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml", env={})
    assert any(str(i).startswith(expected) for i in info.value.issues), info.value.issues


def test_control_characters_in_keys_are_escaped_in_messages() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('"\\e[2Jagent": 1\n', "c.yaml", env={})
    assert str(info.value.issues[0]).startswith("c.yaml:1:1: \\x1b[2Jagent: unknown option")
