"""Where encoded frames and audio go once captured: the recording pipeline's interface.

The camera and microphone hand every frame and audio block to the pipeline; the agent
tells it when a recording starts and stops and what happens meanwhile (GNSS fixes,
markers, photos). ``firmware_py.pipeline.Recorder`` is the implementation; a test or a
benchmark may put another behind the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from device.camera import EncodedFrame, StillImage
from device.gnss import GnssFix
from device.microphone import AudioBlock
from firmware_py.store import Activity


class RecordingPipeline(Protocol):
    def output_frame(self, frame: EncodedFrame) -> bool | None:
        """Take a frame; False when it was unusable (not H.264) and dropped."""

    def output_audio(self, block: AudioBlock) -> None: ...

    def note_fix(self, fix: GnssFix) -> None: ...

    def start_recording(self, at: float, activity: Activity | None = None) -> dict[str, Any]:
        """Begin a recording; returns facts for the audit log."""

    def stop_recording(self, at: float, reason: str = "stop") -> dict[str, Any]:
        """End the recording; returns facts for the audit log."""

    def note(self, record: dict[str, Any]) -> bool:
        """Add a line to the metadata of the segment being written."""

    def add_marker(self, incident: bool, activity: Activity | None) -> dict[str, Any]: ...

    def save_photo(self, still: StillImage, activity: Activity) -> dict[str, Any]: ...

    def close(self) -> None: ...
