"""A part the build or the board does not have: every use raises HardwareError saying so.

The agent treats it like a broken part — logged, reported by the self-check, never a
reason to stop the rest of the recorder.
"""

from __future__ import annotations

from typing import Any

from device.hardware import HardwareError


class MissingPart:
    """Stands in for a camera, microphone or speaker that cannot be opened."""

    def __init__(self, part: str, reason: str) -> None:
        self.part = part
        self.reason = reason

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise HardwareError(f"{self.part}: {self.reason}")

    start = capture_still = play = _fail

    def stop(self) -> None:
        """Nothing was started, so there is nothing to stop."""

    def close(self) -> None:
        """Nothing was opened, so there is nothing to release."""

    @property
    def is_playing(self) -> bool:
        return False

    @property
    def frames_delivered(self) -> int:
        return 0

    @property
    def blocks_delivered(self) -> int:
        return 0

    @property
    def extradata(self) -> bytes:
        return b""
