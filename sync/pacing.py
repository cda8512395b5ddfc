"""How many bytes a device keeps in flight: twice what the link delivers in one round trip.

A fixed window is either too small for a fast dock (the link idles while acks travel) or
needlessly large for a slow one (megabytes queue in the broker). The device measures
instead, as TCP's BBR does: each confirmed chunk gives a round trip (from when it went out
to the ack that covered it), and the bytes confirmed over the last second give the
delivery rate. The window is ``GAIN`` times rate times the session's smallest round trip
(the link's and the dock's own latency, without queueing) — the bandwidth-delay product
with room for the dock's batching — between a floor and a cap. While the window is what
limits the link, the rate rises with it and each update doubles the window; once the dock,
the disk or the broker is the limit, the rate stops rising and so does the window, at
twice the bandwidth-delay product; a dock that slows down brings it down in proportion.

The base round trip is the smallest of the session, not of a recent interval: with a
recent minimum a queue that lasts the whole interval becomes the "base", the window
doubles on it, and so on up to the cap (BBR needs its ProbeRTT phase for this). A docking
is short and the dock's latency does not fall during one.

Pure: the edge passes the times in (``time.monotonic()`` in ``DeviceSync``); tests pass
their own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

MIB = 1 << 20
GAIN = 2.0
RATE_HORIZON_S = 1.0  # delivery rate over this much of the recent past


@dataclass
class WindowSizer:
    """The window in bytes for one session, from what was published and confirmed when."""

    window: int = 8 * MIB  # the start, until the link has been measured
    floor: int = 2 * MIB
    cap: int = 64 * MIB
    _published: deque[tuple[int, float]] = field(default_factory=deque)  # (mark, time)
    base_round_trip: float | None = None  # the smallest of the session, seconds
    _delivered: deque[tuple[float, int]] = field(default_factory=deque)  # (time, confirmed)

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.cap:
            raise ValueError(f"window floor {self.floor} and cap {self.cap} make no range")
        self.window = min(max(self.window, self.floor), self.cap)

    def published(self, mark: int, now: float) -> None:
        """Chunks went out up to ``mark`` (the uploader's ``bytes_published``)."""
        if not self._published or mark > self._published[-1][0]:
            self._published.append((mark, now))

    def confirmed(self, mark: int, confirmed_bytes: int, now: float) -> int:
        """The dock confirmed chunks up to ``mark`` (the uploader's ``confirmed_mark``),
        ``confirmed_bytes`` in all this session. Returns the window to use from now on."""
        sent_at = None
        while self._published and self._published[0][0] <= mark:
            sent_at = self._published.popleft()[1]
        if sent_at is None:
            return self.window  # nothing newly confirmed since the last call
        round_trip = now - sent_at
        if self.base_round_trip is None or round_trip < self.base_round_trip:
            self.base_round_trip = round_trip
        self._delivered.append((now, confirmed_bytes))
        while len(self._delivered) > 1 and now - self._delivered[0][0] > RATE_HORIZON_S:
            self._delivered.popleft()
        first_at, first_bytes = self._delivered[0]
        if now - first_at <= 0 or confirmed_bytes <= first_bytes:
            return self.window  # one sample is no rate yet
        rate = (confirmed_bytes - first_bytes) / (now - first_at)
        self.window = int(min(max(GAIN * rate * self.base_round_trip, self.floor), self.cap))
        return self.window

    def forget(self) -> None:
        """A new uploader (counting from 0 again): old sends no longer count. The base round
        trip is the link's and stays."""
        self._published.clear()
        self._delivered.clear()
