"""When a time from outside (a GNSS receiver) may set the device clock (DESIGN.md, "Time").

A receiver's time is trusted only when it is *plausible*:

* **Not before the floor**: the firmware's build date (``BUILD_DATE``: no clock that runs
  this firmware can truly be earlier) or the last trusted time the device saw (kept
  across boots by the agent), whichever is later.
* **GPS week rollover corrected**: GPS broadcasts the week number in 10 bits, so receivers
  with old firmware report dates 1024 weeks (about 19.6 years) too early. A time before the
  floor is moved on by whole 1024-week eras until it is not; such a corrected time is used
  only where the device's own clock is plausible (not before the floor) and agrees with it
  within ``ROLLOVER_AGREEMENT_S``. A receiver's default date after a cold start
  (1999-08-22, 1980-01-06) is no rolled-over time: unrolled, it would set the clock years
  ahead, so an era count is never the only evidence for a time (a device whose clock is
  itself implausible waits for a time that needs no unrolling, or for the dock).
* **Not beyond one era past the floor**: no rollover arithmetic can explain it.
* **Confirmed**: ``CONFIRM_EPOCHS`` consecutive epochs agree (their time minus the monotonic
  time they were received at stays within ``AGREEMENT_S``), so one stray sentence never
  moves the clock.

``TimeTrust`` is pure (no I/O, no clock of its own): the agent feeds it each GNSS time with
the monotonic time it was true at and the device's present wall time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

# The firmware's build (release) date: every clock running this code is later than this.
BUILD_DATE = datetime(2026, 11, 1, tzinfo=timezone.utc)
BUILD_UTC = BUILD_DATE.timestamp()
GPS_ERA_S = 1024 * 7 * 86400.0  # 1024 weeks
CONFIRM_EPOCHS = 3
AGREEMENT_S = 0.5  # consecutive epochs agree when (time - monotonic) moves less than this
ROLLOVER_AGREEMENT_S = 2 * 86400.0
# The last trusted time is a floor with this much slack (it was the corrected clock's time).
TRUSTED_SLACK_S = 3600.0


def unroll_week_rollover(utc: float, floor: float) -> tuple[float, int]:
    """``utc`` moved on by whole 1024-week eras until it is not before ``floor``; the eras."""
    eras = 0
    while utc < floor and eras < 64:
        utc += GPS_ERA_S
        eras += 1
    return utc, eras


@dataclass(frozen=True, slots=True)
class TimeVerdict:
    accepted: bool  # plausible and confirmed: may be used for the clock
    plausible: bool
    utc: float  # the time after any rollover correction
    reported_utc: float  # as the receiver said it
    eras: int  # 1024-week eras added
    reason: str  # why not accepted ("" when accepted)
    confirmations: int

    def to_json(self) -> dict[str, object]:
        return {"reported": _iso(self.reported_utc), "corrected": _iso(self.utc),
                "rollover_eras": self.eras, "reason": self.reason}


def _iso(utc: float) -> str:
    try:
        return datetime.fromtimestamp(utc, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(utc)


class TimeTrust:
    """Decides, epoch by epoch, whether a GNSS time may be used for the clock."""

    def __init__(self, last_trusted_utc: float | None = None, *, build_utc: float = BUILD_UTC,
                 confirm_epochs: int = CONFIRM_EPOCHS) -> None:
        self.build_utc = build_utc
        self.last_trusted_utc = last_trusted_utc
        self.confirm_epochs = confirm_epochs
        self._streak = 0
        self._anchor: float | None = None  # utc - monotonic of the last plausible epoch

    @property
    def floor(self) -> float:
        """No trusted time can be earlier than this."""
        if self.last_trusted_utc is None:
            return self.build_utc
        return max(self.build_utc, self.last_trusted_utc - TRUSTED_SLACK_S)

    def plausible(self, utc: float, device_utc: float | None = None) -> tuple[bool, float, int, str]:
        """(plausible, corrected utc, eras, reason) for one time, without confirmation."""
        floor = self.floor
        corrected, eras = unroll_week_rollover(utc, floor)
        if corrected >= floor + GPS_ERA_S:
            return False, corrected, eras, "beyond one GPS week era after the build date"
        if eras and (device_utc is None or device_utc < floor
                     or abs(corrected - device_utc) > ROLLOVER_AGREEMENT_S):
            return False, corrected, eras, ("before the build date or last trusted time, "
                                            "and no week-rollover correction agrees with the clock")
        return True, corrected, eras, ""

    def check(self, utc: float, at_monotonic: float, device_utc: float | None = None) -> TimeVerdict:
        ok, corrected, eras, reason = self.plausible(utc, device_utc)
        if not ok:
            self._streak, self._anchor = 0, None
            return TimeVerdict(False, False, corrected, utc, eras, reason, 0)
        anchor = corrected - at_monotonic
        if self._anchor is not None and abs(anchor - self._anchor) <= AGREEMENT_S:
            self._streak += 1
        else:
            self._streak = 1
        self._anchor = anchor
        if self._streak < self.confirm_epochs:
            return TimeVerdict(False, True, corrected, utc, eras,
                               f"unconfirmed ({self._streak} of {self.confirm_epochs} epochs)",
                               self._streak)
        return TimeVerdict(True, True, corrected, utc, eras, "", self._streak)

    def trusted(self, utc: float) -> None:
        """A time the device now trusts (applied or confirmed): the floor moves up to it."""
        if self.last_trusted_utc is None or utc > self.last_trusted_utc:
            self.last_trusted_utc = utc


__all__ = ["AGREEMENT_S", "BUILD_DATE", "BUILD_UTC", "CONFIRM_EPOCHS", "GPS_ERA_S",
           "ROLLOVER_AGREEMENT_S", "TimeTrust", "TimeVerdict", "unroll_week_rollover"]
