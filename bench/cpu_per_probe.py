"""(1) CPU seconds per probe: firstwatch's whole pipeline vs blackbox_exporter vs a bare loop.

    .venv/bin/python bench/cpu_per_probe.py [--rate 200] [--rounds 5] [--window 20] [--protocols http,tcp]

For each protocol, three contenders probe the same local target server (a separate process,
``bench/target_server.py``) at the same rate, each with a fresh connection per probe:

- ``firstwatch``: the real daemon, ``python -m agent run -c CONFIG``, with ``--rate`` checks at a
  1 s interval (so ``--rate`` probes a second), default rules (``when: down``, flap detection),
  SQLite state in a temp dir, a file sink to /dev/null, and ``telemetry: {prometheus: true}`` with
  the endpoint on a free loopback port, scraped once per window (``--no-metrics``: ``listen: ""``,
  no telemetry). Whole pipeline: scheduler, deadline, probe, phases, rules, alert state, recorder,
  metrics.
- ``blackbox``: Debian's ``prometheus-blackbox-exporter``, driven by ``bench/loadgen.py
  drive-blackbox`` calling ``/probe?module=http_2xx|tcp_connect&target=...`` at the same rate. Only
  the exporter's CPU is counted (its HTTP serving of /probe is part of it, as with Prometheus).
- ``bare``: ``bench/loadgen.py bare-http|bare-tcp``: one aiohttp session with
  ``force_close=True`` (or ``asyncio.open_connection``) and nothing else: the floor of the stack.
- optional references (``--contenders ...,raw,bare-uvloop,raw-uvloop``): ``raw`` is the same GET
  with no HTTP library (``asyncio.open_connection``); ``-uvloop`` runs the loop on uvloop.
  They show what bounds the ratio to blackbox_exporter.
- ``firstwatch-uvloop`` (optional): the same daemon with ``FIRSTWATCH_EVENT_LOOP=uvloop`` (uvloop
  from the ``test`` extra): what uvloop is worth to the whole pipeline.
- ``--alt NAME=DIR``: one more firstwatch contender importing ``agent/`` and ``checks/`` from DIR
  (a patched copy), measured side by side in the same run.

Each measurement: start the contender, wait until the target sees the full rate for 2 s (at most
``--warm`` s; the time is reported as "s to steady rate") plus ``--settle`` s, then read the measured
process's utime+stime from /proc/PID/stat and the target's request counter, wait ``--window`` s,
read both again. CPU per probe = CPU delta / requests the target served. Rounds interleave the
contenders (rotating order), so load from other work on the machine hits all of them alike;
ratios are computed within each round and reported as median [min-max] over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    PYTHON,
    Proc,
    counts,
    cpu_seconds,
    free_port,
    med_spread,
    parse_alts,
    print_header,
    processes,
    rss_mb,
    start_targets,
    table,
    tree_env,
    wait_for,
)

BB_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
  tcp_connect:
    prober: tcp
    timeout: 5s
"""

TARGETS = {"http": (0.55, 0.9)}  # docs/performance.md: x blackbox_exporter, x the bare aiohttp loop (default loop)


def firstwatch_config(
    tmp: str, proto: str, n: int, interval: float, http_port: int, tcp_port: int, metrics_port: int = 0
) -> str:
    """The daemon's config; with ``metrics_port``, Prometheus metrics are recorded for every
    probe and served on /metrics there (the pipeline docs/performance.md names includes metrics)."""
    lines = [
        "agent:",
        "  name: bench",
        f"  state_dir: {tmp}/state",
        f'  listen: "127.0.0.1:{metrics_port}"' if metrics_port else '  listen: ""',
        *(["telemetry: {prometheus: true}"] if metrics_port else []),
        "sinks:",
        "  - {type: file, path: /dev/null}",
        "checks:",
    ]
    for i in range(n):
        http = f'url: "http://127.0.0.1:{http_port}/t/{i}"'
        target = http if proto == "http" else f'target: "127.0.0.1:{tcp_port}"'
        lines.append(f"  - {{name: c{i}, type: {proto}, {target}, interval: {interval:g}s, timeout: {interval:g}s}}")
    path = os.path.join(tmp, f"firstwatch-{proto}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Bench:
    def __init__(self, args: argparse.Namespace, procs: list[Proc], tmp: str) -> None:
        self.args = args
        self.procs = procs
        self.tmp = tmp
        self.http_port = free_port()
        self.tcp_port = free_port()
        start_targets(procs, http=[self.http_port], tcp=[self.tcp_port], log=os.path.join(tmp, "targets.log"))
        self.bb_config = os.path.join(tmp, "blackbox.yml")
        with open(self.bb_config, "w") as f:
            f.write(BB_CONFIG)
        self.n = args.checks
        self.alts = parse_alts(args.alt)
        self.metrics_port = 0
        self.scraped_bytes = 0
        self.interval = self.n / args.rate

    def launch(self, who: str, proto: str) -> tuple[Proc, list[Proc]]:
        """Start contender ``who``; returns (the measured process, every process started)."""
        a, tmp = self.args, self.tmp
        url = f"http://127.0.0.1:{self.http_port}/t"
        tcp = f"127.0.0.1:{self.tcp_port}"
        log = os.path.join(tmp, f"{who}-{proto}.log")
        if who in ("firstwatch", "firstwatch-uvloop") or who in self.alts:
            shutil.rmtree(os.path.join(tmp, "state"), ignore_errors=True)
            self.metrics_port = 0 if a.no_metrics else free_port()
            cfg = firstwatch_config(tmp, proto, self.n, self.interval, self.http_port, self.tcp_port, self.metrics_port)
            argv = [PYTHON, "-m", "agent", "run", "-c", cfg, "--log-level", "warning"]
            tree = self.alts.get(who) or (os.path.abspath(a.tree) if a.tree else None)
            env = tree_env(tree) if tree else dict(os.environ)
            if who == "firstwatch-uvloop":
                env["FIRSTWATCH_EVENT_LOOP"] = "uvloop"
            p = Proc(argv, log=log, cwd=tree, env=env) if tree else Proc(argv, log=log, env=env)
            return p, [p]
        if who.startswith(("bare", "raw")):  # bare, bare-uvloop, raw, raw-uvloop
            if who.startswith("raw"):
                mode = ["raw-http", "--url", url] if proto == "http" else ["bare-tcp", "--tcp", tcp]
            else:
                mode = ["bare-http", "--url", url] if proto == "http" else ["bare-tcp", "--tcp", tcp]
            if who.endswith("-uvloop"):
                mode.append("--uvloop")
            argv = [PYTHON, os.path.join(os.path.dirname(__file__), "loadgen.py"), *mode]
            p = Proc([*argv, "--rate", str(a.rate), "--targets", str(self.n)], log=log)
            return p, [p]
        port = free_port()
        exporter = Proc(
            [
                a.blackbox,
                f"--config.file={self.bb_config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            log=log,
        )
        started = [exporter]
        try:
            wait_for(lambda: _listening(port) or not exporter.alive(), what="blackbox_exporter")
            module = "http_2xx" if proto == "http" else "tcp_connect"
            driver = Proc(
                [
                    PYTHON,
                    os.path.join(os.path.dirname(__file__), "loadgen.py"),
                    "drive-blackbox",
                    "--exporter",
                    f"127.0.0.1:{port}",
                    "--module",
                    module,
                    "--url",
                    url,
                    "--tcp",
                    tcp,
                    "--rate",
                    str(a.rate),
                    "--targets",
                    str(self.n),
                ],
                log=log + ".driver",
            )
            started.append(driver)
        except BaseException:
            exporter.stop()
            raise
        return exporter, started

    def measure(self, who: str, proto: str) -> dict[str, float]:
        key = f"{proto}:{self.http_port if proto == 'http' else self.tcp_port}"
        measured, started = self.launch(who, proto)
        self.procs.extend(started)
        try:
            launched = time.monotonic()
            steady = self.wait_steady(key, started, launched)
            if not all(p.alive() for p in started):
                raise RuntimeError(f"{who} {proto} exited early; see {self.tmp}/{who}-{proto}.log")
            c0, cpu0, t0 = counts(self.http_port).get(key, 0), cpu_seconds(measured.pid), time.monotonic()
            if self.scrape_port(who):  # one Prometheus scrape per window, as a 15-20 s scrape interval would
                time.sleep(self.args.window / 2)
                self.scrape(who)
                time.sleep(self.args.window / 2)
            else:
                time.sleep(self.args.window)
            c1, cpu1, t1 = counts(self.http_port).get(key, 0), cpu_seconds(measured.pid), time.monotonic()
            rss = rss_mb(measured.pid)[0]
        finally:
            for p in reversed(started):
                p.stop()
                self.procs.remove(p)
        probes = c1 - c0
        cpu = cpu1 - cpu0
        return {
            "probes": probes,
            "rate": probes / (t1 - t0),
            "cpu_s": cpu,
            "core_pct": 100 * cpu / (t1 - t0),
            "us_per_probe": 1e6 * cpu / probes if probes else float("nan"),
            "rss_mb": rss,
            "steady_s": steady,
        }

    def scrape_port(self, who: str) -> int:
        return self.metrics_port if (who in ("firstwatch", "firstwatch-uvloop") or who in self.alts) else 0

    def scrape(self, who: str) -> None:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            body = r.read()
        self.scraped_bytes = len(body)

    def wait_steady(self, key: str, started: list[Proc], launched: float) -> float:
        """Wait until the target sees >= 90% of the rate for 2 s in a row (bounded by --warm),
        then --settle s more; returns the seconds from launch to steady (nan if never)."""
        a = self.args
        last, ok_since, steady = counts(self.http_port).get(key, 0), None, float("nan")
        while time.monotonic() - launched < a.warm and all(p.alive() for p in started):
            time.sleep(0.5)
            now_count = counts(self.http_port).get(key, 0)
            good = (now_count - last) >= 0.9 * a.rate * 0.5
            last = now_count
            if not good:
                ok_since = None
            elif ok_since is None:
                ok_since = time.monotonic()
            elif time.monotonic() - ok_since >= 2.0:
                steady = ok_since - launched
                break
        time.sleep(a.settle)
        return steady


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="probes per second for every contender (default 200)")
    ap.add_argument("--checks", type=int, default=200, help="distinct checks/targets (interval = checks/rate)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", type=float, default=25.0, help="at most this long to reach a steady rate (s)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds after reaching the steady rate")
    ap.add_argument("--window", type=float, default=20.0, help="measurement window, seconds")
    ap.add_argument("--protocols", default="http,tcp")
    ap.add_argument("--contenders", default="firstwatch,blackbox,bare")
    ap.add_argument("--blackbox", default=shutil.which("prometheus-blackbox-exporter") or "")
    ap.add_argument(
        "--alt",
        action="append",
        metavar="NAME=DIR",
        help="one more firstwatch contender running agent/ and checks/ from DIR (a patched copy), side by side",
    )
    ap.add_argument("--tree", help="run the firstwatch contender from this copy of agent/ and checks/")
    ap.add_argument("--no-metrics", action="store_true", help="firstwatch without telemetry (listen off, no /metrics)")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    if args.warm + args.settle + args.window > 60:
        ap.error("each measurement is bounded to 60 s: warm + settle + window must be <= 60")
    contenders = args.contenders.split(",") + list(parse_alts(args.alt))
    if "blackbox" in contenders and not args.blackbox:
        ap.error("prometheus-blackbox-exporter not found: apt-get install -y prometheus-blackbox-exporter")
    protocols = args.protocols.split(",")

    print_header("cpu_per_probe", args.tree and f"firstwatch runs agent/ and checks/ from {args.tree}")
    tmp = tempfile.mkdtemp(prefix="fwbench-cpu-")
    results: dict[str, dict[str, list[dict[str, float]]]] = {p: {c: [] for c in contenders} for p in protocols}
    try:
        with processes() as procs:
            bench = Bench(args, procs, tmp)
            print(
                f"rate {args.rate:g}/s, {bench.n} targets, interval {bench.interval:g}s, "
                f"warm {args.warm:g}s, window {args.window:g}s, {args.rounds} rounds"
            )
            for r in range(args.rounds):
                for proto in protocols:
                    order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                    for who in order:
                        m = bench.measure(who, proto)
                        results[proto][who].append(m)
                        print(
                            f"round {r + 1} {proto:<4} {who:<10} {m['us_per_probe']:7.1f} us/probe "
                            f"{m['rate']:6.1f} probes/s {m['core_pct']:5.1f}% core rss {m['rss_mb']:.0f} MB "
                            f"steady after {m['steady_s']:.1f}s",
                            flush=True,
                        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, contenders, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "results": results}, f, indent=1)


def report(
    results: dict[str, dict[str, list[dict[str, float]]]], contenders: list[str], args: argparse.Namespace
) -> None:
    for proto, by in results.items():
        print()
        print(f"## {proto}: CPU per probe at {args.rate:g} probes/s (median [min-max] over {args.rounds} rounds)")
        print()
        rows = []
        for who in contenders:
            ms = by[who]
            rows.append(
                [
                    who,
                    med_spread([m["us_per_probe"] for m in ms]),
                    med_spread([m["rate"] for m in ms]),
                    med_spread([m["core_pct"] for m in ms]),
                    med_spread([m["rss_mb"] for m in ms], "{:.0f}"),
                    med_spread([m["steady_s"] for m in ms]),
                ]
            )
        print(table(["contender", "CPU us/probe", "probes/s", "% of a core", "RSS MB", "s to steady rate"], rows))
        if "firstwatch" not in contenders:
            continue
        print()
        ratio_rows = []
        refs = ("blackbox", "bare", "bare-uvloop", "raw", "raw-uvloop")
        ours = ["firstwatch"] + [c for c in contenders if c not in ("firstwatch", *refs)]
        for mine in ours:
            for other in [c for c in contenders if c not in ours] + (["firstwatch"] if mine != "firstwatch" else []):
                ratios = [f["us_per_probe"] / o["us_per_probe"] for f, o in zip(by[mine], by[other], strict=True)]
                goal = None
                if other in ("blackbox", "bare"):
                    goal = TARGETS.get(proto, (None, None))[0 if other == "blackbox" else 1]
                verdict = "-"
                if goal is not None:
                    m = statistics.median(ratios)
                    verdict = "met" if m <= goal else f"missed: {m / goal:.2f}x the target"
                ratio_rows.append(
                    [f"{mine} / {other}", med_spread(ratios, "{:.2f}"), f"<= {goal}" if goal else "-", verdict]
                )
        print(table(["ratio (paired per round)", "median [min-max]", "target", "verdict"], ratio_rows))


if __name__ == "__main__":
    main()
