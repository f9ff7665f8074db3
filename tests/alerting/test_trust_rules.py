"""Pages that must not be invented or delayed: group blips, clock steps, reload storms, and the
incident's summary after a group escalates. Rules run on injected times (no sleeping); the reload
storm runs the real daemon."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.book import AlertBook, Change
from agent.config.load import parse_config
from agent.core.severity import rank, worst
from agent.engine.recorder import Recorder
from agent.incidents.store import Store
from checks.base import Result
from tests.support import factories
from tests.support.agent import start_daemon
from tests.support.peers.fleet import Switch

TARGETS = ["https://10.0.0.1/", "https://10.0.0.2/", "https://10.0.0.3/"]


def group_spec(for_: str = "5s", interval: str = "1s"):  # type: ignore[no-untyped-def]
    text = f"""
checks:
  - name: shop-web
    type: http
    interval: {interval}
    timeout: 0.5s
    targets: {TARGETS}
    flapping: false
    alerts: [{{when: down, for: {for_}, severity: minor}}]
    impact:
      - {{share: 0.5, severity: major}}
      - {{share: 1.0, severity: critical}}
"""
    return parse_config(text, "c.yaml", env={}).checks[0]


def result(target: str, ok: bool, wall: float) -> Result:
    return factories.result("shop-web", target, ok, values={"status": 200.0 if ok else 503.0}, at=wall)


def run_round(book: AlertBook, spec, down: set[str], t: float, wall_offset: float = 0.0) -> list[Change]:  # type: ignore[no-untyped-def]
    out: list[Change] = []
    for i, target in enumerate(TARGETS):
        mono = t + i * 0.01
        out += book.observe(spec, result(target, target not in down, mono + wall_offset), mono)
    return out


def pages(changes: list[Change]) -> list[tuple[str, str | None]]:
    return [(c.kind, c.severity) for c in changes if c.event is not None]


# --- 5. groups never page on blips ------------------------------------------------------------------


def test_two_members_failing_for_three_runs_under_for_5s_never_page() -> None:
    spec = group_spec()
    book = AlertBook("web-01", {})
    changes: list[Change] = []
    for t in range(3):
        changes += run_round(book, spec, set(), t)
    for t in range(3, 6):  # two of three fail for three runs: a blip shorter than for:
        changes += run_round(book, spec, set(TARGETS[:2]), t)
    for t in range(6, 12):
        changes += run_round(book, spec, set(), t)
    assert pages(changes) == []
    assert [c.kind for c in changes if c.target == TARGETS[0]] == ["pending", "reset"]


def test_all_members_down_is_one_page_at_critical() -> None:
    spec = group_spec()
    book = AlertBook("web-01", {})
    changes: list[Change] = []
    for t in range(15):
        changes += run_round(book, spec, set(TARGETS), t)
    assert pages(changes) == [("firing", "critical")]


rounds = st.lists(st.sets(st.sampled_from(TARGETS)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(rounds)
def test_a_group_never_pages_above_the_members_that_held_their_for(history: list[set[str]]) -> None:
    """Oracle from the input alone: a member 'held' when it was down at every run for >= for:.
    No firing or escalation may claim a severity above what the held members justify."""
    spec = group_spec(for_="3s")
    book = AlertBook("web-01", {})
    down_since: dict[str, float] = {}
    for t, down in enumerate(history):
        for target in TARGETS:
            if target in down:
                down_since.setdefault(target, t)
            else:
                down_since.pop(target, None)
        held = [x for x, since in down_since.items() if t + 0.02 - since >= 3 - 0.1]
        levels = [lvl.severity for lvl in spec.policy.impact or [] if len(held) / 3 >= lvl.share - 1e-9]
        allowed = worst(["minor", *levels]) if held else None
        for c in run_round(book, spec, down, t):
            if c.kind in ("firing", "changed") and c.event is not None and c.severity is not None:
                assert allowed is not None and rank(c.severity) <= rank(allowed), (t, c.kind, c.severity, held)


# --- 6. for: follows the monotonic clock, not the wall clock ------------------------------------------------


def single_spec(for_: str = "1m"):  # type: ignore[no-untyped-def]
    text = f"""
checks:
  - {{name: api, type: tcp, target: "10.0.0.9:443", interval: 10s, flapping: false,
      alerts: [{{when: down, for: {for_}, severity: critical}}]}}
"""
    return parse_config(text, "c.yaml", env={}).checks[0]


def down(wall: float) -> Result:
    return Result("api", "tcp", "10.0.0.9:443", False, {}, "refused", "refused", wall, 0.01)


def fire_time(steps: list[float]) -> float | None:
    """Runs every 10 s of monotonic time; ``steps[i]`` is the wall clock's offset at run i."""
    spec = single_spec()
    book = AlertBook("web-01", {})
    for i, offset in enumerate(steps):
        mono = 1000.0 + 10 * i
        for c in book.observe(spec, down(1_700_000_000 + mono + offset), mono):
            if c.kind == "firing":
                return mono - 1000.0
    return None


def test_a_wall_clock_step_forward_does_not_fire_a_pending_rule() -> None:
    assert fire_time([0, 3600, 3600, 3600, 3600, 3600, 3600, 3600]) == 60


def test_a_wall_clock_step_back_does_not_delay_an_alert() -> None:
    assert fire_time([0, -3600, -3600, -3600, -3600, -3600, -3600, -3600]) == 60


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-86400, max_value=86400), min_size=8, max_size=8))
def test_for_is_measured_on_the_monotonic_clock_whatever_the_wall_clock_does(steps: list[float]) -> None:
    assert fire_time(steps) == 60


def test_a_pending_timer_survives_a_restart_on_another_clock(tmp_path: Path) -> None:
    """Saved as wall time, restored onto the new process's clock: 30 s pending before the restart
    plus 30 s after fire at 60 s, even when the monotonic clock restarted (a reboot)."""
    spec = single_spec()
    store = Store(str(tmp_path / "state"))
    wall0 = 1_700_000_000.0
    before = AlertBook("web-01", {}, clock_offset=lambda: wall0 - 1000)
    Recorder(store, before).record(before.observe(spec, down(wall0), 1000.0))
    Recorder(store, before).record(before.observe(spec, down(wall0 + 30), 1030.0))
    after = AlertBook("web-01", {}, clock_offset=lambda: wall0 + 35 - 5)  # rebooted: monotonic is 5 at wall0+35
    recorder = Recorder(store, after)
    saved, _gap = recorder.saved_state(now=wall0 + 35)
    recorder.restore([spec], saved, 5, 3600)
    assert [c.kind for c in after.observe(spec, down(wall0 + 50), 20.0)] == []
    kinds = [c.kind for c in after.observe(spec, down(wall0 + 60), 30.0)]
    assert kinds == ["firing"]


# --- 9. a group incident's summary follows its escalation --------------------------------------------------


def test_an_escalated_group_incident_reads_as_it_is_now(tmp_path: Path) -> None:
    spec = group_spec(for_="0s")
    store = Store(str(tmp_path / "state"))
    book = AlertBook("web-01", {})
    recorder = Recorder(store, book)
    recorder.record(run_round(book, spec, {TARGETS[0]}, 0))
    (inc,) = store.incidents(open_only=True)
    assert inc.summary.startswith("shop-web: 1 of 3 targets (https://10.0.0.1/)")
    for t in (1, 2):
        recorder.record(run_round(book, spec, set(TARGETS), t))
    again = store.incident(inc.id)
    assert again.severity == "critical" and again.summary.startswith("shop-web: 3 of 3 targets: ")


# --- 4. reloads never starve a target -------------------------------------------------------------------------


async def test_a_reload_storm_does_not_starve_any_target(tmp_path: Path) -> None:
    sw = Switch(4)
    for i in range(sw.n):
        await sw.up(i)
    checks = "".join(
        f'  - {{name: svc-{i}, type: tcp, target: "127.0.0.1:{p}", interval: 1s, timeout: 0.5s}}\n'
        for i, p in enumerate(sw.ports)
    )
    cfg = tmp_path / "c.yaml"
    agent_cfg = f'agent: {{state_dir: "{tmp_path / "state"}", listen: ""}}\n'
    cfg.write_text(f"{agent_cfg}checks:\n{checks}sinks: [{{type: stdout}}]\n")
    agent = await start_daemon(cfg)
    try:
        await agent.wait_log(r"started: agent")
        await asyncio.sleep(1.2)
        before = list(sw.hits)
        for _ in range(16):  # a reload every 0.3 s for 4.8 s: more often than any target's interval
            agent.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.3)
        gained = [after - b for after, b in zip(sw.hits, before, strict=True)]
        assert min(gained) >= 3, gained  # every target still probed about once a second
    finally:
        log = await agent.stop()
        for i in range(sw.n):
            await sw.down(i)
    assert "Traceback" not in log
    # the reloads happened (the log shows five, then says how many more it folded)
    shown = len(re.findall(r"INFO firstwatch: reloaded \S+: 4 checks", log))
    folded = sum(int(n) for n in re.findall(r"reloaded .*\(repeated (\d+) more times", log))
    assert shown + folded >= 10, log[-2000:]
