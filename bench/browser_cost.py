"""What browser checks cost: the agent's memory with browser checks running, and one run's wall and CPU.

    .venv/bin/python bench/browser_cost.py                      # 2 checks at 1 s for 20 s, then 10 runs
    .venv/bin/python bench/browser_cost.py --seconds 30 --runs 20 --interval 5

Needs Playwright (``pip install 'firstwatch[browser]'``) and the system Chromium. A small shop page
(HTML, a 400x300 PNG, a script that adds to a cart, a broken script) is served by this script in a
process of its own (``--serve``), so its CPU is never counted. Two measurements:

- ``daemon``: ``firstwatch run`` with 2 browser checks (click, wait_for, expect_text) at a 1 s
  interval (``--interval``; the timeout is the interval) for ``--seconds``; every 0.5 s the RSS
  of the agent's own Python process, and the RSS and PSS (``/proc/PID/smaps_rollup``: shared
  pages split between the processes sharing them) of its whole process tree (the Playwright
  driver, Chromium and its helpers); CPU of the tree over the window (dead helpers' CPU is in
  their parent's ``cutime``); runs, missed runs and restarts from ``/metrics``.
- ``run``: in this process, one shared browser, the same check run ``--runs`` times one after
  another (after the first, which also starts Chromium): wall time and CPU (this process plus the
  browser's process tree) per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import struct
import sys
import tempfile
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, REPO, TICK, Proc, free_port, print_header, processes, rss_mb, table, tree_env, wait_for

PAGE = b"""<!doctype html><html><head><title>Shop</title></head><body><h1>The shop</h1>
<img src="/product.png" width="400" height="300" alt="product">
<p><button id="add">Add to cart</button></p><p class="cart-count" style="display: none"></p>
<script>document.getElementById("add").addEventListener("click", () => {
  const c = document.querySelector(".cart-count"); c.textContent = "1 item"; c.style.display = "block"; });</script>
<script>window.shopTracker.start();</script></body></html>"""
STEPS = '[{click: "text=Add to cart"}, {wait_for: ".cart-count"}, {expect_text: "1 item"}]'


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\xc0\x30\x30" * width for _ in range(height))
    head = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def serve(port: int) -> None:
    image = png(400, 300)

    class Shop(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (image, "image/png") if self.path == "/product.png" else (PAGE, "text/html")
            self.send_response(200 if self.path in ("/", "/product.png") else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Shop).serve_forever()


# --- /proc: a process tree ------------------------------------------------------------------------


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of the tree: each live process's own, plus that of its reaped children."""
    total = 0.0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK  # utime stime cutime cstime
    return total


def tree_memory(root: int) -> tuple[float, float, int]:
    """(sum of RSS, sum of PSS) in MB, and the number of processes of the tree."""
    rss = pss = 0.0
    pids = tree(root)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                text = f.read()
        except OSError:
            continue
        for name, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", text, re.M):
            if name == "Rss":
                rss += int(value) * 1024 / 1e6
            else:
                pss += int(value) * 1024 / 1e6
    return rss, pss, len(pids)


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


# --- the two measurements -------------------------------------------------------------------------


def daemon(args: argparse.Namespace, url: str, procs: list[Proc]) -> list[list[object]]:
    tmp = tempfile.mkdtemp(prefix="fwbench-browser-")
    listen = free_port()
    config = os.path.join(tmp, "config.yaml")
    checks = "".join(
        f"  - {{name: shop-{i}, type: browser, url: {url}, interval: {args.interval:g}s, timeout: {args.interval:g}s,"
        f" steps: {STEPS}}}\n"
        for i in (1, 2)
    )
    with open(config, "w") as f:
        browser = f"browser: {{executable: {args.chromium}}}"
        f.write(
            f"agent: {{state_dir: {tmp}/state, listen: '127.0.0.1:{listen}', {browser}}}\n"
            f"telemetry: {{prometheus: true}}\nsinks: [{{type: file, path: /dev/null}}]\nchecks:\n{checks}"
        )
    agent = Proc([PYTHON, "-m", "agent", "run", "-c", config], env=tree_env(REPO), log=os.path.join(tmp, "log"))
    procs.append(agent)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{listen}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""  # not listening yet

    wait_for(lambda: "firstwatch_check_up{" in scrape(), timeout=60, what="the first browser results")
    time.sleep(2)  # past the start-up
    before, cpu0, t0 = scrape(), tree_cpu(agent.pid), time.monotonic()
    own, rss, pss, count = [], [], [], []
    while time.monotonic() - t0 < args.seconds:
        own.append(rss_mb(agent.pid)[0])
        r, p, n = tree_memory(agent.pid)
        rss.append(r)
        pss.append(p)
        count.append(n)
        time.sleep(0.5)
    after, cpu1, took = scrape(), tree_cpu(agent.pid), time.monotonic() - t0
    runs = metric(after, "firstwatch_scheduler_runs_total") - metric(before, "firstwatch_scheduler_runs_total")
    missed = metric(after, "firstwatch_scheduler_missed_total") - metric(before, "firstwatch_scheduler_missed_total")
    agent.stop()
    return [
        ["agent process RSS (MB), median / peak", f"{statistics.median(own):.0f} / {max(own):.0f}"],
        ["process tree RSS (MB), median / peak", f"{statistics.median(rss):.0f} / {max(rss):.0f}"],
        ["process tree PSS (MB), median / peak", f"{statistics.median(pss):.0f} / {max(pss):.0f}"],
        ["processes in the tree, median", f"{statistics.median(count):.0f}"],
        ["CPU of the tree (% of one core)", f"{100 * (cpu1 - cpu0) / took:.0f}"],
        [f"runs started / missed in {took:.0f} s", f"{runs:.0f} / {missed:.0f}"],
        ["checks up at the end", f"{metric(after, 'firstwatch_check_up'):.0f} of 2"],
        ["browser restarts", f"{metric(after, 'firstwatch_browser_restarts_total'):.0f}"],
    ]


async def runs(args: argparse.Namespace, url: str) -> list[list[object]]:
    sys.path.insert(0, REPO)
    from agent.config.load import parse_config
    from agent.engine.probe_runner import SharedResources, run_probe
    from checks.browser_pool import BrowserSettings

    text = f"checks:\n  - {{name: shop, type: browser, url: {url}, timeout: 10s, steps: {STEPS}}}\n"
    check = parse_config(text, "bench.yaml").checks[0].build()
    res = SharedResources("bench", None, BrowserSettings(args.chromium))
    samples: list[tuple[float, float, bool]] = []
    try:
        for _ in range(args.runs + 1):
            cpu0, t0 = time.process_time() + _browser_cpu(), time.perf_counter()
            result = await run_probe(check, url, res)
            samples.append((time.perf_counter() - t0, time.process_time() + _browser_cpu() - cpu0, result.ok))
    finally:
        await res.close()
    first, rest = samples[0], samples[1:]
    walls, cpus = [s[0] * 1000 for s in rest], [s[1] * 1000 for s in rest]
    return [
        ["first run, Chromium starting (ms)", f"{first[0] * 1000:.0f}", f"{first[1] * 1000:.0f}"],
        [
            f"each later run, median [min-max] of {len(rest)}",
            f"{statistics.median(walls):.0f} [{min(walls):.0f}-{max(walls):.0f}]",
            f"{statistics.median(cpus):.0f} [{min(cpus):.0f}-{max(cpus):.0f}]",
        ],
        ["runs that passed", f"{sum(s[2] for s in samples)} of {len(samples)}", ""],
    ]


def _browser_cpu() -> float:
    """CPU so far of the Playwright driver (a child of this process: ``node ... run-driver``) and
    everything under it (Chromium and its helpers); not the shop server's."""
    total = 0.0
    for pid in tree(os.getpid())[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                driver = b"run-driver" in f.read()
        except OSError:
            continue
        if driver:
            total += tree_cpu(pid)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the daemon runs, measured")
    parser.add_argument("--runs", type=int, default=10, help="runs measured one by one")
    parser.add_argument("--interval", type=float, default=1.0, help="the daemon's checks' interval and timeout (s)")
    parser.add_argument("--chromium", default="", help="default: chromium etc. on PATH")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    sys.path.insert(0, REPO)
    from checks.browser_pool import find_executable, install_problems

    args.chromium = find_executable(args.chromium or None) or ""
    if missing := install_problems(args.chromium or None):
        raise SystemExit("; ".join(missing))
    print_header("browser_cost")
    with processes() as procs:
        port = free_port()
        procs.append(Proc([PYTHON, os.path.abspath(__file__), "--serve", str(port)]))
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: _up(url), what="the shop page")
        print(f"## daemon: 2 browser checks at {args.interval:g} s, {args.seconds:g} s measured\n")
        print(table(["", ""], daemon(args, url, procs)))
        print(f"\n## one browser run (load, click, wait_for, expect_text), {args.runs} runs\n")
        print(table(["", "wall (ms)", "CPU (ms): agent + browser"], asyncio.run(runs(args, url))))


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
