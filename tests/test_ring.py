"""Pre-event ring: starts on a keyframe, spans (length − keyframe interval … length), bounded."""

from __future__ import annotations

import numpy as np
import pytest

from device.camera import EncodedFrame
from device.microphone import AudioBlock
from firmware_py.recording.ring import PreEventRing

FPS, GOP = 30, 30


def frames(seconds: float, start: int = 0, size: int = 1000):
    for i in range(start, start + int(seconds * FPS)):
        yield EncodedFrame(bytes(size), i % GOP == 0, i, round(i * 1e6 / FPS))


@pytest.mark.req("R8.1")
@pytest.mark.parametrize("length", [0, 1, 5, 30, 120])
def test_span_and_first_keyframe(length):
    ring = PreEventRing(length)
    for n, f in enumerate(frames(length + 17.4)):
        ring.add_frame(f)
        if n > (length + 1) * FPS:
            assert ring.frames <= (max(length, 1) + 1) * FPS  # bounded all along
    media = ring.drain()
    assert media.frames[0].keyframe
    newest = media.frames[-1].timestamp_us
    span = (newest - media.frames[0].timestamp_us) / 1e6
    interval = GOP / FPS
    if length >= interval:
        assert length - interval <= span <= length
    else:
        assert span < interval  # at least the current keyframe interval is kept
    assert [f.pts for f in media.frames] == list(range(media.frames[0].pts, media.frames[-1].pts + 1))
    assert ring.frames == 0 and ring.bytes == 0


def test_memory_bounded_by_length_at_bitrate():
    ring = PreEventRing(30)
    peak = 0
    for f in frames(200, size=6250):  # 1.5 Mbit/s at 30 fps
        ring.add_frame(f)
        peak = max(peak, ring.bytes)
    assert peak <= (30 + 1) * 1.5e6 / 8


def test_frames_before_first_keyframe_are_dropped():
    ring = PreEventRing(10)
    for f in frames(2, start=5):  # starts mid-GOP
        ring.add_frame(f)
    media = ring.drain()
    assert media.frames[0].pts == 30 and media.frames[0].keyframe


def block(t_us: int, n: int = 320) -> AudioBlock:
    return AudioBlock(np.ones((n, 1), np.int16), 16000, t_us)


def test_audio_kept_only_when_configured_and_only_from_first_frame():
    quiet = PreEventRing(5, keep_audio=False)
    loud = PreEventRing(5, keep_audio=True)
    for f in frames(12):
        for ring in (quiet, loud):
            ring.add_frame(f)
        if f.pts % 3 == 0:  # a 20 ms block every 100 ms of video
            for ring in (quiet, loud):
                ring.add_audio(block(f.timestamp_us))
    assert quiet.drain().audio == []
    media = loud.drain()
    first = media.frames[0].timestamp_us
    assert media.audio and media.audio[0].timestamp_us + 20_000 > first
    assert media.audio[0].timestamp_us >= first - 20_000


def test_negative_length_refused():
    with pytest.raises(ValueError):
        PreEventRing(-1)
