"""Writing one recording's segments as MPEG-TS: H.264 passed through, microphone audio as AAC.

MPEG-TS is chosen because a file cut anywhere still decodes up to the cut — no index
at the end, nothing rewritten in place — which is what "nothing is lost to a power cut
but the last second" needs (see DESIGN.md). The camera's access units go in as they came
(no re-encoding); the microphone's PCM is encoded once per recording by ``AudioEncoder``
so audio runs on across segments without the AAC priming gap a fresh encoder would add.

Timestamps. All segments of a recording share its origin (the first frame's capture
time). A packet captured at ``timestamp_us`` gets

    PTS = PTS_ORIGIN + (timestamp_us - origin_us) in 90 kHz ticks (rounded)

so segment N+1 starts exactly one frame after segment N ends, with no gap or overlap.
``PTS_ORIGIN`` (0.7 s) is the one constant added, the same for every segment: the muxer
runs with ``mpegts_copyts`` so it adds nothing of its own, and with ``max_delay`` 0.7 s
so the PCR it writes leads each DTS by 0.7 s as a decoder's buffer model expects
(without it PCR would equal DTS, or go negative at the origin). Audio packets that come
up to 0.7 s before the origin are therefore still representable.

Flushing. FFmpeg's interleaver holds back the newest packet(s) until a later packet of
the other stream arrives, and the MPEG-TS muxer holds the latest small audio packet to
gather it into a bigger PES. Because the AAC encoder delivers each packet ~2 frames after
its samples arrived (look-ahead), audio always trails video: with FFmpeg's default
interleaving the last ~8 video frames (0.27 s, measured at 16 kHz) stayed out of the file,
and even with the smallest ``max_interleave_delta`` the newest frame does. PyAV offers no
call to drain the interleaver (``av_interleaved_write_frame(ctx, NULL)``), so ``flush()``
ends the muxer (its trailer drains both queues) and starts a new one on the same sink.
MPEG-TS is a concatenable stream: the new muxer repeats PAT/PMT and continues the same
PIDs and timestamps; ``initial_discontinuity`` marks its first packet per PID so the
restarted continuity counters are legal and demuxers report no error. A flush costs
~0.1 ms and ~600 bytes of tables, and afterwards the sink holds every video frame
and every audio packet written so far. What audio is missing then is still inside the
AAC encoder (its look-ahead: 2–3 AAC frames, 130–200 ms at 16 kHz), not in the muxer.
Audio written after a flush may be up to that much older than the last video before it
in the file; the 0.7 s PCR lead covers that. Between flushes the muxer keeps at most the
newest packet (``max_interleave_delta`` 1 µs) and hands every packet it lets go straight
to the sink (``flush_packets``).

The sink is anything with ``write(bytes)`` and ``flush()`` — a file, or the encrypting
writer. PyAV never sees a path or a seekable file: it writes through a small wrapper with
only ``write``, which MPEG-TS is content with, and the wrapper counts the bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import av
import numpy as np

from device.camera import EncodedFrame, VideoConfig
from device.microphone import AudioBlock, AudioConfig

log = logging.getLogger(__name__)

PTS_CLOCK_HZ = 90_000
PTS_ORIGIN = 63_000  # 0.7 s: the recording's origin as written in every segment
_TS_TIME_BASE = Fraction(1, PTS_CLOCK_HZ)

_MUX_OPTIONS = {
    "mpegts_copyts": "1",  # write our PTS as given ...
    "max_delay": "700000",  # ... with PCR 0.7 s ahead of DTS (µs)
    "avoid_negative_ts": "disabled",  # never shift a segment to start at zero
    "max_interleave_delta": "1",  # µs: hold no more than the newest packet
    "flush_packets": "1",  # every packet leaves PyAV's I/O buffer at once
    "mpegts_flags": "initial_discontinuity",  # a restarted muxer's counters are legal
}

_AAC_PROFILES = {1: "Main", 2: "LC", 3: "SSR", 4: "LTP"}
_H264_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10",
                  122: "High 4:2:2", 244: "High 4:4:4 Predictive"}


class Sink(Protocol):
    """Where a segment's bytes go: a file opened for writing, or an encrypting writer."""

    def write(self, data: bytes) -> Any: ...

    def flush(self) -> None: ...


# --- audio -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """One AAC frame as an ADTS frame (7-byte header + raw AAC), so it needs no side data.

    ``pts`` and ``duration`` count samples at the encoder's rate from the first sample
    the recording's ``AudioEncoder`` was given; ``timestamp_us`` is the capture time of
    the packet's first sample on the monotonic clock.
    """

    data: bytes
    pts: int
    duration: int
    timestamp_us: int


class _AdtsFramer:
    """Builds ADTS headers from the encoder's AudioSpecificConfig (ISO 14496-3, 1.A.2)."""

    def __init__(self, audio_specific_config: bytes) -> None:
        asc = audio_specific_config
        if len(asc) < 2:
            raise ValueError("AAC encoder gave no AudioSpecificConfig")
        object_type = asc[0] >> 3
        self.freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
        self.channel_config = (asc[1] >> 3) & 0x0F
        # ADTS has two bits for the profile and no escape codes: only the four
        # classic object types at a standard rate fit (the native encoder makes LC).
        if not 1 <= object_type <= 4 or self.freq_index > 12 or self.channel_config == 0:
            raise ValueError(f"AAC configuration {asc.hex()} cannot be framed as ADTS")
        self.profile = object_type - 1

    def frame(self, raw: bytes) -> bytes:
        length = len(raw) + 7
        if length >= 1 << 13:
            raise ValueError(f"AAC frame of {len(raw)} bytes is too long for ADTS")
        header = bytes((
            0xFF, 0xF1,  # sync word, MPEG-4, layer 0, no CRC
            (self.profile << 6) | (self.freq_index << 2) | (self.channel_config >> 2),
            ((self.channel_config & 0x03) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 0x07) << 5) | 0x1F,  # buffer fullness 0x7FF: variable bit rate
            0xFC,  # ... and one raw data block
        ))
        return header + raw


class AudioEncoder:
    """Int16 microphone blocks in, AAC packets out; one per recording.

    Priming: FFmpeg's AAC encoder emits first a packet stamped −1024 samples that holds
    only its encoder delay; every later packet with pts P decodes to the input samples
    [P, P + 1024). MPEG-TS cannot tell a player to skip samples (MP4's edit list can),
    so that packet would play 64 ms (at 16 kHz) of silence before the origin. It is
    dropped: the stream starts with the packet for sample 0, whose first few
    milliseconds decode faded in — as any stream joined mid-way does. Packet times then
    say truthfully when their samples were heard.

    Sample clock: sample k of the stream is taken to be heard at the first block's
    timestamp + k / sample_rate. When a block's own timestamp strays from that by more
    than half a block — blocks lost while the microphone stalled, or its clock drifting
    against the monotonic one — the stream is brought back in step: a gap is filled with
    digital silence, an overlap is cut from the start of the block. ``padded_samples``
    and ``dropped_samples`` count both, for the audit log.
    """

    def __init__(self, config: AudioConfig, bitrate: int) -> None:
        self.config = config
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = config.sample_rate
        ctx.layout = av.AudioLayout(f"{config.channels}c")  # the default layout for that count
        ctx.format = "fltp"
        ctx.bit_rate = bitrate
        ctx.time_base = Fraction(1, config.sample_rate)
        ctx.open()
        self._ctx = ctx
        self._layout = ctx.layout.name
        self._adts = _AdtsFramer(bytes(ctx.extradata or b""))
        self._frame_size = ctx.frame_size
        self._pending = np.zeros((config.channels, 0), dtype=np.float32)
        self._first_us: int | None = None
        self._samples_in = 0  # samples on the stream's clock, padding included
        self._next_pts = 0  # pts of the next frame handed to the encoder
        self._closed = False
        self.padded_samples = 0
        self.dropped_samples = 0

    def encode(self, block: AudioBlock) -> list[AudioPacket]:
        """Take one block; returns the packets the encoder finished (often none)."""
        if self._closed:
            raise RuntimeError("audio encoder already flushed")
        samples = self._check(block)
        rate = self.config.sample_rate
        packets: list[AudioPacket] = []
        if self._first_us is None:
            self._first_us = block.timestamp_us
        else:
            # Where the block starts on the stream's own clock versus where its timestamp
            # puts it; integer arithmetic so a long recording does not accumulate error.
            due = ((block.timestamp_us - self._first_us) * rate + 500_000) // 1_000_000
            drift = due - self._samples_in
            if abs(drift) > max(1, len(samples) // 2):
                samples, packets = self._realign(samples, drift, block.timestamp_us)
        if len(samples):
            packets += self._append(samples.T.astype(np.float32) * np.float32(1 / 32768))
        return packets

    def flush(self) -> list[AudioPacket]:
        """End of the recording: encode what is left and drain the encoder."""
        if self._closed:
            return []
        self._closed = True
        if self._first_us is None:
            return []
        packets: list[AudioPacket] = []
        if self._pending.shape[1]:
            # The AAC encoder takes a short frame as the last one.
            packets += self._encode_frame(self._pending)
            self._pending = self._pending[:, :0]
        packets += self._convert(self._ctx.encode(None))
        return packets

    def _check(self, block: AudioBlock) -> np.ndarray:
        samples = np.asarray(block.samples)
        cfg = self.config
        if block.sample_rate != cfg.sample_rate:
            raise ValueError(f"block at {block.sample_rate} Hz, encoder at {cfg.sample_rate} Hz")
        if samples.dtype != np.int16 or samples.ndim != 2 or samples.shape[1] != cfg.channels:
            raise ValueError(f"expected int16 samples of shape (n, {cfg.channels}), "
                             f"got {samples.dtype} {samples.shape}")
        return samples

    def _realign(self, samples: np.ndarray, drift: int,
                 timestamp_us: int) -> tuple[np.ndarray, list[AudioPacket]]:
        block = len(samples)
        # A whole block or more is a stall worth a warning; less is clock drift.
        level = logging.WARNING if abs(drift) >= block else logging.DEBUG
        if drift > 0:
            log.log(level, "audio gap of %d samples before %d µs: filled with silence",
                    drift, timestamp_us)
            self.padded_samples += drift
            packets: list[AudioPacket] = []
            # A frame at a time, so a long stall does not become one huge array.
            silence = np.zeros((self.config.channels, self._frame_size), dtype=np.float32)
            while drift > 0:
                packets += self._append(silence[:, :min(drift, self._frame_size)])
                drift -= self._frame_size
            return samples, packets
        cut = min(-drift, block)
        log.log(level, "audio overlap of %d samples at %d µs: %d cut from the block",
                -drift, timestamp_us, cut)
        self.dropped_samples += cut
        return samples[cut:], []

    def _append(self, planar: np.ndarray) -> list[AudioPacket]:
        """Queue samples (channels × n float32) and encode every whole frame."""
        self._pending = np.concatenate((self._pending, planar), axis=1)
        self._samples_in += planar.shape[1]
        packets: list[AudioPacket] = []
        while self._pending.shape[1] >= self._frame_size:
            packets += self._encode_frame(self._pending[:, :self._frame_size])
            self._pending = self._pending[:, self._frame_size:]
        return packets

    def _encode_frame(self, planar: np.ndarray) -> list[AudioPacket]:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp",
                                           layout=self._layout)
        frame.sample_rate = self.config.sample_rate
        frame.time_base = self._ctx.time_base
        frame.pts = self._next_pts
        self._next_pts += planar.shape[1]
        return self._convert(self._ctx.encode(frame))

    def _convert(self, packets: list[av.Packet]) -> list[AudioPacket]:
        assert self._first_us is not None
        rate = self.config.sample_rate
        out = []
        for packet in packets:
            pts, duration = int(packet.pts), int(packet.duration)
            if pts + duration <= 0:
                continue  # the priming packet: encoder delay only (see the class doc)
            out.append(AudioPacket(
                data=self._adts.frame(bytes(packet)), pts=pts, duration=duration,
                timestamp_us=self._first_us + (pts * 1_000_000 + rate // 2) // rate))
        return out


# --- segments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentInfo:
    """What one closed segment holds. PTS are in 90 kHz ticks as written in the file
    (``PTS_ORIGIN`` included); ``duration_s`` is the video's, last frame included."""

    frames: int
    keyframes: int
    first_pts: int | None
    last_pts: int | None
    first_timestamp_us: int | None
    last_timestamp_us: int | None
    duration_s: float
    audio_packets: int
    bytes_written: int
    codec: dict[str, Any] = field(default_factory=dict)


class _CountingWriter:
    """What PyAV writes into: ``write`` only, so it treats the output as a stream."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        rest = data
        while rest:
            n = self.sink.write(rest)
            # A raw file may take less than it was given; other sinks return None.
            n = len(rest) if n is None else n
            if n <= 0:
                raise OSError("segment sink accepted no bytes")
            self.bytes_written += n
            rest = rest[n:]
        return len(data)


def _us_to_ticks(us: int) -> int:
    return (us * 9 + 50) // 100  # a µs is 9/100 of a 90 kHz tick; rounds half up


class SegmentWriter:
    """Writes one segment to ``sink``: ``write_frame``/``write_audio``, ``flush``, ``close``.

    ``origin_us`` is the recording's time origin (its first frame's ``timestamp_us``),
    the same for all its segments. The sink is flushed but never closed here: whoever
    opened it seals it.
    """

    def __init__(self, sink: Sink, video: VideoConfig, audio: AudioConfig | None,
                 origin_us: int) -> None:
        if video.codec != "h264":
            raise ValueError(f"segments carry h264 video, not {video.codec!r}")
        self.video = video
        self.audio = audio
        self.origin_us = origin_us
        self._sink = sink
        self._out = _CountingWriter(sink)
        self._frame_ticks = round(PTS_CLOCK_HZ / video.fps)
        self._open_muxer()
        self._frames = 0
        self._keyframes = 0
        self._audio_packets = 0
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._first_us: int | None = None
        self._last_us: int | None = None
        self._last_audio_pts: int | None = None
        self._codec: dict[str, Any] = {"video_codec": "h264", "width": video.width,
                                       "height": video.height, "fps": video.fps,
                                       "bitrate": video.bitrate}
        if audio is not None:
            self._codec.update(audio_codec="aac", sample_rate=audio.sample_rate,
                               channels=audio.channels)
        self._info: SegmentInfo | None = None

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def bytes_written(self) -> int:
        return self._out.bytes_written

    @property
    def last_timestamp_us(self) -> int | None:
        return self._last_us

    def write_frame(self, frame: EncodedFrame) -> None:
        self._check_open()
        if self._frames == 0 and not frame.keyframe:
            raise ValueError("a segment must start on a keyframe")
        pts = self._pts(frame.timestamp_us)
        if pts < 0 or (self._last_pts is not None and pts <= self._last_pts):
            raise ValueError(f"frame at {frame.timestamp_us} µs does not follow the previous "
                             f"one (pts {pts}, last {self._last_pts})")
        packet = av.Packet(frame.data)
        packet.stream = self._vstream
        packet.time_base = _TS_TIME_BASE
        packet.pts = packet.dts = pts  # no B-frames: decode order is display order
        packet.duration = self._frame_ticks
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)
        self._muxed += 1
        if self._frames == 0:
            self._first_pts, self._first_us = pts, frame.timestamp_us
        if frame.keyframe and "profile" not in self._codec:
            self._codec.update(_h264_profile_level(frame.data))
        self._frames += 1
        self._keyframes += frame.keyframe
        self._last_pts, self._last_us = pts, frame.timestamp_us

    def write_audio(self, packet: AudioPacket) -> None:
        self._check_open()
        if self.audio is None:
            raise ValueError("this segment was opened without audio")
        if len(packet.data) < 7 or packet.data[0] != 0xFF or packet.data[1] & 0xF6 != 0xF0:
            raise ValueError("audio packet is not an ADTS frame (use AudioEncoder)")
        pts = self._pts(packet.timestamp_us)
        if pts < 0:
            log.warning("audio at %d µs lies before what the segment can carry: dropped",
                        packet.timestamp_us)
            return
        if self._last_audio_pts is not None and pts <= self._last_audio_pts:
            raise ValueError(f"audio at {packet.timestamp_us} µs does not follow the previous "
                             f"packet (pts {pts}, last {self._last_audio_pts})")
        av_packet = av.Packet(packet.data)
        av_packet.stream = self._astream
        av_packet.time_base = _TS_TIME_BASE
        av_packet.pts = av_packet.dts = pts
        av_packet.duration = round(packet.duration * PTS_CLOCK_HZ / self.audio.sample_rate)
        av_packet.is_keyframe = True
        self._container.mux(av_packet)
        self._muxed += 1
        if "audio_profile" not in self._codec:
            self._codec["audio_profile"] = _AAC_PROFILES.get((packet.data[2] >> 6) + 1, "?")
        self._audio_packets += 1
        self._last_audio_pts = pts

    def flush(self) -> None:
        """Put everything written so far into the sink, then flush the sink."""
        self._check_open()
        if self._muxed:
            # Ending the muxer is the only way PyAV lets us drain its queues (see the
            # module doc); the next packet goes to a fresh muxer on the same sink.
            self._container.close()
            self._open_muxer()
        self._sink.flush()
        log.debug("segment flushed: %d frames, %d bytes", self._frames, self.bytes_written)

    def close(self) -> SegmentInfo:
        """Finish the segment (the sink stays open) and say what it holds."""
        if self._info is not None:
            return self._info
        self._container.close()
        self._sink.flush()
        duration = 0.0
        if self._first_pts is not None and self._last_pts is not None:
            duration = (self._last_pts - self._first_pts + self._frame_ticks) / PTS_CLOCK_HZ
        self._info = SegmentInfo(
            frames=self._frames, keyframes=self._keyframes, first_pts=self._first_pts,
            last_pts=self._last_pts, first_timestamp_us=self._first_us,
            last_timestamp_us=self._last_us, duration_s=duration,
            audio_packets=self._audio_packets, bytes_written=self.bytes_written,
            codec=dict(self._codec))
        log.info("segment closed: %d frames (%d keyframes), %.3f s, %d audio packets, %d bytes",
                 self._frames, self._keyframes, duration, self._audio_packets,
                 self.bytes_written)
        return self._info

    def _check_open(self) -> None:
        if self._info is not None:
            raise RuntimeError("segment already closed")

    def _pts(self, timestamp_us: int) -> int:
        return PTS_ORIGIN + _us_to_ticks(timestamp_us - self.origin_us)

    def _open_muxer(self) -> None:
        container = av.open(self._out, mode="w", format="mpegts", options=dict(_MUX_OPTIONS))
        vstream = container.add_mux_stream("h264", rate=self.video.fps,
                                           width=self.video.width, height=self.video.height)
        vstream.time_base = _TS_TIME_BASE
        self._astream = None
        if self.audio is not None:
            # No extradata needed: the packets are ADTS frames, which TS carries as they are.
            self._astream = container.add_mux_stream("aac", rate=self.audio.sample_rate)
            self._astream.time_base = _TS_TIME_BASE
        self._container = container
        self._vstream = vstream
        self._muxed = 0  # packets given to this muxer instance


def h264_problem(access_unit: bytes, keyframe: bool) -> str | None:
    """Why ``access_unit`` is not an H.264 access unit in Annex B form, or None.

    A cheap structural check for what a camera hands over, before it reaches the muxer
    (which refuses a first packet without a start code, and would carry anything else into
    the evidence): it must start with a start code, every NAL unit must have its forbidden
    bit clear and a type H.264 defines (1–23), a picture needs a slice (type 1 or 5), and a
    keyframe an IDR slice (5). Emulation prevention keeps start codes out of NAL payloads,
    so splitting on them is exact. Random bytes fail on the first test almost always.
    """
    if not (access_unit.startswith(b"\x00\x00\x01") or access_unit.startswith(b"\x00\x00\x00\x01")):
        return "no Annex B start code"
    types = set()
    i = access_unit.find(b"\x00\x00\x01")
    while i >= 0:
        if i + 3 >= len(access_unit):
            return "start code without a NAL unit"
        header = access_unit[i + 3]
        if header & 0x80 or not 1 <= header & 0x1F <= 23:
            return f"invalid NAL header 0x{header:02x}"
        types.add(header & 0x1F)
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    if not types & {1, 5}:
        return "no picture slice"
    if keyframe and 5 not in types:
        return "keyframe without an IDR slice"
    return None


def _h264_profile_level(access_unit: bytes) -> dict[str, str]:
    """Profile and level from the SPS in a keyframe; empty if there is none."""
    i = access_unit.find(b"\x00\x00\x01")
    while 0 <= i < len(access_unit) - 6:
        nal = access_unit[i + 3:i + 7]
        if nal[0] & 0x1F == 7:  # SPS: profile_idc, constraint flags, level_idc follow
            profile_idc, constraints, level_idc = nal[1], nal[2], nal[3]
            name = _H264_PROFILES.get(profile_idc, f"profile_idc {profile_idc}")
            if profile_idc == 66 and constraints & 0x40:
                name = "Constrained Baseline"
            return {"profile": name, "level": f"{level_idc // 10}.{level_idc % 10}"}
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    return {}
