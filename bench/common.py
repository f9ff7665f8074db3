"""Shared helpers of the bench scripts: processes, CPU and memory from /proc, counters, statistics.

Only the standard library (plus the project's own venv for the scripts that import the agent), so
every script runs with ``.venv/bin/python bench/NAME.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PYTHON = sys.executable  # run the bench with the project's venv: .venv/bin/python bench/...
TICK = os.sysconf("SC_CLK_TCK")


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process in its own process group, killed with the group on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str = REPO,
    ) -> None:
        self.argv = list(argv)
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd, env=env
        )
        if log:
            out.close()  # type: ignore[union-attr]
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


@contextlib.contextmanager
def processes() -> Iterator[list[Proc]]:
    """A list to append :class:`Proc` to; all are stopped on exit, whatever happens."""
    procs: list[Proc] = []
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()
        signal.signal(signal.SIGTERM, old)


def wait_for(predicate, timeout: float = 15.0, every: float = 0.05, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def start_targets(procs: list[Proc], http: Sequence[int] = (), tcp: Sequence[int] = (), log: str | None = None) -> Proc:
    ready = tempfile.mktemp(prefix="fwbench-ready-")
    argv = [PYTHON, os.path.join(BENCH, "target_server.py"), "--ready-file", ready]
    for p in http:
        argv += ["--http", str(p)]
    for p in tcp:
        argv += ["--tcp", str(p)]
    proc = Proc(argv, log=log)
    procs.append(proc)
    wait_for(lambda: os.path.exists(ready) or not proc.alive(), what="target server")
    if not proc.alive():
        raise RuntimeError("target server failed to start (ports busy?)")
    os.unlink(ready)
    return proc


def counts(http_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/__count", timeout=5) as r:
        return dict(json.loads(r.read()))


def checks_config(n: int, interval: float, ports: list[int], state_dir: str, kind: str, name: str) -> str:
    """A daemon config of ``n`` tcp or http checks at ``interval`` s over the local target ``ports``
    (no listener, a file sink to /dev/null), for the benchmarks that run many checks."""
    lines = [
        "agent:",
        f"  name: {name}",
        f"  state_dir: {state_dir}",
        '  listen: ""',
        "sinks:",
        "  - {type: file, path: /dev/null}",
        "checks:",
    ]
    for i in range(n):
        port = ports[i % len(ports)]
        if kind == "tcp":
            lines.append(f'  - {{name: c{i}, type: tcp, target: "127.0.0.1:{port}", interval: {interval:g}s}}')
        else:
            lines.append(f'  - {{name: c{i}, type: http, url: "http://127.0.0.1:{port}/{i}", interval: {interval:g}s}}')
    return "\n".join(lines) + "\n"


def tree_env(tree: str) -> dict[str, str]:
    """The environment that makes ``python -m agent`` import agent/ and checks/ from ``tree``
    (another checkout or a patched copy) instead of this one, for A/B runs side by side."""
    env = dict(os.environ)
    env["PYTHONPATH"] = tree + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def parse_alts(items: Sequence[str] | None) -> dict[str, str]:
    """``--alt NAME=DIR`` options -> {NAME: DIR}; DIR must hold agent/ and checks/."""
    out = {}
    for item in items or []:
        name, sep, tree = item.partition("=")
        if not sep or not os.path.isdir(os.path.join(tree, "agent")):
            raise SystemExit(f"--alt {item!r}: expected NAME=DIR with DIR/agent")
        out[name] = os.path.abspath(tree)
    return out


# --- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """user + system CPU of ``pid`` (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB (10^6 bytes)."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                vals[k] = int(v.split()[0]) * 1024 / 1e6
    return vals["VmRSS"], vals["VmHWM"]


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    bb = shutil.which("prometheus-blackbox-exporter")
    bbv = "not installed"
    if bb:
        r = subprocess.run([bb, "--version"], capture_output=True, text=True)
        out = r.stdout or r.stderr or ""
        bbv = out.splitlines()[0] if out else "?"
    import importlib.metadata as md

    try:
        aiohttp_v = md.version("aiohttp")
    except md.PackageNotFoundError:
        aiohttp_v = "?"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "agent", "checks"], cwd=REPO, capture_output=True, text=True
    ).stdout.splitlines()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp_v,
        "kernel": platform.release(),
        "blackbox_exporter": bbv,
        "loadavg at start": load,
        "firstwatch commit": f"{git.strip() or '?'} ({len(dirty)} changed/new files under agent/ checks/)",
    }


# --- statistics ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def med_spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``median [min-max]`` of repeated measurements."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def print_machine() -> None:
    print(table(["machine", ""], list(machine().items())))
    print()


def print_header(name: str, tree_note: str | None = None) -> None:
    """The head of a benchmark's report: its command line, the machine, and (``tree_note``) where
    the code under test comes from when it is not this checkout."""
    print(f"# {name}: " + " ".join(sys.argv))
    print()
    print_machine()
    if tree_note:
        print(tree_note)
