"""The recording path end to end (Art. 8, 10, 11): a simulated shift, checked from outside.

ffprobe reads what was written; PyAV decodes frames to look at the stamp; the GNSS track
in the metadata is compared with the scenario's route; segment files are cut at random
points as a power cut would leave them.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import export_plain
from firmware_py.evidence import audit
from firmware_py.recording import metadata
from simulator.harness import scenario as sc
from simulator.gnss import Route
from bodycam.simulation import simulation
from simulator.scene import Scene

FPS = 15
PRE_EVENT = 10
PRESS_AT = 25.0


@pytest.fixture(scope="module")
def shift(tmp_path_factory):
    out = tmp_path_factory.mktemp("shift")
    data = {
        "scenario": {"name": "recording", "duration": "60s", "start": "2026-11-29T09:00:00+08:00"},
        "config": {"video": {"width": 640, "height": 360, "fps": FPS},
                   "recording": {"segment_seconds": 10, "pre_event_seconds": PRE_EVENT},
                   "device": {"officer": "OFF-0417"}},
        "gnss": {"time_to_first_fix": "3s"},
        "route": {"speed_mps": 1.4, "waypoints": [[33.8683, 113.0542], [33.8700, 113.0560]]},
        "event": [{"at": PRESS_AT, "action": "press", "button": "record"},
                  {"at": 31, "action": "press", "button": "photo"},
                  {"at": 33, "action": "press", "button": "marker"},
                  {"at": 35, "action": "long_press", "button": "marker"},
                  {"at": 55, "action": "press", "button": "record"}],
    }
    scenario = sc.parse(data, "recording.toml")
    simulation(scenario, out).run()
    entries = audit.read(out / "device" / "audit.jsonl")
    segments = sorted(export_plain(out).glob("*/*.ts"))
    return scenario, out, entries, segments


def ffprobe_packets(path: Path, stream: str) -> list[dict]:
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                           "packet=pts_time,duration_time,flags,pos,size", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    assert proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)["packets"]


@pytest.mark.req("R8.1", "R8.2")
def test_segments_are_continuous_and_start_before_the_press(shift):
    scenario, out, entries, segments = shift
    started = next(e for e in entries if e["kind"] == "recording_started")["fields"]
    stopped = next(e for e in entries if e["kind"] == "recording_stopped")["fields"]
    assert len(segments) == stopped["segments"] >= 3
    frame = 1 / FPS
    all_pts: list[float] = []
    for path in segments:
        packets = ffprobe_packets(path, "v:0")
        assert packets[0]["flags"].startswith("K")  # each file starts on a keyframe
        pts = [float(p["pts_time"]) for p in packets]
        if all_pts:  # no gap and no overlap larger than one frame at the cut
            assert abs(pts[0] - all_pts[-1] - frame) < 0.002
        all_pts += pts
    steps = np.diff(all_pts)
    assert np.allclose(steps, frame, atol=0.002)  # nothing missing or repeated anywhere
    assert len(all_pts) == stopped["frames"]
    # The first frame lies at least (buffer length - one keyframe interval) before the press.
    assert started["first_frame_age_s"] >= PRE_EVENT - 1.0
    assert started["pre_event_s"] <= PRE_EVENT + 0.01
    # Audio is there, AAC, and runs on across files too.
    audio_pts = []
    for path in segments:
        audio_pts += [float(p["pts_time"]) for p in ffprobe_packets(path, "a:0")]
    gaps = np.diff(audio_pts)
    assert len(audio_pts) > 100 and gaps.max() < 0.065 + 0.001


def first_stamped_frame(path: Path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            return frame.to_ndarray(format="yuv420p"), float(frame.pts * stream.time_base)


@pytest.mark.req("R10.1")
def test_stamp_is_burned_into_the_picture(shift):
    scenario, out, entries, segments = shift
    header = metadata.read(segments[1].with_suffix(".meta.jsonl"))[0]
    picture, pts_s = first_stamped_frame(segments[1])
    # File pts = 0.7 s muxer offset + time since the recording's origin.
    capture_t = header["recording_origin_us"] / 1e6 + pts_s - 0.7
    clean = Scene(seed=0).new_buffer(640, 360)
    Scene(seed=0).render(capture_t, clean)
    y_stamped, y_clean = picture[:360].astype(int), clean[:360].astype(int)
    corner = (slice(0, 70), slice(0, 300))  # top-left stamp, three lines
    rest = (slice(120, 360), slice(0, 640))
    assert np.abs(y_stamped[corner] - y_clean[corner]).mean() > 15
    assert (y_stamped[corner] >= 220).sum() > 500  # white text
    assert np.abs(y_stamped[rest] - y_clean[rest]).mean() < 4  # the scene itself untouched


@pytest.mark.req("R11.1", "R11.2", "R16.1")
def test_photo_is_stamped_evidence_with_metadata(shift):
    scenario, out, entries, segments = shift
    photo = next(e for e in entries if e["kind"] == "photo")["fields"]
    jpg = next(export_plain(out).glob(f"*/*{photo['file_number']:06d}*.jpg"))
    meta = json.loads(jpg.with_suffix(".json").read_text())
    assert meta["officer"] == "OFF-0417" and meta["gnss"]["valid"] is True
    assert (meta["width"], meta["height"]) == (1280, 720)
    with av.open(str(jpg)) as container:
        still = next(container.decode(video=0)).to_ndarray(format="gray")
    assert (still[0:100, 0:500] >= 220).sum() > 1000  # stamp at full resolution
    # The segment being written when it was taken lists it, with the markers.
    records = [r for s in segments for r in metadata.read(s.with_suffix(".meta.jsonl"))]
    assert any(r["kind"] == "photo" and r["file"] == jpg.name + ".bce" for r in records)
    markers = [r for r in records if r["kind"] == "marker"]
    assert [m["incident"] for m in markers] == [False, True]


@pytest.mark.req("R10.2")
def test_gnss_track_follows_the_route(shift):
    scenario, out, entries, segments = shift
    route = Route([(p.latitude, p.longitude) for p in scenario.route], speed_mps=scenario.speed_mps)
    for path in segments:
        records = metadata.read(path.with_suffix(".meta.jsonl"))
        header, end = records[0], records[-1]
        assert header["kind"] == "segment" and end["kind"] == "end"
        fixes = [r for r in records if r["kind"] == "gnss"]
        duration = end["end"]["monotonic"] - header["start"]["monotonic"]
        assert len(fixes) >= math.floor(duration) - 1  # at least 1 Hz
        for fix in fixes:
            t = datetime.fromisoformat(fix["gnss_time"]).timestamp() - scenario.start_utc
            lat, lon, _, _ = route.position_at(t)
            north = (fix["lat"] - lat) * 111_320
            east = (fix["lon"] - lon) * 111_320 * math.cos(math.radians(lat))
            assert math.hypot(north, east) < 1.0  # NMEA carries ~2 cm; the receiver is exact
            assert header["start"]["monotonic"] - 1 <= fix["time"]["monotonic"] <= end["end"]["monotonic"] + 1


def test_segment_cut_anywhere_decodes_to_within_a_second_of_the_cut(shift, tmp_path):
    scenario, out, entries, segments = shift
    path = segments[1]
    packets = ffprobe_packets(path, "v:0")
    data = path.read_bytes()
    rng = random.Random(7)
    for cut in sorted(rng.randrange(len(data) // 10, len(data)) for _ in range(12)):
        written = [float(p["pts_time"]) for p in packets if int(p["pos"]) + int(p["size"]) <= cut]
        if not written:
            continue
        truncated = tmp_path / f"cut-{cut}.ts"
        truncated.write_bytes(data[:cut])
        decoded = []
        try:
            with av.open(str(truncated)) as container:
                stream = container.streams.video[0]
                for frame in container.decode(stream):
                    decoded.append(float(frame.pts * stream.time_base))
        except av.error.FFmpegError:
            pass  # a player stops at the torn end; what it showed before counts
        assert decoded and decoded[-1] >= written[-1] - 1.0, (cut, written[-1], decoded[-1:])


@pytest.mark.req("R5.1")
def test_evidence_is_read_only_and_named_by_device_activity_sequence_time(shift):
    scenario, out, entries, segments = shift
    stored = sorted((out / "device" / "evidence").glob("*/*.ts.bce"))
    assert [p.name for p in stored] == [p.name + ".bce" for p in segments]
    numbers = []
    for path in stored:
        device, activity, number, stamp = path.name.split(".")[0].split("_")
        assert device == "BC-0001" and activity == path.parent.name
        numbers.append(int(number))
        assert path.stat().st_mode & 0o222 == 0  # read-only once closed (R5.1)
    assert numbers == sorted(numbers)


@pytest.mark.req("R8.1")
def test_pre_event_audio_when_configured(tmp_path):
    data = {"scenario": {"name": "audio", "duration": "20s"},
            "config": {"video": {"width": 320, "height": 180, "fps": FPS},
                       "recording": {"pre_event_seconds": 8, "pre_event_audio": True}},
            "event": [{"at": 12, "action": "press", "button": "record"},
                      {"at": 18, "action": "press", "button": "record"}]}
    simulation(sc.parse(data, "audio.toml"), tmp_path).run()
    segments = sorted(export_plain(tmp_path).glob("*/*.ts"))
    assert len(segments) == 1  # no separate video-only file
    video = ffprobe_packets(segments[0], "v:0")
    audio = ffprobe_packets(segments[0], "a:0")
    first_video, first_audio = float(video[0]["pts_time"]), float(audio[0]["pts_time"])
    assert abs(first_audio - first_video) < 0.2  # sound from before the press, too
    assert float(video[-1]["pts_time"]) - first_video > 12


@pytest.mark.req("R8.1")
def test_without_pre_event_audio_the_buffered_part_is_a_video_only_file(shift):
    scenario, out, entries, segments = shift
    header = metadata.read(segments[0].with_suffix(".meta.jsonl"))[0]
    assert header["video_only"] is True and header["audio"] is None
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                           "-of", "csv=p=0", str(segments[0])], capture_output=True, text=True)
    assert set(proc.stdout.split()) == {"video"}
    second = metadata.read(segments[1].with_suffix(".meta.jsonl"))[0]
    assert second["video_only"] is False
    pressed = second["pressed_at"]["monotonic"]
    assert 0 <= pressed - second["start"]["monotonic"] <= 1.0 + 0.5  # within a keyframe interval


@pytest.mark.req("R11.3")
def test_resolution_and_bitrate_come_from_the_configuration(tmp_path):
    """Two recorders, one configuration apart: what ffprobe reads in their segments is the
    configured picture size, and the video bitrate follows the configured one (the
    simulator's scene has enough detail for the encoder to use what it is given)."""
    measured = {}
    for width, height, bitrate in ((320, 180, 250_000), (640, 360, 1_200_000)):
        out = tmp_path / f"{width}x{height}"
        data = {"scenario": {"name": "sizes", "duration": "30s"},
                "config": {"video": {"width": width, "height": height, "fps": FPS,
                                     "bitrate": bitrate},
                           "recording": {"segment_seconds": 10, "pre_event_seconds": 0}},
                "event": [{"at": 2, "action": "press", "button": "record"},
                          {"at": 28, "action": "press", "button": "record"}]}
        simulation(sc.parse(data, "sizes.toml"), out).run()
        segments = sorted(export_plain(out).glob("*/*.ts"))
        assert len(segments) >= 2
        for path in segments:
            proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0",
                                   "-show_entries", "stream=width,height", "-of", "json",
                                   str(path)], capture_output=True, text=True, check=True)
            stream = json.loads(proc.stdout)["streams"][0]
            assert (stream["width"], stream["height"]) == (width, height)
        whole = segments[0]  # a full segment: 10 s of video at the configured rate
        packets = ffprobe_packets(whole, "v:0")
        seconds = float(packets[-1]["pts_time"]) - float(packets[0]["pts_time"]) + 1 / FPS
        measured[bitrate] = 8 * sum(int(p["size"]) for p in packets) / seconds
    for bitrate, bits_per_second in measured.items():
        assert 0.5 * bitrate < bits_per_second < 1.6 * bitrate, measured
