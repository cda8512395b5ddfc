"""Segments written as MPEG-TS: continuous timestamps, readable by ffprobe, and a power cut
loses at most the last second."""

from __future__ import annotations

import io
import json
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

from device.camera import EncodedFrame, VideoConfig
from device.microphone import AudioBlock, AudioConfig
from firmware_py.recording.segment import (PTS_CLOCK_HZ, PTS_ORIGIN, AudioEncoder, AudioPacket,
                                 SegmentInfo, SegmentWriter)
from simulator.audio import AcousticSpace, SimMicrophone
from simulator.camera import SimCamera
from simulator.clock import VirtualClock

VIDEO = VideoConfig(width=640, height=360, fps=30, bitrate=1_500_000, keyframe_interval_s=1.0)
AUDIO = AudioConfig(sample_rate=16_000, channels=1, block_ms=20)
AUDIO_BITRATE = 32_000
START = 50.0  # virtual time the devices start at; not zero on purpose
AAC_FRAME_S = 1024 / AUDIO.sample_rate  # 64 ms
FRAME_S = 1 / VIDEO.fps


# --- capture and a small recording driver ----------------------------------------------


def capture(seconds: float) -> list[EncodedFrame | AudioBlock]:
    """Camera frames and microphone blocks in the order the devices delivered them."""
    clock = VirtualClock(START)
    events: list[EncodedFrame | AudioBlock] = []

    class Out:
        def output_frame(self, frame: EncodedFrame) -> None:
            events.append(frame)

        def output_audio(self, block: AudioBlock) -> None:
            events.append(block)

    cam = SimCamera(VIDEO, clock)
    mic = SimMicrophone(AUDIO, clock, AcousticSpace(AUDIO.sample_rate))
    cam.start(Out())
    mic.start(Out())
    for k in range(round(seconds * VIDEO.fps)):
        clock.advance_to(START + k / VIDEO.fps)
        cam.tick(clock.now)
        mic.tick(clock.now)
    cam.stop()
    return events


def frames_of(events: list) -> list[EncodedFrame]:
    return [e for e in events if isinstance(e, EncodedFrame)]


def blocks_of(events: list) -> list[AudioBlock]:
    return [e for e in events if isinstance(e, AudioBlock)]


@dataclass
class Recording:
    infos: list[SegmentInfo] = field(default_factory=list)
    # (segment index, bytes in the sink, timestamp_us of the last frame written) per flush
    flushes: list[tuple[int, int, int]] = field(default_factory=list)
    audio_packets: list[AudioPacket] = field(default_factory=list)
    origin_us: int | None = None


def record(events: list, sink_for: Callable[[int], object], segment_s: float = 3.0,
           flush_s: float = 1.0, audio: bool = True) -> Recording:
    """What the recording pipeline will do: cut on keyframes, flush per second of media."""
    rec = Recording()
    encoder = AudioEncoder(AUDIO, AUDIO_BITRATE) if audio else None
    writer: SegmentWriter | None = None
    segment_start = last_flush = 0

    def write_audio(packets: list[AudioPacket]) -> None:
        for packet in packets:
            assert writer is not None
            writer.write_audio(packet)
            rec.audio_packets.append(packet)

    for event in events:
        if isinstance(event, AudioBlock):
            if encoder is not None:
                write_audio(encoder.encode(event))
            continue
        ts = event.timestamp_us
        if writer is None or (event.keyframe and ts - segment_start >= segment_s * 1e6):
            if writer is not None:
                rec.infos.append(writer.close())
            if rec.origin_us is None:
                rec.origin_us = ts
            writer = SegmentWriter(sink_for(len(rec.infos)), VIDEO, AUDIO if audio else None,
                                   rec.origin_us)
            segment_start = last_flush = ts
        elif ts - last_flush >= flush_s * 1e6:
            writer.flush()
            rec.flushes.append((len(rec.infos), writer.bytes_written, writer.last_timestamp_us))
            last_flush = ts
        writer.write_frame(event)
    assert writer is not None
    if encoder is not None:
        write_audio(encoder.flush())
    rec.infos.append(writer.close())
    return rec


# --- independent readers -----------------------------------------------------------------


def ffprobe(path: Path) -> dict:
    """Streams and packets as ffprobe reads them; fails on anything it complains about."""
    result = subprocess.run(
        ["ffprobe", "-v", "warning", "-show_entries",
         "stream=index,codec_type,codec_name,profile,width,height,sample_rate,channels"
         ":packet=stream_index,pts_time,duration_time,flags",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True)
    assert result.stderr == "", result.stderr
    data = json.loads(result.stdout)
    kinds = {s["index"]: s["codec_type"] for s in data["streams"]}
    packets: dict[str, list[dict]] = {"video": [], "audio": []}
    for p in data["packets"]:
        packets[kinds[p["stream_index"]]].append(p)
    return {"streams": {s["codec_type"]: s for s in data["streams"]}, **packets}


def decode_video(source: Path | io.BytesIO) -> tuple[int, tuple[int, int] | None, Exception | None]:
    """Frames a player gets out of ``source`` before the first error (a cut tail)."""
    count, size, error = 0, None, None
    try:
        with av.open(source) as container:
            for frame in container.decode(video=0):
                count += 1
                size = (frame.width, frame.height)
    except (av.error.FFmpegError, IndexError) as exc:  # IndexError: no video stream found
        error = exc
    return count, size, error


# --- the seven-second recording ------------------------------------------------------------


@pytest.fixture(scope="module")
def seven_seconds() -> list:
    return capture(7.0)


@pytest.fixture(scope="module")
def recorded(seven_seconds, tmp_path_factory) -> tuple[Recording, list[Path]]:
    folder = tmp_path_factory.mktemp("segments")
    paths: list[Path] = []
    files = []

    def sink_for(index: int):
        paths.append(folder / f"seg{index:03d}.ts")
        files.append(paths[-1].open("wb"))
        return files[-1]

    rec = record(seven_seconds, sink_for)
    for f in files:
        f.close()
    return rec, paths


def test_segments_are_cut_on_keyframes_every_three_seconds(recorded, seven_seconds):
    rec, paths = recorded
    assert [i.frames for i in rec.infos] == [90, 90, 30]
    assert [i.keyframes for i in rec.infos] == [3, 3, 1]
    assert sum(i.frames for i in rec.infos) == len(frames_of(seven_seconds))
    for info, path in zip(rec.infos, paths):
        assert info.bytes_written == path.stat().st_size
        assert info.duration_s == pytest.approx(info.frames / VIDEO.fps, abs=1e-6)
        assert info.codec["video_codec"] == "h264" and info.codec["audio_codec"] == "aac"
        assert (info.codec["width"], info.codec["height"], info.codec["fps"]) == (640, 360, 30)
        assert info.codec["profile"] and info.codec["level"]
        assert (info.codec["sample_rate"], info.codec["channels"]) == (16_000, 1)
        assert info.codec["audio_profile"] == "LC"


@pytest.mark.req("R8.2")
def test_ffprobe_reads_every_segment_with_the_timestamps_given(recorded, seven_seconds):
    rec, paths = recorded
    probes = [ffprobe(p) for p in paths]
    for probe, info in zip(probes, rec.infos):
        assert probe["streams"]["video"]["codec_name"] == "h264"
        assert (probe["streams"]["video"]["width"], probe["streams"]["video"]["height"]) == (640, 360)
        assert probe["streams"]["audio"]["codec_name"] == "aac"
        assert int(probe["streams"]["audio"]["sample_rate"]) == 16_000
        assert probe["video"][0]["flags"].startswith("K")
        assert len(probe["video"]) == info.frames
        assert float(probe["video"][0]["pts_time"]) == pytest.approx(info.first_pts / PTS_CLOCK_HZ)
        assert float(probe["video"][-1]["pts_time"]) == pytest.approx(info.last_pts / PTS_CLOCK_HZ)

    # Every frame's PTS in the files is its capture time since the origin, plus the one
    # constant PTS_ORIGIN — the muxer shifted nothing, in any segment.
    written = [float(p["pts_time"]) for probe in probes for p in probe["video"]]
    frames = frames_of(seven_seconds)
    expected = [PTS_ORIGIN / PTS_CLOCK_HZ + (f.timestamp_us - rec.origin_us) / 1e6 for f in frames]
    assert written == pytest.approx(expected, abs=1e-4)
    assert len(set(written)) == len(written), "duplicate frames"
    steps = np.diff(written)
    assert np.allclose(steps, FRAME_S, atol=1e-3), "gap or overlap between frames"

    for before, after in zip(probes, probes[1:]):
        last, first = float(before["video"][-1]["pts_time"]), float(after["video"][0]["pts_time"])
        assert first - last == pytest.approx(FRAME_S, abs=1e-3)


@pytest.mark.req("R8.2")
def test_audio_runs_on_across_segments_without_loss(recorded, seven_seconds):
    rec, paths = recorded
    probes = [ffprobe(p) for p in paths]
    for probe in probes:
        assert probe["audio"], "segment without audio"
    # Within a file and across files each AAC frame starts where the last one ended.
    frames = [(float(p["pts_time"]), float(p["duration_time"]))
              for probe in probes for p in probe["audio"]]
    for (start, duration), (following, _) in zip(frames, frames[1:]):
        assert following == pytest.approx(start + duration, abs=1e-3)
    for before, after in zip(probes, probes[1:]):
        a = before["audio"][-1]
        gap = float(after["audio"][0]["pts_time"]) - float(a["pts_time"]) - float(a["duration_time"])
        assert abs(gap) < AAC_FRAME_S
    # All captured samples were encoded and written, and audio starts with the video.
    samples = sum(len(b.samples) for b in blocks_of(seven_seconds))
    assert sum(p.duration for p in rec.audio_packets) == samples
    assert sum(i.audio_packets for i in rec.infos) == len(rec.audio_packets)
    first_audio = float(probes[0]["audio"][0]["pts_time"])
    first_video = float(probes[0]["video"][0]["pts_time"])
    assert abs(first_audio - first_video) < 1 / VIDEO.fps


def test_pyav_decodes_every_frame_at_full_size(recorded, seven_seconds):
    rec, paths = recorded
    total = 0
    for path, info in zip(paths, rec.infos):
        count, size, error = decode_video(path)
        assert error is None
        assert count == info.frames and size == (640, 360)
        total += count
    assert total == len(frames_of(seven_seconds))
    with av.open(str(paths[1])) as container:
        audio = sum(f.samples for f in container.decode(audio=0))
    assert audio == pytest.approx(3.0 * AUDIO.sample_rate, abs=2 * 1024)


# --- flush and power cut -------------------------------------------------------------------


class MemorySink:
    """A sink that is not a file: no seek, no tell, nothing but write and flush."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.flushes = 0

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def flush(self) -> None:
        self.flushes += 1

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def test_flush_puts_every_frame_written_into_the_sink(seven_seconds):
    events = [e for e in seven_seconds if e.timestamp_us < START * 1e6 + 3_000_000]
    frames = frames_of(events)
    sink = MemorySink()
    encoder = AudioEncoder(AUDIO, AUDIO_BITRATE)
    writer = SegmentWriter(sink, VIDEO, AUDIO, frames[0].timestamp_us)
    last_audio: AudioPacket | None = None
    for k, event in enumerate(events):
        if isinstance(event, AudioBlock):
            for packet in encoder.encode(event):
                writer.write_audio(packet)
                last_audio = packet
        else:
            if event.timestamp_us - frames[0].timestamp_us in (1_000_000, 2_000_000):
                writer.flush()
            writer.write_frame(event)
    writer.flush()  # not closed: what a power cut right now would leave

    data = sink.getvalue()
    assert len(data) == writer.bytes_written
    assert sink.flushes == 3
    count, size, error = decode_video(io.BytesIO(data))
    assert error is None and size == (640, 360)
    assert count >= len(frames) - VIDEO.fps  # N seconds less one flush interval, at worst
    assert count == len(frames)  # ... and in fact nothing is held back
    # Audio lags only by the AAC encoder's look-ahead; the muxer holds none of it back.
    assert last_audio is not None
    with av.open(io.BytesIO(data)) as container:
        audio_end = max(f.time + f.samples / f.sample_rate for f in container.decode(audio=0))
    assert audio_end == pytest.approx(
        (PTS_ORIGIN / PTS_CLOCK_HZ) + (last_audio.timestamp_us - frames[0].timestamp_us) / 1e6
        + AAC_FRAME_S, abs=1e-3)
    lag = (frames[-1].timestamp_us - last_audio.timestamp_us) / 1e6 + FRAME_S - AAC_FRAME_S
    assert lag <= 3 * AAC_FRAME_S + AUDIO.block_ms / 1000

    info = writer.close()
    assert info.frames == len(frames) and info.bytes_written == len(sink.getvalue())
    count, _, error = decode_video(io.BytesIO(sink.getvalue()))
    assert count == len(frames) and error is None


def test_power_cut_loses_at_most_the_last_second(seven_seconds, tmp_path):
    events = [e for e in seven_seconds if e.timestamp_us < START * 1e6 + 5_000_000]
    frames = frames_of(events)
    path = tmp_path / "segment.ts"
    with path.open("wb") as f:
        rec = record(events, lambda _: f, segment_s=60.0, flush_s=1.0)
    data = path.read_bytes()
    assert rec.infos[0].frames == len(frames) == 150 and len(rec.flushes) == 4

    # A flush that completed made everything before it durable. A cut at byte X happened
    # before the first flush that reached past X finished, so the recorder had been fed
    # no more than the media written by then.
    checkpoints = [(size, last_us) for _, size, last_us in rec.flushes]
    checkpoints.append((len(data), frames[-1].timestamp_us))
    rng = random.Random(20240611)
    cuts = sorted({rng.randrange(1, len(data) + 1) for _ in range(8)}
                  | {size for size, _ in checkpoints} | {size + 1000 for size, _ in checkpoints[:-1]})
    for cut in cuts:
        copy = tmp_path / f"cut{cut}.ts"
        copy.write_bytes(data[:cut])
        decoded, _, error = decode_video(copy)
        moment_us = next(last_us for size, last_us in checkpoints if size >= cut)
        must_have = sum(1 for f in frames if f.timestamp_us <= moment_us - 1_000_000)
        assert decoded >= must_have, (cut, decoded, must_have, error)
        flushed = [sum(1 for f in frames if f.timestamp_us <= last_us)
                   for size, last_us in checkpoints if size <= cut]
        assert decoded >= max(flushed, default=0), "a flushed frame did not decode"
        copy.unlink()


# --- smaller contracts -------------------------------------------------------------------


def test_a_segment_must_start_on_a_keyframe(seven_seconds):
    frames = frames_of(seven_seconds)
    writer = SegmentWriter(MemorySink(), VIDEO, None, frames[0].timestamp_us)
    with pytest.raises(ValueError, match="keyframe"):
        writer.write_frame(frames[1])
    writer.write_frame(frames[0])
    with pytest.raises(ValueError):
        writer.write_frame(frames[0])  # the same time again
    with pytest.raises(ValueError, match="without audio"):
        writer.write_audio(AudioPacket(b"\xff\xf1" + bytes(10), 0, 1024, frames[0].timestamp_us))
    info = writer.close()
    assert info.frames == 1 and writer.close() is info
    with pytest.raises(RuntimeError):
        writer.write_frame(frames[30])


def test_video_only_segment_and_short_writes(seven_seconds, tmp_path):
    """A raw file may take fewer bytes than offered; the writer goes on until all are in."""

    class Trickle(MemorySink):
        def write(self, data: bytes) -> int:
            self.chunks.append(bytes(data[:1000]))
            return min(len(data), 1000)

    sink = Trickle()
    frames = frames_of(seven_seconds)[:60]
    writer = SegmentWriter(sink, VIDEO, None, frames[0].timestamp_us)
    for frame in frames:
        writer.write_frame(frame)
    info = writer.close()
    path = tmp_path / "video.ts"
    path.write_bytes(sink.getvalue())
    assert info.bytes_written == path.stat().st_size
    probe = ffprobe(path)
    assert set(probe["streams"]) == {"video"} and len(probe["video"]) == 60


def test_a_failing_sink_raises_its_error():
    class Full(MemorySink):
        def write(self, data: bytes) -> None:
            raise OSError(28, "No space left on device")

    frames = frames_of(capture(0.1))
    writer = SegmentWriter(Full(), VIDEO, None, frames[0].timestamp_us)
    with pytest.raises(OSError, match="No space"):
        writer.write_frame(frames[0])
        writer.flush()


def test_audio_encoder_times_packets_by_capture_and_fills_gaps():
    rate, block = AUDIO.sample_rate, 320
    t0 = 7_000_000
    encoder = AudioEncoder(AUDIO, AUDIO_BITRATE)
    onset = 5037  # a tone starts here; decoded audio must have it at the same sample
    n = 2 * rate
    t = np.arange(n)
    pcm = np.where(t >= onset, 0.5 * np.sin(2 * np.pi * 440 * t / rate), 0.0)
    pcm = (pcm * 32767).astype(np.int16)[:, None]
    packets: list[AudioPacket] = []
    for i, first in enumerate(range(0, n, block)):
        if 40 <= i < 43:
            continue  # three blocks lost: 60 ms the microphone never delivered
        packets += encoder.encode(AudioBlock(pcm[first:first + block], rate,
                                             t0 + first * 1_000_000 // rate))
    packets += encoder.flush()

    assert encoder.padded_samples == 3 * block and encoder.dropped_samples == 0
    assert packets[0].pts == 0 and packets[0].timestamp_us == t0  # priming packet dropped
    for a, b in zip(packets, packets[1:]):
        assert b.pts == a.pts + a.duration
        assert b.timestamp_us == t0 + round(b.pts * 1e6 / rate)
    assert sum(p.duration for p in packets) == n

    decoder = av.CodecContext.create("aac", "r")
    decoded = np.concatenate([f.to_ndarray()[0] for p in packets
                              for f in decoder.decode(av.Packet(p.data))])
    assert int(np.argmax(np.abs(decoded) > 0.05)) == onset
    silent = decoded[40 * block + 200:43 * block - 200]  # the lost blocks came out silent
    assert np.max(np.abs(silent)) < 0.01


def test_audio_encoder_keeps_in_step_with_a_fast_microphone_clock():
    """Blocks of 20 ms stamped 19 ms apart: the stream cuts overlaps to stay on time."""
    rate, block = AUDIO.sample_rate, 320
    encoder = AudioEncoder(AUDIO, AUDIO_BITRATE)
    packets: list[AudioPacket] = []
    stamps = []
    for i in range(200):
        stamps.append(1_000_000 + i * 19_000)
        samples = np.full((block, 1), 100 * (i % 7), dtype=np.int16)
        packets += encoder.encode(AudioBlock(samples, rate, stamps[-1]))
    packets += encoder.flush()
    assert encoder.padded_samples == 0 and encoder.dropped_samples > 0
    assert sum(p.duration for p in packets) == 200 * block - encoder.dropped_samples
    # Audio ends within half a block of when the last block's timestamp says it does.
    end_us = packets[-1].timestamp_us + packets[-1].duration * 1_000_000 // rate
    assert abs(end_us - (stamps[-1] + 20_000)) <= 10_000
