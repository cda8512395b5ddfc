"""The order in which the dock serves docked devices: a fair share of bytes each.

Messages wait per device; devices are served in turn by deficit round robin (Shreedhar and
Varghese, 1995): at its turn a device earns a quantum of bytes and is served messages
while what it earned covers them. A device sending 1 MiB chunks thus gets the same bytes a
turn as one sending 64 KiB chunks — not sixteen times as many, as one message a turn would
give it — and a device with a huge backlog or an oversized window fills only its own queue.
Small control messages (hellos, fins) cost what they weigh, so a device with many small
files is not held back behind one with large ones.

Pure bookkeeping, no threads: the dock's archive thread owns one.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")

QUANTUM = 256 * 1024  # bytes a device earns at each turn: the default chunk


class FairQueue(Generic[Item]):
    """Per-device queues served by deficit round robin over the items' sizes."""

    def __init__(self, quantum: int = QUANTUM) -> None:
        if quantum < 1:
            raise ValueError(f"quantum must be at least 1 byte, not {quantum}")
        self.quantum = quantum
        self._waiting: dict[str, deque[tuple[Item, int]]] = {}
        self._turn: deque[str] = deque()  # devices with items waiting, in the order served
        self._deficit: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._turn)

    def __len__(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def put(self, device: str, item: Item, size: int) -> None:
        if device not in self._waiting:
            self._waiting[device] = deque()
            self._deficit[device] = 0
            self._turn.append(device)
        self._waiting[device].append((item, max(size, 1)))

    def take(self) -> tuple[str, Item]:
        """The next item to serve, and its device. IndexError when nothing waits."""
        while True:
            device = self._turn[0]
            waiting = self._waiting[device]
            size = waiting[0][1]
            if self._deficit[device] < size:
                # Its turn ends: it earns a quantum for the next one and goes to the back.
                self._deficit[device] += self.quantum
                self._turn.rotate(-1)
                continue
            item, _ = waiting.popleft()
            self._deficit[device] -= size
            if not waiting:
                # Idle devices keep no credit: a device back after a pause gets its share
                # from then on, not a burst for the time it was away.
                del self._waiting[device], self._deficit[device]
                self._turn.popleft()
            return device, item
