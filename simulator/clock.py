"""Virtual time for the simulator, and a wall clock that drifts and jumps on top of it."""

from __future__ import annotations

from dataclasses import dataclass, field


class VirtualClock:
    """Monotonic virtual seconds since the simulation started; only ``advance`` moves it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"virtual time cannot go back ({seconds} s)")
        self._now += seconds
        return self._now

    def advance_to(self, t: float) -> float:
        if t < self._now:
            raise ValueError(f"virtual time cannot go back from {self._now} to {t}")
        self._now = float(t)
        return self._now


@dataclass
class DriftingWallClock:
    """The device's raw wall clock (its RTC) as the simulator sees it.

    ``true_start_utc`` is the real UTC at virtual time 0. The device clock starts
    ``initial_error_s`` off, runs ``drift_ppm`` fast (negative: slow), and moves by every
    jump injected with ``jump`` — the faults a real RTC shows.
    """

    virtual: VirtualClock
    true_start_utc: float
    initial_error_s: float = 0.0
    drift_ppm: float = 0.0
    _jumps: float = field(default=0.0, init=False)

    def __call__(self) -> float:
        t = self.virtual.now
        return self.true_start_utc + t + t * self.drift_ppm * 1e-6 + self.initial_error_s + self._jumps

    def true_utc(self) -> float:
        """What a perfect clock reads now (GNSS time in the simulation)."""
        return self.true_start_utc + self.virtual.now

    def jump(self, seconds: float) -> None:
        self._jumps += seconds

    @property
    def jumps_s(self) -> float:
        """All jumps so far: the RTC keeps them through a power cut (it has its own cell)."""
        return self._jumps
