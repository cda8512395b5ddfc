"""The dock serves docked devices a fair share of bytes each (dock/fair.py): deficit round
robin over message sizes, so larger chunks or a bigger backlog buy a device no more than
its share, and a device with small files is not held back behind one with large ones."""

from __future__ import annotations

from collections import Counter

import pytest

from dock.fair import FairQueue

KIB = 1024


def served_bytes(queue: FairQueue[int], count: int) -> Counter[str]:
    got: Counter[str] = Counter()
    for _ in range(count):
        device, size = queue.take()
        got[device] += size
    return got


def test_devices_with_different_chunk_sizes_get_equal_bytes() -> None:
    queue: FairQueue[int] = FairQueue(quantum=256 * KIB)
    for _ in range(400):
        queue.put("big-chunks", 1024 * KIB, 1024 * KIB)
    for _ in range(1600):
        queue.put("small-chunks", 64 * KIB, 64 * KIB)
    got = served_bytes(queue, 800)  # both still busy throughout
    assert abs(got["big-chunks"] - got["small-chunks"]) <= 1024 * KIB, got
    # One message a turn would have given the big one sixteen times the bytes.


def test_a_small_backlog_is_done_long_before_a_huge_one() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(10_000):
        queue.put("week", f"w{i}", 256 * KIB)
    for i in range(20):
        queue.put("shift", f"s{i}", 256 * KIB)
    order = [queue.take()[0] for _ in range(40)]
    assert order.count("shift") == 20  # done in twice its own turns, not after the week


def test_control_messages_cost_what_they_weigh_and_order_is_kept() -> None:
    queue: FairQueue[str] = FairQueue(quantum=256 * KIB)
    for i in range(8):
        queue.put("A", f"A-chunk{i}", 256 * KIB)
    for i in range(50):  # a device with many small files: init, chunk, fin each
        queue.put("B", f"B-{i}", 300)
    taken = [queue.take() for _ in range(58)]
    b_items = [item for device, item in taken if device == "B"]
    assert b_items == [f"B-{i}" for i in range(50)], "one device's messages stay in order"
    # All of B's small messages fit in the quanta B earns while A sends two chunks.
    assert [d for d, _ in taken[:53]].count("A") <= 3
    assert not queue and len(queue) == 0
    with pytest.raises(IndexError):
        queue.take()


def test_an_idle_device_keeps_no_credit() -> None:
    queue: FairQueue[int] = FairQueue(quantum=100)
    queue.put("A", 1, 50)
    assert queue.take() == ("A", 1)
    # A earned a quantum and used half: gone idle, it has nothing saved for later.
    for i in range(4):
        queue.put("B", i, 100)
        queue.put("A", i, 100)
    order = [queue.take()[0] for _ in range(8)]
    assert order.count("A") == 4 and order[:2].count("A") <= 1
    with pytest.raises(ValueError, match="quantum"):
        FairQueue(quantum=0)
