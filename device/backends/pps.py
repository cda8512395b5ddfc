"""A GNSS receiver's PPS (pulse-per-second) line on a GPIO pin, through gpiozero.

The receiver raises PPS at the top of each second, within microseconds of UTC; the NMEA
sentences that follow describe that second. ``SerialGnss`` asks ``edge_before`` for the
latest pulse before an epoch's burst began and, when there is one within
``PPS_WINDOW_S``, times the epoch by it instead of by its first byte — the edge is taken
on gpiozero's callback thread, with the ``monotonic`` callable handed in.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

import gpiozero

from device.hardware import HardwareError

# A burst begins at most this long after its pulse (receivers send within ~0.1–0.5 s).
PPS_WINDOW_S = 0.9


class PpsLine:
    def __init__(self, pin: int, monotonic: Callable[[], float], pin_factory: Any = None) -> None:
        self._monotonic = monotonic
        self._edges: deque[float] = deque(maxlen=8)
        self._lock = threading.Lock()
        try:
            self._device = gpiozero.DigitalInputDevice(pin, pull_up=False,
                                                       pin_factory=pin_factory)
        except Exception as exc:  # gpiozero raises its own errors for a bad or busy pin
            raise HardwareError(f"PPS on GPIO {pin} could not be opened: {exc}") from exc
        self._device.when_activated = self._edge

    def _edge(self, *_: Any) -> None:
        at = self._monotonic()
        with self._lock:
            self._edges.append(at)

    def edge_before(self, burst_started_at: float) -> float | None:
        """The latest pulse at or before ``burst_started_at``, within ``PPS_WINDOW_S``."""
        with self._lock:
            edges = [e for e in self._edges
                     if burst_started_at - PPS_WINDOW_S <= e <= burst_started_at + 1e-9]
        return max(edges) if edges else None

    def close(self) -> None:
        self._device.close()


__all__ = ["PPS_WINDOW_S", "PpsLine"]
