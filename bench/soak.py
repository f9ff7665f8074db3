"""(4) Soak: the real daemon's resident memory over a long run with many checks.

    .venv/bin/python bench/soak.py                                   # 1,000 tcp checks @ 1 s for 30 min
    .venv/bin/python bench/soak.py --minutes 2 --out /tmp/soak-smoke  # a quick smoke test
    .venv/bin/python bench/soak.py --type http --checks 500 --minutes 60 --out bench/soak-http

Starts ``bench/target_server.py`` (4 listening ports of ``--type``, plus one HTTP port for its
``/__count``) and the real daemon, ``python -m agent run -c CONFIG --log-level warning``, with
``--checks`` checks at ``--interval`` against those ports (default rules: ``when: down`` + flap
detection; SQLite state in a temp dir; a file sink to /dev/null; ``listen: ""``). Every
``--sample`` seconds it records the daemon's RSS (VmRSS), its CPU seconds (utime + stime, all
threads) and the target's served count.

At the end it prints RSS at ``--baseline`` minutes (default 5; half the run when the run is
shorter), at the end and its maximum, the growth after the baseline in % (end vs baseline, max vs
baseline), a least-squares slope in MB/hour over baseline..end, probes served/s and the daemon's
CPU in % of a core over the same span, and the verdict against the target (docs/performance.md,
issue target 4): growth <= 5 % after the first 5 minutes. It writes ``<out>.csv`` (t_s, rss_mb,
cpu_s, served) and ``<out>.svg``, a small self-contained line plot of RSS over time with a dashed
line at baseline + 5 %. The CSV is written as samples arrive, so an interrupted run keeps its data;
the SVG and the summary are written on Ctrl-C / SIGTERM too. Every process is stopped on exit.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (
    PYTHON,
    REPO,
    Proc,
    checks_config,
    counts,
    cpu_seconds,
    free_port,
    print_header,
    processes,
    rss_mb,
    start_targets,
    table,
    tree_env,
)

sys.path.insert(0, REPO)  # this checkout's agent/, for its duration parser
from agent.core.units import parse_duration


def nice_step(span: float, ticks: int = 6) -> float:
    raw = max(span, 1e-9) / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def svg_plot(samples: list[tuple[float, float, float, int]], base_t: float, base_mb: float, title: str) -> str:
    """RSS (MB) over time (minutes) as a self-contained SVG, a dashed line at base_mb * 1.05."""
    w, h, ml, mr, mt, mb = 640, 340, 60, 20, 34, 46
    pw, ph = w - ml - mr, h - mt - mb
    xs = [t / 60 for t, _, _, _ in samples]
    ys = [r for _, r, _, _ in samples]
    limit = base_mb * 1.05
    x_max = max(xs[-1], 1e-6)
    # the y range leaves out the start-up ramp (the first minute, or up to the baseline if sooner);
    # the line is clipped to the plot area
    settled = [r for t, r, _, _ in samples if t >= min(60.0, base_t)] or ys
    lo, hi = min(min(settled), base_mb), max(max(ys), limit)
    pad = max(1.0, 0.08 * (hi - lo))
    ystep = nice_step(hi - lo + 2 * pad)
    y0, y1 = math.floor((lo - pad) / ystep) * ystep, math.ceil((hi + pad) / ystep) * ystep
    xstep = nice_step(x_max)

    def px(x: float) -> float:
        return ml + pw * x / x_max

    def py(y: float) -> float:
        return mt + ph * (1 - (y - y0) / (y1 - y0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<clipPath id="plot"><rect x="{ml}" y="{mt}" width="{pw}" height="{ph}"/></clipPath>',
        f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
    ]
    y = y0
    while y <= y1 + 1e-9:
        out.append(f'<line x1="{ml}" y1="{py(y):.1f}" x2="{ml + pw}" y2="{py(y):.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{ml - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += ystep
    x = 0.0
    while x <= x_max + 1e-9:
        out.append(f'<line x1="{px(x):.1f}" y1="{mt + ph}" x2="{px(x):.1f}" y2="{mt + ph + 4}" stroke="black"/>')
        out.append(f'<text x="{px(x):.1f}" y="{mt + ph + 16}" text-anchor="middle">{x:g}</text>')
        x += xstep
    out += [
        f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{mt + ph}" stroke="black"/>',
        f'<line x1="{ml}" y1="{mt + ph}" x2="{ml + pw}" y2="{mt + ph}" stroke="black"/>',
        f'<text x="{ml + pw / 2}" y="{h - 8}" text-anchor="middle">minutes</text>',
        f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" text-anchor="middle">RSS, MB</text>',
        f'<line x1="{px(base_t / 60):.1f}" y1="{mt}" x2="{px(base_t / 60):.1f}" y2="{mt + ph}" '
        'stroke="#999" stroke-dasharray="2 3"/>',
        f'<line x1="{ml}" y1="{py(limit):.1f}" x2="{ml + pw}" y2="{py(limit):.1f}" stroke="#c0392b" '
        'stroke-dasharray="6 4"/>',
        f'<text x="{ml + pw - 4}" y="{py(limit) - 5:.1f}" text-anchor="end" fill="#c0392b">'
        f"{base_t / 60:g}-min value + 5 % = {limit:.1f} MB</text>",
        '<polyline clip-path="url(#plot)" fill="none" stroke="#1f5fa8" stroke-width="1.5" points="'
        + " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(xs, ys, strict=True))
        + '"/>',
        "</svg>",
    ]
    return "\n".join(out) + "\n"


# --- the summary ------------------------------------------------------------------------------------


def slope_mb_per_hour(pts: list[tuple[float, float]]) -> float:
    if len(pts) < 2:
        return float("nan")
    mt = sum(t for t, _ in pts) / len(pts)
    mr = sum(r for _, r in pts) / len(pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 3600 * sum((t - mt) * (r - mr) for t, r in pts) / den if den else float("nan")


def summarize(samples: list[tuple[float, float, float, int]], baseline_s: float) -> tuple[list[list[str]], bool]:
    base_i = _base_index(samples, baseline_s)
    bt, brss, bcpu, bserved = samples[base_i]
    et, erss, ecpu, eserved = samples[-1]
    after = samples[base_i:]
    mx = max(r for _, r, _, _ in after)
    mx_all = max(r for _, r, _, _ in samples)
    growth_end = 100 * (erss / brss - 1)
    growth_max = 100 * (mx / brss - 1)
    slope = slope_mb_per_hour([(t, r) for t, r, _, _ in after])
    # the last third of the run after the baseline: is it still growing at the end?
    tail = [(t, r) for t, r, _, _ in after if t >= bt + 2 * (et - bt) / 3]
    span = et - bt
    ok = growth_end <= 5 and growth_max <= 5
    rows = [
        ["samples (every --sample s)", f"{len(samples)}, {samples[0][0]:.0f}..{et:.0f} s"],
        [f"RSS at {bt / 60:.1f} min (baseline), MB", f"{brss:.1f}"],
        [f"RSS at the end ({et / 60:.1f} min), MB", f"{erss:.1f}"],
        ["RSS max after the baseline, MB", f"{mx:.1f}"],
        ["RSS max over the whole run, MB", f"{mx_all:.1f}"],
        ["growth after the baseline: end vs baseline, %", f"{growth_end:+.2f}"],
        ["growth after the baseline: max vs baseline, %", f"{growth_max:+.2f}"],
        ["least-squares slope, baseline..end, MB/hour", f"{slope:+.2f}"],
        ["least-squares slope, last third, MB/hour", f"{slope_mb_per_hour(tail):+.2f}"],
        [
            "probes served/s, baseline..end",
            f"{(eserved - bserved) / span:.0f}" if span > 0 and eserved >= 0 else "n/a",
        ],
        ["probes served in total", f"{eserved}" if eserved >= 0 else "n/a"],
        ["daemon CPU, baseline..end, % of a core", f"{100 * (ecpu - bcpu) / span:.1f}" if span > 0 else "n/a"],
        ["verdict: growth <= 5 % after the baseline (end and max)", "PASS" if ok else "FAIL"],
    ]
    return rows, ok


# --- the run --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--interval", default="1s", help="check interval, e.g. 1s, 500ms (default 1s)")
    ap.add_argument("--minutes", type=float, default=30.0, help="run length (default 30)")
    ap.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--baseline", type=float, default=5.0, help="minutes after which RSS must stay flat (5)")
    ap.add_argument("--type", choices=["tcp", "http"], default="tcp")
    ap.add_argument("--out", default="bench/soak", help="writes OUT.csv and OUT.svg (default bench/soak)")
    ap.add_argument("--tree", help="import agent/ and checks/ from this directory instead of this checkout")
    args = ap.parse_args()
    interval = parse_duration(args.interval)
    duration = 60 * args.minutes
    baseline_s = 60 * args.baseline if 60 * args.baseline < duration else duration / 2
    tree = os.path.abspath(args.tree) if args.tree else REPO
    print_header("soak", args.tree and f"agent/ and checks/ imported from {tree}")
    print(
        f"{args.checks} {args.type} checks @ {interval:g} s for {args.minutes:g} min, a sample every "
        f"{args.sample:g} s; baseline at {baseline_s / 60:g} min; output {args.out}.csv / .svg",
        flush=True,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    samples: list[tuple[float, float, float, int]] = []
    tmp = tempfile.mkdtemp(prefix="fwbench-soak-")
    died = False
    try:
        with processes() as procs, open(args.out + ".csv", "w") as csv:
            count_port = free_port()
            ports = [free_port() for _ in range(4)]
            if args.type == "tcp":
                start_targets(procs, http=[count_port], tcp=ports)
            else:
                start_targets(procs, http=[count_port, *ports])
            cfg = os.path.join(tmp, "soak.yaml")
            with open(cfg, "w") as f:
                f.write(checks_config(args.checks, interval, ports, os.path.join(tmp, "state"), args.type, "soak"))
            argv = [PYTHON, "-m", "agent", "run", "-c", cfg, "--log-level", "warning"]
            agent = Proc(argv, log=os.path.join(tmp, "agent.log"), cwd=tree, env=tree_env(tree))
            procs.append(agent)
            t0 = time.monotonic()
            csv.write("t_s,rss_mb,cpu_s,served\n")

            def served() -> int:
                try:
                    return sum(counts(count_port).values())
                except OSError:
                    return -1

            n = 0
            while True:
                if not agent.alive():
                    died = True
                    break
                t = time.monotonic() - t0
                try:
                    rss, cpu = rss_mb(agent.pid)[0], cpu_seconds(agent.pid)
                except (OSError, KeyError):
                    died = True
                    break
                s = (t, rss, cpu, served())
                samples.append(s)
                csv.write(f"{s[0]:.1f},{s[1]:.2f},{s[2]:.2f},{s[3]}\n")
                csv.flush()
                if n % max(1, round(60 / args.sample)) == 0:
                    print(f"  {t / 60:5.1f} min  rss {rss:7.1f} MB  cpu {cpu:8.1f} s  served {s[3]}", flush=True)
                if t >= duration:
                    break
                n += 1
                time.sleep(max(0.0, t0 + n * args.sample - time.monotonic()))
            if died:
                print("the daemon exited early; its log:")
                with open(os.path.join(tmp, "agent.log"), errors="replace") as f:
                    print(f.read()[-3000:])
    finally:
        if len(samples) >= 2:
            rows, _ = summarize(samples, baseline_s)
            print()
            print(f"## {args.checks} {args.type} checks @ {interval:g} s, {samples[-1][0] / 60:.1f} min")
            print()
            print(table(["measure", "value"], rows))
            title = f"firstwatch RSS: {args.checks} {args.type} checks @ {interval:g} s"
            base = samples[_base_index(samples, baseline_s)]
            with open(args.out + ".svg", "w") as f:
                f.write(svg_plot(samples, base[0], base[1], title))
            print(f"\nwrote {args.out}.csv and {args.out}.svg")
        shutil.rmtree(tmp, ignore_errors=True)
    if died:
        raise SystemExit(1)


def _base_index(samples: list[tuple[float, float, float, int]], baseline_s: float) -> int:
    return next((i for i, s in enumerate(samples) if s[0] >= baseline_s), len(samples) - 1)


if __name__ == "__main__":
    main()
