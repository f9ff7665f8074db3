"""(3b) Time from a target going down to its event reaching a sink.

    .venv/bin/python bench/time_to_event.py [--trials 20] [--interval 1] [--type http]

The real daemon (``python -m agent run``) watches one local target (``bench/target_server.py``,
its own process) with ``interval: 1s`` and ``alerts: [{when: down, for: 0}]`` (``flapping: false``:
the trials flip the target on purpose, and flap detection would rightly hold the alert), and a
``file`` sink. Each trial waits a random 0-1 interval (so the outage starts at a random phase of
the schedule), takes t0 and SIGKILLs the target process (its port refuses at once), then polls the
sink's file every 1 ms for the ``firing`` line: latency = seen - t0. The event's own ``time`` (the
start of the probe that saw it down) splits it in two: *waiting for the next probe* (t0 -> probe
start, bounded by the interval) and *probe + pipeline* (probe start -> line in the file: the
probe, rules, alert state, SQLite commit of the outbox row, the sink worker, the file write).
The target is then restarted and the ``resolved`` line awaited before the next trial.

Target (docs/performance.md): at most ``for`` + interval + 100 ms (1.1 s here), judged on p95 and max.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, Proc, free_port, pct, print_header, processes, start_targets, table, tree_env


class Tail:
    """The lines appended to a file since the last call."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""

    def lines(self) -> list[dict[str, object]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        data = self.partial + data
        *full, self.partial = data.split(b"\n")
        return [json.loads(x) for x in full if x.strip()]


def await_event(tail: Tail, kind: str, timeout: float) -> tuple[float, dict[str, object]] | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for ev in tail.lines():
            if ev.get("kind") == kind:
                return time.time(), ev
        time.sleep(0.001)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--for", dest="for_s", type=float, default=0.0)
    ap.add_argument("--type", choices=["http", "tcp"], default="http")
    ap.add_argument("--tree", help="run the daemon from this copy of agent/ and checks/ (a patched copy)")
    args = ap.parse_args()
    from agent.core.events import parse_iso

    print_header("time_to_event", args.tree and f"the daemon runs agent/ and checks/ from {args.tree}")
    bound = args.for_s + args.interval + 0.1
    tmp = tempfile.mkdtemp(prefix="fwbench-tte-")
    events = os.path.join(tmp, "events.jsonl")
    port = free_port()
    target = f'url: "http://127.0.0.1:{port}/health"' if args.type == "http" else f'target: "127.0.0.1:{port}"'
    cfg = os.path.join(tmp, "tte.yaml")
    with open(cfg, "w") as f:
        f.write(
            "agent:\n"
            "  name: bench\n"
            f"  state_dir: {tmp}/state\n"
            '  listen: ""\n'
            "sinks:\n"
            f"  - {{type: file, path: {events}}}\n"
            "checks:\n"
            f"  - {{name: svc, type: {args.type}, {target},\n"
            f"     interval: {args.interval:g}s, timeout: {args.interval:g}s,\n"
            f"     flapping: false, alerts: [{{when: down, for: {args.for_s:g}s, severity: critical}}]}}\n"
        )
    tail = Tail(events)
    rows: list[tuple[float, float, float]] = []  # total, wait for probe, probe + pipeline
    try:
        with processes() as procs:
            kw = {"http": [port]} if args.type == "http" else {"tcp": [port]}
            target_proc = start_targets(procs, **kw)  # type: ignore[arg-type]
            argv = [PYTHON, "-m", "agent", "run", "-c", cfg, "--log-level", "info"]
            if args.tree:
                tree = os.path.abspath(args.tree)
                agent = Proc(argv, log=f"{tmp}/agent.log", cwd=tree, env=tree_env(tree))
            else:
                agent = Proc(argv, log=f"{tmp}/agent.log")
            procs.append(agent)
            time.sleep(3 * args.interval + 2.0)  # started, first probes up
            if not agent.alive():
                with open(f"{tmp}/agent.log") as f:
                    raise SystemExit(f.read())
            for i in range(args.trials):
                time.sleep(random.uniform(0, args.interval))
                tail.lines()  # skip anything older
                t0 = time.time()
                target_proc.kill()
                procs.remove(target_proc)
                got = await_event(tail, "firing", timeout=bound + 5)
                if got is None:
                    print(f"trial {i + 1}: no firing event within {bound + 5:g}s")
                    rows.append((float("inf"), float("nan"), float("nan")))
                else:
                    seen, ev = got
                    probe_at = parse_iso(str(ev["time"]))
                    rows.append((seen - t0, probe_at - t0, seen - probe_at))
                    print(
                        f"trial {i + 1}: {1e3 * (seen - t0):6.0f} ms  (wait for probe {1e3 * (probe_at - t0):5.0f} ms,"
                        f" probe+pipeline {1e3 * (seen - probe_at):5.1f} ms)",
                        flush=True,
                    )
                target_proc = start_targets(procs, **kw)  # type: ignore[arg-type]
                if await_event(tail, "resolved", timeout=3 * args.interval + 5) is None:
                    print(f"trial {i + 1}: no resolved event; continuing")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = [r[0] for r in rows]
    wait = [r[1] for r in rows if r[1] == r[1]]
    pipe = [r[2] for r in rows if r[2] == r[2]]
    print()
    print(
        f"## time to event over {len(rows)} trials (ms): {args.type} check, "
        f"interval {args.interval:g}s, for {args.for_s:g}s"
    )
    print()
    out = []
    for name, vals in (
        ("down -> event in sink", total),
        ("waiting for the next probe", wait),
        ("probe + pipeline", pipe),
    ):
        out.append([name, f"{1e3 * pct(vals, 50):.0f}", f"{1e3 * pct(vals, 95):.0f}", f"{1e3 * max(vals):.0f}"])
    print(table(["part", "p50", "p95", "max"], out))
    p95, worst = pct(total, 95), max(total)
    verdict = (
        "met"
        if worst <= bound
        else (f"p95 {'met' if p95 <= bound else 'missed'}, max missed by {1e3 * (worst - bound):.0f} ms")
    )
    print()
    print(
        f"target: for + interval + 100 ms = {1e3 * bound:.0f} ms -> {verdict}; "
        f"probe+pipeline p50 {1e3 * statistics.median(pipe):.1f} ms (budget 100 ms)"
    )


if __name__ == "__main__":
    main()
