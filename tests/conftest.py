"""Shared fixtures: configuration as shipped, a dock's Mosquitto, and helpers to read
what a simulated device wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_py.config import Config, load


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
