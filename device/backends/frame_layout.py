"""The camera's YUV 4:2:0 buffers as the ``Camera`` protocol's pre-callback wants them.

picamera2 hands a ``pre_callback`` the raw buffer of each request through ``MappedArray``.
Its layout depends on the platform and the configured format: planar ``YUV420`` (I420:
Y, then U, then V) or semi-planar ``NV12`` (Y, then interleaved U/V), each row padded to
the stream's ``stride``, which is often wider than the picture (the ISP aligns rows to 32
or 64 bytes). The protocol's pre-callback (``device.camera.PreCallback``) takes one
layout only — a contiguous I420 array of ``height * 3 // 2`` rows of ``width`` bytes, the
layout of the simulator's frames and of the stamp — so a frame in any other shape goes
through a scratch I420 buffer: copied in, stamped, and copied back in its own layout.
A contiguous I420 buffer without padding is handed over as it is (no copy at all).

``FrameBridge`` does that per frame. It takes the flat bytes of one buffer, so it needs
nothing of picamera2 and is tested here on ``numpy`` arrays laid out as the ISP lays them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.camera import PreCallback

LAYOUTS = ("YUV420", "NV12")  # picamera2's names: I420 planar, and Y + interleaved UV


@dataclass(frozen=True)
class FrameLayout:
    """Where the planes of one YUV 4:2:0 buffer are: ``stride`` bytes per luma row and per
    chroma row pair (the ISP pads both alike)."""

    format: str
    width: int
    height: int
    stride: int

    def __post_init__(self) -> None:
        if self.format not in LAYOUTS:
            raise ValueError(f"frame format {self.format!r} is not one of {LAYOUTS}")
        if self.width % 2 or self.height % 2 or self.width <= 0 or self.height <= 0:
            raise ValueError(f"4:2:0 frames need even sizes, got {self.width}x{self.height}")
        if self.stride < self.width:
            raise ValueError(f"stride {self.stride} is narrower than the width {self.width}")

    @property
    def size(self) -> int:
        """Bytes of the whole buffer: ``height * 3 // 2`` rows of ``stride``."""
        return self.stride * self.height * 3 // 2

    @property
    def packed_i420(self) -> bool:
        """The buffer already is what the pre-callback takes."""
        return self.format == "YUV420" and self.stride == self.width

    def planes(self, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Views (no copies) of Y, U and V in ``buffer`` (flat uint8 of ``size`` bytes or
        more), each ``(rows, columns)`` of the picture without padding."""
        flat = buffer.reshape(-1)
        if flat.size < self.size or flat.dtype != np.uint8:
            raise ValueError(f"a {self.width}x{self.height} {self.format} frame with stride "
                             f"{self.stride} needs {self.size} uint8 bytes, got {flat.size} "
                             f"{flat.dtype}")
        w, h, s = self.width, self.height, self.stride
        y = flat[:s * h].reshape(h, s)[:, :w]
        chroma = flat[s * h:self.size]
        if self.format == "NV12":
            uv = chroma.reshape(h // 2, s)[:, :w]
            return y, uv[:, 0::2], uv[:, 1::2]
        # I420 chroma rows are half the luma stride, as libcamera lays them out.
        half = s // 2
        u = chroma[:half * h // 2].reshape(h // 2, half)[:, :w // 2]
        v = chroma[half * h // 2:].reshape(h // 2, half)[:, :w // 2]
        return y, u, v


class FrameBridge:
    """Runs an I420 pre-callback on buffers of one ``FrameLayout``, in place."""

    def __init__(self, layout: FrameLayout) -> None:
        self.layout = layout
        w, h = layout.width, layout.height
        self._scratch = np.empty((h * 3 // 2, w), dtype=np.uint8)
        flat = self._scratch.reshape(-1)
        self._y = flat[:w * h].reshape(h, w)
        self._u = flat[w * h:w * h * 5 // 4].reshape(h // 2, w // 2)
        self._v = flat[w * h * 5 // 4:].reshape(h // 2, w // 2)

    def apply(self, buffer: np.ndarray, timestamp_us: int, callback: PreCallback) -> None:
        """``callback`` sees the frame of ``buffer`` as contiguous I420; what it draws ends
        up in ``buffer`` in its own layout."""
        layout = self.layout
        if layout.packed_i420 and buffer.flags.c_contiguous:
            callback(buffer.reshape(layout.height * 3 // 2, layout.width), timestamp_us)
            return
        y, u, v = layout.planes(buffer)
        np.copyto(self._y, y)
        np.copyto(self._u, u)
        np.copyto(self._v, v)
        callback(self._scratch, timestamp_us)
        np.copyto(y, self._y)
        np.copyto(u, self._u)
        np.copyto(v, self._v)
