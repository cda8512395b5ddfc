"""The camera's YUV buffers as the ISP lays them out (I420 and NV12, rows padded to a
stride) reach the stamp as plain I420 and come back with the stamp in their own layout
(``device.backends.frame_layout``), so the stamp is in the picture on every Pi."""

from __future__ import annotations

import numpy as np
import pytest

from device.backends.frame_layout import FrameBridge, FrameLayout
from device.backends.picamera import parameter_sets
from firmware_py.recording.stamp import Stamper

W, H = 320, 180


def isp_buffer(layout: FrameLayout, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A buffer laid out as libcamera fills it, padding bytes set to 0xEE."""
    buf = np.full(layout.size, 0xEE, dtype=np.uint8)
    py, pu, pv = layout.planes(buf)
    py[:], pu[:], pv[:] = y, u, v
    return buf


def picture(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(16, 235, (H, W), dtype=np.uint8),
            rng.integers(16, 240, (H // 2, W // 2), dtype=np.uint8),
            rng.integers(16, 240, (H // 2, W // 2), dtype=np.uint8))


@pytest.mark.req("R10.1")
@pytest.mark.parametrize("fmt,stride", [("YUV420", W), ("YUV420", 384), ("NV12", W), ("NV12", 384)])
def test_the_stamp_lands_in_every_layout_exactly_as_in_plain_i420(fmt, stride):
    y, u, v = picture()
    stamper = Stamper(W, H)
    stamper.set_lines(["2026-12-02 10:00:00 +08:00 REC", "BC-0001 UNASSIGNED"])
    expected = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(H * 3 // 2, W)
    stamper.apply(expected)
    assert not np.array_equal(expected[:H], y), "the stamp drew nothing"

    layout = FrameLayout(fmt, W, H, stride)
    buf = isp_buffer(layout, y, u, v)
    seen = []
    FrameBridge(layout).apply(buf, 1234, lambda frame, ts: (seen.append(ts), stamper.apply(frame)))
    assert seen == [1234]
    got_y, got_u, got_v = layout.planes(buf)
    assert np.array_equal(got_y, expected[:H])
    assert np.array_equal(got_u, expected[H:].reshape(-1)[:W * H // 4].reshape(H // 2, W // 2))
    assert np.array_equal(got_v, expected[H:].reshape(-1)[W * H // 4:].reshape(H // 2, W // 2))
    # The padding is the ISP's, not the picture's: the bridge never writes there.
    rows = buf[:stride * H].reshape(H, stride)
    assert (rows[:, W:] == 0xEE).all()


def test_a_packed_i420_buffer_is_stamped_in_place_without_a_copy():
    layout = FrameLayout("YUV420", W, H, W)
    buf = np.zeros(layout.size, dtype=np.uint8)
    seen = []
    FrameBridge(layout).apply(buf, 0, lambda frame, ts: seen.append(frame))
    assert np.shares_memory(seen[0], buf) and seen[0].shape == (H * 3 // 2, W)


def test_bad_layouts_and_short_buffers_are_named():
    with pytest.raises(ValueError, match="XRGB8888"):
        FrameLayout("XRGB8888", W, H, W)
    with pytest.raises(ValueError, match="even sizes"):
        FrameLayout("NV12", 321, H, 384)
    with pytest.raises(ValueError, match="narrower"):
        FrameLayout("NV12", W, H, 256)
    with pytest.raises(ValueError, match="needs 86400 uint8 bytes, got 100"):
        FrameLayout("YUV420", W, H, W).planes(np.zeros(100, dtype=np.uint8))


def test_parameter_sets_are_taken_from_a_keyframe():
    sps, pps = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80"
    idr, sei = b"\x65\x88\x84\x00\x33", b"\x06\x05\x01\x80"
    keyframe = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + sei + b"\x00\x00\x01" + idr
    assert parameter_sets(keyframe) == b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps
    assert parameter_sets(b"\x00\x00\x01" + idr) == b""
