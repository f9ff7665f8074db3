"""Story 8: N agents on one config with --shard K/N split the checks with no overlap and no gap."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from agent.runtime import in_shard
from tests.helpers import Fleet


def test_shards_partition_any_set_of_names() -> None:
    names = [f"check-{i}" for i in range(3000)] + ["shop-web", "api", "host"]
    for n in (1, 2, 3, 4, 7):
        owners = [[k for k in range(1, n + 1) if in_shard(name, (k, n))] for name in names]
        assert all(len(o) == 1 for o in owners)  # exactly one shard each
        sizes = [sum(o == [k] for o in owners) for k in range(1, n + 1)]
        assert min(sizes) > len(names) / n * 0.8  # and roughly even


async def test_three_agents_run_every_check_exactly_once(tmp_path: Path, fleet: Fleet) -> None:
    checks = "".join(
        f'  - {{name: web-{i}, type: http, url: "{fleet.urls[i % 3]}", interval: 0.3s, timeout: 0.3s}}\n'
        for i in range(30)
    )
    cfg = tmp_path / "fleet.yaml"  # one config for all three (sharing even the state directory)
    cfg.write_text(
        f'agent: {{state_dir: "{tmp_path / "state"}", listen: ""}}\nchecks:\n{checks}sinks: [{{type: stdout}}]\n'
    )
    procs = []
    for k in (1, 2, 3):
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agent",
                "run",
                "-c",
                str(cfg),
                "--shard",
                f"{k}/3",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    await asyncio.sleep(2.5)
    seen: list[set[str]] = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(p.communicate(), 15)
        seen.append(set(re.findall(r"(web-\d+) http://\S+: up", err.decode())))
    assert all(seen), "every shard ran some checks"
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])  # no overlap
    assert set().union(*seen) == {f"web-{i}" for i in range(30)}  # no gap
