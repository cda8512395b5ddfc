"""GNSS protocol: fixes assembled from the receiver's NMEA 0183 sentences.

One ``GnssFix`` per receiver epoch (normally one a second), merging what the receiver's
sentences (RMC, GGA, GNS, GLL, ZDA, GSA, GSV, VTG, from every constellation) say about that
epoch. Position fields are None when the receiver reports no fix. ``time_utc`` is the
receiver's own time (checked by ``device.timetrust`` before it may correct the device
clock); ``received_at`` is the device's monotonic time when the epoch's report began to
arrive (the start of the receiver's burst for that second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class GnssFix:
    received_at: float
    time_utc: datetime | None = None
    valid: bool = False  # a fix (quality > 0) with a position
    latitude: float | None = None  # degrees, north positive
    longitude: float | None = None  # degrees, east positive
    altitude_m: float | None = None
    speed_mps: float | None = None
    course_deg: float | None = None
    quality: int = 0  # GGA fix quality (GNS/RMC mode letters mapped): 0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning
    satellites: int | None = None  # used in the fix, summed over the constellations
    hdop: float | None = None
    pdop: float | None = None
    vdop: float | None = None
    mode: int = 1  # GSA (or derived): 1 no fix, 2 2D, 3 3D

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
    unsupported: int = 0  # well-formed, of a type or talker not read: not an error
    proprietary: int = 0  # $P... vendor sentences: not an error
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
