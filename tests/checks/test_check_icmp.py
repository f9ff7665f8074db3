"""The icmp check pinging the loopback addresses for real (never any other address), the loss
mapping on icmplib's own Host objects, and the load-time ICMP permission check run as an
unprivileged user."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import icmplib  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from checks.icmp import NO_ICMP, IcmpCheck, icmp_privileged, observe
from tests.support import factories

ROOT = Path(__file__).parents[2]


def make(**options: Any) -> IcmpCheck:
    return factories.check(IcmpCheck, **{"name": "p", "timeout": "2s", "packet_interval": "50ms", **options})


probe = factories.probe_once


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_ping_ipv4_loopback() -> None:
    r = await probe(make(target="127.0.0.1", count=3))
    assert r.ok, r.error
    assert r.values["loss"] == 0
    assert 0 < r.values["rtt"] <= r.values["rtt_max"] < 0.5
    assert 0.1 <= r.duration_s < 1.5  # two 50ms pauses between three requests
    assert r.type == "icmp" and r.target == "127.0.0.1"


async def test_ping_ipv6_loopback() -> None:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    r = await probe(make(target="::1", count=2))
    assert r.ok, r.error
    assert r.values["loss"] == 0
    assert 0 < r.values["rtt"] < 0.5


async def test_ping_a_name_from_the_hosts_file() -> None:
    r = await probe(make(target="localhost", count=1, payload_size=1400))
    assert r.ok, r.error
    assert r.values["loss"] == 0


async def test_concurrent_pings_keep_their_replies_apart() -> None:
    check = make(target="127.0.0.1", count=3)
    results = await asyncio.gather(*(probe(check) for _ in range(12)))
    assert [(r.ok, r.values["loss"]) for r in results] == [(True, 0.0)] * 12


async def test_unresolvable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # the resolver of the machine is not on loopback: answer as it answers for .invalid (RFC 6761)
    def nxdomain(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    r = await probe(make(target="nowhere.invalid"))
    assert not r.ok
    assert r.error_kind == "dns"
    assert r.error == "cannot resolve 'nowhere.invalid': Name or service not known"


# The loss mapping, on icmplib's Host (what async_ping returns)


def test_all_lost_is_a_connection_failure() -> None:
    obs = observe(icmplib.Host("192.0.2.7", 3, []), "192.0.2.7")
    assert not obs.ok
    assert obs.error_kind == "connection"
    assert obs.error == "no reply from 192.0.2.7 (3 of 3 lost)"
    assert obs.values == {"loss": 100.0}
    obs = observe(icmplib.Host("192.0.2.7", 5, []), "gw.example.com")
    assert obs.error == "no reply from gw.example.com at 192.0.2.7 (5 of 5 lost)"


def test_some_loss_is_still_up() -> None:
    obs = observe(icmplib.Host("192.0.2.7", 3, [10.0, 30.0]), "192.0.2.7")
    assert obs.ok and obs.error_kind is None
    assert obs.values["loss"] == pytest.approx(100 / 3)
    assert obs.values["rtt"] == pytest.approx(0.020)
    assert obs.values["rtt_max"] == pytest.approx(0.030)


def test_nothing_sent() -> None:
    obs = observe(icmplib.Host("2001:db8::1", 0, []), "2001:db8::1")
    assert obs.error_kind == "connection"
    assert obs.error == "cannot send echo requests to 2001:db8::1"


# Permissions


def test_detection_matches_this_process() -> None:
    privileged = icmp_privileged()  # loading the config above already required one to work
    assert isinstance(privileged, bool)
    kind = socket.SOCK_RAW if privileged else socket.SOCK_DGRAM
    socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()


# The child that runs as nobody imports checks.icmp from a world-readable copy: the checkout, its
# venv and the interpreter behind it may all live where nobody cannot read (a 0700 home, mktemp -d).
_NEEDED = """
import os, sys, sysconfig
std = (sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib"))
before = set(sys.modules)
import checks.icmp
for name in sorted({m.split(".")[0] for m in set(sys.modules) - before}):
    mod = sys.modules[name]
    path = getattr(mod, "__file__", None) or next(iter(getattr(mod, "__path__", [])), None)
    if path and not (path.startswith(std) and "-packages" not in path):  # the stdlib comes with Python
        print(os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path)
"""
# an interpreter nobody can run on its own standard library, of our ABI (for pydantic_core)
_SANE = (
    "import os, sys, sysconfig\n"
    "own = os.path.realpath(sys.executable).startswith(sys.base_prefix + os.sep)\n"
    "ok = own and os.path.isfile(os.path.join(sysconfig.get_path('stdlib'), 'os.py'))\n"
    "print(sys.implementation.cache_tag if ok else 'unusable')\n"
)


def _as_nobody(setpriv: str) -> list[str]:
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


def _readable_by_all(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _stage_for_nobody(setpriv: str) -> tuple[str, Path]:
    """An interpreter nobody can run, and a world-readable directory with what checks.icmp needs."""
    env = {"PATH": os.defpath}
    candidates = [getattr(sys, "_base_executable", ""), os.path.realpath(sys.executable), "/usr/bin/python3"]
    interpreter = None
    for candidate in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run(
            [*_as_nobody(setpriv), candidate, "-s", "-c", _SANE], cwd="/", env=env, capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == sys.implementation.cache_tag:
            interpreter = candidate
            break
    base = next((Path(d) for d in (tempfile.gettempdir(), "/tmp", "/dev/shm") if _readable_by_all(Path(d))), None)
    if interpreter is None or base is None:
        why = "no world-readable temp dir" if base is None else f"no {sys.implementation.cache_tag} interpreter"
        reason = f"cannot run Python as nobody here: {why} (tried {', '.join(candidates)})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    needed = subprocess.run([sys.executable, "-c", _NEEDED], cwd=ROOT, capture_output=True, text=True, check=True)
    stage = Path(tempfile.mkdtemp(prefix="firstwatch-nobody-", dir=base))
    for src in map(Path, needed.stdout.split()):
        if src.is_dir():
            shutil.copytree(src, stage / src.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, stage / src.name)
    for path in [stage, *stage.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return interpreter, stage


def test_detection_as_an_unprivileged_user() -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    if os.geteuid() != 0:
        pytest.skip("switching to user nobody needs root")
    code = (
        "from pydantic import ValidationError\n"
        "from checks.icmp import IcmpConfig\n"
        "try:\n"
        "    IcmpConfig.model_validate({'name': 'p', 'type': 'icmp', 'target': '127.0.0.1'})\n"
        "    print('LOADED')\n"
        "except ValidationError as exc:\n"
        "    print(exc.errors()[0]['msg'])\n"
    )
    interpreter, stage = _stage_for_nobody(setpriv)
    try:
        env = {"PATH": os.defpath, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(stage)}
        out = subprocess.run(
            [*_as_nobody(setpriv), interpreter, "-s", "-c", code],
            cwd=stage,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(stage)
    assert out.returncode == 0, out.stderr
    low, high = map(int, Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    nogroup = int(subprocess.run(["getent", "group", "nogroup"], capture_output=True, text=True).stdout.split(":")[2])
    if low <= nogroup <= high:  # ping sockets are open to this group: the load succeeds unprivileged
        assert out.stdout.strip() == "LOADED"
    else:
        assert out.stdout.strip() == f"Value error, {NO_ICMP}"


# Config


@pytest.mark.parametrize("target", ["db:80", "[::1]", "https://db", "my host", "-x", "10.0.0.1/24", "::1:80:zz"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(ValidationError, match="expected a host name or an IP address, without a port"):
        make(target=target)
    with pytest.raises(ValidationError, match="expected a host name or an IP address"):
        make(targets=["127.0.0.1", target])


def test_good_targets() -> None:
    good = ["127.0.0.1", "::1", "fe80::1%eth0", "gw-1.example.com", "router", "_sip.example.com.", "x" * 63]
    assert make(targets=good).targets() == good


def test_bad_options() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        make(target="127.0.0.1", count=101)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        make(target="127.0.0.1", count=0)
    with pytest.raises(ValidationError, match=r"greater than or equal to 0\.01"):
        make(target="127.0.0.1", packet_interval="1ms")
    with pytest.raises(ValidationError, match="duration 1 needs a unit"):
        make(target="127.0.0.1", packet_interval=1)
    with pytest.raises(ValidationError, match="less than or equal to 65507"):
        make(target="127.0.0.1", payload_size=70000)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        make(target="127.0.0.1", privileged=True)
    message = (
        r"count \(20\) requests 200ms apart take 3.8s: more than half of timeout \(2s\), "
        "leaving too little time for replies"
    )
    with pytest.raises(ValidationError, match=message):
        make(target="127.0.0.1", count=20, packet_interval="200ms")
