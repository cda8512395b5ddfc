"""The docking hook: what the agent calls when the device comes on and leaves the dock.

The agent knows nothing of the dock link; the composition root hands it an object of this
shape (the device's dock sync) and the agent calls it on the core's StartSync and StopSync.
"""

from __future__ import annotations

from typing import Protocol


class Docking(Protocol):
    def docked(self) -> None:
        """The device is on external power: start syncing with the dock if it can be
        reached (only sealed files are taken)."""

    def undocked(self) -> None:
        """The device left external power: end any sync session now."""
