"""Shared fixtures: configuration as shipped, a dock's Mosquitto, and helpers to read
what a simulated device wrote; and the check that every ``@pytest.mark.req(...)`` names a
requirement of ``docs/requirements.toml``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from firmware_py.config import Config, load


REQUIREMENTS = Path(__file__).resolve().parent.parent / "docs" / "requirements.toml"


def pytest_collection_modifyitems(config, items):
    """Collection fails when a test's req mark names an id the regulation does not have
    (a typo would otherwise leave the requirement table silently wrong)."""
    with REQUIREMENTS.open("rb") as f:
        known = {entry["id"] for entry in tomllib.load(f)["requirement"]}
    wrong = []
    for item in items:
        for mark in item.iter_markers("req"):
            if not mark.args or mark.kwargs:
                wrong.append(f"{item.nodeid}: req(...) takes one or more requirement ids, "
                             f"as in req(\"R13.1\", \"R13.2\")")
            for rid in mark.args:
                if rid not in known:
                    wrong.append(f"{item.nodeid}: req({rid!r}) is not a requirement id "
                                 f"of docs/requirements.toml")
    if wrong:
        raise pytest.UsageError("unknown requirement ids in @pytest.mark.req:\n  " + "\n  ".join(wrong))


@pytest.fixture
def config() -> Config:
    return load()


@pytest.fixture
def broker(tmp_path):
    """A private Mosquitto with the shipped mutual TLS and ACL, its certificates from the
    dock CA under ``tmp_path / "dock"`` (where the tests enrol their devices)."""
    from dock.broker import MosquittoBroker
    from dock.enrollment import dock_ca

    with MosquittoBroker(dock_ca(tmp_path / "dock"), tmp_path / "broker") as running:
        yield running


def export_plain(out: Path) -> Path:
    """Verify and decrypt a simulated device's evidence, as the agency would, for reading."""
    from firmware_py.evidence.export import export
    from firmware_py.evidence.keys import load_agency_private, load_registry

    plain = out / "plain"
    if not plain.exists():
        export([out / "device" / "evidence"], load_registry(out / "dock"),
               load_agency_private(out / "dock"), plain)
    return plain
