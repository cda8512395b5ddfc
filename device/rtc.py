"""RTC protocol: the battery-backed real-time clock that keeps the time while the recorder
is off (Pi 5's built-in RTC, or a DS3231 on I²C).

The RTC is a *holdover* source (DESIGN.md, "Time"): it is read at boot and compared with
the system clock, and written after a correction from a trusted source (GNSS, the dock)
so the next boot starts close to the truth. It is never a trusted source itself: a clock
set from it stays ``TimeSource.RTC`` until GNSS or the dock confirms it.

RTCs count whole seconds in UTC (the Linux convention, ``hwclock --utc``): a reading is
the start of the second the RTC is in, so the true time lies up to a second after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

RESOLUTION_S = 1.0  # RTCs count whole seconds


@dataclass(frozen=True, slots=True)
class RtcReading:
    utc: float  # seconds since the epoch, whole seconds, as the RTC counts them
    valid: bool  # False: the RTC says its time was lost (oscillator stopped, no battery)
    problem: str = ""  # why not valid, in words

    @property
    def midpoint_utc(self) -> float:
        """The best guess of the true time: the middle of the second the RTC is in."""
        return self.utc + RESOLUTION_S / 2

    def isoformat(self) -> str:
        return datetime.fromtimestamp(self.utc, timezone.utc).isoformat(timespec="seconds")


@runtime_checkable
class Rtc(Protocol):
    @property
    def name(self) -> str:
        """Which RTC this is, for the log ("rtc0 (rpi-rtc)", "DS3231 at I2C 1:0x68")."""

    def read(self) -> RtcReading:
        """The RTC's time; raises ``HardwareError`` naming why it cannot be read."""

    def write(self, utc: float) -> None:
        """Set the RTC to ``utc`` (rounded to the second); raises ``HardwareError`` naming
        why it cannot be written (a missing privilege, a missing device)."""

    def close(self) -> None: ...
