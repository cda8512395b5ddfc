"""Inputs protocol: the record, photo and marker buttons, each with press and long press.

A *press* is reported on release when the button was held shorter than the long-press
time; a *long press* is reported once, as soon as the hold reaches that time (so the
officer feels the vibration while still holding). Gesture timing uses the device clock
passed to the backend, so it runs the same in virtual time as in real time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Button(StrEnum):
    RECORD = "record"
    PHOTO = "photo"
    MARKER = "marker"


class Gesture(StrEnum):
    PRESS = "press"
    LONG_PRESS = "long_press"


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    button: Button
    gesture: Gesture
    at: float  # monotonic seconds when the gesture was recognised


@runtime_checkable
class Inputs(Protocol):
    def poll(self) -> list[ButtonEvent]:
        """Gestures recognised since the last poll, oldest first."""

    def close(self) -> None: ...
