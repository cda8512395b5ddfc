"""GNSS protocol: fixes assembled from the receiver's NMEA 0183 sentences.

One ``GnssFix`` per receiver epoch (normally one a second), merging what RMC, GGA, GSA and
VTG say about that epoch. Position fields are None when the receiver reports no fix.
``time_utc`` is the receiver's own time (used to check and correct the device clock);
``received_at`` is the device's monotonic time when the epoch was complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GnssFix:
    received_at: float
    time_utc: datetime | None = None
    valid: bool = False  # RMC status A and a position present
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive
    altitude_m: float | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    quality: int = 0  # GGA fix quality: 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning
    satellites: int | None = None
    hdop: float | None = None
    pdop: float | None = None
    vdop: float | None = None
    mode: int = 1  # GSA: 1 no fix, 2 2D, 3 3D

    @property
    def has_position(self) -> bool:
        return self.valid and self.latitude is not None and self.longitude is not None


@dataclass
class NmeaStats:
    """Counters of what the reader saw; bad input is counted, never fatal."""

    sentences: int = 0
    fixes: int = 0
    malformed: int = 0
    bad_checksum: int = 0
    unsupported: int = 0
    overlong: int = 0
    last_error: str = ""
    errors_by_kind: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Gnss(Protocol):
    def poll(self) -> list[GnssFix]:
        """Fixes for epochs completed since the last poll, oldest first. Never blocks."""

    @property
    def last_fix(self) -> GnssFix | None:
        """The most recent epoch, with or without a position."""

    @property
    def stats(self) -> NmeaStats: ...

    def close(self) -> None: ...
