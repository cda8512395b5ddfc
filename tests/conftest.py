"""Shared fixtures: configuration as shipped, and helpers to build readings."""

from __future__ import annotations

import pytest

from firmware_py.config import Config, load


@pytest.fixture
def config() -> Config:
    return load()
