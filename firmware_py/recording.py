"""Where encoded frames and audio go once captured: the recording pipeline's interface.

The camera and microphone hand every frame and audio block to the pipeline; the agent
tells it when a recording starts and stops. ``FrameTally`` is the pipeline of the
foundation: it counts what was captured and what fell inside a recording, which is what
the self-check and the timeline need. The segmenting, sealing pipeline replaces it behind
the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from device.camera import EncodedFrame
from device.microphone import AudioBlock


class RecordingPipeline(Protocol):
    def output_frame(self, frame: EncodedFrame) -> None: ...

    def output_audio(self, block: AudioBlock) -> None: ...

    def start_recording(self, at: float) -> dict[str, Any]:
        """Begin a recording; returns facts for the audit log."""

    def stop_recording(self, at: float) -> dict[str, Any]:
        """End the recording; returns facts for the audit log."""

    def close(self) -> None: ...


@dataclass
class FrameTally:
    """Counts frames, keyframes, bytes and audio, in total and for the current recording."""

    frames: int = 0
    keyframes: int = 0
    audio_blocks: int = 0
    recording: bool = False
    recorded_frames: int = 0
    recorded_bytes: int = 0
    recorded_audio_blocks: int = 0
    last_pts: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    _started_at: float = 0.0

    def output_frame(self, frame: EncodedFrame) -> None:
        self.frames += 1
        self.keyframes += frame.keyframe
        self.last_pts = frame.pts
        if self.recording:
            self.recorded_frames += 1
            self.recorded_bytes += len(frame.data)

    def output_audio(self, block: AudioBlock) -> None:
        self.audio_blocks += 1
        if self.recording:
            self.recorded_audio_blocks += 1

    def start_recording(self, at: float) -> dict[str, Any]:
        self.recording = True
        self.recorded_frames = self.recorded_bytes = self.recorded_audio_blocks = 0
        self._started_at = at
        return {"first_pts": self.last_pts}

    def stop_recording(self, at: float) -> dict[str, Any]:
        self.recording = False
        facts = {"duration_s": round(at - self._started_at, 3), "frames": self.recorded_frames,
                 "bytes": self.recorded_bytes, "audio_blocks": self.recorded_audio_blocks}
        self.history.append(facts)
        return facts

    def close(self) -> None:
        if self.recording:
            self.recording = False
