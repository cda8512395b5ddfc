"""A synthetic moving scene for the simulated camera, rendered as I420 frames.

The picture is a textured background that pans, a bright block sliding across, a dark
disc bouncing, a coloured patch drifting through the chroma planes and a slow change of
brightness — enough real motion that an H.264 encoder produces ordinary P-frames and
consecutive frames never repeat. Everything is a function of time only, so any frame
can be rendered again identically.

Rendering must cost far less than encoding (well under 1 ms at 640×360): the texture
is computed once per frame size, larger than the frame and periodic, so each frame is a
slice copy plus a few small fills into the caller's reused buffer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Pan speed and brightness cycle, in units of the frame so that a still at twice the
# video size shows the same scene.
_PAN_X_PER_S = 0.05  # frame widths per second
_PAN_Y_AMPL = 0.08  # frame heights, slow vertical sway
_PAN_Y_PERIOD_S = 11.0
_BRIGHTNESS_PERIOD_S = 23.0
_BRIGHTNESS_MAX = 40  # added to luma; texture tops out at 200 so nothing saturates


@dataclass
class _Layout:
    """Everything precomputed for one frame size."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    texture: np.ndarray  # (tile_h + height, tile_w + width) uint8, wraps seamlessly
    disc_mask: np.ndarray  # bool square
    block_w: int
    block_h: int
    patch_w: int  # chroma-plane units
    patch_h: int


class Scene:
    """A deterministic moving scene; ``render(t, out)`` fills an I420 buffer for time ``t``."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._layouts: dict[tuple[int, int], _Layout] = {}

    def new_buffer(self, width: int, height: int) -> np.ndarray:
        """An I420 buffer of the shape ``render`` expects."""
        _check_size(width, height)
        return np.empty((height * 3 // 2, width), dtype=np.uint8)

    def render(self, t: float, out: np.ndarray) -> None:
        """Draw the scene at time ``t`` (seconds) into ``out`` (I420, (h*3//2, w) uint8)."""
        rows, width = out.shape
        height = rows * 2 // 3
        if out.dtype != np.uint8 or rows != height * 3 // 2 or not out.flags.c_contiguous:
            raise ValueError(f"expected a contiguous uint8 I420 buffer, got {out.shape} {out.dtype}")
        lay = self._layout(width, height)
        y_plane = out[:height]

        # Background: a slice of the periodic texture, brightened in the same pass.
        ox = int(t * _PAN_X_PER_S * width) % lay.tile_w
        oy = int((0.5 + 0.5 * math.sin(2 * math.pi * t / _PAN_Y_PERIOD_S)) * _PAN_Y_AMPL * height) % lay.tile_h
        bright = int(_BRIGHTNESS_MAX * (0.5 + 0.5 * math.sin(2 * math.pi * t / _BRIGHTNESS_PERIOD_S)))
        np.add(lay.texture[oy:oy + height, ox:ox + width], np.uint8(bright), out=y_plane)

        # A bright block sliding left to right, wrapping round.
        span = width + lay.block_w
        bx = int((t * 0.23 * width) % span) - lay.block_w
        by = int(height * (0.55 + 0.1 * math.sin(t * 1.3)))
        x0, x1 = max(bx, 0), min(bx + lay.block_w, width)
        if x1 > x0:
            y_plane[by:by + lay.block_h, x0:x1] = 235

        # A dark disc bouncing between the walls (triangle waves in x and y).
        d = lay.disc_mask.shape[0]
        dx = int(_triangle(t / 4.7) * (width - d))
        dy = int(_triangle(t / 3.1 + 0.25) * (height - d))
        y_plane[dy:dy + d, dx:dx + d][lay.disc_mask] = 24

        # Chroma: nearly flat grey with a slow tint, plus one coloured patch.
        cw, ch = width // 2, height // 2
        flat = out.reshape(-1)
        u_plane = flat[width * height: width * height + cw * ch].reshape(ch, cw)
        v_plane = flat[width * height + cw * ch: width * height + 2 * cw * ch].reshape(ch, cw)
        tint = int(6 * math.sin(2 * math.pi * t / 17.0))
        u_plane.fill(128 + tint)
        v_plane.fill(128 - tint)
        px = int(_triangle(t / 6.3) * (cw - lay.patch_w))
        py = int(_triangle(t / 5.2 + 0.6) * (ch - lay.patch_h))
        u_plane[py:py + lay.patch_h, px:px + lay.patch_w] = 90
        v_plane[py:py + lay.patch_h, px:px + lay.patch_w] = 200

    def _layout(self, width: int, height: int) -> _Layout:
        lay = self._layouts.get((width, height))
        if lay is None:
            _check_size(width, height)
            lay = _make_layout(width, height, self._seed)
            self._layouts[(width, height)] = lay
            log.debug("scene texture for %dx%d: %s bytes", width, height, lay.texture.nbytes)
        return lay


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"I420 frames need even sizes of at least 16, got {width}x{height}")


def _triangle(x: float) -> float:
    """0→1→0 over one unit of ``x``."""
    f = x % 1.0
    return 2 * f if f < 0.5 else 2 * (1 - f)


def _make_layout(width: int, height: int, seed: int) -> _Layout:
    tile_w, tile_h = 2 * width, 2 * height
    tile = _periodic_texture(tile_w, tile_h, seed)
    # Wrap-pad so that any offset inside one tile can be sliced without index arithmetic.
    texture = np.ascontiguousarray(np.pad(tile, ((0, height), (0, width)), mode="wrap"))
    d = max(8, int(height * 0.18))
    yy, xx = np.mgrid[0:d, 0:d]
    r = (d - 1) / 2
    disc = (yy - r) ** 2 + (xx - r) ** 2 <= r * r
    return _Layout(
        width=width,
        height=height,
        tile_w=tile_w,
        tile_h=tile_h,
        texture=texture,
        disc_mask=disc,
        block_w=max(4, width // 8),
        block_h=max(4, height // 6),
        patch_w=max(2, width // 16),
        patch_h=max(2, height // 12),
    )


def _periodic_texture(tile_w: int, tile_h: int, seed: int) -> np.ndarray:
    """A tileable luma texture in [16, 200], defined in tile-relative coordinates.

    Built from smooth random blobs, stripes with whole periods across the tile and a
    grid of rectangular "windows", so it is the same picture at any resolution (up to
    the fine grain) and has edges an encoder has to track as it pans.
    """
    rng = np.random.default_rng(seed)
    u = np.arange(tile_w, dtype=np.float32) / tile_w  # 0..1 across the tile
    v = np.arange(tile_h, dtype=np.float32) / tile_h

    # Smooth blobs: a coarse random grid, bilinearly upsampled with wrap-around. The
    # interpolation is separable, so it is two small matrix products.
    gy, gx = 12, 20
    grid = rng.uniform(-1.0, 1.0, size=(gy, gx)).astype(np.float32)
    blobs = _wrap_interp(tile_h, gy) @ grid @ _wrap_interp(tile_w, gx).T

    stripes = (
        np.sin(2 * np.pi * 7 * u)[None, :] * 0.35
        + np.sin(2 * np.pi * (3 * u[None, :] + 5 * v[:, None])) * 0.25
    ).astype(np.float32)

    img = 108 + 55 * blobs + 35 * stripes

    # Windows: rectangles on a regular grid, some lit and some dark.
    cells_x, cells_y = 16, 8
    cell_w, cell_h = tile_w // cells_x, tile_h // cells_y
    for cy in range(cells_y):
        for cx in range(cells_x):
            if rng.random() < 0.45:
                shade = rng.uniform(-60, 60)
                x0 = cx * cell_w + cell_w // 5
                y0 = cy * cell_h + cell_h // 4
                img[y0:y0 + cell_h // 2, x0:x0 + cell_w * 3 // 5] += shade

    # A little fine grain so flat areas are not perfectly flat.
    img += rng.integers(-5, 6, size=img.shape, dtype=np.int8)
    return np.clip(img, 16, 200).astype(np.uint8)


def _wrap_interp(n: int, cells: int) -> np.ndarray:
    """(n, cells) weights that linearly interpolate ``cells`` periodic samples onto ``n``."""
    pos = np.arange(n, dtype=np.float32) * (cells / n)
    i0 = pos.astype(np.int64)
    w = pos - i0
    m = np.zeros((n, cells), dtype=np.float32)
    rows = np.arange(n)
    m[rows, i0 % cells] += 1 - w
    m[rows, (i0 + 1) % cells] += w
    return m
