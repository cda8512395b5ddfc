"""Pre-event buffer (R8.1): the last seconds of encoded video held in memory while ready.

Like picamera2's ``CircularOutput2``, it holds encoded frames, not pictures, and starts on
a keyframe. The buffer keeps the frames from the oldest keyframe that is no older than
the configured length — or, when even the newest keyframe is older, from that one, so a
recording can always start at a keyframe at or before the press. Its span therefore lies
between (length − one keyframe interval) and the length, plus one keyframe interval when
the length is shorter than that interval, and its memory is bounded by that span at the
bitrate. Audio is kept only when configured (it is off by default: a conversation before
the press is the officer's, not evidence, until the officer decides it is).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from device.camera import EncodedFrame
from device.microphone import AudioBlock


@dataclass(frozen=True)
class BufferedMedia:
    """What a recording starts with: frames from a keyframe on, and audio from then on."""

    frames: list[EncodedFrame]
    audio: list[AudioBlock]

    @property
    def span_s(self) -> float:
        if len(self.frames) < 2:
            return 0.0
        return (self.frames[-1].timestamp_us - self.frames[0].timestamp_us) / 1e6


class PreEventRing:
    def __init__(self, seconds: float, keep_audio: bool = False) -> None:
        if seconds < 0:
            raise ValueError(f"pre-event length must not be negative, got {seconds}")
        self._span_us = int(seconds * 1e6)
        self._keep_audio = keep_audio
        self._frames: deque[EncodedFrame] = deque()
        self._keyframes: deque[int] = deque()  # timestamps of keyframes held, oldest first
        self._audio: deque[AudioBlock] = deque()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """Encoded bytes held now (video and audio)."""
        return self._bytes

    @property
    def frames(self) -> int:
        return len(self._frames)

    def add_frame(self, frame: EncodedFrame) -> None:
        if not self._frames and not frame.keyframe:
            return  # nothing before the first keyframe can be decoded
        self._frames.append(frame)
        self._bytes += len(frame.data)
        if frame.keyframe:
            self._keyframes.append(frame.timestamp_us)
        cutoff = frame.timestamp_us - self._span_us
        # Drop whole keyframe intervals while the next interval also starts in time.
        while len(self._keyframes) >= 2 and self._keyframes[0] < cutoff:
            self._keyframes.popleft()
            next_key = self._keyframes[0]
            while self._frames[0].timestamp_us < next_key:
                self._bytes -= len(self._frames.popleft().data)
        self._trim_audio()

    def add_audio(self, block: AudioBlock) -> None:
        if not self._keep_audio:
            return
        self._audio.append(block)
        self._bytes += block.samples.nbytes
        self._trim_audio()

    def _trim_audio(self) -> None:
        start = self._frames[0].timestamp_us if self._frames else None
        while self._audio and (start is None or self._audio[0].timestamp_us < start):
            # Keep a block that straddles the first frame: it holds audio of that moment.
            first = self._audio[0]
            if start is not None and first.timestamp_us + first.duration_s * 1e6 > start:
                break
            self._bytes -= self._audio.popleft().samples.nbytes

    def drain(self) -> BufferedMedia:
        """Hand over everything held and start empty."""
        media = BufferedMedia(list(self._frames), list(self._audio))
        self.clear()
        return media

    def clear(self) -> None:
        self._frames.clear()
        self._keyframes.clear()
        self._audio.clear()
        self._bytes = 0
