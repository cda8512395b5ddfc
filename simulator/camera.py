"""Simulated camera: the synthetic scene encoded to real H.264 (PyAV libx264) in virtual time.

It implements ``device.camera.Camera`` the way picamera2 behaves on the recorder: frames
are captured at a fixed rate from ``start``, each raw I420 frame goes through
``pre_callback`` (where the stamp is drawn) and then to the encoder, and each encoded
access unit goes to ``output.output_frame`` as Annex B bytes. Nothing runs on its own:
the scenario runner calls ``tick(now)`` as it advances the virtual clock, and every
frame due by then is produced.

Encoder settings follow what the segmenter and the pre-event buffer rely on: no
B-frames and zero latency (one frame in, one packet out, in order), an IDR exactly
every ``gop_frames`` frames of capture time (closed GOP, no scene-cut keyframes), and
SPS/PPS in front of every keyframe so each GOP decodes on its own.

Faults for tests and scenarios: ``fail("stopped")`` (no frames until ``recover``) and
``fail("garbage")`` (random bytes where H.264 should be).

``python -m simulator.camera`` measures encode throughput.
"""

from __future__ import annotations

import logging
import math
import time
from fractions import Fraction
from typing import Callable

import av
import numpy as np
from av.video.frame import PictureType

from device.camera import EncodedFrame, FrameOutput, PreCallback, StillImage, VideoConfig
from simulator.scene import Scene

log = logging.getLogger(__name__)

FAULT_KINDS = ("stopped", "garbage")

# Frame k is due at start + k/fps; this absorbs float error from a clock advanced in
# steps of 1/fps so that the frame at exactly ``now`` is not put off to the next tick.
_DUE_EPSILON_S = 1e-6

_NAL_SPS, _NAL_PPS = 7, 8


class SimCamera:
    """A ``device.camera.Camera`` whose sensor is a ``Scene`` and whose clock is virtual."""

    def __init__(
        self,
        config: VideoConfig,
        clock: Callable[[], float],
        scene: Scene | None = None,
        still_size: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        if config.codec != "h264":
            raise ValueError(f"the simulated camera encodes h264 only, not {config.codec!r}")
        self.config = config
        self._clock = clock
        self._scene = scene if scene is not None else Scene(seed)
        self._still_size = still_size or (2 * config.width, 2 * config.height)
        self._buffer = self._scene.new_buffer(config.width, config.height)
        self._rng = np.random.default_rng(seed)
        self._encoder: av.VideoCodecContext | None = None
        self._output: FrameOutput | None = None
        self._pre_callback: PreCallback | None = None
        self._start_time = 0.0
        self._next_index = 0
        self._frames_delivered = 0
        self._extradata = b""
        self._fault: str | None = None
        self._closed = False

    # --- Camera protocol -------------------------------------------------------------

    def start(self, output: FrameOutput, pre_callback: PreCallback | None = None) -> None:
        if self._closed:
            raise RuntimeError("camera is closed")
        if self._encoder is not None:
            raise RuntimeError("camera already started")
        self._encoder = self._open_encoder()
        self._output = output
        self._pre_callback = pre_callback
        self._start_time = self._clock()
        self._next_index = 0
        self._frames_delivered = 0
        log.info("camera started at %.3f s: %dx%d@%d, gop %d",
                 self._start_time, self.config.width, self.config.height,
                 self.config.fps, self.config.gop_frames)

    def stop(self) -> None:
        """Flush the encoder so every captured frame reaches the output, then stop."""
        if self._encoder is None:
            return
        for packet in self._encoder.encode(None):
            self._deliver_packet(packet)
        self._encoder = None
        self._output = None
        self._pre_callback = None
        log.info("camera stopped after %d frames", self._frames_delivered)

    def capture_still(self, pre_callback: PreCallback | None = None) -> StillImage:
        """Render the scene now at still size, let ``pre_callback`` stamp it, encode a JPEG."""
        width, height = self._still_size
        now = self._clock()
        timestamp_us = _to_us(now)
        buf = self._scene.new_buffer(width, height)
        self._scene.render(now, buf)
        if pre_callback is not None:
            pre_callback(buf, timestamp_us)
        jpeg = _encode_jpeg(buf, width, height)
        log.info("still %dx%d at %.3f s (%d bytes)", width, height, now, len(jpeg))
        return StillImage(jpeg=jpeg, width=width, height=height, timestamp_us=timestamp_us)

    @property
    def frames_delivered(self) -> int:
        return self._frames_delivered

    @property
    def extradata(self) -> bytes:
        return self._extradata

    def close(self) -> None:
        self.stop()
        self._closed = True

    # --- simulation ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._encoder is not None

    def tick(self, now: float) -> int:
        """Capture, stamp, encode and deliver every frame due by ``now``; returns how many."""
        if self._encoder is None:
            return 0
        last_due = math.floor((now - self._start_time) * self.config.fps + _DUE_EPSILON_S)
        produced = 0
        while self._next_index <= last_due:
            self._capture(self._next_index)
            self._next_index += 1
            produced += 1
        return produced

    def fail(self, kind: str) -> None:
        """Inject a fault: ``"stopped"`` (no frames) or ``"garbage"`` (random bytes)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown camera fault {kind!r}; expected one of {FAULT_KINDS}")
        log.warning("camera fault injected: %s", kind)
        self._fault = kind

    def recover(self) -> None:
        if self._fault is not None:
            log.warning("camera recovered from fault: %s", self._fault)
        self._fault = None

    @property
    def fault(self) -> str | None:
        return self._fault

    # --- internals -------------------------------------------------------------------

    def _open_encoder(self) -> av.VideoCodecContext:
        cfg = self.config
        gop = cfg.gop_frames
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width = cfg.width
        ctx.height = cfg.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, cfg.fps)
        ctx.framerate = Fraction(cfg.fps)
        ctx.bit_rate = cfg.bitrate
        ctx.gop_size = gop
        ctx.max_b_frames = 0
        # zerolatency means sliced threads and no lookahead: each frame comes straight
        # back as a packet. thread_count 0 lets x264 pick (it uses slices here).
        ctx.thread_count = 0
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:"
                "repeat-headers=1:annexb=1"
            ),
        }
        ctx.open()
        return ctx

    def _capture(self, index: int) -> None:
        assert self._encoder is not None and self._output is not None
        timestamp_us = _to_us(self._start_time + index / self.config.fps)
        if self._fault == "stopped":
            return  # the sensor delivers nothing; the time slot is simply lost
        self._scene.render(self._start_time + index / self.config.fps, self._buffer)
        if self._pre_callback is not None:
            self._pre_callback(self._buffer, timestamp_us)
        # Wrapping the buffer without a copy saves ~0.2 ms a frame (a third of the budget).
        # It is safe to overwrite for the next frame: x264 copies the picture into its own
        # frame pool during encode, and zerolatency keeps no reference past the call.
        frame = av.VideoFrame.from_numpy_buffer(self._buffer, format="yuv420p")
        frame.pts = index
        # Keyframes follow capture time, not the count of frames fed: after a "stopped"
        # fault the cadence stays on multiples of gop_frames, as the segmenter expects.
        # (keyint alone would count only the frames actually encoded.)
        if index % self.config.gop_frames == 0:
            frame.pict_type = PictureType.I
        packets = self._encoder.encode(frame)
        if self._fault == "garbage":
            # The encoder keeps running (so its state is what a real one would have);
            # what reaches the output is noise in place of each access unit.
            for packet in packets:
                self._deliver(EncodedFrame(
                    data=_garbage(self._rng, packet.size or 1024),
                    keyframe=False, pts=int(packet.pts), timestamp_us=self._pts_to_us(packet.pts)))
            return
        for packet in packets:
            self._deliver_packet(packet)

    def _deliver_packet(self, packet: av.Packet) -> None:
        data = bytes(packet)
        if packet.is_keyframe and not self._extradata:
            self._extradata = _parameter_sets(data)
        self._deliver(EncodedFrame(
            data=data, keyframe=packet.is_keyframe, pts=int(packet.pts),
            timestamp_us=self._pts_to_us(packet.pts)))

    def _deliver(self, frame: EncodedFrame) -> None:
        assert self._output is not None
        self._output.output_frame(frame)
        self._frames_delivered += 1

    def _pts_to_us(self, pts: int | None) -> int:
        return _to_us(self._start_time + int(pts or 0) / self.config.fps)


def _to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _garbage(rng: np.random.Generator, size: int) -> bytes:
    # No zero bytes means no Annex B start code, so a parser finds nothing to decode.
    return rng.integers(1, 256, size=size, dtype=np.uint8).tobytes()


def _split_annexb(data: bytes) -> list[bytes]:
    """NAL units (without start codes) of an Annex B byte stream."""
    nals: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        nal = data[start:end]
        # A four-byte start code leaves its leading zero on the previous NAL.
        if nxt >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
        i = nxt
    return nals


def _parameter_sets(access_unit: bytes) -> bytes:
    """SPS and PPS of a keyframe, as Annex B (what a muxer takes as extradata)."""
    out = b""
    for nal in _split_annexb(access_unit):
        if nal[0] & 0x1F in (_NAL_SPS, _NAL_PPS):
            out += b"\x00\x00\x00\x01" + nal
    return out


def _encode_jpeg(buf: np.ndarray, width: int, height: int) -> bytes:
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    # Fixed quantiser: a still is one frame, so rate control has nothing to average over.
    ctx.qscale = True
    ctx.global_quality = 3
    frame = av.VideoFrame.from_ndarray(buf, format="yuvj420p")
    frame.pts = 0
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


class _CountingOutput:
    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def output_frame(self, frame: EncodedFrame) -> None:
        self.frames += 1
        self.bytes += len(frame.data)


def measure_encode_fps(seconds: float = 20.0, config: VideoConfig | None = None) -> float:
    """Frames per second of scene + encode for ``seconds`` of virtual video (wall time)."""
    from simulator.clock import VirtualClock

    cfg = config or VideoConfig()
    clock = VirtualClock()
    cam = SimCamera(cfg, clock)
    out = _CountingOutput()
    cam.start(out)
    t0 = time.perf_counter()
    n = round(seconds * cfg.fps)
    for k in range(n):
        clock.advance_to(k / cfg.fps)
        cam.tick(clock.now)
    cam.stop()
    elapsed = time.perf_counter() - t0
    fps = out.frames / elapsed
    log.info("%d frames, %.1f kbit/s, %.0f fps", out.frames,
             out.bytes * 8 / seconds / 1000, fps)
    return fps


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    rate = measure_encode_fps()
    print(f"encode throughput at 640x360: {rate:.0f} frames/s ({rate / 30:.1f}x real time at 30 fps)")
