"""(2) Many checks: scheduling lag p50/p99, missed runs, resident memory and CPU.

    .venv/bin/python bench/sched_scale.py                       # 10,000 @ 60 s for 130 s, 1,000 @ 1 s for 60 s
    .venv/bin/python bench/sched_scale.py --scenario 10000x60:130 --repeat 2
    .venv/bin/python bench/sched_scale.py --scenario 1000x1:60 --checks-type tcp

Each scenario ``NxI:D`` runs N ``tcp`` checks (default rules, flap detection, SQLite state in a
temp dir, a file sink to /dev/null) at interval I seconds for D seconds, in a fresh Python process
(``--worker``) that builds the real :class:`agent.engine.runtime.Runtime` from YAML text with
``parse_config`` and runs it, so its RSS is the agent's alone. The targets are 4 listening ports of
``bench/target_server.py`` in another process (its CPU is not counted).

Two lags are recorded for every run (loop clock, ``asyncio`` ``loop.time()``):

- ``sched``: what ``Scheduler.stats.lags`` holds: the loop time when the scheduler popped the job
  minus its due time (every job popped in one batch shares the same ``now``);
- ``start``: when the run's task actually began executing (``job.run()`` was called) minus its due
  time: what a probe experiences. Recorded by wrapping ``Runtime.jobs`` and ``Scheduler._start``
  in this process only; the agent code is not changed.

Reported for all runs, for the first round (every job's first run, which the scheduler spreads
over its first window: 5 s before 2c4a715, a 2,000/s burst for 10,000 checks; at most 500/s since)
and for the steady state (every later run). "first runs done" is when the last job's first run
began, counted from the worker process' start (interpreter, imports, ``parse_config``, the
Runtime's build: what ``firstwatch run`` goes through) and from ``Runtime.start()``. Like the
daemon, the worker calls ``agent.engine.event_loop.settle()`` (a collection and ``gc.freeze()``)
once the runtime has started (``--no-settle``: not). Targets (docs/performance.md): every first
run within 25 s of start, p99 lag < 50 ms, no missed runs, no false "down", RSS < 180 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    PYTHON,
    REPO,
    checks_config,
    cpu_seconds,
    free_port,
    med_spread,
    pct,
    print_header,
    processes,
    rss_mb,
    start_targets,
    table,
)

# --- the worker: the agent's runtime in this process ---------------------------------------------


async def run_worker(args: argparse.Namespace) -> dict[str, object]:
    sys.path.insert(0, args.tree or REPO)
    import psutil

    from agent.config.load import parse_config
    from agent.engine.runtime import Runtime
    from agent.engine.scheduler import Scheduler
    from agent.incidents.store import Store
    from agent.incidents.writer import StoreWriter

    pid = os.getpid()
    born = psutil.Process(pid).create_time()  # wall time the process started
    out: dict[str, object] = {"rss_start_mb": rss_mb(pid)[0]}
    tmp = tempfile.mkdtemp(prefix="fwbench-sched-")
    try:
        ports = [int(p) for p in args.ports.split(",")]
        text = checks_config(args.checks, args.interval, ports, os.path.join(tmp, "state"), args.checks_type, "bench")
        t = time.perf_counter()
        cfg = parse_config(text, "bench.yaml")
        out["parse_s"] = time.perf_counter() - t
        out["rss_after_parse_mb"] = rss_mb(pid)[0]
        t = time.perf_counter()
        store = Store(os.path.join(tmp, "state"))
        rt = Runtime(cfg, store, StoreWriter(store))
        out["build_s"] = time.perf_counter() - t

        loop = asyncio.get_running_loop()
        sched_lags: list[tuple[float, float, bool]] = []  # (due, lag, the job's first run?)
        start_lags: list[tuple[float, float, bool]] = []
        seen: set[int] = set()
        orig_start = Scheduler._start

        def _start(self: Scheduler, job, due: float, now: float) -> None:  # type: ignore[no-untyped-def]
            if not job.running:
                job._bench_due = due
                job._bench_first = id(job) not in seen
                seen.add(id(job))
                sched_lags.append((due, now - due, job._bench_first))
            orig_start(self, job, due, now)

        Scheduler._start = _start  # type: ignore[method-assign]
        orig_jobs = rt.jobs

        def jobs():  # type: ignore[no-untyped-def]
            js = orig_jobs()
            for job in js:
                inner = job.run

                def run(inner=inner, job=job):  # type: ignore[no-untyped-def]
                    due = job._bench_due
                    start_lags.append((due, loop.time() - due, job._bench_first))
                    return inner()

                job.run = run
            return js

        rt.jobs = jobs  # type: ignore[method-assign]
        gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) of every collection while running
        gc_started = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            else:
                gc_pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

        gc.callbacks.append(on_gc)
        cpu0 = cpu_seconds(pid)
        started = loop.time()
        loop_at_birth = started - (time.time() - born)
        await rt.start()
        if not args.no_settle:  # as the daemon does once its runtime is scheduled
            try:
                from agent.engine.event_loop import settle
            except ImportError:  # a tree from before it: the same by hand
                gc.collect()
                gc.freeze()
            else:
                settle()
        assert rt.scheduler is not None
        anchor = loop.time()  # ~ the scheduler's plan start
        out["rss_after_start_mb"] = rss_mb(pid)[0]
        steady_from = args.interval if args.interval > 5 else 5.0  # after every job's first run
        # a CPU sample once the first round is over, and at the end
        await asyncio.sleep(min(args.duration, steady_from + 1))
        cpu_a, ta = cpu_seconds(pid), loop.time()
        runs_a = rt.scheduler.stats.runs
        await asyncio.sleep(max(0.0, args.duration - (loop.time() - anchor)))
        cpu_b, tb = cpu_seconds(pid), loop.time()
        stats = rt.scheduler.stats
        out["runs"] = stats.runs
        out["missed"] = stats.missed
        out["rss_end_mb"], out["rss_peak_mb"] = rss_mb(pid)
        out["cpu_total_s"] = cpu_b - cpu0
        out["steady_core_pct"] = 100 * (cpu_b - cpu_a) / (tb - ta)
        out["steady_us_per_run"] = 1e6 * (cpu_b - cpu_a) / max(1, stats.runs - runs_a)
        gc.callbacks.remove(on_gc)
        full = [d for g, d in gc_pauses if g == 2]
        out["gc_full_n"] = len(full)
        out["gc_full_max_ms"] = 1e3 * max(full, default=0.0)
        out["gc_full_total_ms"] = 1e3 * sum(full)
        out["gc_max_ms"] = 1e3 * max((d for _, d in gc_pauses), default=0.0)
        firsts = [due + lag for due, lag, first in start_lags if first]
        out["first_done_s"] = (max(firsts) - loop_at_birth) if firsts else float("nan")
        out["first_done_from_start_s"] = (max(firsts) - started) if firsts else float("nan")
        out["first_runs"] = len(firsts)
        out["down_results"] = sum(1 for r in rt.last.values() if not r.ok)
        out["results"] = len(rt.last)
        for name, data in (("sched", sched_lags), ("start", start_lags)):
            for part, sel in (
                ("all", data),
                ("first", [x for x in data if x[2]]),
                ("steady", [x for x in data if not x[2]]),
            ):
                lags = [lag for _, lag, _ in sel]
                out[f"{name}_{part}_n"] = len(lags)
                out[f"{name}_{part}_p50_ms"] = 1e3 * pct(lags, 50)
                out[f"{name}_{part}_p99_ms"] = 1e3 * pct(lags, 99)
                out[f"{name}_{part}_max_ms"] = 1e3 * max(lags) if lags else float("nan")
        await rt.stop(timeout=1.0)
        rt.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --- the orchestrator ------------------------------------------------------------------------------


def parse_scenario(text: str) -> tuple[int, float, float]:
    nxi, _, dur = text.partition(":")
    n, _, interval = nxi.partition("x")
    return int(n), float(interval), float(dur or 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", action="append", help="NxINTERVAL:DURATION, e.g. 10000x60:130 (repeatable)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--checks-type", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--no-settle", action="store_true", help="no gc.freeze() after the start (the daemon does it)")
    ap.add_argument("--tree", help="import agent/ and checks/ from this directory (a patched copy) instead")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checks", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--interval", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(run_worker(args))))
        return
    scenarios = [parse_scenario(s) for s in (args.scenario or ["10000x60:130", "1000x1:60"])]
    print_header("sched_scale", args.tree and f"agent/ and checks/ imported from {args.tree}")
    results: dict[str, list[dict[str, float]]] = {}
    with processes() as procs:
        ports = [free_port() for _ in range(4)]
        if args.checks_type == "tcp":
            start_targets(procs, tcp=ports)
        else:
            start_targets(procs, http=ports)
        for r in range(args.repeat):
            for n, interval, dur in scenarios:
                key = f"{n} checks @ {interval:g}s ({dur:g}s run)"
                argv = [
                    PYTHON, os.path.abspath(__file__), "--worker", "--checks", str(n), "--interval", str(interval),
                    "--duration", str(dur), "--ports", ",".join(map(str, ports)), "--checks-type", args.checks_type,
                ] + (["--tree", os.path.abspath(args.tree)] if args.tree else []) + (
                    ["--no-settle"] if args.no_settle else []
                )  # fmt: skip
                t = time.monotonic()
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=dur + 300, cwd=args.tree or REPO)
                if proc.returncode != 0:
                    print(proc.stderr[-3000:])
                    raise SystemExit(f"worker failed: {key}")
                m = json.loads(proc.stdout.strip().splitlines()[-1])
                m["wall_s"] = time.monotonic() - t
                results.setdefault(key, []).append(m)
                print(
                    f"run {r + 1} {key}: start lag p50 {m['start_all_p50_ms']:.1f} p99 {m['start_all_p99_ms']:.1f} "
                    f"(steady p99 {m['start_steady_p99_ms']:.1f}) ms, missed {m['missed']}, runs {m['runs']}, "
                    f"rss {m['rss_end_mb']:.0f} MB (peak {m['rss_peak_mb']:.0f}), "
                    f"cpu {m['steady_core_pct']:.0f}% core, "
                    f"first runs done {m['first_done_s']:.1f} s after the process started, "
                    f"down {m['down_results']:.0f}",
                    flush=True,
                )
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "results": results}, f, indent=1)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    def col(ms: list[dict[str, float]], k: str, fmt: str = "{:.1f}") -> str:
        return med_spread([m[k] for m in ms], fmt)

    for key, ms in results.items():
        print()
        print(f"## {key}: median [min-max] over {len(ms)} run(s)")
        print()
        rows = []
        for name in ("start", "sched"):
            for part in ("all", "first", "steady"):
                rows.append(
                    [
                        f"{name} lag, {part} runs",
                        col(ms, f"{name}_{part}_n", "{:.0f}"),
                        col(ms, f"{name}_{part}_p50_ms", "{:.2f}"),
                        col(ms, f"{name}_{part}_p99_ms", "{:.2f}"),
                        col(ms, f"{name}_{part}_max_ms", "{:.0f}"),
                    ]
                )
        print(table(["lag (ms)", "runs", "p50", "p99", "max"], rows))
        print()
        rows = [
            ["every first run begun, s after the process started", col(ms, "first_done_s", "{:.1f}")],
            ["every first run begun, s after Runtime.start()", col(ms, "first_done_from_start_s", "{:.1f}")],
            ["runs done", col(ms, "runs", "{:.0f}")],
            ["missed runs (Scheduler.stats.missed)", col(ms, "missed", "{:.0f}")],
            [
                "results down at the end (of all targets)",
                col(ms, "down_results", "{:.0f}") + " / " + col(ms, "results", "{:.0f}"),
            ],
            ["RSS at the end, MB", col(ms, "rss_end_mb", "{:.0f}")],
            ["RSS peak (VmHWM), MB", col(ms, "rss_peak_mb", "{:.0f}")],
            ["RSS after parse_config, MB", col(ms, "rss_after_parse_mb", "{:.0f}")],
            ["RSS of the bare interpreter + imports, MB", col(ms, "rss_start_mb", "{:.0f}")],
            ["parse_config, s", col(ms, "parse_s", "{:.2f}")],
            ["Runtime(...) build, s", col(ms, "build_s", "{:.2f}")],
            ["CPU, steady state, % of a core", col(ms, "steady_core_pct", "{:.1f}")],
            ["CPU per run, steady state, us", col(ms, "steady_us_per_run", "{:.0f}")],
            ["CPU total (build excluded), s", col(ms, "cpu_total_s", "{:.1f}")],
            ["full (gen 2) GC collections while running", col(ms, "gc_full_n", "{:.0f}")],
            ["longest full GC pause, ms", col(ms, "gc_full_max_ms", "{:.0f}")],
            ["all full GC pauses, ms", col(ms, "gc_full_total_ms", "{:.0f}")],
            ["longest GC pause (any generation), ms", col(ms, "gc_max_ms", "{:.0f}")],
        ]
        print(table(["measure", "value"], rows))


if __name__ == "__main__":
    main()
