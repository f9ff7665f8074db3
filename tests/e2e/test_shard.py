"""Story 8: N agents on one config with --shard K/N split the checks with no overlap and no gap."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from agent.engine.runtime import in_shard
from tests.support.peers.fleet import Fleet


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
    logs = ["", "", ""]

    async def follow(i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            logs[i] += line.decode()

    readers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]

    def seen() -> list[set[str]]:
        return [set(re.findall(r"(web-\d+) http://\S+: up", log)) for log in logs]

    deadline = asyncio.get_running_loop().time() + 30  # a cold start on a busy machine can be slow
    while len(set().union(*seen())) < 30 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # several more runs each: an overlap would show up now
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        await asyncio.wait_for(p.wait(), 15)
    await asyncio.gather(*readers)
    seen_by = seen()
    assert all(seen_by), "every shard ran some checks"
    assert not (seen_by[0] & seen_by[1] or seen_by[0] & seen_by[2] or seen_by[1] & seen_by[2])  # no overlap
    assert set().union(*seen_by) == {f"web-{i}" for i in range(30)}  # no gap
