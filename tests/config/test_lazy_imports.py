"""``firstwatch check`` imports only what the command needs (docs/performance.md): loading and validating a
config never imports the heavy libraries behind the probes, sinks and telemetry; building a check
imports those of its own type only (before any probe runs, so no import stalls a running probe)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trustme

HEAVY = ("aiohttp", "yarl", "cryptography", "dns", "icmplib", "psutil", "smtplib", "opentelemetry", "urllib.request")

TCP_ONLY = """
agent: {state_dir: STATE, listen: "127.0.0.1:0"}
checks:
  - {name: db, type: tcp, target: "127.0.0.1:5432"}
  - {name: ldaps, type: tcp, target: "127.0.0.1:636", tls: true, ca_file: CA}
"""

EVERYTHING = """
agent: {state_dir: STATE, listen: "127.0.0.1:0"}
checks:
  - {name: cert, type: tls, target: "example.com:443", ca_file: CA}
  - {name: web, type: http, url: "http://example.com/", ca_file: CA}
  - {name: db, type: tcp, target: "127.0.0.1:5432"}
  - {name: ns, type: dns, query: example.com, server: "127.0.0.1:53"}
  - {name: box, type: host}
  - {name: ok, type: command, command: ["true"]}
sinks:
  - {type: webhook, url: "https://hooks.example.com/x", ca_file: CA}
  - {type: alertmanager, url: "http://127.0.0.1:9093"}
  - {type: email, host: smtp.example.com, from: "a@example.com", to: ["b@example.com"]}
  - {type: digest, every: 1h, url: "http://127.0.0.1:8080/digest"}
telemetry:
  otlp: {endpoint: "http://127.0.0.1:4318", protocol: http/protobuf}
  cloudwatch: {endpoint: "udp://127.0.0.1:25888"}
"""

PROGRAM = """
import json, sys
from agent.config.load import load_config
HEAVY = sys.argv[2].split()

def heavy(modules):
    return sorted({h for h in HEAVY for m in modules if m == h or m.startswith(h + ".")})

cfg = load_config(sys.argv[1])
loaded = heavy(sys.modules)
built = {}
for spec in cfg.checks:
    before = set(sys.modules)
    spec.build()
    built[spec.config.name] = heavy(set(sys.modules) - before)
print(json.dumps({"loaded": loaded, "built": built}))
"""


def _load_then_build(tmp_path: Path, text: str) -> dict[str, Any]:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("STATE", str(tmp_path / "state")).replace("CA", str(ca)))
    argv = [sys.executable, "-c", PROGRAM, str(config), " ".join(HEAVY)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(out.stdout)
    return found


def test_a_tcp_config_loads_and_builds_without_any_heavy_library(tmp_path: Path) -> None:
    found = _load_then_build(tmp_path, TCP_ONLY)
    assert found == {"loaded": [], "built": {"db": [], "ldaps": []}}


def test_each_check_type_imports_its_own_libraries_when_built(tmp_path: Path) -> None:
    found = _load_then_build(tmp_path, EVERYTHING)
    # Validation alone: yarl parses the http check's and the sinks' URLs, dnspython the query name.
    assert found["loaded"] == ["dns", "yarl"]
    built = found["built"]  # in the order of the config: a library shows where it is first needed
    assert built["cert"] == ["cryptography"]
    assert "aiohttp" in built["web"] and "dns" not in built["web"]
    assert built["ns"] == ["dns"]
    assert built["box"] == ["psutil"]
    assert built["db"] == built["ok"] == []
