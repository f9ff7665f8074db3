"""CPU per run of a 3-step journey, side by side with the same 3 requests as three http checks.

    .venv/bin/python bench/journey_overhead.py [--journeys 50] [--interval 1] [--rounds 3]

Both contenders run the real ``Runtime`` of this checkout (scheduler, probe runner, rules, flap
detection, alert book, recorder, SQLite store, file sink to /dev/null) in a fresh process each,
against the same local target server (``target_server.py``, its own process, not counted), at the
same request rate, a fresh connection per request:

- ``journey``: ``--journeys`` journey checks of 3 steps: ``GET /a`` saving ``regex:(ok)``, ``GET /b``
  sending it back in a header (``X-T: "{{ t }}"``), ``GET /c``; one cookie jar per run;
- ``http``: 3 x ``--journeys`` http checks, ``GET /a``, ``/b`` (with ``X-T: ok``) and ``/c``.

CPU per run = CPU delta of the process / runs, over ``--window`` s after ``--warm`` s; for
``http`` the figure is per three runs (the same three requests a journey run makes). Contenders
alternate in rotating order over ``--rounds``; the ratio journey / http is paired per round.
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
from common import PYTHON, REPO, cpu_seconds, free_port, med_spread, print_header, processes, start_targets, table

CONTENDERS = ("journey", "http")


def config(contender: str, n: int, interval: float, port: int, tmp: str) -> str:
    base = f"http://127.0.0.1:{port}"
    lines = [f'agent: {{name: bench, listen: "", state_dir: "{tmp}"}}', "sinks: [{type: file, path: /dev/null}]"]
    lines.append("checks:")
    for i in range(n):
        if contender == "journey":
            lines += [
                f"  - name: j{i}",
                "    type: journey",
                f"    interval: {interval:g}s",
                "    steps:",
                f'      - {{name: a, url: "{base}/a", save: {{t: "regex:(ok)"}}}}',
                f'      - {{name: b, url: "{base}/b", headers: {{X-T: "{{{{ t }}}}"}}}}',
                f'      - {{name: c, url: "{base}/c"}}',
            ]
        else:
            lines += [
                f'  - {{name: a{i}, type: http, url: "{base}/a", interval: {interval:g}s}}',
                f'  - {{name: b{i}, type: http, url: "{base}/b", headers: {{X-T: ok}}, interval: {interval:g}s}}',
                f'  - {{name: c{i}, type: http, url: "{base}/c", interval: {interval:g}s}}',
            ]
    return "\n".join(lines) + "\n"


async def worker(args: argparse.Namespace) -> dict[str, float]:
    sys.path.insert(0, REPO)
    from agent.config.load import parse_config
    from agent.engine.runtime import Runtime
    from agent.incidents.store import Store
    from agent.incidents.writer import StoreWriter

    pid, loop = os.getpid(), asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="fwbench-journey-") as tmp:
        text = config(args.contender, args.journeys, args.interval, args.port, tmp)
        store = Store(tmp)
        rt = Runtime(parse_config(text, "bench.yaml"), store, StoreWriter(store))
        await rt.start()
        assert rt.scheduler is not None
        await asyncio.sleep(args.warm)
        cpu_a, r_a, t_a = cpu_seconds(pid), rt.scheduler.stats.runs, loop.time()
        await asyncio.sleep(args.window)
        cpu_b, r_b, t_b = cpu_seconds(pid), rt.scheduler.stats.runs, loop.time()
        failed = sum(1 for result in rt.last.values() if not result.ok)
        await rt.stop(timeout=1.0)
        rt.store.close()
    per = 1 if args.contender == "journey" else 3  # runs that make the 3 requests of one journey
    return {
        "us_per_journey": 1e6 * (cpu_b - cpu_a) / (r_b - r_a) * per,
        "runs_per_s": (r_b - r_a) / (t_b - t_a),
        "failing_checks": failed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--journeys", type=int, default=50)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=float, default=4.0)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))))
        return
    print_header("journey_overhead")
    print(
        f"{args.journeys} journeys of 3 steps vs {3 * args.journeys} http checks at {args.interval:g}s "
        f"({3 * args.journeys / args.interval:g} requests/s each), warm {args.warm:g}s, window {args.window:g}s"
    )
    res: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    with processes() as procs:
        port = free_port()
        start_targets(procs, http=[port])
        for r in range(args.rounds):
            for name in CONTENDERS[r % 2 :] + CONTENDERS[: r % 2]:
                argv = [
                    PYTHON, os.path.abspath(__file__), "--worker", "--contender", name, "--port", str(port),
                    "--journeys", str(args.journeys), "--interval", str(args.interval),
                    "--warm", str(args.warm), "--window", str(args.window),
                ]  # fmt: skip
                out = subprocess.run(
                    argv, capture_output=True, text=True, cwd="/", timeout=120 + args.warm + args.window
                )
                if out.returncode:
                    raise SystemExit(out.stderr[-3000:])
                m = json.loads(out.stdout.strip().splitlines()[-1])
                if m["failing_checks"]:
                    raise SystemExit(f"{name}: {m['failing_checks']} checks failing: the comparison would be unfair")
                res[name].append(m["us_per_journey"])
                cost, rate = m["us_per_journey"], m["runs_per_s"]
                print(f"round {r + 1} {name:<8} {cost:7.1f} us per 3 requests  {rate:6.1f} runs/s", flush=True)
    print()
    ratios = [j / h for j, h in zip(res["journey"], res["http"], strict=True)]
    delta = [j - h for j, h in zip(res["journey"], res["http"], strict=True)]
    rows = [
        ["http (3 checks, 1 run each)", med_spread(res["http"]), "1.00", "0"],
        ["journey (3 steps, 1 run)", med_spread(res["journey"]), med_spread(ratios, "{:.2f}"), med_spread(delta)],
    ]
    print(table(["contender", "CPU us per 3 requests", "ratio to http (paired)", "us vs http (paired)"], rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"argv": sys.argv, "results": res, "median": {k: statistics.median(v) for k, v in res.items()}}, f
            )


if __name__ == "__main__":
    main()
