"""A real Prometheus server (the Debian package's binary) on loopback, for tests.

Each instance has its own free port and its own ``--storage.tsdb.path`` under the test's
directory, so the package's own service never matters. Like
:class:`tests.support.peers.alertmanager.Alertmanager`: ``start`` waits for ``/-/ready``, ``stop``
terminates (then kills), ``log_tail`` is for failure messages; the HTTP API is read with urllib
(blocking: call it from a thread in async tests).
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.peers.alertmanager import free_port, start_ready, stop_process

BINARY = "prometheus"
PROMTOOL = "promtool"


class Prometheus:
    """One Prometheus process running ``config`` (the text of a prometheus.yml)."""

    def __init__(self, binary: str, workdir: Path, config: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until GET /-/ready answers 200 (the TSDB is open, the config loaded)."""
        args = [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=debug",
        ]
        self.proc = start_ready("prometheus", args, self.log_file, f"{self.url}/-/ready", timeout, self.log_tail)

    def stop(self) -> None:
        stop_process(self.proc, 10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_file.read_text(errors="replace")[-chars:] if self.log_file.exists() else ""

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; the ``data`` of a successful answer (raises on ``status: error``)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [time, "1"]}, ...]``."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v1/alerts: every pending and firing alert, each with ``labels`` and ``state``."""
        return list(self.get("/api/v1/alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (of every group), with ``name``, ``health``, ``lastEvaluation``."""
        return [rule for group in self.get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, each with ``health`` (``up``, ``down``, ``unknown``)."""
        return list(self.get("/api/v1/targets", state="active")["activeTargets"])
