"""The camera on picamera2 (libcamera): ``device.camera.Camera`` on a Raspberry Pi.

One ``Picamera2`` runs two streams from the sensor: ``lores`` at the video size, which
the H.264 encoder takes (``encode="lores"``), and ``main`` at the photo size, from which
a still is copied while the video runs on — the recording is never stopped or switched
for a photo. Both are YUV 4:2:0 (``YUV420``, or ``NV12`` where the platform prefers it).

- **Encoder**: ``video.encoder = "auto"`` takes what picamera2 chooses for the platform
  (``picamera2.encoders.H264Encoder``: the V4L2 hardware encoder on VC4 boards — Pi 4,
  Zero 2 W — and ``LibavH264Encoder``, libx264, on Pi 5, which has no H.264 hardware);
  ``"hardware"`` and ``"libav"`` force one. Bitrate, keyframe period (``iperiod``) and
  SPS/PPS before every keyframe (``repeat``) come from ``[video]``.
- **Stamp**: picamera2's ``pre_callback`` gets each request before the encoder sees it;
  the ``lores`` buffer is mapped with ``MappedArray`` and the protocol's I420 pre-callback
  draws into it through ``FrameBridge`` (I420 or NV12, any stride).
- **Frames**: a picamera2 ``Output`` subclass receives each encoded frame
  (``outputframe(frame, keyframe, timestamp, packet, audio)``) and hands it on as an
  ``EncodedFrame``. picamera2's timestamp counts µs from the encoder's first frame, taken
  from libcamera's ``SensorTimestamp``; added to the encoder's ``firsttimestamp`` it is the
  sensor time of the exposure, on ``CLOCK_BOOTTIME`` (libcamera's clock for it), moved to
  the device clock's monotonic time by their offset taken at start.
- **Faults**: a camera that cannot be opened or configured raises ``HardwareError`` (the
  agent logs ``hardware_error``); one that stops delivering is seen by the agent's
  ``CameraWatch`` as ``camera_stalled``, as in the simulator. The backend's own watch
  restarts a camera silent for ``restart_after_s`` — closed and opened again, at most every
  ``restart_after_s``, and so also one that could not be opened at start — and frames
  coming back end the stall (``camera_resumed``).

picamera2 is imported when the camera starts, never at module import: it exists only on
Raspberry Pi OS (``python3-picamera2``) and in the virtual-camera test harness.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from typing import Any, Callable

import numpy as np

from device.backends.frame_layout import FrameBridge, FrameLayout
from device.camera import EncodedFrame, FrameOutput, PreCallback, StillImage, VideoConfig
from device.hardware import HardwareError

log = logging.getLogger(__name__)

ENCODERS = ("auto", "hardware", "libav")
_NAL_SPS, _NAL_PPS = 7, 8


def boottime_offset_s(monotonic: Callable[[], float]) -> float:
    """What to add to a ``CLOCK_BOOTTIME`` reading to get ``monotonic`` time (the two differ
    by the time the system spent suspended; a recorder never suspends, but a test machine
    may have)."""
    return monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)


class PiCamera:
    """``device.camera.Camera`` on picamera2; see the module docstring."""

    def __init__(self, config: VideoConfig, monotonic: Callable[[], float], *,
                 still_size: tuple[int, int], encoder: str = "auto", stream_format: str = "YUV420",
                 camera_num: int = 0, restart_after_s: float = 3.0,
                 camera_class: Any = None, encoder_class: Any = None,
                 sensor_offset_s: Callable[[], float] | None = None) -> None:
        # camera_class, encoder_class: a Picamera2 and an encoder (sub)class; None takes
        # picamera2's own. The test harness passes its virtual-camera quirks here; the
        # recorder never does.
        if encoder not in ENCODERS:
            raise ValueError(f"video encoder {encoder!r} is not one of {ENCODERS}")
        self.config = config
        self._monotonic = monotonic
        self._still_size = still_size
        self._encoder_kind = encoder
        self._format = stream_format
        self._camera_num = camera_num
        self._restart_after_s = restart_after_s
        self._camera_class = camera_class
        self._encoder_class_override = encoder_class
        self._sensor_offset = sensor_offset_s or (lambda: boottime_offset_s(monotonic))
        self._lock = threading.RLock()
        self._picam2: Any = None
        self._encoder: Any = None
        self._output: FrameOutput | None = None
        self._pre_callback: PreCallback | None = None
        self._bridge: FrameBridge | None = None
        self._still_layout: FrameLayout | None = None
        self._offset_us = 0
        self._origin_us: int | None = None  # capture time of the first frame since start
        self._frames_delivered = 0
        self._extradata = b""
        self._last_frame_at = 0.0
        self._restarts = 0
        self._last_error = ""
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()
        self._closed = False

    # --- Camera protocol -------------------------------------------------------------

    def start(self, output: FrameOutput, pre_callback: PreCallback | None = None) -> None:
        with self._lock:
            if self._closed:
                raise HardwareError("camera: closed")
            if self._output is not None:
                raise HardwareError("camera: already started")
            self._output = output
            self._pre_callback = pre_callback
            self._origin_us = None
            self._frames_delivered = 0
            self._last_frame_at = self._monotonic()
            # The watch runs even when the first open fails (a ribbon loose at boot): it
            # tries again every restart_after_s, and the agent logs the first failure.
            self._watch_stop.clear()
            self._watch = threading.Thread(target=self._watch_loop, name="camera-watch",
                                           daemon=True)
            self._watch.start()
            self._open()

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(timeout=5)
        self._watch = None
        with self._lock:
            self._close_camera()
            self._output = None
            self._pre_callback = None

    def capture_still(self, pre_callback: PreCallback | None = None) -> StillImage:
        """Copy the ``main`` stream's next frame (full photo size) while the video runs."""
        with self._lock:
            picam2, layout = self._picam2, self._still_layout
        if picam2 is None or layout is None:
            raise HardwareError("camera: not started; a photo needs the camera running")
        from picamera2 import MappedArray
        try:
            request = picam2.capture_request()
        except Exception as exc:  # picamera2 raises whatever libcamera raised
            raise HardwareError(f"camera: photo capture failed: {exc}") from exc
        try:
            timestamp_us = self._capture_us(request.get_metadata())
            still = np.empty((layout.height * 3 // 2, layout.width), dtype=np.uint8)
            with MappedArray(request, "main", reshape=False) as mapped:
                y, u, v = layout.planes(mapped.array)
                flat = still.reshape(-1)
                w, h = layout.width, layout.height
                flat[:w * h].reshape(h, w)[:] = y
                flat[w * h:w * h * 5 // 4].reshape(h // 2, w // 2)[:] = u
                flat[w * h * 5 // 4:].reshape(h // 2, w // 2)[:] = v
        finally:
            request.release()
        if pre_callback is not None:
            pre_callback(still, timestamp_us)
        jpeg = encode_jpeg(still, layout.width, layout.height)
        return StillImage(jpeg=jpeg, width=layout.width, height=layout.height,
                          timestamp_us=timestamp_us)

    @property
    def frames_delivered(self) -> int:
        return self._frames_delivered

    @property
    def extradata(self) -> bytes:
        return self._extradata

    @property
    def restarts(self) -> int:
        """How often the camera was restarted after it fell silent."""
        return self._restarts

    def close(self) -> None:
        self.stop()
        self._closed = True

    # --- picamera2 -------------------------------------------------------------------

    def _open(self) -> None:
        """Open, configure and start picamera2 with the encoder; HardwareError naming what
        failed leaves nothing open."""
        cfg = self.config
        try:
            camera_class = self._camera_class
            if camera_class is None:
                from picamera2 import Picamera2 as camera_class
            encoder_class = self._encoder_class()
        except ImportError as exc:
            self._watch_stop.set()  # nothing to retry: the library itself is missing
            raise HardwareError(f"camera: picamera2 is not installed ({exc}); on Raspberry "
                                "Pi OS: apt install python3-picamera2") from exc
        try:
            picam2 = camera_class(self._camera_num)
        except Exception as exc:
            raise HardwareError(f"camera: camera {self._camera_num} cannot be opened: {exc}") from exc
        try:
            # The frame rate is a request to the sensor (FrameDurationLimits); a camera
            # without that control (a USB one) runs at its own rate.
            controls = ({"FrameRate": float(cfg.fps)}
                        if "FrameDurationLimits" in picam2.camera_controls else {})
            video = picam2.create_video_configuration(
                main={"size": self._still_size, "format": self._format},
                lores={"size": (cfg.width, cfg.height), "format": self._format},
                encode="lores", controls=controls)
            picam2.configure(video)
            streams = picam2.camera_configuration()
            lores, main = streams["lores"], streams["main"]
            self._bridge = FrameBridge(FrameLayout(lores["format"], *lores["size"], lores["stride"]))
            self._still_layout = FrameLayout(main["format"], *main["size"], main["stride"])
            self._offset_us = round(self._sensor_offset() * 1e6)
            encoder = encoder_class(bitrate=cfg.bitrate, repeat=True, iperiod=cfg.gop_frames,
                                    framerate=cfg.fps)
            output = _make_output(self._on_frame, lambda: encoder.firsttimestamp)
            picam2.pre_callback = self._on_request
            self._last_frame_at = self._monotonic()
            picam2.start_recording(encoder, output)
        except Exception as exc:
            try:
                picam2.close()
            except Exception:
                log.exception("closing the camera after a failed start")
            raise HardwareError(f"camera: cannot start {cfg.width}x{cfg.height}@{cfg.fps} "
                                f"({self._encoder_kind} encoder): {exc}") from exc
        self._picam2, self._encoder = picam2, encoder
        log.info("camera started: %dx%d@%d %s, photos %dx%d, encoder %s",
                 cfg.width, cfg.height, cfg.fps, self._format, *self._still_size,
                 type(encoder).__name__)

    def _encoder_class(self) -> Any:
        if self._encoder_class_override is not None:
            return self._encoder_class_override
        if self._encoder_kind == "libav":
            from picamera2.encoders import LibavH264Encoder
            return LibavH264Encoder
        if self._encoder_kind == "hardware":
            from picamera2.encoders.h264_encoder import H264Encoder
            return H264Encoder
        from picamera2.encoders import H264Encoder  # picamera2's choice for this board
        return H264Encoder

    def _close_camera(self) -> None:
        picam2, self._picam2, self._encoder = self._picam2, None, None
        if picam2 is None:
            return
        try:
            picam2.stop_recording()
        except Exception:
            log.exception("stopping the camera failed")
        try:
            picam2.close()
        except Exception:
            log.exception("closing the camera failed")
        log.info("camera stopped after %d frames", self._frames_delivered)

    def _on_request(self, request: Any) -> None:
        """picamera2's pre_callback (its camera thread): the stamp into the lores buffer."""
        callback, bridge = self._pre_callback, self._bridge
        if callback is None or bridge is None:
            return
        from picamera2 import MappedArray
        timestamp_us = self._capture_us(request.get_metadata())
        with MappedArray(request, "lores", reshape=False) as mapped:
            bridge.apply(mapped.array, timestamp_us, callback)

    def _capture_us(self, metadata: dict[str, Any]) -> int:
        sensor_ns = metadata.get("SensorTimestamp")
        if sensor_ns is None:  # a pipeline without it: the time the request came back
            return round(self._monotonic() * 1e6)
        return int(sensor_ns) // 1000 + self._offset_us

    def _on_frame(self, data: bytes, keyframe: bool, sensor_us: int) -> None:
        """One encoded frame (the encoder's thread), ``sensor_us`` its sensor time."""
        output = self._output
        if output is None:
            return
        timestamp_us = sensor_us + self._offset_us
        if self._origin_us is None:
            self._origin_us = timestamp_us
        pts = round((timestamp_us - self._origin_us) * self.config.fps / 1e6)
        if keyframe and not self._extradata:
            self._extradata = parameter_sets(data)
        self._last_frame_at = self._monotonic()
        output.output_frame(EncodedFrame(data=data, keyframe=keyframe, pts=pts,
                                         timestamp_us=timestamp_us))
        self._frames_delivered += 1

    def _watch_loop(self) -> None:
        """Restart a camera that has gone silent (a wedged pipeline, a loose ribbon)."""
        period = min(0.5, self._restart_after_s / 4)
        while not self._watch_stop.wait(period):
            if self._monotonic() - self._last_frame_at < self._restart_after_s:
                continue
            with self._lock:
                if self._watch_stop.is_set() or self._output is None:
                    return
                log.warning("camera silent for %.1f s: restarting it", self._restart_after_s)
                self._close_camera()
                self._restarts += 1
                self._last_frame_at = self._monotonic()  # the next try waits as long again
                try:
                    self._open()
                except HardwareError as exc:
                    if str(exc) != self._last_error:  # once per distinct failure
                        log.error("camera restart failed: %s", exc)
                    self._last_error = str(exc)
                else:
                    self._last_error = ""


def _make_output(on_frame: Callable[[bytes, bool, int], None],
                 first_timestamp: Callable[[], int | None]) -> Any:
    """A picamera2 ``Output`` handing each encoded video frame to ``on_frame`` with its
    sensor time in µs (the class is made here: picamera2 is imported only on a Pi)."""
    from picamera2.outputs import Output

    class EncodedFrameOutput(Output):
        def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                        packet: Any = None, audio: bool = False) -> None:
            if audio or frame is None:
                return  # the agent records sound itself (sounddevice), never the encoder's
            first = first_timestamp() or 0
            on_frame(bytes(frame), bool(keyframe), first + int(timestamp or 0))

    return EncodedFrameOutput()


def parameter_sets(access_unit: bytes) -> bytes:
    """SPS and PPS NAL units of an Annex B keyframe, as Annex B (a muxer's extradata)."""
    out = b""
    starts = []
    i = access_unit.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = access_unit.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(access_unit)
        nal = access_unit[start:end].rstrip(b"\x00")
        if nal and nal[0] & 0x1F in (_NAL_SPS, _NAL_PPS):
            out += b"\x00\x00\x00\x01" + nal
    return out


def encode_jpeg(i420: np.ndarray, width: int, height: int, quality: int = 3) -> bytes:
    """A JPEG of a contiguous I420 frame (libav's MJPEG, as picamera2's own encoders use)."""
    import av

    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuvj420p"
    ctx.time_base = Fraction(1, 1)
    ctx.qscale = True  # one frame: a fixed quantiser, nothing for rate control to average
    ctx.global_quality = quality
    frame = av.VideoFrame.from_ndarray(i420, format="yuvj420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in list(ctx.encode(frame)) + list(ctx.encode(None)))
