"""firstwatch's own CPU per run, without the network: the pipeline around a probe, A/B-able.

    .venv/bin/python bench/pipeline_overhead.py [--tree base=/tmp/base --tree patched=/tmp/patched] [--rounds 5]

The network part of a probe (connect, the HTTP client) is the same for every prober and is noisy
on a shared machine; what firstwatch adds around it is small and gets lost in that noise. This
script removes the network: ``TcpCheck.probe`` is replaced (in the bench process only) by a stub
that returns ``Observation(ok=True)`` at once, and the real ``Runtime`` runs ``--checks`` checks
at ``--interval`` with everything else real (scheduler, ``run_probe`` and its deadline, rules,
flap detection, alert book, recorder, dispatcher, SQLite store, file sink to /dev/null).
CPU per run = CPU delta of the process / runs done, over ``--window`` s after ``--warm`` s.

One tree under cProfile (its top 25 functions by own time)::

    .venv/bin/python bench/pipeline_overhead.py --worker --tree . --profile 25 --window 10

``floor`` is the same schedule with no pipeline at all: a paced loop creating one task per run
that awaits a no-op coroutine (what "a task per probe" costs in asyncio).

Trees (``--tree NAME=DIR``, DIR holding ``agent/`` and ``checks/``; default: this checkout as
``firstwatch``) run in fresh processes, interleaved over rounds; ratios are paired per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, REPO, cpu_seconds, med_spread, parse_alts, print_header, table


async def worker(args: argparse.Namespace) -> dict[str, float]:
    pid = os.getpid()
    loop = asyncio.get_running_loop()
    tree = args.tree[0]
    if tree == "floor":
        runs = 0

        async def noop() -> None:
            nonlocal runs
            runs += 1

        step = args.interval / args.checks
        nxt, end = loop.time(), loop.time() + args.warm + args.window
        cpu_a = r_a = None
        tasks: set[asyncio.Task[None]] = set()
        t_a = 0.0
        while loop.time() < end:
            now = loop.time()
            if cpu_a is None and now >= end - args.window:
                cpu_a, r_a, t_a = cpu_seconds(pid), runs, now
            if nxt > now:
                await asyncio.sleep(nxt - now)
                continue
            nxt += step
            task = asyncio.ensure_future(noop())  # kept until done, as the scheduler does
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        assert cpu_a is not None and r_a is not None
        runs_b, t_b = runs, loop.time()
        return {
            "us_per_run": 1e6 * (cpu_seconds(pid) - cpu_a) / (runs_b - r_a),
            "runs_per_s": (runs_b - r_a) / (t_b - t_a),
        }

    sys.path.insert(0, tree)
    try:  # the layout in rooms, with the store writer thread
        from agent.config.load import parse_config
        from agent.engine.runtime import Runtime
        from agent.incidents.store import Store
        from agent.incidents.writer import StoreWriter

        def runtime(cfg, store):  # type: ignore[no-untyped-def]
            return Runtime(cfg, store, StoreWriter(store))
    except ImportError:  # an older tree (flat agent/, SQLite on the loop): A/B across the change
        from agent.runtime import Runtime  # type: ignore[no-redef]
        from agent.store import Store  # type: ignore[no-redef]

        from agent.config import parse_config  # type: ignore[no-redef]

        def runtime(cfg, store):  # type: ignore[no-untyped-def]
            return Runtime(cfg, store)

    from checks.base import Observation
    from checks.tcp import TcpCheck

    assert str(sys.modules["checks.tcp"].__file__).startswith(os.path.abspath(tree)), "wrong tree imported"

    async def stub(self, target, ctx):  # type: ignore[no-untyped-def]
        return Observation(ok=True)

    TcpCheck.probe = stub  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="fwbench-pipe-") as tmp:
        lines = [
            'agent: {name: bench, listen: "", state_dir: ' + tmp + "}",
            "sinks: [{type: file, path: /dev/null}]",
            "checks:",
        ]
        lines += [
            f'  - {{name: c{i}, type: tcp, target: "127.0.0.1:9", interval: {args.interval:g}s}}'
            for i in range(args.checks)
        ]
        rt = runtime(parse_config("\n".join(lines) + "\n", "bench.yaml"), Store(tmp))
        await rt.start()
        assert rt.scheduler is not None
        await asyncio.sleep(args.warm)
        prof = None
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu_a, r_a, t_a = cpu_seconds(pid), rt.scheduler.stats.runs, loop.time()
        await asyncio.sleep(args.window)
        cpu_b, r_b, t_b = cpu_seconds(pid), rt.scheduler.stats.runs, loop.time()
        if prof is not None:
            import pstats

            prof.disable()
            print(f"cProfile of {r_b - r_a} runs (times inflated by the profiler):", file=sys.stderr)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
        await rt.stop(timeout=1.0)
        rt.store.close()
    return {"us_per_run": 1e6 * (cpu_b - cpu_a) / (r_b - r_a), "runs_per_s": (r_b - r_a) / (t_b - t_a)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", action="append", metavar="NAME=DIR")
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warm", type=float, default=4.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--no-floor", action="store_true")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="with --worker: print cProfile's top N")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))))
        return
    trees = parse_alts(args.tree) or {"firstwatch": REPO}
    if not args.no_floor:
        trees["floor"] = "floor"
    print_header("pipeline_overhead")
    print(f"{args.checks} checks at {args.interval:g}s (stub probe), warm {args.warm:g}s, window {args.window:g}s")
    res: dict[str, list[float]] = {n: [] for n in trees}
    names = list(trees)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            argv = [
                PYTHON, os.path.abspath(__file__), "--worker", "--tree", trees[name], "--checks", str(args.checks),
                "--interval", str(args.interval), "--warm", str(args.warm), "--window", str(args.window),
            ]  # fmt: skip
            out = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=120 + args.warm + args.window)
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            m = json.loads(out.stdout.strip().splitlines()[-1])
            res[name].append(m["us_per_run"])
            print(f"round {r + 1} {name:<12} {m['us_per_run']:6.1f} us/run  {m['runs_per_s']:6.0f} runs/s", flush=True)
    print()
    base = names[0]
    rows = []
    for name in names:
        ratios = [a / b for a, b in zip(res[name], res[base], strict=True)]
        delta = [a - b for a, b in zip(res[name], res[base], strict=True)]
        rows.append([name, med_spread(res[name]), med_spread(ratios, "{:.2f}"), med_spread(delta)])
    print(table(["tree", "CPU us per run", f"ratio to {base} (paired)", f"us vs {base} (paired)"], rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"argv": sys.argv, "results": res, "median": {k: statistics.median(v) for k, v in res.items()}}, f
            )


if __name__ == "__main__":
    main()
