"""The RTC as the clock's holdover: read at boot, written after a trusted correction.

At boot the RTC is compared with the device clock (the system clock, plus any correction
carried over from the last run). Within ``[clock] max_disagreement_s`` it agrees and that
is logged (``rtc_checked``). Beyond, the disagreement is logged (``rtc_disagrees``) and the
RTC *sets the device clock* when it holds a time this device wrote from GNSS or the dock
no longer than ``holdover_days`` ago (``rtc.json`` says when): after a power cut the system
clock may come from anywhere (the kernel's copy of this same RTC, or a saved shutdown
time), while the RTC kept counting. The clock's source stays ``rtc`` — a holdover is not a
trusted time, so the self-check still warns until GNSS or the dock confirms it, and the
RTC is never a floor for ``TimeTrust``. What it does give GNSS is a plausible device time,
against which a week-rollover date can be recognised.

After a trusted time (a GNSS epoch accepted by ``TimeTrust``, a correction from GNSS or the
dock) the RTC is written with the corrected time, at the clock's next whole second: at
once the first time, then at most every ``write_interval_s``, sooner when it is found
``write_error_s`` off. A failure is
logged once per distinct error (``rtc_write_failed``, saying what to change) and named in
the self-check's clock line until a write succeeds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from device.clock import Clock, TimeSource
from device.hardware import HardwareError
from device.rtc import RESOLUTION_S, Rtc
from firmware_py.config import ClockSection
from firmware_py.evidence.store import write_atomic

log = logging.getLogger(__name__)

CHECK_PERIOD_S = 60.0  # while the time is trusted, how often the RTC's error is read

Entry = tuple[str, dict[str, Any]]  # an audit entry: kind, facts


@dataclass
class _PendingWrite:
    """A write decided on, waiting for the device clock's next whole second."""

    source: TimeSource
    error: float | None  # the RTC's error when it was decided
    since: float  # monotonic
    fraction: float  # the clock's fraction of a second at the last look


def _iso(utc: float) -> str:
    return datetime.fromtimestamp(utc, timezone.utc).isoformat(timespec="milliseconds")


class RtcKeeper:
    """Holds the RTC to the device clock; each method returns the audit entries to log."""

    def __init__(self, rtc: Rtc, clock: Clock, settings: ClockSection, state_path: Path,
                 floor: Callable[[], float]) -> None:
        self.rtc = rtc
        self._clock = clock
        self._settings = settings
        self._state_path = Path(state_path)
        self._floor = floor  # no plausible time is earlier (TimeTrust.floor)
        self.problem = ""  # what is wrong with the RTC now, for the self-check
        self._written_at: float | None = None  # monotonic time of the last write attempt
        self._pending: _PendingWrite | None = None
        self._next_check = 0.0

    # --- boot -----------------------------------------------------------------------------

    def at_boot(self) -> list[Entry]:
        """Compare the RTC with the device clock; set the clock from it when it is the
        better holdover (see the module's docstring)."""
        try:
            reading = self.rtc.read()
        except HardwareError as exc:
            self.problem = str(exc)
            return [("rtc_error", {"rtc": self.rtc.name, "during": "boot", "error": str(exc)})]
        now = self._clock.now()
        if not reading.valid:
            self.problem = reading.problem
            return [("rtc_invalid", {"rtc": self.rtc.name, "problem": reading.problem})]
        rtc_utc = reading.midpoint_utc
        difference = rtc_utc - now.utc
        facts: dict[str, Any] = {"rtc": self.rtc.name, "rtc_utc": reading.isoformat(),
                                 "device_utc": _iso(now.utc),
                                 "difference_s": round(difference, 3)}
        if rtc_utc < self._floor():
            self.problem = (f"{self.rtc.name} reads {reading.isoformat()}, before the "
                            "firmware's build date or the last trusted time")
            return [("rtc_implausible", facts)]
        if abs(difference) <= self._settings.max_disagreement_s:
            return [("rtc_checked", facts)]
        reason = self._holdover_refused(rtc_utc)
        if reason:
            return [("rtc_disagrees", {**facts, "used": False, "reason": reason})]
        correction = self._clock.correct(rtc_utc, now.monotonic, TimeSource.RTC)
        return [("rtc_disagrees", {**facts, "used": correction.applied,
                                   "reason": "holdover: written from a trusted time"})]

    def _holdover_refused(self, rtc_utc: float) -> str:
        """Why the RTC may not set the clock ("" when it may)."""
        try:
            written = json.loads(self._state_path.read_text())
            written_utc, source = float(written["utc"]), str(written["source"])
        except FileNotFoundError:
            return "never written by this device from a trusted time"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self._state_path.name, exc)
            return f"{self._state_path.name} unreadable"
        age_days = (rtc_utc - written_utc) / 86400.0
        # Earlier than its own write (beyond its resolution): it went back, or lost time.
        if not -RESOLUTION_S / 86400.0 <= age_days <= self._settings.holdover_days:
            return (f"written from {source} time {age_days:.1f} days before its reading, "
                    f"outside the {self._settings.holdover_days:g}-day holdover")
        return ""

    # --- after a trusted time -------------------------------------------------------------

    def trusted(self, source: TimeSource) -> list[Entry]:
        """The device clock has just been confirmed or corrected by ``source``: when a
        write is due (rate-limited), it is made at the next whole second (``tick``)."""
        mono = self._clock.monotonic()
        due = (self._written_at is None
               or mono - self._written_at >= self._settings.write_interval_s)
        if self._pending is not None or (not due and mono < self._next_check):
            return []
        self._next_check = mono + CHECK_PERIOD_S
        error = self._error()
        if not due and error is not None and abs(error) < self._settings.write_error_s:
            return []
        self._written_at = mono
        self._pending = _PendingWrite(source, error, mono, self._clock.now().utc % 1.0)
        return []

    def tick(self) -> list[Entry]:
        """Called from every pass of the agent's loop: a pending write is made as the
        device clock passes a whole second, with that second. RTCs count whole seconds
        (a DS3231 restarts its second when written), so a write made then is off by one
        loop's period at most, where one made at any moment would be off by up to half a
        second. A loop slower than a second writes the rounded time."""
        pending = self._pending
        if pending is None:
            return []
        now = self._clock.now()
        fraction = now.utc % 1.0
        crossed = fraction < pending.fraction
        pending.fraction = fraction
        if crossed:
            utc = now.utc - fraction
        elif now.monotonic - pending.since >= 2.0:
            utc = now.utc
        else:
            return []
        self._pending = None
        return self._write(pending.source, pending.error, utc)

    def _write(self, source: TimeSource, error: float | None, utc: float) -> list[Entry]:
        try:
            self.rtc.write(utc)
        except HardwareError as exc:
            first = str(exc) != self.problem
            self.problem = str(exc)
            return [("rtc_write_failed", {"rtc": self.rtc.name, "source": str(source),
                                          "error": str(exc)})] if first else []
        self.problem = ""
        try:
            write_atomic(self._state_path, json.dumps(
                {"utc": utc, "source": str(source)}).encode())
        except OSError as exc:
            log.warning("could not keep %s: %s", self._state_path, exc)
        return [("rtc_written", {"rtc": self.rtc.name, "source": str(source),
                                 "utc": _iso(utc),
                                 "error_before_s": None if error is None else round(error, 3)})]

    def _error(self) -> float | None:
        """The RTC minus the (trusted) device clock, or None when it cannot be read."""
        try:
            reading = self.rtc.read()
        except HardwareError:
            return None  # the write that follows names the failure
        if not reading.valid:
            return None
        return reading.midpoint_utc - self._clock.now().utc
