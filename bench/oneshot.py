"""(3a) Wall time of ``firstwatch check`` on a 10-check config (5 http + 5 tcp, local targets).

    .venv/bin/python bench/oneshot.py [--runs 20] [--alt patched=/tmp/tree]

Uses ``hyperfine`` when installed (``apt-get install -y hyperfine``), else a timing loop. Side by
side, in the same run: ``python -c pass`` (the interpreter's floor) and ``python -c "import
agent.config.load"`` (what loading a config imports: the check and sink registries and their
libraries), so the share of imports in the total is visible. Then ``python -X importtime`` lists
the heaviest imports of the check command. Target (docs/performance.md): under 0.4 s.

Then one ``firstwatch check`` of one check of each costlier type, ``--kind-runs`` times each:
a 3-step ``journey`` against the same local target, and a ``browser`` check loading a local page
in headless Chromium (skipped, with a line saying so, without Chromium and Playwright). Each: wall
time, CPU seconds of the whole process tree (``RUSAGE_CHILDREN``: the agent and Chromium's
processes), and peak RSS (the agent's own, and the sum over its process tree, polled every 20 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, REPO, free_port, parse_alts, print_header, processes, start_targets, table, tree_env

TARGET_S = 0.4


def one_journey(path: str, http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    steps = "\n".join(f"      - {{name: s{i}, url: {base}/step{i}, expect: {{status: [200]}}}}" for i in range(3))
    with open(path, "w") as f:
        f.write(
            f'agent: {{name: bench, listen: ""}}\nchecks:\n  - name: journey\n    type: journey\n    steps:\n{steps}\n'
        )


def one_browser(path: str, http_port: int, chromium: str) -> None:
    with open(path, "w") as f:
        f.write(
            f'agent: {{name: bench, listen: "", browser: {{executable: "{chromium}"}}}}\n'
            f"checks:\n  - {{name: page, type: browser, url: http://127.0.0.1:{http_port}/page, timeout: 30s}}\n"
        )


def measure_once(argv: list[str]) -> tuple[float, float, float, float, int]:
    """One run of ``argv``: (wall s, CPU s of the process tree, peak RSS MB of the process, peak
    summed RSS MB of its tree, exit code)."""
    import resource

    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = psutil.Popen(argv, cwd=CWD, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own = tree = 0
    while proc.poll() is None:
        try:
            rss = proc.memory_info().rss
            total = rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            continue
        own, tree = max(own, rss), max(tree, total)
        time.sleep(0.02)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, own / 2**20, tree / 2**20, int(proc.returncode or 0)


def kinds(tmp: str, http_port: int, runs: int) -> list[list[str]]:
    """The journey and browser rows: median [min-max] over ``runs``."""
    from common import med_spread

    configs: dict[str, str] = {}
    configs["journey (3 steps)"] = os.path.join(tmp, "journey.yaml")
    one_journey(configs["journey (3 steps)"], http_port)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright  # noqa: F401
    except ImportError:
        chromium = None
    if chromium:
        configs["browser (one page)"] = os.path.join(tmp, "browser.yaml")
        one_browser(configs["browser (one page)"], http_port, chromium)
    else:
        print("browser: skipped (no chromium on PATH, or no playwright package)")
    rows = []
    for name, cfg in configs.items():
        ms = [measure_once([PYTHON, "-m", "agent", "check", "-c", cfg]) for _ in range(runs)]
        codes = sorted({m[4] for m in ms})
        rows.append(
            [
                name,
                med_spread([m[0] for m in ms], "{:.3f}"),
                med_spread([m[1] for m in ms], "{:.3f}"),
                med_spread([m[2] for m in ms], "{:.0f}"),
                med_spread([m[3] for m in ms], "{:.0f}"),
                ",".join(map(str, codes)),
            ]
        )
    return rows


def ten_checks(path: str, http_port: int, tcp_port: int) -> None:
    lines = ['agent: {name: bench, listen: ""}', "checks:"]
    for i in range(5):
        lines.append(f'  - {{name: web{i}, type: http, url: "http://127.0.0.1:{http_port}/{i}"}}')
        lines.append(f'  - {{name: port{i}, type: tcp, target: "127.0.0.1:{tcp_port}"}}')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


CWD, ENV = REPO, dict(os.environ)  # --tree changes both


def timing_loop(commands: dict[str, list[str]], runs: int, warmup: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + runs):
        for name, argv in commands.items():  # interleaved: drift hits every command alike
            t = time.perf_counter()
            subprocess.run(argv, cwd=CWD, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if i >= warmup:
                out[name].append(time.perf_counter() - t)
    return out


def with_hyperfine(commands: dict[str, list[str]], runs: int, warmup: int, tmp: str) -> dict[str, list[float]]:
    import shlex

    export = os.path.join(tmp, "hyperfine.json")
    argv = ["hyperfine", "-N", "--warmup", str(warmup), "--runs", str(runs), "--export-json", export]
    for name, cmd in commands.items():
        argv += ["-n", name, shlex.join(cmd)]
    print("$ " + shlex.join(argv))
    subprocess.run(argv, cwd=CWD, env=ENV, check=True, stdout=sys.stderr)
    with open(export) as f:
        data = json.load(f)
    return {r["command"]: r["times"] for r in data["results"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-hyperfine", action="store_true")
    ap.add_argument("--kind-runs", type=int, default=5, help="runs of the journey and the browser check (0: none)")
    ap.add_argument("--tree", help="import agent/ and checks/ from this directory (another copy) instead")
    ap.add_argument(
        "--alt", action="append", metavar="NAME=DIR", help="also time `firstwatch check` from DIR (a patched copy)"
    )
    args = ap.parse_args()
    global CWD, ENV
    if args.tree:
        CWD, ENV = os.path.abspath(args.tree), tree_env(os.path.abspath(args.tree))
    print_header("oneshot", args.tree and f"agent/ and checks/ imported from {args.tree}")
    tmp = tempfile.mkdtemp(prefix="fwbench-oneshot-")
    # Bytecode as an installed package has it (pip compiles on install): with
    # PYTHONDONTWRITEBYTECODE set (as on some CI machines), every run would compile the modules
    # changed since the last compile (44 ms for 56 modules, measured), so the warm-up runs write
    # it to a private cache instead of the source tree.
    ENV = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ENV["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
    print("bytecode: cached by the warm-up runs (PYTHONPYCACHEPREFIX in a temp dir), as after an install")
    try:
        with processes() as procs:
            http_port, tcp_port = free_port(), free_port()
            start_targets(procs, http=[http_port], tcp=[tcp_port])
            cfg = os.path.join(tmp, "ten.yaml")
            ten_checks(cfg, http_port, tcp_port)
            check = [PYTHON, "-m", "agent", "check", "-c", cfg]
            rc = subprocess.run(check, cwd=CWD, env=ENV, capture_output=True, text=True)
            print(f"`firstwatch check` exit code {rc.returncode} (0 = all 10 checks passed)")
            print()
            commands = {
                "firstwatch check (10 checks)": check,
                "python -c 'import agent.config.load'": [PYTHON, "-c", "import agent.config.load"],
                "python -c pass": [PYTHON, "-c", "pass"],
            }
            for name, tree in parse_alts(args.alt).items():  # env -C: `python -m agent` imports from the cwd
                alt = ["env", "-C", tree, f"PYTHONPATH={tree}", *check]
                rc = subprocess.run(alt, cwd=CWD, env=ENV, capture_output=True, text=True)
                print(f"`firstwatch check` ({name}: {tree}) exit code {rc.returncode}")
                commands[f"firstwatch check (10 checks), {name}"] = alt
            if shutil.which("hyperfine") and not args.no_hyperfine:
                times = with_hyperfine(commands, args.runs, args.warmup, tmp)
            else:
                times = timing_loop(commands, args.runs, args.warmup)
            imp = subprocess.run(
                [PYTHON, "-X", "importtime", "-m", "agent", "check", "-c", cfg],
                cwd=CWD,
                env=ENV,
                capture_output=True,
                text=True,
            )
            kind_rows = kinds(tmp, http_port, args.kind_runs) if args.kind_runs else []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        verdict = "-"
        if name.startswith("firstwatch"):
            verdict = "met" if med < TARGET_S else f"missed by {med - TARGET_S:.2f} s ({med / TARGET_S:.2f}x)"
        rows.append([name, f"{med:.3f}", f"{min(ts):.3f}-{max(ts):.3f}", f"{statistics.pstdev(ts):.3f}", verdict])
    print(f"## wall time over {args.runs} runs (s)")
    print()
    print(table(["command", "median", "min-max", "stdev", f"target < {TARGET_S} s"], rows))
    print()
    print("## heaviest imports of `firstwatch check` (python -X importtime, cumulative ms, one run)")
    print()
    entries = []
    for line in imp.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cum_us, raw = line.removeprefix("import time:").split("|")
        level = (len(raw) - len(raw.lstrip()) - 1) // 2
        entries.append((int(cum_us), int(self_us), raw.strip(), level))
    top_level = [e for e in entries if e[3] == 0]
    total = sum(e[0] for e in top_level)
    print(f"all imports: {total / 1e3:.0f} ms (sum of top-level cumulative times)")
    print()
    rows = [
        ["  " * level + name, f"{cum / 1e3:.1f}", f"{self_us / 1e3:.1f}"]
        for cum, self_us, name, level in sorted(entries, reverse=True)[:15]
    ]
    print(table(["module", "cumulative ms", "self ms"], rows))
    if kind_rows:
        print()
        print(f"## one check of a costlier type, `firstwatch check`, median [min-max] over {args.kind_runs} runs")
        print()
        headers = ["check", "wall s", "CPU s (process tree)", "peak RSS MB (agent)", "peak RSS MB (tree)", "exit"]
        print(table(headers, kind_rows))


if __name__ == "__main__":
    main()
