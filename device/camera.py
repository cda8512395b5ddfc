"""Camera protocol, shaped after picamera2: an encoder hands encoded frames to an output.

A camera is started with one output and an optional ``pre_callback``. Before each frame
is encoded, ``pre_callback`` receives the raw frame as a writable ``numpy`` array in I420
layout (``height * 3 // 2`` rows of ``width`` bytes: the Y plane, then U, then V) so the
burned-in stamp is drawn into the picture itself — as picamera2's ``pre_callback`` with a
``MappedArray`` does. Each encoded frame then goes to ``output.output_frame``.

Timestamps are the capture time on the monotonic clock in microseconds (picamera2's
``SensorTimestamp`` is the same kind of value); ``pts`` counts in the stream's time base.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class VideoConfig:
    """What the encoder produces. Values come validated from ``config/device.toml``."""

    width: int = 640
    height: int = 360
    fps: int = 30
    bitrate: int = 1_500_000
    keyframe_interval_s: float = 1.0
    codec: str = "h264"

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.fps)

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.fps * self.keyframe_interval_s))


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded access unit (Annex B H.264) as the encoder emitted it."""

    data: bytes
    keyframe: bool
    pts: int  # in units of VideoConfig.time_base
    timestamp_us: int  # monotonic capture time


@dataclass(frozen=True, slots=True)
class StillImage:
    """A full-resolution still taken on the photo button (JPEG bytes)."""

    jpeg: bytes
    width: int
    height: int
    timestamp_us: int


class FrameOutput(Protocol):
    def output_frame(self, frame: EncodedFrame) -> None: ...


PreCallback = Callable[[np.ndarray, int], None]
"""Called with (I420 frame array, capture timestamp in µs) before encoding."""


@runtime_checkable
class Camera(Protocol):
    config: VideoConfig

    def start(self, output: FrameOutput, pre_callback: PreCallback | None = None) -> None:
        """Start capturing and encoding; frames go to ``output`` until ``stop``."""

    def stop(self) -> None: ...

    def capture_still(self, pre_callback: PreCallback | None = None) -> StillImage:
        """Take a full-resolution still while the video keeps running."""

    @property
    def frames_delivered(self) -> int:
        """Encoded frames handed to the output since ``start``."""

    @property
    def extradata(self) -> bytes:
        """Codec set-up data (SPS/PPS) a muxer needs; empty before the first frame."""

    def close(self) -> None: ...
