"""What the agent knows of its clock's quality: the latest offset measured against a
trusted time (GNSS, the dock) and the latest correction.

The self-check reports the reading (``reading_for_check``); every evidence record carries
``quality()`` (the recording pipeline calls it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from device.clock import Clock, TimeSource
from firmware_py.agent.selfcheck import ClockReading


class TimeKeeping:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.reading: ClockReading | None = None
        self.last_sync: tuple[float, float] | None = None  # (monotonic, offset before)
        self.rtc_problem = ""  # what keeps the RTC from holding the time (``RtcKeeper``)

    def measured(self, source: TimeSource, offset_s: float, corrected: bool = False) -> None:
        """An offset of the clock against ``source`` (device minus reference)."""
        # A correction's "before" offset is what the self-check must report; keep it over
        # the near-zero offsets measured after it until the next check starts.
        if corrected or self.reading is None or not self.reading.corrected:
            self.reading = ClockReading(offset_s, source, corrected)

    def corrected(self, source: TimeSource, offset_before_s: float) -> None:
        """The clock was corrected against ``source``; it was ``offset_before_s`` off."""
        self.measured(source, offset_before_s, corrected=True)
        self.last_sync = (self._clock.monotonic(), offset_before_s)

    def check_started(self) -> None:
        if self.reading is not None and not self.reading.corrected:
            self.reading = None  # measure afresh for this check

    def reading_for_check(self) -> ClockReading:
        """The reading the self-check reports; a correction is reported once."""
        reading = replace(self.reading or ClockReading(None, None),
                          rtc_problem=self.rtc_problem)
        if self.reading is not None and self.reading.corrected:
            self.reading = ClockReading(0.0, self.reading.reference, False)
        return reading

    def quality(self) -> dict[str, Any]:
        """Where the wall time comes from and how good it is, for every evidence record."""
        clock = self._clock
        quality: dict[str, Any] = {"source": str(clock.source)}
        if self.last_sync is not None:
            quality["last_correction_age_s"] = round(clock.monotonic() - self.last_sync[0], 1)
            quality["last_correction_s"] = round(self.last_sync[1], 3)
        if self.reading is not None and self.reading.offset_s is not None:
            quality["last_offset_s"] = round(self.reading.offset_s, 3)
            quality["reference"] = str(self.reading.reference)
        return quality
