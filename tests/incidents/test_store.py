"""The state database's own promises, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import StoreError
from agent.incidents.store import Store


def test_an_ack_is_a_timeline_entry_of_its_incidents_check_and_target(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state"))
    with store.transaction():
        store.open_incident(
            "3f9c2a7b1d04", fingerprint="fp", check="shop-web", target="3 targets", rule="down",
            severity="critical", summary="shop-web: 3 of 3 targets: down", first_error=None,
            started_at=1000.0, fired_at=1060.0,
        )  # fmt: skip
    assert store.ack("3f9c2a7b1d04", "maria", when=1100.0)
    assert not store.ack("3f9c2a7b1d04", "bob")  # the first ack stands
    (entry,) = store.entries(check="shop-web")  # `firstwatch timeline --check shop-web` shows it
    assert (entry.kind, entry.target, entry.author, entry.text) == (
        "ack",
        "3 targets",
        "maria",
        "acknowledged by maria",
    )


def test_an_empty_incident_reference_names_none_even_when_one_is_open(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "state"))
    with store.transaction():
        store.open_incident(
            "3f9c2a7b1d04", fingerprint="fp", check="api", target="10.0.0.1:443", rule="down",
            severity="minor", summary="api: down", first_error=None, started_at=1000.0, fired_at=1000.0,
        )  # fmt: skip
    assert store.incident("3f9c").id == "3f9c2a7b1d04"
    for ref in ("", "  "):
        with pytest.raises(StoreError, match="give an incident id"):
            store.incident(ref)
