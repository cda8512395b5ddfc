"""The recording pipeline: pre-event buffer → segmenter → segment files, with their metadata.

Composed the way picamera2 composes outputs: the camera feeds encoded frames in, the
pipeline routes them — into the pre-event ring while ready, into the open segment while
recording. A recording starts with what the ring holds (from a keyframe before the press)
and runs as a chain of segments cut on keyframes once the configured length is reached;
timestamps share one origin per recording, so they run on across segment files with no
gap and no overlap. Media and metadata are flushed to disk together every half second of
media, so a power cut loses at most that much.

A part that fails does not stop the rest. A frame that is not H.264 (a camera delivering
garbage) is dropped and counted, and video is taken again from the next keyframe, since
the frames after it may refer to it. While the camera gives nothing, sound goes on into
the open segment (flushed on its own every second), or into a segment of its own when the
camera was silent at the start; video joins again at its next keyframe.

Frames arrive on the camera's thread and audio on the microphone's; the agent's loop
starts and stops recordings: one lock keeps them apart.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from device.camera import EncodedFrame, StillImage, VideoConfig
from device.clock import Clock
from device.gnss import GnssFix
from device.microphone import AudioBlock, AudioConfig
from firmware_py.config import DeviceConfig
from firmware_py.recording.metadata import MetadataLog, fix_record, time_at
from firmware_py.recording.photos import PhotoWriter
from firmware_py.recording.ring import PreEventRing
from firmware_py.recording.segment import (PTS_ORIGIN, AudioEncoder, SegmentInfo, SegmentWriter,
                                 h264_problem)
from firmware_py.evidence.evidence_file import EncryptingFile
from firmware_py.evidence.seal import Sealer
from firmware_py.evidence.store import ActivityDir, EvidenceStore

log = logging.getLogger(__name__)

FLUSH_INTERVAL_US = 500_000
AUDIO_FLUSH_US = 2 * FLUSH_INTERVAL_US  # sound flushes by itself only when video does not
CAMERA_SILENT_US = 1_000_000  # no usable frame for this long: sound need not wait for video
MAX_AUDIO_LAG_US = PTS_ORIGIN * 100 // 9  # 0.7 s: sound older than the video by more is dropped
FIX_MEMORY_S = 130.0  # longer than the longest pre-event buffer


@dataclass
class _OpenSegment:
    sequence: int
    media: EncryptingFile
    writer: SegmentWriter
    meta: MetadataLog
    first_us: int
    last_flush_us: int
    start: Any = None  # Timestamp of the first frame
    markers: int = 0
    photos: int = 0
    end_us: int = 0  # capture time just after the last media written (video or sound)


@dataclass
class Recording:
    """One press-to-stop run of segments, sharing a time origin."""

    activity: ActivityDir
    origin_us: int
    pre_event_s: float
    pressed_at: dict[str, Any]
    segments: list[dict[str, Any]] = field(default_factory=list)
    open: _OpenSegment | None = None
    audio: AudioEncoder | None = None


def video_config(device: DeviceConfig) -> VideoConfig:
    v = device.video
    return VideoConfig(v.width, v.height, v.fps, v.bitrate, v.keyframe_interval_s)


def audio_config(device: DeviceConfig) -> AudioConfig:
    a = device.audio
    return AudioConfig(a.sample_rate, a.channels, a.block_ms)


def _interleave(frames: list[EncodedFrame], blocks: list[AudioBlock]) -> list[EncodedFrame | AudioBlock]:
    """Frames and audio blocks merged in capture order (frames first on a tie)."""
    merged: list[tuple[int, int, int, EncodedFrame | AudioBlock]] = [
        (f.timestamp_us, 0, n, f) for n, f in enumerate(frames)]
    merged += [(b.timestamp_us, 1, n, b) for n, b in enumerate(blocks)]
    merged.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in merged]


class RecordingPipeline(Protocol):
    """Where encoded frames and audio go once captured: the camera and microphone hand
    every frame and audio block to the pipeline; the agent tells it when a recording
    starts and stops and what happens meanwhile (GNSS fixes, markers, photos).
    ``Recorder`` below is the implementation; a test or a benchmark may put another
    behind the same interface."""

    rejected_frames: int  # frames dropped as unusable (not H.264) so far
    last_rejection: str  # why the last one was dropped

    def output_frame(self, frame: EncodedFrame) -> bool | None:
        """Take a frame; False when it was unusable (not H.264) and dropped."""

    def output_audio(self, block: AudioBlock) -> None: ...

    def note_fix(self, fix: GnssFix) -> None: ...

    def start_recording(self, at: float, activity: ActivityDir | None = None) -> dict[str, Any]:
        """Begin a recording; returns facts for the audit log."""

    def stop_recording(self, at: float, reason: str = "stop") -> dict[str, Any]:
        """End the recording; returns facts for the audit log."""

    def note(self, record: dict[str, Any]) -> bool:
        """Add a line to the metadata of the segment being written."""

    def add_marker(self, incident: bool, activity: ActivityDir | None) -> dict[str, Any]: ...

    def save_photo(self, still: StillImage, activity: ActivityDir) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Recorder:
    """The pipeline the agent drives (``firmware_py.recording.pipeline.RecordingPipeline``)."""

    def __init__(self, device: DeviceConfig, clock: Clock, store: EvidenceStore,
                 sealer: Sealer, time_quality: Callable[[], dict[str, Any]] = dict) -> None:
        self._device = device
        self._clock = clock
        self._store = store
        self._sealer = sealer
        self._time_quality = time_quality
        self._video = video_config(device)
        self._audio_config = audio_config(device)
        self.ring = PreEventRing(device.recording.pre_event_seconds,
                                 device.recording.pre_event_audio)
        self._segment_us = device.recording.segment_seconds * 1_000_000
        self._half_frame_us = 500_000 // device.video.fps
        self._frame_us = round(1_000_000 / device.video.fps)
        self._lock = threading.RLock()
        self._fixes: deque[tuple[float, GnssFix]] = deque()
        self.recording: Recording | None = None
        self.officer = device.device.officer
        self.frames = 0
        self.rejected_frames = 0  # frames that were not H.264, dropped
        self.dropped_audio_packets = 0  # filler after a microphone outage, too late to mux
        self.last_rejection = ""
        self._await_keyframe = False
        self._last_frame_us: int | None = None  # capture time of the last usable frame
        self.photos = PhotoWriter(clock, store, sealer, self._evidence_file, time_quality)

    # --- media in (camera and microphone threads) -------------------------------------------

    def output_frame(self, frame: EncodedFrame) -> bool:
        """Take one encoded frame; True when it went into the ring or a segment. False when
        it is not H.264 (dropped and counted), or cannot be decoded where it would go: after
        a dropped frame, or in a segment without video yet, until the next keyframe."""
        problem = h264_problem(frame.data, frame.keyframe)
        with self._lock:
            if problem is not None:
                self.rejected_frames += 1
                self.last_rejection = problem
                self._await_keyframe = True  # what follows may refer to the dropped frame
                return False
            self.frames += 1
            if self._await_keyframe:
                if not frame.keyframe:
                    return False
                self._await_keyframe = False
            self._last_frame_us = frame.timestamp_us
            return self._route_frame(frame)

    def _route_frame(self, frame: EncodedFrame) -> bool:
        """Into the pre-event ring while ready, into the open segment while recording."""
        rec = self.recording
        if rec is None:
            self.ring.add_frame(frame)
            return True
        seg = rec.open
        if seg is None:
            if not frame.keyframe:
                return False  # a recording's video starts on a keyframe
            seg = self._open_segment(rec, frame.timestamp_us)
        elif seg.writer.frames == 0 and not frame.keyframe:
            return False  # a segment begun with sound alone takes video from a keyframe
        elif frame.keyframe and frame.timestamp_us - seg.first_us >= self._segment_us - self._half_frame_us:
            self._close_segment(rec, "length")
            seg = self._open_segment(rec, frame.timestamp_us)
        seg.writer.write_frame(frame)
        seg.end_us = max(seg.end_us, frame.timestamp_us + self._frame_us)
        if frame.timestamp_us - seg.last_flush_us >= FLUSH_INTERVAL_US:
            self._flush(seg, frame.timestamp_us)
        return True

    def _camera_silent(self, at_us: int) -> bool:
        return self._last_frame_us is None or at_us - self._last_frame_us > CAMERA_SILENT_US

    def output_audio(self, block: AudioBlock) -> None:
        with self._lock:
            rec = self.recording
            if rec is None:
                self.ring.add_audio(block)
                return
            if rec.audio is None or block.timestamp_us < rec.origin_us:
                return
            for packet in rec.audio.encode(block):
                seg = rec.open
                if self._camera_silent(packet.timestamp_us):
                    # No picture to wait for: sound opens (and cuts) segments itself.
                    if seg is None:
                        seg = self._open_segment(rec, packet.timestamp_us)
                    elif packet.timestamp_us - seg.first_us >= self._segment_us:
                        self._close_segment(rec, "length")
                        seg = self._open_segment(rec, packet.timestamp_us)
                if seg is None:
                    continue
                newest_video = seg.writer.last_timestamp_us
                if newest_video is not None and packet.timestamp_us < newest_video - MAX_AUDIO_LAG_US:
                    # Too old to sit beside the video already written (the PCR lead): the
                    # silence the encoder fills a microphone outage with, given only when
                    # sound returns. The outage stays a gap in the sound.
                    self.dropped_audio_packets += 1
                    continue
                seg.writer.write_audio(packet)
                duration_us = packet.duration * 1_000_000 // self._audio_config.sample_rate
                seg.end_us = max(seg.end_us, packet.timestamp_us + duration_us)
            seg = rec.open
            if seg is not None and block.timestamp_us - seg.last_flush_us >= AUDIO_FLUSH_US:
                self._flush(seg, block.timestamp_us)

    def note_fix(self, fix: GnssFix) -> None:
        """A GNSS epoch, for the track of the segment being written (R10.2)."""
        with self._lock:
            self._fixes.append((fix.received_at, fix))
            while self._fixes and self._fixes[0][0] < fix.received_at - FIX_MEMORY_S:
                self._fixes.popleft()
            seg = self.recording.open if self.recording else None
            if seg is not None:
                seg.meta.record(fix_record(fix, time_at(self._clock, fix.received_at)))

    # --- recording control (agent loop) -----------------------------------------------------

    def start_recording(self, at: float, activity: ActivityDir | None = None) -> dict[str, Any]:
        if activity is None:
            raise ValueError("a recording needs its activity")
        with self._lock:
            if self.recording is not None:
                raise RuntimeError("already recording")
            buffered = self.ring.drain()
            origin_us = buffered.frames[0].timestamp_us if buffered.frames else int(at * 1e6)
            rec = Recording(activity, origin_us, buffered.span_s,
                            time_at(self._clock, at).to_json())
            rec.audio = AudioEncoder(self._audio_config, self._device.audio.bitrate)
            self.recording = rec
            frames = buffered.frames
            split = self._pre_event_split(frames)
            if split:
                # Without pre-event audio the buffered part goes into a video-only file of
                # its own: it says plainly that no sound was captured, and the next file
                # has its audio from its first second (players probe only the start).
                pre = self._open_segment(rec, frames[0].timestamp_us, with_audio=False)
                for frame in frames[:split]:
                    pre.writer.write_frame(frame)
                pre.end_us = frames[split - 1].timestamp_us + self._frame_us
                self._close_segment(rec, "pre_event")
            # Buffered audio goes in interleaved with the video it belongs to; the first
            # frame goes first, since it opens the segment the audio is written into.
            live = frames[split:]
            if live:
                self._route_frame(live[0])
            for item in _interleave(live[1:], buffered.audio):
                if isinstance(item, EncodedFrame):
                    self._route_frame(item)
                else:
                    self.output_audio(item)
            if rec.open is not None and frames:
                self._flush(rec.open, frames[-1].timestamp_us)
            return {"activity": activity.id, "pre_event_s": round(buffered.span_s, 3),
                    "buffered_frames": len(buffered.frames),
                    "first_frame_age_s": round(at - origin_us / 1e6, 3)}

    def stop_recording(self, at: float, reason: str = "stop") -> dict[str, Any]:
        with self._lock:
            rec = self.recording
            if rec is None:
                return {}
            if rec.audio is not None and rec.open is not None:
                for packet in rec.audio.flush():
                    rec.open.writer.write_audio(packet)
            if rec.open is not None:
                self._close_segment(rec, reason)
            self.recording = None
            frames = sum(s["frames"] for s in rec.segments)
            facts = {"activity": rec.activity.id, "segments": len(rec.segments), "frames": frames,
                     "duration_s": round(sum(s["duration_s"] for s in rec.segments), 3),
                     "files": [s["file"] for s in rec.segments]}
            return facts

    def note(self, record: dict[str, Any]) -> bool:
        """A line for the metadata of the segment being written; False when none is open."""
        with self._lock:
            seg = self.recording.open if self.recording else None
            if seg is None:
                return False
            seg.meta.record(record)
            return True

    def add_marker(self, incident: bool, activity: ActivityDir | None) -> dict[str, Any]:
        """A key moment (R11.2), or an incident for long-term keeping (R16.1)."""
        with self._lock:
            now = self._clock.now()
            record = {"kind": "marker", "incident": incident, "time": now.to_json()}
            seg = self.recording.open if self.recording else None
            if seg is not None:
                seg.meta.record(record)
                seg.markers += 1
                return {"in_segment": seg.sequence, "incident": incident}
            return {"in_segment": None, "incident": incident}

    def _evidence_file(self, path: Path, role: str) -> EncryptingFile:
        """A new encrypted evidence file: no plaintext of it ever reaches the storage."""
        return EncryptingFile(path, self._sealer.identity.agency_public,
                              {"device": self._device.device.id, "name": path.name, "role": role},
                              utc_ms=lambda: round(self._clock.now().utc * 1000))

    def save_photo(self, still: StillImage, activity: ActivityDir) -> dict[str, Any]:
        """Store a still (R11.1) beside the segments, with the same metadata, sealed
        (``firmware_py.recording.photos``); noted in the open segment's metadata."""
        with self._lock:
            fix = self._fixes[-1][1] if self._fixes else None
            photo = self.photos.save(still, activity, fix, self._identity, self._sealed_fields)
            seg = self.recording.open if self.recording else None
            if seg is not None:
                seg.meta.record({"kind": "photo", "file": photo.file,
                                 "file_number": photo.file_number, "time": photo.at.to_json()})
                seg.photos += 1
            return photo.facts

    def close(self) -> None:
        with self._lock:
            if self.recording is not None:
                self.stop_recording(self._clock.monotonic(), "shutdown")
            self.ring.clear()

    # --- segments ---------------------------------------------------------------------------

    def _identity(self, activity: ActivityDir, sequence: int) -> dict[str, Any]:
        d = self._device.device
        return {"device": d.id, "unit": d.unit, "officer": self.officer or None,
                "activity": activity.id, "file_number": sequence}

    def _pre_event_split(self, frames: list[EncodedFrame]) -> int:
        """Index of the last buffered keyframe when the part before it is video only."""
        if self._device.recording.pre_event_audio or not frames:
            return 0
        return max(i for i, f in enumerate(frames) if f.keyframe)

    def _sealed_fields(self, activity: ActivityDir, file_number: int) -> dict[str, Any]:
        return {"officer": self.officer or None, "activity": activity.id,
                "file_number": file_number}

    def _open_segment(self, rec: Recording, first_us: int, with_audio: bool = True) -> _OpenSegment:
        start = time_at(self._clock, first_us / 1e6)
        sequence = self._store.next_sequence()
        path = self._store.evidence_path(rec.activity, sequence, start.utc, ".ts.bce")
        media = self._evidence_file(path, "media")
        writer = SegmentWriter(media, self._video, self._audio_config if with_audio else None,
                               rec.origin_us)
        v, a = self._video, self._audio_config
        header = {**self._identity(rec.activity, sequence), "file": path.name,
                  "index_in_recording": len(rec.segments), "start": start.to_json(),
                  "time_quality": self._time_quality(),
                  "recording_origin_us": rec.origin_us,
                  "pressed_at": rec.pressed_at, "video_only": not with_audio,
                  "video": {"codec": "h264", "width": v.width, "height": v.height, "fps": v.fps,
                            "bitrate": v.bitrate, "keyframe_interval_s": v.keyframe_interval_s},
                  "audio": {"codec": "aac", "sample_rate": a.sample_rate, "channels": a.channels,
                            "bitrate": self._device.audio.bitrate} if with_audio else None,
                  "container": "mpegts"}
        meta_path = path.with_name(path.name.replace(".ts.bce", ".meta.jsonl.bce"))
        meta = MetadataLog(self._evidence_file(meta_path, "metadata"), header)
        seg = _OpenSegment(sequence, media, writer, meta, first_us, first_us, start, end_us=first_us)
        # The track covers the segment from its first frame, pre-event part included.
        for received_at, fix in self._fixes:
            if received_at * 1e6 >= first_us:
                meta.record(fix_record(fix, time_at(self._clock, received_at)))
        rec.open = seg
        return seg

    def _flush(self, seg: _OpenSegment, at_us: int) -> None:
        seg.writer.flush()
        seg.meta.flush()
        seg.last_flush_us = at_us

    def _close_segment(self, rec: Recording, reason: str) -> None:
        seg = rec.open
        assert seg is not None
        rec.open = None
        info: SegmentInfo = seg.writer.close()
        stored_media = seg.media.close()
        end = time_at(self._clock, seg.end_us / 1e6)
        summary = {"file": seg.media.path.name, "file_number": seg.sequence, "frames": info.frames,
                   "keyframes": info.keyframes, "duration_s": round(info.duration_s, 3),
                   "bytes": seg.media.bytes_written, "audio_packets": info.audio_packets,
                   "first_pts": info.first_pts, "last_pts": info.last_pts,
                   "markers": seg.markers, "photos": seg.photos}
        stored_meta = seg.meta.close({"end": end.to_json(), "closed_because": reason, **summary,
                                      "codec": info.codec})
        stem = seg.media.path.with_name(seg.media.path.name[:-len(".ts.bce")])
        seal = self._sealer.seal(
            "segment", stem, [("media", stored_media), ("metadata", stored_meta)],
            self._sealed_fields(rec.activity, seg.sequence) | {
                "frames": info.frames,
                "duration_ms": round(info.duration_s * 1000), "closed_because": reason,
                "recording_origin_us": rec.origin_us},
            start=seg.start, end=end)
        rec.segments.append({**summary, "path": str(seg.media.path),
                             "manifest": seal.manifest_path.name, "chain": seal.manifest["sequence"]})
