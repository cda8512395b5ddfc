"""The edge's watchdogs: parts that fail without saying so, told as events or log entries.

A camera without usable frames, a microphone without audio or with only digital silence
(events for the core: ``CameraStalled``/``CameraResumed``, ``MicrophoneFailed``/
``MicrophoneRecovered``), the wall clock stepping against the monotonic one, garbage on the
GNSS line or from the camera (audit entries, garbage at most every
``GARBAGE_LOG_PERIOD_S`` per part). The camera's and microphone's own threads feed them
through ``Sinks`` (with the recording pipeline and the self-check's ``SelfCheckProbe``);
the agent's loop asks them once a step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from device.camera import EncodedFrame
from device.clock import Timestamp
from device.microphone import AudioBlock
from firmware_py.agent.events import (CameraResumed, CameraStalled, MicrophoneFailed,
                                      MicrophoneRecovered)
from firmware_py.agent.selfcheck import CheckReason
from firmware_py.recording.pipeline import RecordingPipeline
from firmware_py.recording.segment import h264_problem

CLOCK_JUMP_S = 1.0  # a wall-clock step against the monotonic clock at least this big is logged
GARBAGE_LOG_PERIOD_S = 10.0


class CameraWatch:
    """A camera that stops delivering usable frames while on is a fault (Art. 12 (1))."""

    def __init__(self, stall_s: float, fps: float) -> None:
        self.stall_s = stall_s
        self.resumed_within_s = 1.0 / fps * 2  # a frame this fresh: the camera delivers
        self.on = False
        self.last_frame_at: float | None = None  # monotonic time of the last usable frame
        self.stalled = False
        self._stall_rejected = 0  # pipeline's rejected-frame count at the last usable frame

    def start(self, now: float) -> None:
        """Capture starts: a camera that never delivers stalls too."""
        self.on = True
        self.last_frame_at = now
        self.stalled = False

    def stop(self) -> None:
        self.on = False
        self.last_frame_at = None

    def frame_kept(self, at: float) -> None:
        """A usable frame reached the pipeline (camera thread)."""
        self.last_frame_at = at

    def check(self, now: float, rejected: int) -> CameraStalled | CameraResumed | None:
        """``rejected``: the pipeline's count of frames dropped as garbage so far."""
        if not self.on or self.last_frame_at is None:
            return None
        if not self.stalled and now - self.last_frame_at > self.stall_s:
            self.stalled = True
            return CameraStalled(now, self.last_frame_at, rejected - self._stall_rejected)
        if now - self.last_frame_at <= self.resumed_within_s:
            self._stall_rejected = rejected
            if self.stalled:
                self.stalled = False
                return CameraResumed(now)
        return None


class MicrophoneWatch:
    """No audio block, or nothing but digital silence, for ``fault_s`` is a microphone
    fault; the first sound after it is its recovery."""

    def __init__(self, fault_s: float) -> None:
        self.fault_s = fault_s
        self.on = False
        self.last_audio_at: float | None = None
        self.silent_since: float | None = None  # first block of unbroken digital silence
        self.fault: tuple[str, float] | None = None  # (fault, since)

    def start(self, now: float) -> None:
        """Capture starts: a microphone that never delivers fails too."""
        self.on = True
        self.last_audio_at = now
        self.silent_since = None

    def stop(self) -> None:
        self.on = False

    def block(self, at: float, silent: bool) -> None:
        """An audio block arrived (microphone thread); ``silent``: all samples zero."""
        self.last_audio_at = at
        if not silent:
            self.silent_since = None
        elif self.silent_since is None:
            self.silent_since = at

    def check(self, now: float) -> MicrophoneFailed | MicrophoneRecovered | None:
        if not self.on or self.last_audio_at is None:
            return None
        limit = self.fault_s
        fault: tuple[str, float] | None = None
        if now - self.last_audio_at > limit:
            fault = ("stopped", self.last_audio_at)
        elif self.silent_since is not None and now - self.silent_since >= limit:
            fault = ("silent", self.silent_since)
        if fault is not None and self.fault is None:
            self.fault = fault
            return MicrophoneFailed(fault[0], fault[1], now)
        if (self.fault is not None and self.silent_since is None
                and now - self.last_audio_at <= limit / 2):
            kind, since = self.fault
            self.fault = None
            return MicrophoneRecovered(kind, since, now)
        return None


class ClockWatch:
    """A step of the raw wall clock against the monotonic one, with its size (corrections
    from GNSS or the dock are logged as such, not here). The evidence runs on monotonic
    time, so it stays in order whatever the wall clock does."""

    def __init__(self) -> None:
        self._wall_ref: tuple[float, float] | None = None  # (raw wall, monotonic) last step

    def check(self, now: Timestamp, correction_s: float) -> dict[str, Any] | None:
        """The facts of a ``clock_jump`` to log, or None; ``correction_s`` is what the
        clock adds to its raw wall time."""
        raw = now.utc - correction_s
        ref, self._wall_ref = self._wall_ref, (raw, now.monotonic)
        if ref is None:
            return None
        jump = (raw - ref[0]) - (now.monotonic - ref[1])
        if abs(jump) >= CLOCK_JUMP_S:
            return {"jump_s": round(jump, 3), "source": str(now.source)}
        return None


class GarbageWatch:
    """Bad NMEA sentences and frames that are not H.264 are dropped and counted; a count
    that grew is logged, at most every ``GARBAGE_LOG_PERIOD_S`` per part."""

    def __init__(self) -> None:
        self._logged: dict[str, int] = {}
        self._next: dict[str, float] = {}

    def check(self, now: float,
              counts: dict[str, tuple[int, str]]) -> list[tuple[str, dict[str, Any]]]:
        """``counts``: per part, (dropped so far, the last reason); the entries to log."""
        entries = []
        for part, (total, last) in counts.items():
            logged = self._logged.get(part, 0)
            if total > logged and now >= self._next.get(part, 0.0):
                self._logged[part] = total
                self._next[part] = now + GARBAGE_LOG_PERIOD_S
                entries.append((f"{part}_garbage", {"count": total - logged, "total": total,
                                                    "last": last, "ignored": True}))
        return entries


@dataclass
class SelfCheckProbe:
    """Camera and microphone watched for the self-check's probe window (fed from their
    threads through the agent's sinks)."""

    reason: CheckReason
    started: float
    ends: float
    frames: int = 0
    blocks: int = 0
    sum_squares: float = 0.0
    samples: int = 0

    def frame(self, frame: EncodedFrame) -> None:
        """The self-check counts what the camera delivers that is H.264 at all."""
        if h264_problem(frame.data, frame.keyframe) is None:
            self.frames += 1

    def audio(self, block: AudioBlock) -> None:
        self.blocks += 1
        samples = block.samples.astype(np.float64)
        self.sum_squares += float(np.sum(samples * samples))
        self.samples += samples.size

    def level_dbfs(self) -> float:
        if self.samples == 0 or self.sum_squares == 0.0:
            return float("-inf")
        return 20.0 * float(np.log10(np.sqrt(self.sum_squares / self.samples) / 32768.0))


class Sinks:
    """What the camera and microphone write to (from their own threads): the recording
    pipeline, their watchdogs, and the self-check's probe while one runs."""

    def __init__(self, pipeline: RecordingPipeline, camera: CameraWatch,
                 microphone: MicrophoneWatch) -> None:
        self.pipeline = pipeline
        self.camera = camera
        self.microphone = microphone
        self.probe: SelfCheckProbe | None = None

    def output_frame(self, frame: EncodedFrame) -> None:
        if self.pipeline.output_frame(frame) is not False:
            self.camera.frame_kept(frame.timestamp_us / 1e6)  # the picture is being kept
        probe = self.probe
        if probe is not None:
            probe.frame(frame)

    def output_audio(self, block: AudioBlock) -> None:
        self.microphone.block(block.timestamp_us / 1e6, not block.samples.any())
        probe = self.probe
        if probe is not None:
            probe.audio(block)
        self.pipeline.output_audio(block)
