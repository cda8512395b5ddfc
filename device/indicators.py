"""Indicators protocol: LEDs, buzzer and vibration motor driven by blink programs.

The device layer knows outputs and timing, not meaning: the agent decides which program
means "recording" or "battery low" (``firmware_py.agent.signals``). Blinking is advanced by
``update(now)`` from the agent's loop rather than by a background thread, so a pattern
runs identically in virtual time and leaves no thread behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Output(StrEnum):
    LED_GREEN = "led_green"
    LED_RED = "led_red"
    LED_BLUE = "led_blue"
    BUZZER = "buzzer"
    VIBRATION = "vibration"


@dataclass(frozen=True)
class Blink:
    """On for ``on_s``, off for ``off_s``, ``count`` times (None: until changed)."""

    on_s: float
    off_s: float
    count: int | None = None

    def __post_init__(self) -> None:
        if self.on_s <= 0 or self.off_s < 0:
            raise ValueError(f"blink times must be positive, got on={self.on_s} off={self.off_s}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"blink count must be at least 1, got {self.count}")

    def is_on(self, elapsed: float) -> bool:
        """Whether the output is on ``elapsed`` seconds after the program started."""
        # A nanosecond of slack: times like 0.3 s are not exact in binary, and an output
        # must switch on at the start of its cycle, not one frame later.
        elapsed += 1e-9
        if elapsed < 0:
            return False
        period = self.on_s + self.off_s
        if self.count is not None and elapsed >= self.count * period:
            return False
        return (elapsed % period) < self.on_s if period > 0 else True


Program = Blink | bool
"""True: steady on; False: off; Blink: a timed program."""


@runtime_checkable
class Indicators(Protocol):
    def set(self, output: Output, program: Program) -> None:
        """Replace the program of one output, starting now."""

    def update(self, now: float) -> None:
        """Advance every blink program to monotonic time ``now``."""

    def state(self) -> dict[Output, bool]:
        """Whether each output is on at this moment."""

    def close(self) -> None: ...
