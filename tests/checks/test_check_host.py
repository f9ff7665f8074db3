"""The host check: local CPU, memory, load, disk and file-descriptor values, and real child processes
matched by name, command line and user, through the probe runner."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from agent.alerting.policy import AlertConfig
from agent.alerting.rules import compile_rule
from checks.base import Observation, Result, find_value
from checks.host import HostCheck, HostConfig
from tests.support import factories

PERCENTS = ("cpu", "memory", "swap", "disk[/]")


def make(**options: Any) -> HostCheck:
    return factories.check(HostCheck, **{"name": "box", "timeout": "2s", **options})


async def probe(check: HostCheck) -> Result:
    return await factories.probe_once(check, "localhost")


async def test_values_present_and_in_range() -> None:
    check = make()
    assert check.targets() == ["localhost"]
    r = await probe(check)
    assert r.ok, r.error
    assert r.type == "host" and r.target == "localhost"
    for name in PERCENTS:
        assert 0.0 <= r.values[name] <= 100.0, name
    if os.statvfs("/").f_files:
        assert 0.0 <= r.values["inodes[/]"] <= 100.0
    for name in ("load1", "load5", "load15"):
        assert r.values[name] >= 0.0
    assert r.values["duration"] < 1.0
    assert all(find_value(HostCheck.VALUES, name) for name in r.values if name != "duration")


def _spin(seconds: float) -> None:
    """Keep every core busy: hashlib releases the GIL on large buffers, so threads run in parallel."""
    data = b"x" * (1 << 20)
    stop = time.monotonic() + seconds

    def work() -> None:
        while time.monotonic() < stop:
            hashlib.sha256(data).digest()

    threads = [threading.Thread(target=work) for _ in range(os.cpu_count() or 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def test_cpu_rises_when_busy() -> None:
    check = make()
    await probe(check)
    for _attempt in range(3):  # other processes may share the machine: retry before failing
        await asyncio.sleep(0.3)
        idle = (await probe(check)).values["cpu"]
        await asyncio.to_thread(_spin, 0.3)
        busy = (await probe(check)).values["cpu"]
        if busy > idle:
            break
    if idle >= 99.0:
        pytest.skip(f"other processes keep every core busy (idle window: {idle:.0f}%): nothing to compare")
    assert busy > idle


async def test_two_checks_keep_their_own_cpu_window() -> None:
    a, b = make(), make()
    await probe(a)
    await asyncio.to_thread(_spin, 0.3)
    await probe(b)  # b's own window; must not restart a's
    await asyncio.sleep(0.05)
    assert (await probe(a)).values["cpu"] > 20.0


async def test_disk_matches_df() -> None:
    r = await probe(make())
    usage = shutil.disk_usage("/")
    df_percent = 100.0 * usage.used / (usage.used + usage.free)  # df's Use%: reserved blocks count as full
    assert abs(r.values["disk[/]"] - df_percent) <= 1.0


async def test_missing_mount_fails_clearly() -> None:
    r = await probe(make(mounts=["/", "/data/not/here"]))
    assert not r.ok
    assert r.error_kind == "expect"
    assert r.error == "mount /data/not/here not found"
    assert "disk[/]" in r.values and "cpu" in r.values  # the rest is still measured
    assert "disk[/data/not/here]" not in r.values


async def test_directory_that_is_not_a_mount_point(tmp_path: Path) -> None:
    r = await probe(make(mounts=[str(tmp_path)]))
    assert r.error_kind == "expect"
    assert r.error is not None and r.error.startswith(f"mount {tmp_path} not found: it is a path on another")


async def test_probe_is_cheap() -> None:
    check = make()
    await probe(check)
    await asyncio.sleep(0.06)
    t0 = time.process_time()
    r = await probe(check)
    assert r.ok
    assert time.process_time() - t0 < 0.1


async def test_first_probe_right_after_creation_samples_briefly() -> None:
    t0 = time.perf_counter()
    r = await probe(make())
    assert 0.0 <= r.values["cpu"] <= 100.0
    assert 0.04 <= time.perf_counter() - t0 < 1.5


async def test_hung_filesystem_does_not_pile_up_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    check = make(timeout="200ms")
    release = threading.Event()
    calls = 0

    def stuck() -> Observation:
        nonlocal calls
        calls += 1
        release.wait(5)
        return Observation(ok=True)

    monkeypatch.setattr(check, "_collect", stuck)
    r = await probe(check)
    assert r.error_kind == "timeout"
    r = await probe(check)
    assert r.error_kind == "timeout"
    assert r.error == "the previous measurement is still running (a hung filesystem?)"
    assert calls == 1
    release.set()
    for _ in range(100):
        if check._pending is None:
            break
        await asyncio.sleep(0.01)
    assert (await probe(check)).ok
    assert calls == 2


def test_value_spec_templates() -> None:
    spec = find_value(HostCheck.VALUES, "disk[/var]")
    assert spec is not None and spec.name == "disk[MOUNT]" and spec.unit == "%"
    assert spec.pattern.match("disk[/var]")
    assert not spec.pattern.match("inodes[/var]")
    inodes = find_value(HostCheck.VALUES, "inodes[/srv/data]")
    assert inodes is not None and inodes.name == "inodes[MOUNT]"
    load = find_value(HostCheck.VALUES, "load5")
    assert load is not None and load.unit == "1"


def test_config() -> None:
    cfg = make().config
    assert isinstance(cfg, HostConfig) and cfg.mounts == ["/"]
    with pytest.raises(ValidationError, match="mount 'data' must be an absolute path"):
        make(mounts=["data"])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make(target="localhost")


def test_config_of_processes() -> None:
    cfg = make(processes=[{"name": "nginx", "match": "nginx"}, {"name": "jobs", "cmdline": "celery", "user": "app"}])
    assert isinstance(cfg.config, HostConfig) and [p.name for p in cfg.config.processes] == ["nginx", "jobs"]
    for entry, message in [
        ({"name": "x", "match": "(unclosed"}, "invalid regex '(unclosed'"),
        ({"name": "x", "cmdline": "[z-a]"}, "invalid regex '[z-a]'"),
        ({"name": "x", "match": "a", "cmdline": "b"}, "process x: give one of match (the process name) or cmdline"),
        ({"name": "x"}, "process x: give one of match"),
        ({"name": "a b", "match": "a"}, "invalid process name 'a b'"),
        ({"name": "x]", "match": "a"}, "invalid process name 'x]'"),
        ({"name": "x", "match": "a", "pid": 1}, "Extra inputs are not permitted"),
    ]:
        with pytest.raises(ValidationError) as info:
            make(processes=[entry])
        [error] = info.value.errors()
        assert message in error["msg"], entry
    with pytest.raises(ValidationError, match="process name 'web' is used twice"):
        make(processes=[{"name": "web", "match": "nginx"}, {"name": "web", "match": "apache2"}])


# --- processes ------------------------------------------------------------------------------------


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start child processes (killed at the end of the test)."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
    for child in children:
        child.wait(5)


@pytest.fixture
def sleeper(tmp_path: Path) -> str:
    """``sleep`` under a process name of its own (the kernel names a process after the file it ran)."""
    name = f"fwsleep{secrets.token_hex(3)}"  # 13 characters: within the kernel's 15
    os.symlink(shutil.which("sleep") or "/bin/sleep", tmp_path / name)
    return str(tmp_path / name)


async def wait_started(*children: subprocess.Popen[bytes]) -> None:
    """Until each child runs its own program (right after fork it is still a copy of pytest)."""
    for child in children:
        for _ in range(200):
            try:
                if psutil.Process(child.pid).cmdline()[1:] == list(child.args)[1:]:  # type: ignore[arg-type]
                    break
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
            await asyncio.sleep(0.01)


async def test_processes_counted_by_name_cmdline_and_user(spawn: Any, sleeper: str) -> None:
    token = secrets.token_hex(4)
    children = [spawn(sleeper, "30"), spawn(sleeper, "30"), spawn("sleep", f"30.{int(token, 16)}")]
    await wait_started(*children)
    me = pwd.getpwuid(os.geteuid()).pw_name
    other = "nobody" if me != "nobody" else "root"
    name = Path(sleeper).name
    check = make(
        processes=[
            {"name": "by-name", "match": name},
            {"name": "prefix", "match": name[:-2]},  # the whole name must match
            {"name": "regex", "match": f"{name[:-2]}.."},
            {"name": "by-cmdline", "cmdline": rf"^sleep 30\.{int(token, 16)}$"},
            {"name": "mine", "match": name, "user": me},
            {"name": "by-uid", "match": name, "user": str(os.geteuid())},
            {"name": "theirs", "match": name, "user": other},
            {"name": "ghost", "match": "no-such-daemon-anywhere"},
        ]
    )
    r = await probe(check)
    assert r.ok, r.error
    counts = {label: r.values[f"process[{label}].count"] for label in ("by-name", "prefix", "regex", "by-cmdline")}
    assert counts == {"by-name": 2, "prefix": 0, "regex": 2, "by-cmdline": 1}
    assert (r.values["process[mine].count"], r.values["process[by-uid].count"]) == (2, 2)
    assert (r.values["process[theirs].count"], r.values["process[ghost].count"]) == (0, 0)
    rss = sum(psutil.Process(c.pid).memory_info().rss for c in children[:2])
    assert 0.5 * rss <= r.values["process[by-name].rss"] <= 2 * rss
    assert r.values["process[ghost].rss"] == 0
    assert "process[by-name].cpu" not in r.values  # the first run has nothing to compare with
    assert all(find_value(HostCheck.VALUES, name) for name in r.values if name != "duration")


async def test_process_cpu_tells_busy_from_idle(spawn: Any, sleeper: str) -> None:
    token = secrets.token_hex(4)
    busy = spawn(sys.executable, "-c", "while True: pass", f"busy-{token}")
    idle = spawn(sleeper, "30")
    await wait_started(busy, idle)
    check = make(
        processes=[{"name": "busy", "cmdline": f"busy-{token}"}, {"name": "idle", "match": Path(sleeper).name}]
    )
    await probe(check)
    for _attempt in range(3):  # other test runs may share the 2 cores: give the spinner a few windows
        await asyncio.sleep(0.5)
        r = await probe(check)
        assert r.ok, r.error
        if r.values["process[busy].cpu"] > 5.0:
            break
    assert r.values["process[idle].cpu"] < 2.0 < 5.0 < r.values["process[busy].cpu"]
    assert r.values["process[busy].cpu"] < 150.0  # one thread: at most one core (with margin)


async def test_a_process_started_between_runs_counts_all_its_cpu(spawn: Any) -> None:
    token = secrets.token_hex(4)
    check = make(processes=[{"name": "burst", "cmdline": f"burst-{token}"}])
    assert (await probe(check)).values["process[burst].count"] == 0
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\ntime.sleep(30)"
    burst = spawn(sys.executable, "-c", spin, f"burst-{token}")
    for _ in range(100):  # until it has spun its 0.2 s of CPU
        await asyncio.sleep(0.05)
        times = psutil.Process(burst.pid).cpu_times()
        if times.user + times.system >= 0.2:
            break
    r = await probe(check)
    assert r.values["process[burst].count"] == 1
    assert r.values["process[burst].cpu"] > 0.0


async def test_a_daemon_that_dies_drops_to_zero(spawn: Any, sleeper: str) -> None:
    daemon = spawn(sleeper, "30")
    await wait_started(daemon)
    check = make(processes=[{"name": "daemon", "match": Path(sleeper).name}])
    assert (await probe(check)).values["process[daemon].count"] == 1
    daemon.kill()
    daemon.wait(5)
    r = await probe(check)
    assert r.ok  # the check still works: the daemon being gone is what a rule judges
    assert (r.values["process[daemon].count"], r.values["process[daemon].rss"]) == (0, 0)
    assert r.values["process[daemon].cpu"] == 0


async def test_a_zombie_does_not_count(spawn: Any, sleeper: str) -> None:
    child = spawn(sleeper, "30")
    await wait_started(child)
    check = make(processes=[{"name": "z", "match": Path(sleeper).name}])
    child.kill()
    for _ in range(100):  # killed but not reaped: a zombie until wait()
        if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
            break
        await asyncio.sleep(0.01)
    assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    assert (await probe(check)).values["process[z].count"] == 0


async def test_two_checks_scan_processes_at_once(spawn: Any, sleeper: str) -> None:
    child = spawn(sleeper, "30")
    await wait_started(child)
    name = Path(sleeper).name
    by_name = make(processes=[{"name": "s", "match": name}])
    by_cmdline = make(processes=[{"name": "s", "cmdline": name}])
    for _ in range(5):  # each scan runs in its own thread, with its own matchers
        results = await asyncio.gather(probe(by_name), probe(by_cmdline))
        assert [(r.ok, r.values["process[s].count"]) for r in results] == [(True, 1), (True, 1)]


async def test_unknown_user_fails_clearly() -> None:
    r = await probe(make(processes=[{"name": "app", "match": "python3", "user": "no-such-user-fw"}]))
    assert (r.ok, r.error_kind, r.error) == (False, "expect", "user 'no-such-user-fw' does not exist")
    assert r.values["process[app].count"] == 0 and "cpu" in r.values  # the rest is still measured


async def test_process_scan_is_cheap() -> None:
    check = make(
        processes=[
            {"name": "a", "match": "nginx"},
            {"name": "b", "cmdline": "celery .*worker"},
            {"name": "c", "match": "postgres", "user": "root"},
        ]
    )
    await probe(check)
    await asyncio.sleep(0.06)
    processes = len(psutil.pids())
    t0 = time.process_time()
    r = await probe(check)
    spent = time.process_time() - t0
    assert r.ok, r.error
    assert spent < 0.05 + 0.0005 * processes, f"{spent * 1000:.1f} ms for {processes} processes"


async def test_fds_is_the_share_of_the_file_handle_limit() -> None:
    r = await probe(make())
    with open("/proc/sys/fs/file-nr") as f:
        allocated, free, limit = (int(x) for x in f.read().split())
    assert 0.0 < r.values["fds"] < 100.0
    assert abs(r.values["fds"] - 100.0 * (allocated - free) / limit) < 1.0


def test_process_value_templates() -> None:
    for name, template, unit in [
        ("process[nginx].count", "process[LABEL].count", "1"),
        ("process[my.app-1].rss", "process[LABEL].rss", "bytes"),
        ("process[php-fpm].cpu", "process[LABEL].cpu", "%"),
        ("fds", "fds", "%"),
    ]:
        spec = find_value(HostCheck.VALUES, name)
        assert spec is not None and (spec.name, spec.unit) == (template, unit), name
    assert find_value(HostCheck.VALUES, "process[nginx].threads") is None
    assert find_value(HostCheck.VALUES, "process[nginx]") is None


def test_a_process_down_rule_fires_when_none_match() -> None:
    rule = compile_rule(0, AlertConfig(when="process[nginx].count < 1", severity="critical"), HostCheck.VALUES, "host")
    values = {"process[nginx].count": 0.0, "process[nginx].rss": 0.0}
    verdict = rule.evaluate(Result("box", "host", "localhost", True, values, None, None, 0.0, 0.01))
    assert (verdict.holds, verdict.explanation) == (True, "process[nginx].count (0) < 1")
