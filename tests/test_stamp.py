"""The burned-in stamp (R10.1): its text, where it lands, and that it survives encoding."""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.camera import EncodedFrame, VideoConfig
from device.clock import Timestamp, TimeSource
from device.gnss import GnssFix
from firmware_py.recording import stamp
from firmware_py.recording.stamp import HALO_LUMA, POSITIONS, TEXT_LUMA, Stamper, stamp_lines
from simulator.camera import SimCamera
from simulator.clock import VirtualClock
from simulator.scene import Scene

LINES = ("2026-11-29 09:01:05 +08:00  REC", "BC-0001  OFF-0417", "N33.86830 E113.05420")
SIZES = ((320, 180), (640, 360), (1280, 720), (1920, 1080))


def at(local: str, offset_s: int) -> Timestamp:
    """A Timestamp whose local time, at ``offset_s`` from UTC, reads ``local``."""
    naive = datetime.strptime(local, "%Y-%m-%d %H:%M:%S")
    utc = naive.replace(tzinfo=timezone.utc).timestamp() - offset_s
    return Timestamp(utc=utc, utc_offset_s=offset_s, monotonic=1.0, source=TimeSource.GNSS)


def fix(lat: float, lon: float) -> GnssFix:
    return GnssFix(received_at=1.0, valid=True, latitude=lat, longitude=lon, quality=1, mode=3)


def i420(width: int, height: int, y: int = 100, u: int = 90, v: int = 200) -> np.ndarray:
    frame = np.empty((height * 3 // 2, width), np.uint8)
    flat = frame.reshape(-1)
    n, c = width * height, width * height // 4
    flat[:n], flat[n:n + c], flat[n + c:] = y, u, v
    return frame


def chroma(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    flat = frame.reshape(-1)
    n, c = width * height, width * height // 4
    shape = (height // 2, width // 2)
    return flat[n:n + c].reshape(shape), flat[n + c:].reshape(shape)


# --- the text ----------------------------------------------------------------------------

@pytest.mark.req("R10.1")
def test_lines_as_specified() -> None:
    lines = stamp_lines(at("2026-11-29 09:01:05", 8 * 3600), "BC-0001", "OFF-0417",
                        fix(33.8683, 113.0542), 0.4, recording=True)
    assert lines == LINES


def test_not_recording_has_no_marker() -> None:
    line1 = stamp_lines(at("2026-11-29 09:01:05", 8 * 3600), "BC-0001", "OFF-0417",
                        None, None, recording=False)[0]
    assert line1 == "2026-11-29 09:01:05 +08:00"


@pytest.mark.parametrize("offset_s, shown", [(8 * 3600, "+08:00"), (-(3 * 3600 + 1800), "-03:30"),
                                             (0, "+00:00"), (5 * 3600 + 2700, "+05:45")])
def test_utc_offset(offset_s: int, shown: str) -> None:
    line1 = stamp_lines(at("2026-03-01 23:59:59", offset_s), "D", "O", None, None, False)[0]
    assert line1 == f"2026-03-01 23:59:59 {shown}"


def test_seconds_truncate_so_the_text_changes_on_the_second() -> None:
    ts = at("2026-11-29 09:01:05", 8 * 3600)
    late = Timestamp(ts.utc + 0.999, ts.utc_offset_s, ts.monotonic, ts.source)
    assert stamp_lines(late, "D", "O", None, None, False)[0].startswith("2026-11-29 09:01:05")


@pytest.mark.parametrize("lat, lon, shown", [
    (33.8683, 113.0542, "N33.86830 E113.05420"),
    (-33.8683, 151.2093, "S33.86830 E151.20930"),
    (40.7128, -74.006, "N40.71280 W74.00600"),
    (-22.90685, -43.17290, "S22.90685 W43.17290"),
    (0.0, 0.0, "N0.00000 E0.00000"),
])
def test_hemispheres(lat: float, lon: float, shown: str) -> None:
    ts = at("2026-11-29 09:01:05", 0)
    assert stamp_lines(ts, "D", "O", fix(lat, lon), 1.0, False)[2] == shown


@pytest.mark.req("R10.1")
@pytest.mark.parametrize("the_fix, age, shown", [
    (None, None, "NO FIX"),
    (None, 12.0, "NO FIX"),
    (GnssFix(received_at=1.0), 0.5, "NO FIX"),  # an epoch without a position
    (fix(1.0, 2.0), 3.0, "N1.00000 E2.00000"),  # at the threshold: still current
    (fix(1.0, 2.0), None, "N1.00000 E2.00000"),  # age unknown: taken as current
    (fix(1.0, 2.0), 42.7, "NO FIX (last 42 s ago)"),
    (fix(1.0, 2.0), 600.0, "NO FIX (last 10 min ago)"),
    (fix(1.0, 2.0), 4 * 3600.0 + 5, "NO FIX (last 4 h ago)"),
])
def test_no_fix_and_stale_fix(the_fix: GnssFix | None, age: float | None, shown: str) -> None:
    ts = at("2026-11-29 09:01:05", 0)
    assert stamp_lines(ts, "D", "O", the_fix, age, False)[2] == shown


@pytest.mark.parametrize("officer", ["", "   "])
def test_unassigned_officer(officer: str) -> None:
    ts = at("2026-11-29 09:01:05", 0)
    assert stamp_lines(ts, "BC-0001", officer, None, None, False)[1] == "BC-0001  UNASSIGNED"


def test_non_ascii_is_replaced() -> None:
    ts = at("2026-11-29 09:01:05", 0)
    assert stamp_lines(ts, "BC-0001", "OFF-\u00e9", None, None, False)[1] == "BC-0001  OFF-?"


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180),
       offset_min=st.integers(-14 * 60, 14 * 60), utc=st.floats(0, 4e9))
def test_any_fix_reads_back_in_ascii(lat: float, lon: float, offset_min: int, utc: float) -> None:
    ts = Timestamp(utc, offset_min * 60, 0.0, TimeSource.RTC)
    lines = stamp_lines(ts, "BC-0001", "OFF-1", fix(lat, lon), 0.0, True)
    assert all(line.isascii() for line in lines)
    ns, ew = lines[2].split(" ")
    assert ns[0] in "NS" and ew[0] in "EW"
    assert abs(float(ns[1:]) * (-1 if ns[0] == "S" else 1) - lat) <= 5e-6
    assert abs(float(ew[1:]) * (-1 if ew[0] == "W" else 1) - lon) <= 5e-6


# --- the drawing -------------------------------------------------------------------------

def line_runs(mask: np.ndarray) -> list[int]:
    """Heights of the bands of rows that hold text pixels (one band per line)."""
    rows = mask.any(axis=1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], rows, [0]))))
    return [int(b - a) for a, b in zip(edges[::2], edges[1::2])]


def test_readable_at_640x360() -> None:
    stamper = Stamper(640, 360)
    stamper.set_lines(LINES)
    heights = line_runs(stamper.text_mask)
    assert len(heights) == 3
    assert min(heights) >= 12
    rows, cols = stamper.rendered_region
    assert cols.stop - cols.start < 640 * 0.6  # leaves most of the picture alone
    assert rows.stop - rows.start < 360 * 0.25


@pytest.mark.parametrize("position", POSITIONS)
def test_position_puts_the_region_in_its_corner(position: str) -> None:
    width, height = 640, 360
    stamper = Stamper(width, height, position)
    stamper.set_lines(LINES)
    rows, cols = stamper.rendered_region
    top, left = position.startswith("top"), position.endswith("left")
    assert (rows.start if top else height - rows.stop) <= 8
    assert (cols.start if left else width - cols.stop) <= 8
    # And what apply changes is inside that region, in that quarter of the picture.
    frame = i420(width, height)
    stamper.apply(frame)
    changed = np.argwhere(frame[:height] != 100)
    assert changed.size
    assert changed[:, 0].min() >= rows.start and changed[:, 0].max() < rows.stop
    assert changed[:, 1].min() >= cols.start and changed[:, 1].max() < cols.stop
    assert (changed[:, 0].max() < height // 2) if top else (changed[:, 0].min() >= height // 2)
    assert (changed[:, 1].mean() < width // 2) == left


@pytest.mark.parametrize("width, height", SIZES)
def test_every_size_draws_text_and_halo(width: int, height: int) -> None:
    stamper = Stamper(width, height, "bottom-right")
    stamper.set_lines(LINES)
    frame = i420(width, height)
    stamper.apply(frame)
    rows, cols = stamper.rendered_region
    assert 0 <= rows.start < rows.stop <= height and 0 <= cols.start < cols.stop <= width
    assert rows.start % 2 == 0 and cols.start % 2 == 0  # on whole chroma samples
    region, text = frame[rows, cols], stamper.text_mask
    assert (region[text] == TEXT_LUMA).mean() > 0.4
    assert (region == HALO_LUMA).sum() > text.sum()
    assert stamper.cap_px >= 12
    assert len(line_runs(stamper.text_mask)) == 3


def test_chroma_under_the_text_is_neutral_and_elsewhere_untouched() -> None:
    width, height = 640, 360
    stamper = Stamper(width, height)
    stamper.set_lines(LINES)
    frame = i420(width, height, u=90, v=200)
    stamper.apply(frame)
    u, v = chroma(frame, width, height)
    rows, cols = stamper.rendered_region
    under = stamper.text_mask[::2, ::2]  # a chroma sample under each glyph's top-left pixel
    cu = u[rows.start // 2:rows.stop // 2, cols.start // 2:cols.stop // 2]
    cv = v[rows.start // 2:rows.stop // 2, cols.start // 2:cols.stop // 2]
    assert (cu[under] == 128).all() and (cv[under] == 128).all()
    assert (u == 90).mean() > 0.95 and (v == 200).mean() > 0.95
    outside = np.ones(u.shape, bool)
    outside[rows.start // 2:rows.stop // 2, cols.start // 2:cols.stop // 2] = False
    assert (u[outside] == 90).all() and (v[outside] == 200).all()


def test_text_that_does_not_fit_is_clipped() -> None:
    for position in POSITIONS:
        stamper = Stamper(64, 32, position, font_px=40)
        stamper.set_lines(LINES + ("a much longer line than any frame this small can hold",))
        frame = i420(64, 32)
        stamper.apply(frame)
        rows, cols = stamper.rendered_region
        assert 0 <= rows.start <= rows.stop <= 32 and 0 <= cols.start <= cols.stop <= 64
        assert (frame[:32] != 100).any()


def test_rerenders_only_when_the_text_changes() -> None:
    stamper = Stamper(640, 360)
    assert stamper.render_count == 0
    stamper.set_lines(LINES)
    assert stamper.render_count == 1
    stamper.set_lines(list(LINES))  # equal text, other sequence type
    stamper.set_lines(LINES)
    assert stamper.render_count == 1
    changed = ("2026-11-29 09:01:06 +08:00  REC",) + LINES[1:]
    stamper.set_lines(changed)
    assert stamper.render_count == 2 and stamper.lines == changed
    frame = i420(640, 360)
    for _ in range(5):
        stamper.apply(frame)
    assert stamper.render_count == 2


def test_no_text_draws_nothing() -> None:
    stamper = Stamper(640, 360)
    frame = i420(640, 360)
    before = frame.copy()
    stamper.apply(frame)
    stamper.set_lines(LINES)
    stamper.set_lines(())
    stamper.apply(frame)
    assert np.array_equal(frame, before)
    assert stamper.rendered_region == (slice(0, 0), slice(0, 0))


def test_a_wrong_frame_is_left_alone_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    stamper = Stamper(640, 360)
    stamper.set_lines(LINES)
    wrong = i420(320, 180)
    before = wrong.copy()
    with caplog.at_level(logging.ERROR, logger="firmware_py.recording.stamp"):
        stamper.apply(wrong)
        stamper.apply(wrong)
    assert np.array_equal(wrong, before)
    assert len([r for r in caplog.records if "stamp skipped" in r.message]) == 1


@pytest.mark.parametrize("kwargs", [{"position": "centre"}, {"font_px": -1},
                                    {"width": 641}, {"height": 8}])
def test_bad_construction_is_refused(kwargs: dict) -> None:
    args = {"width": 640, "height": 360, **kwargs}
    with pytest.raises(ValueError):
        Stamper(**args)


def test_without_freetype_the_bitmap_font_is_scaled_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stamp.features, "check", lambda name: False)
    stamper = Stamper(640, 360)
    stamper.set_lines(LINES)
    assert stamper.cap_px >= 12
    heights = line_runs(stamper.text_mask)
    assert len(heights) == 3 and min(heights) >= 12


# --- through the camera and the codec ----------------------------------------------------

START = 100.0
VIDEO = VideoConfig(width=640, height=360, fps=30, bitrate=1_500_000, keyframe_interval_s=1.0)


def y_plane(picture: np.ndarray, height: int) -> np.ndarray:
    return picture[:height].astype(np.int16)


def compare(decoded: np.ndarray, reference: np.ndarray, stamper: Stamper, height: int) -> None:
    """The stamp is there and stands out; the rest is the scene within codec noise."""
    rows, cols = stamper.rendered_region
    got, want = y_plane(decoded, height), y_plane(reference, height)
    diff = np.abs(got - want)

    text = stamper.text_mask
    region = got[rows, cols]
    assert diff[rows, cols].mean() > 20
    # Core text pixels (not their anti-aliased edges) come out near white, and the halo
    # near black, whatever the scene behind them.
    assert np.median(region[text]) > 200
    assert (np.abs(region[text] - TEXT_LUMA) < 30).mean() > 0.5
    halo = (region <= HALO_LUMA + 30).sum()
    assert halo > 0.5 * text.sum()

    # Away from the stamp (one macroblock of slack for the codec's edges) nothing changed.
    away = np.ones(diff.shape, bool)
    away[max(rows.start - 16, 0):rows.stop + 16, max(cols.start - 16, 0):cols.stop + 16] = False
    assert diff[away].mean() < 4
    assert np.percentile(diff[away], 99) < 25


class Collect:
    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []

    def output_frame(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)


def decode_i420(stream: bytes) -> list[np.ndarray]:
    ctx = av.CodecContext.create("h264", "r")
    pictures = []
    for packet in ctx.parse(stream) + ctx.parse(None):
        pictures += [f.to_ndarray(format="yuv420p") for f in ctx.decode(packet)]
    pictures += [f.to_ndarray(format="yuv420p") for f in ctx.decode(None)]
    return pictures


@pytest.fixture(scope="module")
def stamped_video() -> dict:
    clock = VirtualClock(START)
    cam = SimCamera(VIDEO, clock, seed=3)
    stamper = Stamper(VIDEO.width, VIDEO.height)
    stamper.set_lines(LINES)
    out = Collect()
    cam.start(out, pre_callback=stamper.apply)
    for k in range(1, 16):
        clock.advance_to(START + k / VIDEO.fps)
        cam.tick(clock.now)
    still_stamper = Stamper(1280, 720, "bottom-left")
    still_stamper.set_lines(LINES)
    still = cam.capture_still(pre_callback=still_stamper.apply)
    cam.stop()
    return {"frames": out.frames, "stamper": stamper, "still": still,
            "still_stamper": still_stamper}


@pytest.mark.req("R10.1")
@pytest.mark.parametrize("index", [0, 14])  # the keyframe, and a P-frame half a second on
def test_stamp_survives_h264(stamped_video: dict, index: int) -> None:
    frames = stamped_video["frames"]
    pictures = decode_i420(b"".join(f.data for f in frames))
    assert len(pictures) == len(frames) == 16
    scene = Scene(3)  # the camera's seed: the same scene, unstamped
    reference = scene.new_buffer(VIDEO.width, VIDEO.height)
    scene.render(START + frames[index].pts / VIDEO.fps, reference)
    compare(pictures[index], reference, stamped_video["stamper"], VIDEO.height)


@pytest.mark.req("R10.1", "R11.1")
def test_stamp_survives_jpeg_still(stamped_video: dict) -> None:
    still = stamped_video["still"]
    with av.open(io.BytesIO(still.jpeg)) as container:
        picture = next(container.decode(video=0)).to_ndarray()  # yuvj420p, as encoded
    assert picture.shape == (720 * 3 // 2, 1280)
    scene = Scene(3)
    reference = scene.new_buffer(1280, 720)
    scene.render(still.timestamp_us / 1e6, reference)
    stamper = stamped_video["still_stamper"]
    rows, _ = stamper.rendered_region
    assert rows.stop > 720 // 2  # bottom-left, as asked
    compare(picture, reference, stamper, 720)
