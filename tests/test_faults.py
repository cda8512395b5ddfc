"""Device faults during a recording (issue 7): what the recorder keeps, what it loses, and
what it writes down — measured from the evidence files, the audit log and the metadata.

Each test runs a short shift on the simulated recorder, injects one fault while recording
(``fault`` events of the scenario), then exports the device's evidence as the agency
would (which verifies every seal: a segment that was not closed and sealed cleanly fails
the export) and measures the media with ffprobe: when the last good frame before the
fault was captured, when the first one after it, whether sound went on. The bounds
asserted are the figures of the table "When things go wrong" in docs/how-it-works.md.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from conftest import export_plain
from device.clock import TimeSource, Timestamp
from device.gnss import GnssFix
from firmware_py.evidence import audit
from firmware_py.recording import metadata
from firmware_py.config import Config, load
from firmware_py.recording.segment import PTS_CLOCK_HZ, PTS_ORIGIN
from firmware_py.recording.stamp import Stamper, stamp_lines
from simulator.harness import scenario as sc
from bodycam.simulation import simulation
from simulator.scene import Scene

FPS = 15
FRAME_S = 1 / FPS
KEYFRAME_S = 1.0  # video.keyframe_interval_s
AAC_FRAME_S = 1024 / 16_000  # one AAC packet at the default 16 kHz
HEARD_RMS = 1e-3  # the simulated room's hiss is about 2.7e-3 (-51 dBFS); silence decodes to ~0
FAST = {"video": {"width": 320, "height": 180, "fps": FPS},
        "recording": {"segment_seconds": 10, "pre_event_seconds": 2}}
PRESS_AT = 3.0


# --- running a shift and reading what it left ----------------------------------------------


@dataclass
class Segment:
    """One exported segment: its metadata lines and the capture times of its packets."""

    path: Path
    records: list[dict[str, Any]]
    video: list[float]  # capture time (device monotonic s) of every video packet
    audio: list[float]  # ... and of every audio packet

    @property
    def header(self) -> dict[str, Any]:
        return self.records[0]

    @property
    def end(self) -> dict[str, Any]:
        return self.records[-1]

    def notes(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind]


@dataclass
class Shift:
    out: Path
    entries: list[dict[str, Any]]  # the audit log, its hash chain checked
    segments: list[Segment]  # every segment of the device, in sequence order
    powered_off: bool

    def logged(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == kind]

    def at(self, kind: str, n: int = 0) -> float:
        """Monotonic time of the ``n``-th audit entry of ``kind``."""
        return self.logged(kind)[n]["time"]["monotonic"]

    @property
    def video(self) -> list[float]:
        return [t for s in self.segments for t in s.video]

    @property
    def audio(self) -> list[float]:
        return [t for s in self.segments for t in s.audio]

    def notes(self, kind: str) -> list[dict[str, Any]]:
        return [r for s in self.segments for r in s.notes(kind)]


def policy_with(config: Config, **sections: dict[str, Any]) -> Config:
    """``config`` with some policy values replaced, e.g. ``stops={"storage_reserve_mb": 2}``."""
    policy = config.policy
    for name, values in sections.items():
        policy = dataclasses.replace(policy, **{name: dataclasses.replace(getattr(policy, name), **values)})
    return dataclasses.replace(config, policy=policy)


def run_shift(tmp_path: Path, events: list[dict[str, Any]], duration: float,
              policy: dict[str, dict[str, Any]] | None = None, press_at: float = PRESS_AT,
              **tables: Any) -> Shift:
    """Run a shift that starts recording at ``press_at`` with ``events``; read what it left."""
    config_overrides = {**FAST, **tables.pop("config", {})}
    data = {"scenario": {"name": "fault", "duration": duration,
                         "start": "2026-11-29T09:00:00+08:00"},
            "config": config_overrides,
            "event": [{"at": press_at, "action": "press", "button": "record"}] + events, **tables}
    scenario = sc.parse(data, "fault.toml")
    config = load(overrides=scenario.config)
    if policy:
        config = policy_with(config, **policy)
    result = simulation(scenario, tmp_path, config).run()
    entries = audit.read(tmp_path / "device" / "audit.jsonl")
    plain = export_plain(tmp_path)  # verifies every seal first: refuses anything unsealed
    segments = [read_segment(p) for p in sorted(plain.glob("*/*.ts"))]
    return Shift(tmp_path, entries, segments, result.powered_off)


def read_segment(path: Path) -> Segment:
    records = metadata.read(path.with_name(path.name.replace(".ts", ".meta.jsonl")))
    origin = records[0]["recording_origin_us"] / 1e6
    return Segment(path, records, packet_times(path, "v:0", origin),
                   packet_times(path, "a:0", origin))


def packet_times(path: Path, stream: str, origin_s: float) -> list[float]:
    """Capture times of a stream's packets, by ffprobe: file PTS = 0.7 s + (capture − origin)."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                           "packet=pts", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    assert proc.stderr == "", f"{path.name}: {proc.stderr}"  # the file reads without error
    packets = json.loads(proc.stdout).get("packets", [])
    return [origin_s + (int(p["pts"]) - PTS_ORIGIN) / PTS_CLOCK_HZ for p in packets]


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes from the segment, failing on any decoder error."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))


def decode_errors(path: Path) -> str:
    """What ffmpeg reports decoding the whole segment, video and sound ("" when clean)."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True)
    return proc.stderr if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr}"


def sound_levels(segments: list[Segment]) -> list[tuple[float, float]]:
    """(capture time, RMS in full scale) of every decoded AAC frame, in time order."""
    levels = []
    for segment in segments:
        origin = segment.header["recording_origin_us"] / 1e6
        with av.open(str(segment.path)) as container:
            if not container.streams.audio:
                continue
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                t = origin + float(frame.pts * stream.time_base) - PTS_ORIGIN / PTS_CLOCK_HZ
                samples = frame.to_ndarray().astype(np.float64)
                levels.append((t, float(np.sqrt(np.mean(samples * samples)))))
    return sorted(levels)


def sound_lost(levels: list[tuple[float, float]], fault_at: float) -> tuple[float, float]:
    """(last moment with sound before ``fault_at``, first after it): where the ambient hiss
    (about -51 dBFS) is neither heard nor decoded. Digital silence and missing packets
    both count as lost."""
    heard = [t for t, rms in levels if rms > HEARD_RMS]
    before = max(t + AAC_FRAME_S for t in heard if t < fault_at)
    after = min(t for t in heard if t >= fault_at)
    return before, after


def gaps(times: list[float], step: float) -> list[tuple[float, float]]:
    """(last time before, first time after) of every break longer than 1.5 steps."""
    return [(a, b) for a, b in zip(times, times[1:]) if b - a > 1.5 * step]


def fields(entry: dict[str, Any]) -> dict[str, Any]:
    return entry["fields"]


def figures(fault: str, **measured: float) -> None:
    """Print what was measured (``pytest -s tests/test_faults.py`` shows the figures of docs/how-it-works.md)."""
    print(f"\n{fault}: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()))


# --- camera -------------------------------------------------------------------------------


def picture_gap_only(shift, fault_at: float, back_at: float) -> tuple[float, float]:
    """The recording ran on: one gap in the picture, from the last frame before the fault
    to the first after recovery, and none in the sound. Returns the gap's two ends."""
    assert [fields(e)["reason"] for e in shift.logged("recording_stopped")] == ["stop"]
    ((last_good, first_back),) = gaps(shift.video, FRAME_S)
    assert fault_at - 2 * FRAME_S <= last_good <= fault_at
    # Back at the first keyframe after recovery (a frame before it may refer to one in the
    # previous file): at most one keyframe interval more.
    assert back_at <= first_back <= back_at + KEYFRAME_S + FRAME_S
    assert first_back - last_good <= back_at - fault_at + KEYFRAME_S + 0.2
    assert gaps(shift.audio, AAC_FRAME_S) == []
    return last_good, first_back


@pytest.mark.req("R12.2")
def test_camera_stall_loses_only_the_picture_and_sound_records_on(tmp_path):
    """The camera stops delivering for 6 s: the recording goes on with sound, the gap in the
    picture is an automatic interruption (Art. 12 (1)), and video joins again by itself."""
    shift = run_shift(tmp_path, [{"at": 10, "action": "fault", "kind": "camera_stopped"},
                                 {"at": 16, "action": "recover", "part": "camera"},
                                 {"at": 22, "action": "press", "button": "record"}], 24)
    last_good, first_back = picture_gap_only(shift, fault_at=10, back_at=16)
    assert shift.audio[0] <= PRESS_AT + 0.5 and shift.audio[-1] >= 22 - 0.5
    # Logged and stamped into the metadata of the segment being written.
    stalled = fields(shift.logged("camera_stalled")[0])
    assert stalled["recording"] is True
    assert shift.at("camera_stalled") == pytest.approx(last_good + 3, abs=2 * FRAME_S)
    assert shift.at("camera_resumed") == pytest.approx(first_back, abs=2 * FRAME_S)
    assert len(shift.notes("camera_stalled")) == len(shift.notes("camera_resumed")) == 1
    gap = [fields(e) for e in shift.logged("interruption_closed") if fields(e)["automatic"]]
    assert len(gap) == 1 and gap[0]["closed_by"] == "resumed_by_device"
    assert gap[0]["off_s"] == pytest.approx(first_back - last_good, abs=2 * FRAME_S)
    figures("camera stall 10-16 s", picture_gap_s=first_back - last_good,
            picture_lost_after_recovery_s=first_back - 16, detected_after_s=shift.at("camera_stalled") - last_good,
            sound_gap_max_s=max(np.diff(shift.audio)))
    for segment in shift.segments:
        assert decoded_frames(segment.path) == len(segment.video)
        assert decode_errors(segment.path) == ""


def test_camera_dead_before_the_press_still_records_sound_from_the_press(tmp_path):
    """The camera stops before the officer presses record: the recording starts all the
    same, with sound in segments of their own, and the picture joins when it is back."""
    shift = run_shift(tmp_path, [{"at": 2.5, "action": "fault", "kind": "camera_stopped"},
                                 {"at": 25, "action": "recover", "part": "camera"},
                                 {"at": 30, "action": "press", "button": "record"}], 32,
                      press_at=10)
    assert fields(shift.logged("camera_stalled")[1]) == {"recording": True, "at_start": True}
    assert gaps(shift.audio, AAC_FRAME_S) == []
    assert 10 <= shift.audio[0] <= 10 + 0.5 and shift.audio[-1] >= 30
    # Sound alone is cut into segments of the configured length, as video is.
    assert max(s.end["end"]["monotonic"] - s.header["start"]["monotonic"] for s in shift.segments) <= 10 + 1
    assert 25 <= [t for t in shift.video if t > 10][0] <= 25 + KEYFRAME_S + FRAME_S
    for segment in shift.segments:
        assert decode_errors(segment.path) == ""


@pytest.mark.req("R12.2")
def test_camera_garbage_is_dropped_and_the_segment_stays_clean(tmp_path):
    """The camera hands over random bytes for 6 s: they are counted and dropped, never muxed;
    the segment decodes without one error; sound records on; the picture is back at the
    first keyframe after recovery, and the gap is an automatic interruption like a stall."""
    shift = run_shift(tmp_path, [{"at": 10, "action": "fault", "kind": "camera_garbage"},
                                 {"at": 16, "action": "recover", "part": "camera"},
                                 {"at": 22, "action": "press", "button": "record"}], 24)
    last_good, first_back = picture_gap_only(shift, fault_at=10, back_at=16)
    for segment in shift.segments:
        assert decoded_frames(segment.path) == len(segment.video)
        assert decode_errors(segment.path) == ""
    # Counted and logged (at most every 10 s), never taken for frames.
    garbage = [fields(e) for e in shift.logged("camera_garbage")]
    dropped = sum(g["count"] for g in garbage)
    assert dropped == pytest.approx(6 * FPS, abs=2) and all(g["ignored"] for g in garbage)
    assert shift.at("camera_garbage") == pytest.approx(10, abs=2 * FRAME_S)
    stalled = fields(shift.logged("camera_stalled")[0])
    assert stalled["invalid_frames"] == pytest.approx(3 * FPS, abs=2)
    gap = [fields(e) for e in shift.logged("interruption_closed") if fields(e)["automatic"]]
    assert len(gap) == 1 and "garbage" in gap[0]["detail"]
    assert gap[0]["off_s"] == pytest.approx(first_back - last_good, abs=2 * FRAME_S)
    figures("camera garbage 10-16 s", picture_gap_s=first_back - last_good,
            picture_lost_after_recovery_s=first_back - 16, frames_dropped=dropped,
            sound_gap_max_s=max(np.diff(shift.audio)))
    assert shift.notes("camera_garbage") and shift.notes("camera_stalled")


# --- microphone ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stopped", "silent"])
def test_microphone_fault_loses_only_the_sound_and_is_logged_both_ways(tmp_path, kind):
    """The microphone delivers nothing, or digital silence, for 6 s: video records on
    untouched; the fault is logged and stamped after ``microphone_fault_s`` (2 s), and its
    end when sound returns. Only the sound of the outage is lost."""
    shift = run_shift(tmp_path, [{"at": 10, "action": "fault", "kind": f"microphone_{kind}"},
                                 {"at": 16, "action": "recover", "part": "microphone"},
                                 {"at": 22, "action": "press", "button": "record"}], 24)
    assert [fields(e)["reason"] for e in shift.logged("recording_stopped")] == ["stop"]
    assert not shift.logged("interruption_closed") or not any(
        fields(e)["automatic"] for e in shift.logged("interruption_closed"))
    # Picture: every frame from the start of the pre-event buffer to the stop.
    assert gaps(shift.video, FRAME_S) == []
    assert shift.video[-1] - shift.video[0] == pytest.approx(len(shift.video) / FPS - FRAME_S, abs=0.01)
    assert shift.video[-1] >= 22 - 2 * FRAME_S
    # Sound: lost from the fault to the recovery, and at most an AAC frame or so more.
    before, after = sound_lost(sound_levels(shift.segments), 10)
    figures(f"microphone {kind} 10-16 s", sound_lost_s=after - before,
            sound_lost_before_fault_s=10 - before, sound_lost_after_recovery_s=after - 16,
            picture_frames=len(shift.video))
    assert 10 - 0.3 <= before <= 10 + AAC_FRAME_S
    assert 16 - AAC_FRAME_S <= after <= 16 + 0.2
    # A stopped microphone leaves a gap in the audio stream (the encoder's silence filler
    # for it comes too late to sit beside its video and is dropped); a silent one does not.
    # Either way no sound packet lies further before the video beside it than the 0.7 s
    # the muxer's clock reference allows.
    audio_gaps = gaps(shift.audio, AAC_FRAME_S)
    if kind == "stopped":
        ((gap_from, gap_to),) = audio_gaps
        assert gap_from <= 10 and 16 - 0.7 - AAC_FRAME_S <= gap_to <= 16
    else:
        assert audio_gaps == []
    for segment in shift.segments:
        if segment.video and segment.audio:
            assert segment.audio[0] >= segment.video[0] - 0.7
    # Logged both ways, and stamped into the metadata of the segment being written.
    failed = fields(shift.logged("microphone_failed")[0])
    assert failed["fault"] == kind and failed["recording"] is True
    assert shift.at("microphone_failed") == pytest.approx(10 + 2, abs=0.15)
    recovered = fields(shift.logged("microphone_recovered")[0])
    assert recovered["fault"] == kind and recovered["lasted_s"] == pytest.approx(6, abs=0.15)
    assert shift.at("microphone_recovered") == pytest.approx(16, abs=0.15)
    assert len(shift.notes("microphone_failed")) == len(shift.notes("microphone_recovered")) == 1
    for segment in shift.segments:
        assert decode_errors(segment.path) == ""


# --- GNSS ---------------------------------------------------------------------------------


def picture_at(segment: Segment, t: float) -> np.ndarray:
    """The decoded picture (I420) of the frame captured at ``t``."""
    origin = segment.header["recording_origin_us"] / 1e6
    with av.open(str(segment.path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            captured = origin + float(frame.pts * stream.time_base) - PTS_ORIGIN / PTS_CLOCK_HZ
            if abs(captured - t) < FRAME_S / 2:
                return frame.to_ndarray(format="yuv420p")
    raise AssertionError(f"no frame at {t} s in {segment.path.name}")


def stamp_mismatch(picture: np.ndarray, t: float, segment: Segment, lines: tuple[str, ...]) -> float:
    """Mean luma difference, over the stamp's corner, between the decoded picture and the
    scene at ``t`` stamped with ``lines``: small when those are the lines in the picture."""
    width, height = FAST["video"]["width"], FAST["video"]["height"]
    reference = Scene(seed=0).new_buffer(width, height)  # the simulated camera's scene
    Scene(seed=0).render(t, reference)
    stamper = Stamper(width, height)
    stamper.set_lines(lines)
    stamper.apply(reference)
    corner = (slice(0, height // 3), slice(0, width * 3 // 4))
    return float(np.abs(picture[:height][corner].astype(int) - reference[:height][corner].astype(int)).mean())


@pytest.mark.req("R10.1", "R10.2")
def test_gnss_loss_and_garbage_leave_the_recording_alone_and_are_on_record(tmp_path):
    """Under a bridge for 20 s, with nonsense on the NMEA line twice: recording is untouched;
    the stamp reads NO FIX with the age of the last fix; the metadata has the epochs
    without position, the loss with the last known position and its age, and the fix
    regained; the garbage is counted, logged and ignored."""
    shift = run_shift(tmp_path, [{"at": 8, "action": "fault", "kind": "gnss_lost", "duration": "20s"},
                                 {"at": 12, "action": "fault", "kind": "gnss_garbage"},
                                 {"at": 14, "action": "fault", "kind": "gnss_garbage"},
                                 {"at": 34, "action": "press", "button": "record"}], 36)
    assert [fields(e)["reason"] for e in shift.logged("recording_stopped")] == ["stop"]
    assert gaps(shift.video, FRAME_S) == [] and gaps(shift.audio, AAC_FRAME_S) == []
    # The track: fixes with a position until 8 s, epochs without one until 28 s, then fixes.
    track = shift.notes("gnss")
    last_fix = [r for r in track if r["valid"] and r["time"]["monotonic"] < 20][-1]
    lost_epochs = [r for r in track if 9 <= r["time"]["monotonic"] <= 27]
    assert 8 - 1.1 <= last_fix["time"]["monotonic"] <= 8
    assert len(lost_epochs) >= 17 and not any(r["valid"] or r["lat"] for r in lost_epochs)
    # Lost after gnss_lost_after_s (10 s), with the last known position and its age.
    lost = fields(shift.logged("gnss_lost")[0])
    assert shift.at("gnss_lost") == pytest.approx(last_fix["time"]["monotonic"] + 10, abs=1.1)
    assert (lost["last_lat"], lost["last_lon"]) == (last_fix["lat"], last_fix["lon"])
    assert lost["last_fix_age_s"] == pytest.approx(10, abs=1.1)
    assert shift.notes("gnss_lost")[0]["last_lat"] == last_fix["lat"]
    regained = shift.logged("gnss_fix")[1]
    # Regained with an epoch of the 28th or 29th second, delivered after its burst (up to
    # 0.5 s at 9600 baud with GSV) and the quiet gap that ends it.
    assert 28 <= regained["time"]["monotonic"] <= 30.0 and shift.notes("gnss_fix")
    # The stamp in the picture at 20.5 s: NO FIX, with the age of the last fix.
    t = 20.5
    segment = next(s for s in shift.segments if s.video and s.video[0] <= t <= s.video[-1])
    start = segment.header["start"]
    at = Timestamp(start["utc"] + t - start["monotonic"], start["utc_offset_s"], t, TimeSource.GNSS)
    fix = GnssFix(received_at=last_fix["time"]["monotonic"], valid=True,
                  latitude=last_fix["lat"], longitude=last_fix["lon"])
    age = t - fix.received_at
    picture = picture_at(segment, t)
    expected = stamp_lines(at, "BC-0001", "", fix, age, recording=True)
    assert expected[2] == f"NO FIX (last {int(age)} s ago)"
    shown = stamp_mismatch(picture, t, segment, expected)
    for other_age in (age - 3, age - 2, age - 1, age + 1, age + 2, age + 3):  # other ages read worse
        lines = stamp_lines(at, "BC-0001", "", fix, other_age, recording=True)
        assert shown < stamp_mismatch(picture, t, segment, lines) - 0.2
    position = stamp_lines(at, "BC-0001", "", fix, 0.0, recording=True)  # ... a position far worse
    assert shown < stamp_mismatch(picture, t, segment, position) - 5
    # Garbage: counted, logged (at most every 10 s) and ignored.
    garbage = [fields(e) for e in shift.logged("gnss_garbage")]
    assert sum(g["count"] for g in garbage) == 6 and all(g["ignored"] for g in garbage)
    figures("gnss lost 8-28 s", lost_logged_after_s=shift.at("gnss_lost") - last_fix["time"]["monotonic"],
            regained_logged_at_s=regained["time"]["monotonic"], epochs_without_position=len(lost_epochs),
            stamp_mismatch=shown, garbage_sentences=sum(g["count"] for g in garbage))
    assert shift.at("gnss_garbage") == pytest.approx(12, abs=0.5)
    assert shift.notes("gnss_garbage")


# --- wall clock ---------------------------------------------------------------------------


@pytest.mark.req("R8.2")
def test_wall_clock_jumps_leave_the_evidence_in_order_and_are_logged(tmp_path):
    """The wall clock steps back an hour, then forward half an hour, with no GNSS to correct
    it: segments stay in sequence, their media timestamps run on without a gap (they follow
    the monotonic clock), and each step is logged and stamped with its size."""
    shift = run_shift(tmp_path, [{"at": 10, "action": "fault", "kind": "clock_jump", "seconds": -3600},
                                 {"at": 20, "action": "fault", "kind": "clock_jump", "seconds": 1800},
                                 {"at": 30, "action": "press", "button": "record"}], 32,
                      gnss={"time_to_first_fix": "10m"})
    jumps = shift.logged("clock_jump")
    assert [fields(e)["jump_s"] for e in jumps] == [pytest.approx(-3600, abs=0.01),
                                                    pytest.approx(1800, abs=0.01)]
    assert [e["time"]["monotonic"] for e in jumps] == [pytest.approx(10, abs=2 * FRAME_S),
                                                       pytest.approx(20, abs=2 * FRAME_S)]
    assert not shift.logged("clock_corrected")  # nothing trusted to correct it from
    assert [n["jump_s"] for n in shift.notes("clock_jump")] == [fields(e)["jump_s"] for e in jumps]
    # The audit log and the segments keep monotonic order; file numbers run on.
    assert [e["time"]["monotonic"] for e in shift.entries] == sorted(e["time"]["monotonic"] for e in shift.entries)
    numbers = [s.header["file_number"] for s in shift.segments]
    assert len(numbers) >= 4 and numbers == sorted(numbers) == list(range(numbers[0], numbers[0] + len(numbers)))
    starts = [s.header["start"]["monotonic"] for s in shift.segments]
    assert starts == sorted(starts)
    # The wall clock really went back: a later segment carries an earlier UTC, in its name too.
    utc = [s.header["start"]["utc"] for s in shift.segments]
    assert any(b < a - 3000 for a, b in zip(utc, utc[1:]))
    # Media: one recording's video and sound run on across every file with no gap or overlap.
    assert gaps(shift.video, FRAME_S) == [] and gaps(shift.audio, AAC_FRAME_S) == []
    steps = np.diff(shift.video)
    assert np.allclose(steps, FRAME_S, atol=0.002)
    figures("clock jumps -3600 s, +1800 s", largest_frame_step_s=max(steps),
            largest_sound_step_s=max(np.diff(shift.audio)), segments=len(shift.segments))
    assert shift.video[0] <= PRESS_AT and shift.video[-1] >= 30 - 2 * FRAME_S


# --- battery ------------------------------------------------------------------------------


@pytest.mark.req("R12.2")
def test_battery_dying_under_load_warns_then_closes_the_segment_at_the_cutoff(tmp_path):
    """A small battery drains while recording: a warning at each threshold (15 and 8 %),
    then at the 3 % cut-off the segment is closed and sealed, the automatic interruption
    (Art. 12 (1)) logged, and the camera powered down. Nothing recorded is lost."""
    shift = run_shift(tmp_path, [], 45, battery={"start_percent": 16, "capacity_wh": 0.3})
    assert not shift.powered_off  # still alive, in power save, when the shift ends
    warnings = [fields(e) for e in shift.logged("battery_low")]
    assert [w["threshold"] for w in warnings] == [15.0, 8.0]
    assert all(w["percent"] < w["threshold"] for w in warnings)
    stop = shift.logged("recording_stopped")
    assert [fields(e)["reason"] for e in stop] == ["battery_cutoff"]
    cutoff_at = stop[0]["time"]["monotonic"]
    assert all(e["time"]["monotonic"] < cutoff_at for e in shift.logged("battery_low"))
    assert warnings[1]["recording_minutes_to_cutoff"] * 60 == pytest.approx(
        cutoff_at - shift.at("battery_low", 1), abs=6)  # the estimate the officer is given
    (interruption,) = [fields(e) for e in shift.logged("interruption")]
    assert (interruption["reason"], interruption["chosen_by"], interruption["automatic"]) == (
        "device", "device", True)
    assert interruption["detail"].startswith("battery at 3 %")
    assert shift.logged("power_save")
    # The last segment closed because of the cut-off, sealed (the export verified it),
    # and holds the picture and the sound up to the stop.
    last = shift.segments[-1]
    assert last.end["closed_because"] == "battery_cutoff"
    figures("battery cut-off", picture_lost_s=cutoff_at - last.video[-1],
            sound_lost_s=cutoff_at - last.audio[-1] - AAC_FRAME_S,
            first_warning_before_cutoff_s=cutoff_at - shift.at("battery_low"),
            second_warning_before_cutoff_s=cutoff_at - shift.at("battery_low", 1))
    assert cutoff_at - 2 * FRAME_S <= last.video[-1] <= cutoff_at + 0.001
    assert cutoff_at - 0.3 <= last.audio[-1] <= cutoff_at + 0.001
    assert gaps(shift.video, FRAME_S) == []
    assert decode_errors(last.path) == ""
    assert shift.notes("battery_low")


# --- storage ------------------------------------------------------------------------------

STORAGE_QUOTA_MB = 40
STORAGE_FILL_MB = 30  # leaves about 35 s of recording above the reserve
STORAGE_RESERVE_MB = 2


@pytest.mark.req("R12.2")
def test_storage_filling_up_warns_ahead_and_closes_the_segment_before_the_reserve(tmp_path):
    """Something else takes most of the card while recording: the officer is warned as the
    recording time left falls below each threshold, and the segment is closed and sealed
    while some seconds still fit above the reserve — no write ever meets a full card.
    Afterwards a start is refused until space returns."""
    shift = run_shift(tmp_path, [{"at": 6, "action": "fault", "kind": "storage_fill",
                                  "mb": STORAGE_FILL_MB},
                                 {"at": 44, "action": "press", "button": "record"}], 46,
                      policy={"stops": {"storage_reserve_mb": STORAGE_RESERVE_MB},
                              "warnings": {"storage_low_minutes": (0.5, 0.25)}},
                      storage={"quota_mb": STORAGE_QUOTA_MB})
    reserve = STORAGE_RESERVE_MB * 1e6
    stop = shift.logged("recording_stopped")
    assert [fields(e)["reason"] for e in stop] == ["storage_full"]
    stopped_at = stop[0]["time"]["monotonic"]
    # Warned at each threshold, in time: the first (30 s left) comes 20 s before the stop
    # (10 s left), less up to one storage check period (5 s) and the bitrate's wander.
    warnings = shift.logged("storage_low")
    assert [fields(e)["threshold"] for e in warnings] == [0.5, 0.25]
    assert all(fields(e)["minutes_left"] < fields(e)["threshold"] for e in warnings)
    assert shift.at("storage_low", 0) <= stopped_at - 12 and shift.at("storage_low", 1) < stopped_at
    # Stopped with space to spare above the reserve, and the reserve untouched at the end.
    full = fields(shift.logged("storage_full")[0])
    used = sum(p.stat().st_size for p in (tmp_path / "device" / "evidence").rglob("*") if p.is_file())
    last = shift.segments[-1]
    figures("storage filling", first_warning_before_stop_s=stopped_at - shift.at("storage_low"),
            second_warning_before_stop_s=stopped_at - shift.at("storage_low", 1),
            seconds_left_at_stop=full["seconds_left"], free_above_reserve_at_stop_mb=(full["free_bytes"] - reserve) / 1e6,
            free_above_reserve_at_end_mb=(STORAGE_QUOTA_MB * 1e6 - STORAGE_FILL_MB * 1e6 - used - reserve) / 1e6,
            picture_lost_s=stopped_at - last.video[-1])
    assert full["free_bytes"] > reserve and full["seconds_left"] < 10
    assert STORAGE_QUOTA_MB * 1e6 - STORAGE_FILL_MB * 1e6 - used > reserve
    assert not shift.logged("hardware_error")
    # The segment is complete, sealed (the export verified it), and decodes to the stop.
    assert last.end["closed_because"] == "storage_full"
    assert stopped_at - 2 * FRAME_S <= last.video[-1] <= stopped_at + 0.001
    assert gaps(shift.video, FRAME_S) == [] and decode_errors(last.path) == ""
    (interruption,) = [fields(e) for e in shift.logged("interruption")]
    assert interruption["automatic"] and interruption["detail"].startswith("storage full")
    assert shift.logged("record_refused")  # the press at 44 s
    assert len(shift.notes("storage_low")) == 2 and shift.notes("storage_full")
