"""The burned-in stamp (R10.1): time, date, device, officer and position drawn into each frame.

``stamp_lines`` turns the facts into a few short ASCII lines; ``Stamper`` draws them into
raw I420 frames (the camera's ``pre_callback``) and into stills; ``FrameStamps`` is the
device's stamp on both, as the agent hands it to the camera.

The text changes about once a second while frames come thirty times a second, on a
Raspberry Pi, in the camera thread. So the work is split: ``set_lines`` renders the text
with Pillow only when it differs from last time and keeps the result as numpy arrays
(which pixels to touch and what luma to put there); ``apply`` is then one masked copy into
a small region of the Y plane plus a neutral-grey fill of the chroma under the text — no
Pillow, no allocation of frame-sized arrays.

The text is white (luma 235) with a dark halo (luma 16) around every glyph, so it stays
readable on bright and dark scenes without hiding a whole box of the picture. Text that
does not fit the frame is clipped, never an error: a stamp must not stop a recording.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from device.clock import Clock, Timestamp
from device.gnss import Gnss, GnssFix
from firmware_py.config import DeviceConfig
from firmware_py.recording.metadata import time_at

log = logging.getLogger(__name__)

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right")

# A fix older than this is not where the camera is now; the stamp says so rather than
# show a position that may be far behind.
FIX_STALE_S = 3.0

UNASSIGNED = "UNASSIGNED"
REC_MARK = "REC"  # a line ending in " REC" gets a filled box drawn in front of the word

TEXT_LUMA = 235  # top of the video range: brightest "legal" white
HALO_LUMA = 16  # bottom of the video range
NEUTRAL_CHROMA = 128

MIN_FONT_PX = 12
_AUTO_FONT_DIVISOR = 24

# Extents used for line spacing: the tallest ascender and deepest descender the stamp can
# contain, so that lines with and without "(" or "g" keep the same pitch.
_EXTENT_PROBE = "(Hgjy|0"


# --- the text ----------------------------------------------------------------------------

def stamp_lines(at: Timestamp, device_id: str, officer_id: str, fix: GnssFix | None,
                fix_age_s: float | None, recording: bool) -> tuple[str, ...]:
    """The stamp's lines: local time and zone (+ REC), device and officer, position.

    ``fix`` is the most recent fix with a position that the caller knows of and
    ``fix_age_s`` how long ago it was received (None: age unknown, taken as current).
    A missing fix, one without a position or one older than ``FIX_STALE_S`` reads
    ``NO FIX``, with the age of the last fix when there was one.
    """
    local = at.local_datetime()
    line1 = f"{local:%Y-%m-%d %H:%M:%S} {_format_offset(at.utc_offset_s)}"
    if recording:
        line1 += f"  {REC_MARK}"
    line2 = f"{_ascii(device_id.strip())}  {_ascii(officer_id.strip()) or UNASSIGNED}"
    return (line1, line2, _position_line(fix, fix_age_s))


def _format_offset(offset_s: int) -> str:
    sign = "-" if offset_s < 0 else "+"
    minutes = abs(int(offset_s)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _position_line(fix: GnssFix | None, fix_age_s: float | None) -> str:
    if fix is None or not fix.has_position:
        return "NO FIX"
    assert fix.latitude is not None and fix.longitude is not None
    if fix_age_s is not None and fix_age_s > FIX_STALE_S:
        return f"NO FIX (last {_format_age(fix_age_s)} ago)"
    lat, lon = fix.latitude, fix.longitude
    return f"{'S' if lat < 0 else 'N'}{abs(lat):.5f} {'W' if lon < 0 else 'E'}{abs(lon):.5f}"


def _format_age(age_s: float) -> str:
    # Short enough for a 320-px-wide frame even after a long outage.
    if age_s < 120:
        return f"{int(age_s)} s"
    if age_s < 120 * 60:
        return f"{int(age_s // 60)} min"
    return f"{int(age_s // 3600)} h"


def _ascii(text: str) -> str:
    # The font may lack anything else; a "?" is better than a missing glyph box.
    return text.encode("ascii", "replace").decode("ascii")


# --- the drawing -------------------------------------------------------------------------

def auto_font_px(height: int) -> int:
    """The text height ``font_px = 0`` stands for at a frame ``height`` pixels high."""
    return max(MIN_FONT_PX, round(height / _AUTO_FONT_DIVISOR))


@dataclass(frozen=True)
class _Overlay:
    """One rendered text, ready to blit: everything ``apply`` needs, nothing more.

    Pixels are replaced as ``(pixel & keep) | value``: ``keep`` is 0 where the stamp
    draws and 255 elsewhere, ``value`` is what it draws there and 0 elsewhere. These two
    SIMD passes over the region measured 2-3x faster than numpy's masked copy, which
    goes element by element. ``set_lines`` replaces the record as a whole, so ``apply``
    in another thread sees the old or the new stamp, never a mix.
    """

    lines: tuple[str, ...]
    rows: slice
    cols: slice
    keep: np.ndarray  # uint8, region shape
    value: np.ndarray  # uint8, region shape: text luma (anti-aliased) or halo luma
    chroma_rows: slice
    chroma_cols: slice
    chroma_keep: np.ndarray  # uint8, half-resolution region
    chroma_value: np.ndarray


@dataclass(frozen=True)
class _Glyph:
    coverage: np.ndarray  # uint8 ink box, 0..255
    left: int  # ink box x relative to the pen
    top: int  # ink box y relative to the baseline (negative is above)
    advance: float


class _Typeface:
    """Pillow's built-in font at one size, with each character rasterised once.

    Drawing a line through Pillow costs ~0.5 ms here (more on a Pi), and the line changes
    every second; composing it from cached glyph bitmaps costs a few microseconds a
    character. Kerning is lost, which digits and capitals on a stamp do not miss.
    """

    def __init__(self, cap_px: int) -> None:
        self._cache: dict[str, _Glyph] = {}
        if features.check("freetype2"):
            # Pillow's size is the em; capitals are about 0.72 of it. Step to the exact size.
            size = max(1, int(cap_px / 0.75))
            face = ImageFont.load_default(size=size)
            while -face.getbbox("0H", anchor="ls")[1] < cap_px and size < 4 * cap_px:
                size += 1
                face = ImageFont.load_default(size=size)
            self._face: ImageFont.FreeTypeFont | ImageFont.ImageFont = face
            self._cell_baseline = 0
        else:
            log.warning("Pillow has no FreeType; the stamp uses the bitmap font, upscaled")
            self._face = ImageFont.load_default_imagefont()
            self._cell_baseline = self._bitmap_baseline()
        self.cap = -self._extent("0H")[0]
        # The bitmap font has one small size; it is upscaled in whole pixels after
        # composing, which looks blocky but stays legible.
        self.scale = 1 if isinstance(self._face, ImageFont.FreeTypeFont) \
            else max(1, math.ceil(cap_px / max(self.cap, 1)))
        # Line spacing from the tallest ascender and deepest descender a stamp may hold,
        # so that lines keep one pitch whatever they contain.
        self.top, self.bottom = self._extent(_EXTENT_PROBE)
        box = max(2, self.cap * 4 // 5)
        # The recording indicator: a filled square on the capitals' centre line.
        self._rec_box = _Glyph(np.full((box, box), 255, np.uint8), 0,
                               -(self.cap + box) // 2, box + box / 3)

    def layout(self, line: str) -> tuple[list[tuple[int, _Glyph]], int]:
        """Glyphs of ``line`` with their pen x, and the line's width (font pixels)."""
        glyphs: list[_Glyph] = []
        if line.endswith(" " + REC_MARK):
            glyphs = [self.glyph(c) for c in line[:-len(REC_MARK)]]
            glyphs += [self._rec_box] + [self.glyph(c) for c in REC_MARK]
        else:
            glyphs = [self.glyph(c) for c in line]
        placed = []
        pen = 0.0
        right = 0
        for g in glyphs:
            x = round(pen)
            placed.append((x, g))
            right = max(right, x + g.left + g.coverage.shape[1])
            pen += g.advance
        return placed, max(right, math.ceil(pen))

    def glyph(self, char: str) -> _Glyph:
        g = self._cache.get(char)
        if g is None:
            g = self._cache[char] = self._rasterise(char)
        return g

    def _rasterise(self, char: str) -> _Glyph:
        face = self._face
        advance = float(face.getlength(char))
        if isinstance(face, ImageFont.FreeTypeFont):
            left, top, right, bottom = (int(v) for v in face.getbbox(char, anchor="ls"))
            if right <= left or bottom <= top:
                return _Glyph(np.zeros((0, 0), np.uint8), 0, 0, advance)
            image = Image.new("L", (right - left, bottom - top), 0)
            ImageDraw.Draw(image).text((-left, -top), char, font=face, fill=255, anchor="ls")
            return _Glyph(np.array(image, dtype=np.uint8), left, top, advance)
        _, _, w, h = face.getbbox(char)
        image = Image.new("L", (max(1, int(w)), max(1, int(h))), 0)
        ImageDraw.Draw(image).text((0, 0), char, font=face, fill=255)
        return _Glyph(np.array(image, dtype=np.uint8), 0, -self._cell_baseline, advance)

    def _extent(self, text: str) -> tuple[int, int]:
        """(top, bottom) of ``text``'s ink relative to the baseline."""
        tops, bottoms = [], []
        for c in text:
            g = self.glyph(c)
            ink = np.flatnonzero(g.coverage.any(axis=1))
            if ink.size:
                tops.append(g.top + int(ink[0]))
                bottoms.append(g.top + int(ink[-1]) + 1)
        return (min(tops), max(bottoms)) if tops else (0, 0)

    def _bitmap_baseline(self) -> int:
        # The bitmap font has no baseline anchor: the bottom of "H" in its cell is it.
        image = Image.new("L", (32, 32), 0)
        ImageDraw.Draw(image).text((0, 0), "H", font=self._face, fill=255)
        return int(np.flatnonzero(np.asarray(image).any(axis=1))[-1]) + 1


class Stamper:
    """Draws lines of text into I420 frames of one size at one corner.

    ``set_lines`` from one thread at a time (any thread); ``apply`` as the camera's
    ``pre_callback``. A still of another size needs its own ``Stamper``.
    """

    def __init__(self, width: int, height: int, position: str = "top-left",
                 font_px: int = 0) -> None:
        if position not in POSITIONS:
            raise ValueError(f"stamp position {position!r}: expected one of {POSITIONS}")
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"I420 frames need even sizes of at least 16, got {width}x{height}")
        if font_px < 0:
            raise ValueError(f"font_px must be 0 (auto) or positive, got {font_px}")
        self.width = width
        self.height = height
        self.position = position
        self.font_px = font_px or auto_font_px(height)
        self._face = _Typeface(self.font_px)
        # A halo thicker with the text, so it reads as an outline at any resolution.
        self._halo = max(1, round(self.font_px / 15))
        # Even margin and even region origin keep the region on whole chroma samples.
        self._margin = 2 * max(1, round(height / 180))
        self._overlay: _Overlay | None = None
        self._renders = 0
        self._warned_clip = False
        self._warned_frame = False

    # --- public ----------------------------------------------------------------------

    def set_lines(self, lines: Sequence[str]) -> None:
        """Use ``lines`` from the next ``apply`` on; renders only when the text changed."""
        lines = tuple(lines)
        if lines == self.lines:
            return
        t0 = time.perf_counter()
        self._overlay = self._render(lines)
        self._renders += 1
        log.debug("stamp rendered in %.2f ms: %r", (time.perf_counter() - t0) * 1e3, lines)

    def apply(self, frame: np.ndarray, timestamp_us: int | None = None) -> None:
        """Burn the current text into ``frame`` (I420, (height*3//2, width) uint8) in place.

        Takes an optional timestamp only so that it can serve as a ``pre_callback``.
        """
        ov = self._overlay  # read once: set_lines may swap it from another thread
        if ov is None:
            return
        if (frame.shape != (self.height * 3 // 2, self.width) or frame.dtype != np.uint8
                or not frame.flags.c_contiguous):
            # Raising here would stop the camera thread; an unstamped frame is the lesser harm.
            if not self._warned_frame:
                log.error("stamp skipped: frame %s %s is not a contiguous %dx%d I420 buffer",
                          frame.shape, frame.dtype, self.width, self.height)
                self._warned_frame = True
            return
        y = frame[ov.rows, ov.cols]
        np.bitwise_and(y, ov.keep, out=y)
        np.bitwise_or(y, ov.value, out=y)
        # Neutral chroma under the text: white, not tinted by whatever is behind it.
        flat = frame.reshape(-1)  # a view, as the frame is contiguous
        y_size = self.width * self.height
        cw, ch = self.width // 2, self.height // 2
        for start in (y_size, y_size + cw * ch):
            c = flat[start:start + cw * ch].reshape(ch, cw)[ov.chroma_rows, ov.chroma_cols]
            np.bitwise_and(c, ov.chroma_keep, out=c)
            np.bitwise_or(c, ov.chroma_value, out=c)

    @property
    def lines(self) -> tuple[str, ...]:
        return self._overlay.lines if self._overlay is not None else ()

    @property
    def rendered_region(self) -> tuple[slice, slice]:
        """Rows and columns of the Y plane that ``apply`` may write (empty before any text)."""
        ov = self._overlay
        if ov is None:
            return slice(0, 0), slice(0, 0)
        return ov.rows, ov.cols

    @property
    def text_mask(self) -> np.ndarray:
        """Glyph pixels (not the halo) over ``rendered_region``; for tests and checks."""
        ov = self._overlay
        if ov is None:
            return np.zeros((0, 0), dtype=bool)
        return ov.value >= (TEXT_LUMA + HALO_LUMA) // 2

    @property
    def cap_px(self) -> int:
        """Height of capitals and digits as drawn."""
        return self._face.cap * self._face.scale

    @property
    def render_count(self) -> int:
        """How many times text has been rendered."""
        return self._renders

    # --- rendering -------------------------------------------------------------------

    def _render(self, lines: tuple[str, ...]) -> _Overlay | None:
        if not lines:
            return None
        face = self._face
        s = face.scale
        # Font pixels until the bitmap is upscaled (s is 1 unless FreeType is missing).
        pad = math.ceil(self._halo / s)
        ink_h = face.bottom - face.top
        pitch = ink_h + 2 * pad + 1
        layouts = [face.layout(_ascii(line)) for line in lines]
        bmp_w = max(w for _, w in layouts) + 2 * pad
        bmp_h = pad + (len(lines) - 1) * pitch + ink_h + pad
        avail_w = _even_down(self.width - 2 * self._margin)
        avail_h = _even_down(self.height - 2 * self._margin)
        # Right-aligned only when it fits: clipped text must keep its start (the time).
        right = self.position.endswith("right") and _even_up(bmp_w * s) <= avail_w

        coverage = np.zeros((bmp_h, bmp_w), np.uint8)
        for i, (placed, w) in enumerate(layouts):
            x0 = bmp_w - pad - w if right else pad
            baseline = pad - face.top + i * pitch
            for x, g in placed:
                _paste_max(coverage, g.coverage, baseline + g.top, x0 + x + g.left)
        if s > 1:
            coverage = coverage.repeat(s, axis=0).repeat(s, axis=1)

        # Whole chroma samples need an even size: the extra column goes on the side away
        # from the corner, so the text hugs the margin.
        h, w = _even_up(coverage.shape[0]), _even_up(coverage.shape[1])
        padded = np.zeros((h, w), np.uint8)
        x_off = w - coverage.shape[1] if right else 0
        padded[:coverage.shape[0], x_off:x_off + coverage.shape[1]] = coverage
        # Clip to the frame, keeping the first lines and the start of each line.
        if h > avail_h or w > avail_w:
            level = logging.DEBUG if self._warned_clip else logging.WARNING
            log.log(level, "stamp %dx%d clipped to fit a %dx%d frame",
                    w, h, self.width, self.height)
            self._warned_clip = True
        padded = padded[:min(h, avail_h), :min(w, avail_w)]
        h, w = padded.shape

        ink = padded > 0
        mask = _dilate(ink, self._halo)
        # Anti-aliased edges blend from halo to text luma: free here, apply copies values.
        # At small sizes most stroke pixels are partly covered; pushing them toward white
        # keeps strokes solid once the encoder has softened them.
        boosted = np.minimum(padded.astype(np.uint16) * 3 // 2, 255)
        value = HALO_LUMA + (boosted * (TEXT_LUMA - HALO_LUMA) + 127) // 255
        value = np.where(mask, value, 0).astype(np.uint8)
        keep = np.where(mask, 0, 255).astype(np.uint8)
        chroma_mask = mask[0::2, 0::2] | mask[1::2, 0::2] | mask[0::2, 1::2] | mask[1::2, 1::2]

        r0 = self._margin if self.position.startswith("top") else self.height - self._margin - h
        c0 = self._margin if self.position.endswith("left") else self.width - self._margin - w
        return _Overlay(
            lines=lines,
            rows=slice(r0, r0 + h), cols=slice(c0, c0 + w),
            keep=keep, value=value,
            chroma_rows=slice(r0 // 2, (r0 + h) // 2), chroma_cols=slice(c0 // 2, (c0 + w) // 2),
            chroma_keep=np.where(chroma_mask, 0, 255).astype(np.uint8),
            chroma_value=np.where(chroma_mask, NEUTRAL_CHROMA, 0).astype(np.uint8),
        )


def _paste_max(dst: np.ndarray, src: np.ndarray, top: int, left: int) -> None:
    """``dst[top:, left:] = max(dst, src)`` over their overlap; glyph boxes may overlap."""
    r0, c0 = max(top, 0), max(left, 0)
    r1 = min(top + src.shape[0], dst.shape[0])
    c1 = min(left + src.shape[1], dst.shape[1])
    if r1 <= r0 or c1 <= c0:
        return
    region = dst[r0:r1, c0:c1]
    np.maximum(region, src[r0 - top:r1 - top, c0 - left:c1 - left], out=region)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (square neighbourhood)."""
    out = mask.copy()
    for axis in (0, 1):  # a square neighbourhood is separable: rows, then columns
        src = out.copy()
        n = src.shape[axis]
        for d in range(1, min(radius, n - 1) + 1):
            lo = [slice(None), slice(None)]
            hi = [slice(None), slice(None)]
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            out[tuple(hi)] |= src[tuple(lo)]
            out[tuple(lo)] |= src[tuple(hi)]
    return out


def _even_up(n: int) -> int:
    return n + (n & 1)


def _even_down(n: int) -> int:
    return max(0, n - (n & 1))


# --- measurement -------------------------------------------------------------------------

def measure_apply_us(width: int, height: int, frames: int = 200, repeats: int = 15,
                     lines: Sequence[str] | None = None) -> float:
    """Cost of one ``apply`` in microseconds at a frame size, for the usual three lines.

    The best of ``repeats`` batches, as ``timeit`` does: other load only ever adds time.
    """
    stamper = Stamper(width, height)
    stamper.set_lines(lines or ("2026-11-29 09:01:05 +08:00  REC", "BC-0001  OFF-0417",
                                "N33.86830 E113.05420"))
    frame = np.full((height * 3 // 2, width), 100, dtype=np.uint8)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(frames):
            stamper.apply(frame)
        best = min(best, (time.perf_counter_ns() - t0) / frames)
    return best / 1000


def measure_render_ms(width: int, height: int, renders: int = 50) -> float:
    """Median cost of one re-render (``set_lines`` with new text) in milliseconds."""
    stamper = Stamper(width, height)
    samples = []
    for k in range(renders):
        lines = (f"2026-11-29 09:01:{k % 60:02d} +08:00  REC", "BC-0001  OFF-0417",
                 "N33.86830 E113.05420")
        t0 = time.perf_counter_ns()
        stamper.set_lines(lines)
        samples.append(time.perf_counter_ns() - t0)
    return float(np.median(samples)) / 1e6


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for w, h in ((320, 180), (640, 360), (1280, 720), (1920, 1080)):
        print(f"{w}x{h}: apply {measure_apply_us(w, h):.1f} us/frame, "
              f"re-render {measure_render_ms(w, h):.2f} ms")


class FrameStamps:
    """The stamp of this device on every frame and still (camera thread): the lines of
    ``stamp_lines`` for the frame's time, made at most once a second, drawn by one
    ``Stamper`` for the video size and one for the still size.

    ``recording()`` says whether a recording is running (the stamp then shows REC); a fix
    without a position keeps the last position shown."""

    def __init__(self, device: DeviceConfig, clock: Clock, gnss: Gnss,
                 recording: Callable[[], bool]) -> None:
        stamp = device.stamp
        video, photo = device.video, device.photo
        self._video = Stamper(video.width, video.height, stamp.position, stamp.font_px)
        self._still = Stamper(photo.width, photo.height, stamp.position, stamp.font_px)
        self._device = device.device
        self._clock = clock
        self._gnss = gnss
        self._recording = recording
        self._last_position: GnssFix | None = None
        self._key: tuple[int, int, bool] | None = None
        self._text: tuple[str, ...] = ()

    def lines(self, timestamp_us: int) -> tuple[str, ...]:
        at = time_at(self._clock, timestamp_us / 1e6)
        fix = self._gnss.last_fix
        if fix is not None and not fix.has_position:
            fix = self._last_position
        elif fix is not None:
            self._last_position = fix
        recording = self._recording()
        # The text changes at most once a second; frames come 30 times a second.
        key = (int(at.utc), id(fix), recording)
        if key == self._key:
            return self._text
        age = None if fix is None else at.monotonic - fix.received_at
        self._key = key
        self._text = stamp_lines(at, self._device.id, self._device.officer, fix, age, recording)
        return self._text

    def frame(self, frame: np.ndarray, timestamp_us: int) -> None:
        """The camera's pre-callback for video frames."""
        self._video.set_lines(self.lines(timestamp_us))
        self._video.apply(frame)

    def still(self, frame: np.ndarray, timestamp_us: int) -> None:
        """The camera's pre-callback for a still."""
        self._still.set_lines(self.lines(timestamp_us))
        self._still.apply(frame)
