"""The simulated camera produces real, independently decodable H.264 in virtual time."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from device.camera import Camera, EncodedFrame, VideoConfig
from simulator.camera import SimCamera
from simulator.clock import VirtualClock
from simulator.scene import Scene

CONFIG = VideoConfig(width=640, height=360, fps=30, bitrate=1_500_000, keyframe_interval_s=1.0)
START = 100.0  # the camera is started at a non-zero virtual time on purpose
STAMP = (slice(20, 60), slice(24, 120))  # rows, cols of the white box the callback draws


class Collect:
    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []

    def output_frame(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)


def decode_annexb(data: bytes) -> list[np.ndarray]:
    """Y planes of every picture a fresh H.264 decoder gets out of ``data``."""
    ctx = av.CodecContext.create("h264", "r")
    pictures = []
    try:
        for packet in ctx.parse(data) + ctx.parse(None):
            for frame in ctx.decode(packet):
                pictures.append(frame.to_ndarray(format="gray"))
        for frame in ctx.decode(None):
            pictures.append(frame.to_ndarray(format="gray"))
    except av.error.InvalidDataError:
        pass  # counts as "nothing decodable"
    return pictures


@pytest.fixture(scope="module")
def run() -> dict:
    """Three seconds of capture, ticked at an uneven pace, with a stamping pre_callback."""
    clock = VirtualClock(START)
    cam = SimCamera(CONFIG, clock)
    out = Collect()
    stamped: list[int] = []

    def stamp(buf: np.ndarray, timestamp_us: int) -> None:
        buf[STAMP] = 255
        stamped.append(timestamp_us)

    cam.start(out, pre_callback=stamp)
    lag = []  # frames due minus frames delivered after each tick: zero when nothing buffers
    end = START + 89 / 30  # frame 89 is the last one due
    t = START
    while t < end:
        t = min(t + 0.07, end)
        clock.advance_to(t)
        cam.tick(clock.now)
        lag.append(int((t - START) * 30 + 1e-6) + 1 - cam.frames_delivered)
    delivered_before_stop = cam.frames_delivered
    cam.stop()
    return {"cam": cam, "frames": out.frames, "stamped": stamped, "lag": lag,
            "before_stop": delivered_before_stop}


def test_implements_protocol() -> None:
    assert isinstance(SimCamera(CONFIG, VirtualClock()), Camera)


def test_frame_count_keyframes_pts_and_timestamps(run: dict) -> None:
    frames = run["frames"]
    assert len(frames) == 90 == run["cam"].frames_delivered
    assert [f.pts for f in frames] == list(range(90))
    assert [f.pts for f in frames if f.keyframe] == [0, 30, 60]
    expected = [round((START + k / 30) * 1_000_000) for k in range(90)]
    assert [f.timestamp_us for f in frames] == expected
    assert run["stamped"] == expected
    steps = np.diff([f.timestamp_us for f in frames])
    assert set(steps.tolist()) <= {33333, 33334}


def test_encoder_does_not_buffer(run: dict) -> None:
    assert all(x == 0 for x in run["lag"])
    assert run["before_stop"] == 90  # nothing was left for the flush


def test_annexb_with_headers_on_every_keyframe(run: dict) -> None:
    cam, frames = run["cam"], run["frames"]
    extradata = cam.extradata
    assert extradata.startswith(b"\x00\x00\x00\x01\x67")  # SPS first
    assert b"\x00\x00\x00\x01\x68" in extradata  # then PPS
    for f in frames:
        assert f.data.startswith(b"\x00\x00\x00\x01") or f.data.startswith(b"\x00\x00\x01")
        if f.keyframe:
            assert extradata in f.data


def test_stream_decodes_with_pyav_and_ffprobe(run: dict, tmp_path: Path) -> None:
    path = tmp_path / "run.h264"
    path.write_bytes(b"".join(f.data for f in run["frames"]))

    with av.open(str(path)) as container:
        pictures = [fr.to_ndarray(format="gray") for fr in container.decode(video=0)]
    assert len(pictures) == 90
    assert all(p.shape == (360, 640) for p in pictures)

    assert shutil.which("ffprobe"), "ffprobe missing: make test installs it"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=30,
    )
    assert probe.stderr == ""
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (640, 360)
    assert int(stream["nb_read_frames"]) == 90


def test_each_gop_decodes_on_its_own(run: dict) -> None:
    frames = run["frames"]
    assert len(decode_annexb(b"".join(f.data for f in frames[30:]))) == 60
    assert len(decode_annexb(b"".join(f.data for f in frames[30:60]))) == 30
    assert len(decode_annexb(frames[60].data)) == 1


def test_pictures_move_and_carry_the_stamp(run: dict) -> None:
    pictures = decode_annexb(b"".join(f.data for f in run["frames"]))
    assert len(pictures) == 90
    for a, b in zip(pictures, pictures[1:]):
        assert np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))) > 1.0
    for p in pictures[::10]:
        assert p[STAMP].mean() > 245  # the white box survived the encoder
        assert p.mean() < 200  # and the rest of the picture is not white


def test_stopped_fault_delivers_nothing_until_recovered() -> None:
    clock = VirtualClock()
    cam = SimCamera(CONFIG, clock)
    out = Collect()
    cam.start(out)
    clock.advance_to(0.5)
    cam.tick(clock.now)
    assert cam.frames_delivered == 16
    cam.fail("stopped")
    clock.advance_to(1.5)
    cam.tick(clock.now)
    assert cam.frames_delivered == 16
    cam.recover()
    clock.advance_to(2.5)
    cam.tick(clock.now)
    cam.stop()
    resumed = out.frames[16:]
    assert resumed[0].pts == 46  # the stalled second is a gap, not a delay
    assert [f.pts for f in resumed if f.keyframe] == [60]  # cadence held across the stall
    assert len(decode_annexb(b"".join(f.data for f in out.frames))) == len(out.frames)


def test_garbage_fault_is_undecodable_then_recovers() -> None:
    clock = VirtualClock()
    cam = SimCamera(CONFIG, clock)
    out = Collect()
    cam.start(out)
    cam.fail("garbage")
    clock.advance_to(1.0 - 1 / 30)
    cam.tick(clock.now)
    garbage = out.frames[:]
    assert len(garbage) == 30
    assert not any(f.keyframe for f in garbage)
    assert [f.pts for f in garbage] == list(range(30))
    assert decode_annexb(b"".join(f.data for f in garbage)) == []
    cam.recover()
    clock.advance_to(2.0 - 1 / 30)
    cam.tick(clock.now)
    cam.stop()
    good = out.frames[30:]
    assert good[0].keyframe and good[0].pts == 30
    assert len(decode_annexb(b"".join(f.data for f in good))) == 30


def test_still_is_a_stamped_jpeg() -> None:
    clock = VirtualClock(12.5)
    cam = SimCamera(CONFIG, clock)
    seen: list[int] = []

    def stamp(buf: np.ndarray, timestamp_us: int) -> None:
        assert buf.shape == (720 * 3 // 2, 1280)
        buf[STAMP] = 255
        seen.append(timestamp_us)

    still = cam.capture_still(pre_callback=stamp)
    assert (still.width, still.height, still.timestamp_us) == (1280, 720, 12_500_000)
    assert seen == [12_500_000]
    assert still.jpeg[:2] == b"\xff\xd8" and still.jpeg[-2:] == b"\xff\xd9"
    ctx = av.CodecContext.create("mjpeg", "r")
    pictures = [fr for pkt in ctx.parse(still.jpeg) + ctx.parse(None) for fr in ctx.decode(pkt)]
    pictures += list(ctx.decode(None))
    assert len(pictures) == 1
    assert (pictures[0].width, pictures[0].height) == (1280, 720)
    assert pictures[0].to_ndarray(format="gray")[STAMP].mean() > 245


def test_scene_is_cheap_and_deterministic() -> None:
    scene = Scene(seed=3)
    a, b = scene.new_buffer(640, 360), scene.new_buffer(640, 360)
    scene.render(4.2, a)
    Scene(seed=3).render(4.2, b)
    assert np.array_equal(a, b)
    scene.render(4.2 + 1 / 30, b)
    assert not np.array_equal(a, b)
