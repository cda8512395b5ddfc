"""The Pi's camera backend on the real picamera2 and libcamera: a pi recorder records
through ``PiCamera`` on libcamera's software virtual camera (in the Debian 13 chroot of
``scripts/virtual-camera.sh``, driven by ``tests/camera_recording.py``; the harness's
quirks are in ``tests/virtual_camera.py``). What it leaves must be what a recorder's
evidence is: sealed segments that verify, decode in ffprobe with timestamps running on
across segments, the pre-event buffer in front of the press, the stamp in the picture,
and a photo taken mid-recording that leaves the video running.

It runs in real time (about 13 s of recording) on the wall clock, as a camera does.
"""

from __future__ import annotations

import glob
import json
import subprocess

import av
import numpy as np
import pytest

from bodycam.cli import main as bodycam
from dock.enrollment import enroll_device
from firmware_py.evidence import audit
from tests.virtual_camera import run_in_chroot

# Measures real time (latencies, offsets, watchdogs): run apart, not beside other workers.
pytestmark = pytest.mark.realtime

UNIT = "Baofeng County HRSS Labour Inspection Brigade"
FPS = 30


def ffprobe_packets(path: str) -> list[tuple[float, bool]]:
    """(pts in s, keyframe) of every video packet, read by ffprobe (an independent check)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v",
                          "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", path],
                         capture_output=True, text=True, check=True).stdout
    packets = []
    for line in out.split():
        pts, flags = line.split(",")[:2]
        packets.append((float(pts), "K" in flags))
    return packets


def gray_frames(path: str) -> list[np.ndarray]:
    with av.open(path) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("picamera")
    enroll_device(out / "device", out / "dock", "BC-0001", UNIT)
    result = run_in_chroot("tests/camera_recording.py", out, "/out", timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    return out, summary


@pytest.mark.req("R8.1", "R8.2", "R10.1", "R11.1")
def test_picamera2_on_the_virtual_camera_records_sealed_continuous_stamped_segments(recorded):
    out, summary = recorded
    entries = audit.scan(out / "device" / "audit.jsonl")[0]
    kinds = [e["kind"] for e in entries]
    assert "camera_stalled" not in kinds and summary["restarts"] == 0
    assert not [e for e in entries if e["kind"] == "hardware_error"
                and e["fields"]["part"] == "camera"], "the camera backend failed"

    # Sealed, and every seal checks out (signatures, chain, decrypted hashes).
    assert bodycam(["verify", str(out / "device" / "evidence"), "--trust", str(out / "dock"),
                    "--key", str(out / "dock")]) == 0
    export = out / "export"
    assert bodycam(["export", str(out / "device" / "evidence"), "--trust", str(out / "dock"),
                    "--key", str(out / "dock"), "--out", str(export)]) == 0
    segments = sorted(glob.glob(str(export / "*" / "*.ts")))
    assert len(segments) == 2, segments  # the pre-event part on its own, then the rest

    # ffprobe reads H.264 at the video size, one frame interval after another, across files.
    packets = [p for path in segments for p in ffprobe_packets(path)]
    pts = np.array([p for p, _ in packets])
    assert np.allclose(np.diff(pts), 1 / FPS, atol=2e-3), np.diff(pts).max()
    assert all(ffprobe_packets(path)[0][1] for path in segments), "a segment not on a keyframe"
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "stream=codec_name,width,height", "-of", "csv=p=0", segments[1]],
                           capture_output=True, text=True, check=True).stdout.split()
    assert set(probe) == {"h264,640,360"}, probe  # (listed once per program and stream)

    # The pre-event buffer: the footage starts about three seconds before the press.
    presses = [e for e in entries if e["kind"] == "button" and e["fields"]["button"] == "record"]
    pressed, stopped = (p["time"]["monotonic"] for p in presses[:2])
    started = next(e for e in entries if e["kind"] == "recording_started")["fields"]
    assert 2.0 <= started["first_frame_age_s"] <= 3.5, started
    video_s = pts[-1] - pts[0] + 1 / FPS
    assert video_s >= stopped - pressed + 2.0, (video_s, stopped - pressed)

    # The stamp is in the picture: its text with a dark halo over the bright yellow bar of
    # the virtual camera's test pattern (and nothing dark below it), and REC after the
    # time once recording (the pre-event frames have none).
    before, during = gray_frames(segments[0])[0], gray_frames(segments[1])[-1]
    for frame in (before, during):
        assert (frame[:80, :38] < 60).mean() > 0.05, "no stamp text in the top left"
        assert (frame[280:340, :38] < 60).mean() == 0.0
    rec_area = (slice(0, 25), slice(285, 355))
    assert (before[rec_area] < 60).mean() == 0.0 and (during[rec_area] < 60).mean() > 0.1


@pytest.mark.req("R11.1")
def test_a_photo_mid_recording_leaves_the_video_running(recorded):
    out, summary = recorded
    entries = audit.scan(out / "device" / "audit.jsonl")[0]
    photo = next(e for e in entries if e["kind"] == "photo")
    taken = photo["time"]["monotonic"]
    arrivals = np.array([a[0] for a in summary["arrivals"]])
    captures = np.array([a[1] for a in summary["arrivals"]])
    # Capture times run on a frame interval apart through the photo: no frame is lost.
    assert np.allclose(np.diff(captures), 1e6 / FPS, atol=2)
    # The gap it causes: the longest wait for a frame within a second of the photo.
    near = (arrivals > taken - 1.0) & (arrivals < taken + 1.0)
    gaps = np.diff(arrivals[near])
    gap_ms, usual_ms = gaps.max() * 1000, float(np.median(np.diff(arrivals))) * 1000
    print(f"photo gap: longest wait for a frame {gap_ms:.0f} ms around the photo, "
          f"{usual_ms:.0f} ms usually")
    assert gap_ms < 500, f"the video waited {gap_ms:.0f} ms for the photo"

    jpeg = sorted(glob.glob(str(out / "export" / "*" / "*.jpg")))
    assert len(jpeg) == 1
    with av.open(jpeg[0]) as container:
        still = next(container.decode(video=0)).to_ndarray(format="gray")
    assert still.shape == (720, 1280)  # the main stream's full size, not the video's
    assert (still[:160, :76] < 60).mean() > 0.05, "no stamp on the photo"
