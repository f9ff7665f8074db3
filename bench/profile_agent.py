"""Where the CPU of a probe goes: py-spy on the real daemon, or pyinstrument in-process.

    .venv/bin/python bench/profile_agent.py --type http --rate 200 --duration 20
    .venv/bin/python bench/profile_agent.py --type tcp --pyinstrument

Tools (not project dependencies; install them outside the project's venv)::

    .venv/bin/pip install --target /tmp/fwtools py-spy pyinstrument
    export PATH=/tmp/fwtools/bin:$PATH PYTHONPATH=/tmp/fwtools   # pyinstrument only needs PYTHONPATH

py-spy mode: the daemon (``python -m agent run``) probes ``--rate`` local targets a second (the
same setup as ``cpu_per_probe.py``); once at full rate, ``py-spy record --format raw`` samples it
(idle samples dropped, so shares are of CPU time) and the collapsed stacks are summed per
function: *self* (the leaf frame) and *inclusive* (anywhere on the stack), and per area (which
package the leaf frame is in). ``--raw FILE`` keeps the stacks (for speedscope or flamegraph.pl).

pyinstrument mode: the same Runtime in this process under ``pyinstrument.Profiler`` (wall-clock,
so idle time shows as the event loop's ``select``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, REPO, Proc, counts, free_port, processes, start_targets, table
from cpu_per_probe import firstwatch_config

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def area(path: str) -> str:
    path = "/" + path  # py-spy prints paths relative to sys.path entries: agent/x.py, asyncio/y.py
    for marker, name in (
        ("/agent/", "agent/"),
        ("/checks/", "checks/"),
        ("/aiohttp/", "aiohttp"),
        ("/yarl/", "yarl"),
        ("/multidict/", "multidict"),
        ("/aiohappyeyeballs/", "aiohttp"),
        ("/asyncio/", "asyncio"),
        ("/selectors.py", "asyncio"),
        ("/socket.py", "asyncio"),
        ("/ssl.py", "ssl"),
        ("/sqlite3/", "sqlite3"),
        ("/logging/", "logging"),
        ("/pydantic", "pydantic"),
    ):
        if marker in path:
            return name
    return "other: " + os.path.basename(path)


def summarize(raw: str, top: int) -> None:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = []
        for fr in stack.split(";"):
            m = FRAME.match(fr)
            func, path = (m["func"], m["file"]) if m else (fr, "?")
            short = path.replace(REPO + "/", "")
            short = re.sub(r".*site-packages/", "", short)
            short = re.sub(r".*/lib/python3\.\d+/", "", short)
            frames.append((f"{func} ({short})", path))
        if not frames:
            continue
        leaf, leaf_path = frames[-1]
        self_t[leaf] += count
        areas[area(leaf_path)] += count
        for name in {f for f, _ in frames}:
            incl[name] += count
    print(f"{total} CPU samples")
    print()
    print(
        table(["area of the leaf frame", "% of CPU"], [[a, f"{100 * c / total:.1f}"] for a, c in areas.most_common()])
    )
    print()
    print(
        table(["self (leaf) function", "% of CPU"], [[f, f"{100 * c / total:.1f}"] for f, c in self_t.most_common(top)])
    )
    print()
    rows = [[f, f"{100 * c / total:.1f}"] for f, c in incl.most_common(top * 2)]
    print(table(["inclusive function", "% of CPU"], rows))


def run_pyspy(args: argparse.Namespace) -> None:
    pyspy = shutil.which("py-spy") or "/tmp/fwtools/bin/py-spy"
    if not os.path.exists(pyspy):
        raise SystemExit("py-spy not found: pip install --target /tmp/fwtools py-spy")
    tmp = tempfile.mkdtemp(prefix="fwbench-prof-")
    try:
        with processes() as procs:
            http_port, tcp_port = free_port(), free_port()
            start_targets(procs, http=[http_port], tcp=[tcp_port])
            cfg = firstwatch_config(tmp, args.type, args.rate, 1.0, http_port, tcp_port, metrics_port=free_port())
            agent = Proc([PYTHON, "-m", "agent", "run", "-c", cfg, "--log-level", "warning"], log=f"{tmp}/agent.log")
            procs.append(agent)
            time.sleep(args.warm)
            key = f"{args.type}:{http_port if args.type == 'http' else tcp_port}"
            c0 = counts(http_port).get(key, 0)
            out = args.raw or os.path.join(tmp, "stacks.txt")
            cmd = [pyspy, "record", "--pid", str(agent.pid), "--duration", str(args.duration), "--rate", "200",
                   "--format", "raw", "--output", out, "--nonblocking"]  # fmt: skip
            print("$ " + " ".join(cmd))
            subprocess.run(cmd, check=True, capture_output=True)
            print(f"probes during the recording: {counts(http_port).get(key, 0) - c0}")
            with open(out) as f:
                summarize(f.read(), args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _inprocess(args: argparse.Namespace, http_port: int, tcp_port: int, tmp: str) -> None:
    sys.path.insert(0, REPO)
    from pyinstrument import Profiler

    from agent.config.load import load_config
    from agent.engine.runtime import Runtime
    from agent.incidents.store import Store
    from agent.incidents.writer import StoreWriter

    cfg = load_config(firstwatch_config(tmp, args.type, args.rate, 1.0, http_port, tcp_port))
    store = Store(cfg.state_dir)
    rt = Runtime(cfg, store, StoreWriter(store))
    await rt.start()
    await asyncio.sleep(args.warm)
    prof = Profiler(interval=0.001, async_mode="disabled")
    prof.start()
    await asyncio.sleep(args.duration)
    prof.stop()
    await rt.stop(timeout=1.0)
    print(prof.output_text(unicode=False, color=False, show_all=False))


def run_pyinstrument(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="fwbench-prof-")
    try:
        with processes() as procs:
            http_port, tcp_port = free_port(), free_port()
            start_targets(procs, http=[http_port], tcp=[tcp_port])
            asyncio.run(_inprocess(args, http_port, tcp_port, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--type", choices=["http", "tcp"], default="http")
    ap.add_argument("--rate", type=int, default=200, help="checks at a 1 s interval")
    ap.add_argument("--warm", type=float, default=12.0)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks here")
    ap.add_argument("--pyinstrument", action="store_true")
    ap.add_argument("--summarize", metavar="FILE", help="only summarize collapsed stacks saved with --raw")
    args = ap.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            summarize(f.read(), args.top)
        return
    print("# profile_agent: " + " ".join(sys.argv))
    print()
    (run_pyinstrument if args.pyinstrument else run_pyspy)(args)


if __name__ == "__main__":
    main()
