"""Where the station finds the dock and how it serves: taken from ``dock.toml`` and the
command line by ``bodycam dock web``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StationSettings:
    archive: Path          # the dock's archive: index.sqlite, the evidence, station.sqlite
    dock_dir: Path         # the dock's keys (agency key, receipt key) and its CA
    dock_id: str           # the name the dock signs with
    upload_hours: float = 24.0      # R13.4, as the dock's [deadline]
    dock_every_hours: float = 72.0
    host: str = "127.0.0.1"
    port: int = 8443
    names: tuple[str, ...] = ()     # host names and addresses the certificate names
