"""Device clock: wall time with a tracked offset from a trusted source, plus monotonic time.

The recorder keeps three kinds of time on every record (DESIGN.md, "Time"): UTC, the local
offset, and the monotonic clock, together with where the UTC came from. The raw wall time
comes from the system clock (or RTC); when a trusted reference is seen — GNSS time, or the
dock — the offset between the two is measured and, when asked, applied as a correction.
Correcting in software rather than stepping the system clock keeps evidence timestamps
monotonic in the monotonic domain and needs no privilege; the offset before correction is
returned so the caller can write it into the audit log (R7.4).

A reference before ``not_before`` (the firmware's build date, ``device.timetrust``) is
never applied: ``correct`` refuses it (``applied=False``) and the clock stays as it was —
the last guard against a receiver's 1999 date (GPS week rollover) reaching the evidence.

``DeviceClock`` takes its raw sources as callables, so the simulator feeds it a virtual,
drifting wall clock through exactly this code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Callable, Protocol, runtime_checkable

from device.timetrust import BUILD_UTC


class TimeSource(StrEnum):
    RTC = "rtc"  # the device's own clock, never checked
    GNSS = "gnss"
    DOCK = "dock"


@dataclass(frozen=True, slots=True)
class Timestamp:
    utc: float  # seconds since the epoch, corrected
    utc_offset_s: int  # local time = utc + utc_offset_s
    monotonic: float
    source: TimeSource

    def local_datetime(self) -> datetime:
        tz = timezone(timedelta(seconds=self.utc_offset_s))
        return datetime.fromtimestamp(self.utc, tz)

    def isoformat(self) -> str:
        return self.local_datetime().isoformat(timespec="milliseconds")

    def to_json(self) -> dict[str, object]:
        return {"utc": round(self.utc, 6), "utc_offset_s": self.utc_offset_s,
                "monotonic": round(self.monotonic, 6), "source": str(self.source),
                "local": self.isoformat()}


@dataclass(frozen=True, slots=True)
class ClockCorrection:
    source: TimeSource
    offset_before_s: float  # device minus reference, before the correction
    applied: bool
    at: Timestamp  # corrected time at which it happened


@runtime_checkable
class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> Timestamp: ...

    def offset_from(self, reference_utc: float, at_monotonic: float) -> float:
        """Device time minus ``reference_utc`` as of monotonic ``at_monotonic``."""

    def correct(self, reference_utc: float, at_monotonic: float,
                source: TimeSource) -> ClockCorrection: ...

    @property
    def source(self) -> TimeSource: ...

    @property
    def correction_s(self) -> float:
        """What the corrections so far add to the raw wall time."""

    def resume_correction(self, correction_s: float) -> None:
        """Carry over the correction an earlier run had found (kept across a restart)."""


def local_utc_offset_s() -> int:
    """The host's present UTC offset in whole seconds."""
    offset = datetime.now().astimezone().utcoffset()
    return int(offset.total_seconds()) if offset else 0


class DeviceClock:
    """Wall time = raw wall time + correction; monotonic passes through untouched."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 utc_offset_s: int | None = None, not_before: float = BUILD_UTC) -> None:
        self._wall = wall
        self.not_before = not_before
        self._monotonic = monotonic
        self._utc_offset_s = local_utc_offset_s() if utc_offset_s is None else utc_offset_s
        self._correction = 0.0
        self._source = TimeSource.RTC

    @property
    def source(self) -> TimeSource:
        return self._source

    @property
    def utc_offset_s(self) -> int:
        return self._utc_offset_s

    @property
    def correction_s(self) -> float:
        """What the corrections so far add to the raw wall time."""
        return self._correction

    def monotonic(self) -> float:
        return self._monotonic()

    def now(self) -> Timestamp:
        mono = self._monotonic()
        return Timestamp(self._wall() + self._correction, self._utc_offset_s, mono, self._source)

    def offset_from(self, reference_utc: float, at_monotonic: float) -> float:
        # The reference was true at at_monotonic; carry it forward to the present.
        elapsed = self._monotonic() - at_monotonic
        return (self._wall() + self._correction) - (reference_utc + elapsed)

    def correct(self, reference_utc: float, at_monotonic: float,
                source: TimeSource) -> ClockCorrection:
        offset = self.offset_from(reference_utc, at_monotonic)
        if not reference_utc >= self.not_before:  # also refuses NaN
            return ClockCorrection(source, offset, False, self.now())
        self._correction -= offset
        self._source = source
        return ClockCorrection(source, offset, True, self.now())

    def resume_correction(self, correction_s: float) -> None:
        """Carry over the correction an earlier run had found: the raw clock's error then
        is the best guess of its error now. The source stays ``rtc`` — nothing has been
        checked since this boot — until a trusted reference is seen again."""
        self._correction = float(correction_s)
