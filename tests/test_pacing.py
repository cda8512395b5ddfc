"""The device's window follows the link (sync/pacing.py): against a simulated dock that
stores R bytes a second after a fixed latency, the window grows until the link is full and
stops near twice the bandwidth-delay product, whatever it started at; and it comes down
when the dock slows."""

from __future__ import annotations

from collections import deque

import pytest

from sync.pacing import MIB, WindowSizer

CHUNK = 256 * 1024


def run_link(sizer: WindowSizer, rate: float, latency: float, seconds: float,
             slow_after: float | None = None) -> tuple[float, list[int]]:
    """Chunks through a dock that serves ``rate`` bytes/s (one at a time, FIFO) and answers
    ``latency`` seconds after serving; the device keeps ``sizer.window`` bytes in flight.
    Returns the delivered rate over the last half and the window after each ack."""
    now, step = 0.0, 0.0005
    published = confirmed = 0
    in_flight: deque[tuple[int, float]] = deque()  # (mark, arrival at the dock)
    server_free_at = 0.0
    acks: deque[tuple[float, int]] = deque()  # (time the ack arrives, mark)
    windows: list[int] = []
    half_at, half_confirmed = seconds / 2, None
    while now < seconds:
        serving = rate if slow_after is None or now < slow_after else rate / 4
        while published - confirmed < sizer.window:
            published += CHUNK
            in_flight.append((published, now))
            sizer.published(published, now)
        while in_flight and max(server_free_at, in_flight[0][1]) + CHUNK / serving <= now:
            mark, arrived = in_flight.popleft()
            server_free_at = max(server_free_at, arrived) + CHUNK / serving
            acks.append((server_free_at + latency, mark))
        while acks and acks[0][0] <= now:
            _, mark = acks.popleft()
            confirmed = mark
            windows.append(sizer.confirmed(mark, confirmed, now))
        if half_confirmed is None and now >= half_at:
            half_confirmed = confirmed
        now += step
    return (confirmed - (half_confirmed or 0)) / (seconds - half_at), windows


def test_the_window_grows_until_the_link_is_full_and_stops_near_twice_its_delay() -> None:
    rate, latency = 200e6, 0.02  # 200 MB/s, 20 ms of batching and fsync at the dock
    sizer = WindowSizer(window=2 * MIB)
    delivered, windows = run_link(sizer, rate, latency, 8.0)  # long: no slow drift up
    assert delivered >= 0.95 * rate, f"{delivered / 1e6:.0f} MB/s of {rate / 1e6:.0f}"
    bdp = rate * latency
    settled = windows[len(windows) // 2:]
    # Not the cap: once the dock is the limit, the window stops growing.
    assert max(settled) < sizer.cap
    assert 1.5 * bdp <= sum(settled) / len(settled) <= 3.5 * bdp


def test_a_window_too_large_for_a_slow_dock_comes_down() -> None:
    rate, latency = 20e6, 0.01  # a slow disk: 20 MB/s
    sizer = WindowSizer(window=64 * MIB)
    delivered, windows = run_link(sizer, rate, latency, 4.0)
    assert delivered >= 0.95 * rate
    assert windows[-1] <= 4 * rate * latency + sizer.floor  # megabytes no longer queue


def test_the_window_follows_a_dock_that_slows_down() -> None:
    rate, latency = 200e6, 0.02
    sizer = WindowSizer()
    _, windows = run_link(sizer, rate, latency, 16.0, slow_after=6.0)
    before = windows[len(windows) // 4]
    assert windows[-1] < before / 2


def test_floor_cap_and_a_session_that_starts_again() -> None:
    sizer = WindowSizer(window=1, floor=2 * MIB, cap=4 * MIB)
    assert sizer.window == 2 * MIB  # the start is kept in range
    sizer.published(CHUNK, 0.0)
    assert sizer.confirmed(CHUNK, CHUNK, 0.01) == 2 * MIB  # one sample: no rate yet
    sizer.published(100 * CHUNK, 0.02)
    assert sizer.confirmed(100 * CHUNK, 100 * CHUNK, 0.03) == 4 * MIB  # capped
    sizer.forget()
    # A new uploader counts from 0: its marks are new sends, not old ones.
    sizer.published(CHUNK, 1.0)
    assert sizer.confirmed(CHUNK, CHUNK, 1.05) == 4 * MIB
    assert sizer.confirmed(CHUNK, CHUNK, 1.06) == 4 * MIB  # nothing new confirmed
    with pytest.raises(ValueError, match="no range"):
        WindowSizer(floor=8 * MIB, cap=4 * MIB)
