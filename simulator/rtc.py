"""The simulated RTC: a battery-backed clock beside the system clock, as on a Pi 5.

At boot the kernel sets the system clock from the RTC (``hctosys``), so the simulator's
raw wall clock (``DriftingWallClock``) *is* the RTC's time when the device starts, and the
two run on one crystal (the same drift). Writing the RTC moves the RTC only: the system
clock keeps its error until the next boot, when ``SimWorld`` carries the written offset
into the wall clock (``boot_offset_s``), as ``hctosys`` does.

Faults a real RTC shows: its time lost (a flat cell: the read says not valid), writes
refused (no CAP_SYS_TIME), the chip gone (reads and writes fail).
"""

from __future__ import annotations

import math
from typing import Callable

from device.hardware import HardwareError
from device.rtc import RtcReading


class SimRtc:
    """``device.rtc.Rtc`` on the simulator's wall clock."""

    def __init__(self, wall: Callable[[], float], offset_s: float = 0.0) -> None:
        self._wall = wall
        self._offset = float(offset_s)  # RTC minus system clock
        self.lost = False
        self.write_error = ""  # a write fails with this, when set
        self.fault = ""  # every access fails with this, when set
        self.writes: list[float] = []
        self.on_write: Callable[[], None] | None = None  # the world keeps what outlives power

    @property
    def name(self) -> str:
        return "simulated RTC"

    @property
    def boot_offset_s(self) -> float:
        """RTC minus system clock: what the next boot's hctosys moves the system clock by."""
        return self._offset

    def read(self) -> RtcReading:
        if self.fault:
            raise HardwareError(f"RTC: {self.fault}")
        utc = float(math.floor(self._wall() + self._offset + 1e-6))
        if self.lost:
            return RtcReading(utc, False, "simulated RTC lost its time (flat battery)")
        return RtcReading(utc, True)

    def write(self, utc: float) -> None:
        if self.fault or self.write_error:
            raise HardwareError(f"RTC: {self.fault or self.write_error}")
        # The RTC restarts its second when written: it reads round(utc) from here on.
        self._offset = round(utc) - self._wall()
        self.lost = False
        self.writes.append(round(utc))
        if self.on_write is not None:
            self.on_write()

    def close(self) -> None:
        """Nothing to release."""
