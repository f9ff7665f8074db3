"""A real Prometheus Alertmanager (the Debian package's binary) on loopback, for tests.

Each instance has its own free port, its own ``--storage.path`` and, unless it joins a cluster,
``--cluster.listen-address=`` (a single node), so the package's own service never matters.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

BINARY = "prometheus-alertmanager"
FLEET_CONFIG = Path(__file__).parents[3] / "config" / "fleet" / "alertmanager.yml"  # the shipped one


def fleet_config(receiver: str) -> str:
    """The shipped fleet alertmanager.yml with every receiver's webhook pointed at ``receiver``."""
    cfg = yaml.safe_load(FLEET_CONFIG.read_text())
    for rcv in cfg["receivers"]:
        for hook in rcv.get("webhook_configs", []):
            hook["url"] = receiver
    return str(yaml.safe_dump(cfg, sort_keys=False))


# Small timings so a two-node cluster settles in ~2 s and the second node waits 1.5 s before
# notifying (time enough to see, through gossip, that the first one already did).
CLUSTER_FLAGS = [
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
    "--cluster.peer-timeout=1500ms",
    "--cluster.settle-timeout=5s",
    "--cluster.probe-interval=200ms",
    "--cluster.reconnect-interval=1s",
]


def start_ready(
    name: str, args: list[str], log: Path, ready_url: str, timeout: float, log_tail: Callable[[], str]
) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output in ``log`` and wait until ``ready_url`` answers 200 (the
    Prometheus family's ``/-/ready``); raise with the log's tail if it exits or never gets ready."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log_tail()}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} not ready within {timeout}s: {log_tail()}")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM, ``grace`` seconds, then SIGKILL (nothing when it is not running)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (cluster gossip uses both)."""
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def route_config(
    webhook: str | None = None, group_wait: str = "100ms", group_interval: str = "1s", send_resolved: bool = False
) -> str:
    """An Alertmanager config: everything grouped by alertname to one webhook (or nowhere)."""
    resolved = str(send_resolved).lower()
    hook = f'\n    webhook_configs: [{{url: "{webhook}", send_resolved: {resolved}}}]' if webhook else ""
    return f"""route:
  receiver: hook
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: hook{hook}
"""


class Alertmanager:
    """One Alertmanager process; ``start`` waits until GET /-/ready answers 200."""

    def __init__(self, binary: str, workdir: Path, config: str, cluster: tuple[int, list[int]] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.cluster = cluster
        (workdir / "alertmanager.yml").write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again) with fresh, empty storage: a restarted Alertmanager has forgotten everything."""
        self.starts += 1
        storage = self.workdir / f"data{self.starts}"
        args = [
            self.binary,
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=debug",
        ]
        if self.cluster is None:
            args.append("--cluster.listen-address=")
        else:
            listen, peers = self.cluster
            args += [f"--cluster.listen-address=127.0.0.1:{listen}", *CLUSTER_FLAGS]
            args += [f"--cluster.peer=127.0.0.1:{p}" for p in peers]
        log = self.workdir / f"alertmanager{self.starts}.log"
        self.proc = start_ready("alertmanager", args, log, f"{self.url}/-/ready", timeout, self.log_tail)

    def stop(self) -> None:
        stop_process(self.proc, 5)

    def log_tail(self) -> str:
        path = self.workdir / f"alertmanager{self.starts}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def alerts(self, **filters: bool) -> list[dict[str, Any]]:
        """GET /api/v2/alerts; ``active=False`` etc. turn the default filters off."""
        query = "&".join(f"{k}={str(v).lower()}" for k, v in filters.items())
        return list(self.get("/api/v2/alerts" + (f"?{query}" if query else "")))
