"""The check and sink registries know every type's name at once and import a type's module only
when its class is asked for (agent.core.registry), so ``firstwatch check`` of a tcp check builds
none of the other types' models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.core.registry import LazyRegistry
from agent.delivery.sinks import SINKS
from checks import CHECKS


def test_names_without_imports_classes_on_demand() -> None:
    reg: LazyRegistry[type] = LazyRegistry({"od": "collections:OrderedDict", "ch": "collections:ChainMap"})
    assert list(reg) == ["od", "ch"] and len(reg) == 2 and "od" in reg and "nope" not in reg
    import collections

    assert reg["od"] is collections.OrderedDict and reg.get("ch") is collections.ChainMap
    assert reg.get("nope") is None
    with pytest.raises(KeyError):
        reg["nope"]


@pytest.mark.parametrize(("registry", "kind"), [(CHECKS, "check"), (SINKS, "sink")])
def test_every_name_is_its_class_type(registry: LazyRegistry[type], kind: str) -> None:
    for name, cls in registry.items():
        assert name == cls.TYPE, (kind, name)


PROGRAM = """
import json, sys
from agent.config.load import parse_config
parse_config('checks: [{name: db, type: tcp, target: "127.0.0.1:5432"}]', "c.yaml", env={})
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("checks.", "agent.delivery.sinks.")))))
"""


def test_a_tcp_config_imports_only_the_tcp_check_and_the_stdout_sink() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert "checks.tcp" in loaded and "agent.delivery.sinks.stdout" in loaded
    others = {f"checks.{t}" for t in CHECKS if t != "tcp"} | {f"agent.delivery.sinks.{t}" for t in SINKS}
    others -= {"agent.delivery.sinks.stdout"}
    assert loaded & others == set()
