"""Shared fixtures: configuration as shipped, and helpers to build readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_py.config import Config, load


@pytest.fixture
def config() -> Config:
    return load()


def export_plain(out: Path) -> Path:
    """Verify and decrypt a simulated device's evidence, as the agency would, for reading."""
    from firmware_py.export import export
    from firmware_py.keys import load_agency_private, load_registry

    plain = out / "plain"
    if not plain.exists():
        export([out / "device" / "evidence"], load_registry(out / "dock"),
               load_agency_private(out / "dock"), plain)
    return plain
