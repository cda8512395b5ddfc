"""The agent's edge: turns hardware into events for the core and carries out its actions.

``Agent.step`` is one pass of the loop: poll buttons, GNSS, power and storage; finish a
self-check whose probe window has passed; hand each event to the core; do what it
returns; advance the indicators. On the recorder ``run`` calls it every few milliseconds;
the simulator calls it once per simulated frame, in virtual time. Camera frames and audio
blocks arrive through the sinks between steps (from the camera's thread on a Pi, from the
simulator's tick in simulation).

A part that fails is logged and the agent goes on: nothing here stops the camera.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from device.camera import EncodedFrame
from device.clock import TimeSource
from device.gnss import GnssFix
from device.hardware import Hardware, HardwareError
from device.indicators import Blink, Output, Program
from device.microphone import AudioBlock
from firmware_py.audit import AuditLog
from firmware_py.config import Config
from firmware_py.core import AgentCore, State
from firmware_py.events import (Action, AddMarker, BeginSelfCheck, Booted, ButtonGesture,
                                ClockOffsetMeasured, CorrectClock, Event, GnssUpdate, Log,
                                OpenActivity, PowerUpdate, RaiseAlert, SelfCheckDone, ShowSignal,
                                StartCamera, StartRecording, StopCamera, StopRecording,
                                StorageUpdate, TakePhoto, Tick)
from firmware_py.metadata import time_at
from firmware_py.pipeline import Recorder
from firmware_py.recording import RecordingPipeline
from firmware_py.selfcheck import (CheckReason, ClockReading, SelfCheckReadings,
                                   SelfCheckReport, evaluate, recording_hours_free)
from firmware_py.signals import ALERTS, SIGNALS, Alert, Signal
from firmware_py.stamp import Stamper, stamp_lines
from firmware_py.store import Activity, EvidenceStore

log = logging.getLogger(__name__)

POWER_PERIOD_S = 1.0
STORAGE_PERIOD_S = 5.0
TICK_PERIOD_S = 1.0


class SignalDriver:
    """Shows the steady signal on the indicators, with one-off alerts played over it."""

    def __init__(self, indicators) -> None:
        self._indicators = indicators
        self.signal: Signal | None = None
        self._alert_until: dict[Output, float] = {}
        self._now = 0.0

    def _steady(self, output: Output) -> Program:
        if self.signal is None:
            return False
        return SIGNALS[self.signal].programs.get(output, False)

    def show(self, signal: Signal) -> None:
        self.signal = signal
        for output in Output:
            if output not in self._alert_until:
                self._indicators.set(output, self._steady(output))

    def alert(self, alert: Alert) -> None:
        for output, program in ALERTS[alert].programs.items():
            self._indicators.set(output, program)
            length = (program.on_s + program.off_s) * program.count if isinstance(
                program, Blink) and program.count else 0.0
            self._alert_until[output] = self._now + length

    def update(self, now: float) -> None:
        self._now = now
        for output, until in list(self._alert_until.items()):
            if now >= until:
                del self._alert_until[output]
                self._indicators.set(output, self._steady(output))
        self._indicators.update(now)


@dataclass
class _Probe:
    """Camera and microphone watched for the self-check's probe window."""

    reason: CheckReason
    started: float
    ends: float
    frames: int = 0
    blocks: int = 0
    sum_squares: float = 0.0
    samples: int = 0

    def level_dbfs(self) -> float:
        if self.samples == 0 or self.sum_squares == 0.0:
            return float("-inf")
        return 20.0 * float(np.log10(np.sqrt(self.sum_squares / self.samples) / 32768.0))


class _Sinks:
    """What the camera and microphone write to: the probe and the recording pipeline."""

    def __init__(self, agent: "Agent") -> None:
        self._agent = agent

    def output_frame(self, frame: EncodedFrame) -> None:
        probe = self._agent._probe
        if probe is not None:
            probe.frames += 1
        self._agent.pipeline.output_frame(frame)

    def output_audio(self, block: AudioBlock) -> None:
        probe = self._agent._probe
        if probe is not None:
            probe.blocks += 1
            samples = block.samples.astype(np.float64)
            probe.sum_squares += float(np.sum(samples * samples))
            probe.samples += samples.size
        self._agent.pipeline.output_audio(block)


class Agent:
    def __init__(self, config: Config, hardware: Hardware, audit: AuditLog,
                 pipeline: RecordingPipeline | None = None) -> None:
        self.config = config
        self.hw = hardware
        self.audit = audit
        self.store = EvidenceStore(hardware.storage.path, config.device.device.id)
        self.pipeline: RecordingPipeline = pipeline or Recorder(
            config.device, hardware.clock, self.store, self.time_quality)
        self.activity: Activity | None = None
        stamp = config.device.stamp
        video, photo = config.device.video, config.device.photo
        self._video_stamper = Stamper(video.width, video.height, stamp.position, stamp.font_px)
        self._still_stamper = Stamper(photo.width, photo.height, stamp.position, stamp.font_px)
        self._last_sync: tuple[float, float] | None = None  # (monotonic, offset before)
        self._last_position: GnssFix | None = None
        self.core = AgentCore(config)
        self.signals = SignalDriver(hardware.indicators)
        self.reports: list[SelfCheckReport] = []
        self.log_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._sinks = _Sinks(self)
        self._probe: _Probe | None = None
        self._clock_reading: ClockReading | None = None
        self._next_power = self._next_storage = self._next_tick = 0.0
        self._camera_on = False
        self._capture_errors: dict[str, str] = {}
        self._reported_errors: set[str] = set()
        self._lock = threading.Lock()

    @property
    def state(self) -> State:
        return self.core.state

    # --- loop -----------------------------------------------------------------------------

    def start(self) -> None:
        self._dispatch(Booted(self.hw.clock.monotonic()))

    def step(self) -> None:
        with self._lock:
            now = self.hw.clock.monotonic()
            for gesture in self._poll("inputs", self.hw.inputs.poll, []):
                self._dispatch(ButtonGesture(gesture))
            for fix in self._poll("gnss", self.hw.gnss.poll, []):
                self.pipeline.note_fix(fix)
                self._dispatch(GnssUpdate(fix, now))
                if fix.has_position and fix.time_utc is not None:
                    reference = fix.time_utc.timestamp()
                    offset = self.hw.clock.offset_from(reference, fix.received_at)
                    self._note_clock(TimeSource.GNSS, offset, corrected=False)
                    self._dispatch(ClockOffsetMeasured(TimeSource.GNSS, offset, reference,
                                                       fix.received_at))
            if now >= self._next_power:
                self._next_power = now + POWER_PERIOD_S
                reading = self._poll("power", self.hw.power.read, None)
                if reading is not None:
                    self._dispatch(PowerUpdate(reading, now))
            if now >= self._next_storage:
                self._next_storage = now + STORAGE_PERIOD_S
                reading = self._poll("storage", self.hw.storage.read, None)
                if reading is not None:
                    hours = recording_hours_free(reading, self.config.device)
                    self._dispatch(StorageUpdate(reading, hours, now))
            if self._probe is not None and now >= self._probe.ends:
                self._dispatch(SelfCheckDone(self._finish_probe(now)))
            if now >= self._next_tick:
                self._next_tick = now + TICK_PERIOD_S
                self._dispatch(Tick(now))
            self.signals.update(now)

    def run(self, stop: threading.Event, period_s: float = 0.01) -> None:
        """The real-time loop on the recorder, until ``stop`` is set."""
        self.start()
        while not stop.wait(period_s):
            self.step()

    def close(self) -> None:
        with self._lock:
            if self.core.state is State.RECORDING:
                facts = self.pipeline.stop_recording(self.hw.clock.monotonic(), "shutdown")
                self._log("recording_stopped", facts)
            self._log("shutdown", {"state": str(self.core.state)})
            if self._camera_on:
                self._execute(StopCamera())
            self.pipeline.close()

    # --- plumbing -------------------------------------------------------------------------

    def _poll(self, part: str, read: Callable[[], Any], fallback: Any) -> Any:
        try:
            return read()
        except HardwareError as exc:
            message = str(exc)
            if message not in self._reported_errors:  # once per distinct failure, not per step
                self._reported_errors.add(message)
                self._log("hardware_error", {"part": part, "error": message})
            return fallback

    def _dispatch(self, event: Event) -> None:
        for action in self.core.handle(event):
            self._execute(action)

    def _log(self, kind: str, fields: dict[str, Any]) -> None:
        self.audit.append(kind, fields)
        for listener in self.log_listeners:
            listener(kind, fields)

    def _note_clock(self, source: TimeSource, offset: float, corrected: bool) -> None:
        # A correction's "before" offset is what the self-check must report; keep it over
        # the near-zero offsets measured after it until the next check starts.
        if corrected or self._clock_reading is None or not self._clock_reading.corrected:
            self._clock_reading = ClockReading(offset, source, corrected)

    def _execute(self, action: Action) -> None:
        match action:
            case Log(kind, fields):
                self._log(kind, fields)
            case ShowSignal(signal):
                self.signals.show(signal)
            case RaiseAlert(alert):
                self.signals.alert(alert)
            case StartCamera():
                self._start_capture()
            case StopCamera():
                self._stop_capture()
            case BeginSelfCheck(reason):
                now = self.hw.clock.monotonic()
                probe_s = self.config.policy.selfcheck.probe_seconds
                self._probe = _Probe(reason, now, now + probe_s)
                if self._clock_reading is not None and not self._clock_reading.corrected:
                    self._clock_reading = None  # measure afresh for this check
                self._log("selfcheck_started", {"reason": str(reason)})
            case CorrectClock(source, reference, at):
                correction = self.hw.clock.correct(reference, at, source)
                self._note_clock(source, correction.offset_before_s, corrected=True)
                self._last_sync = (self.hw.clock.monotonic(), correction.offset_before_s)
                self._log("clock_corrected", {"source": str(source),
                                              "offset_before_s": round(correction.offset_before_s, 3)})
            case OpenActivity():
                self.activity = self.store.open_activity(self.hw.clock.now().utc)
                officer = self.config.device.device.officer
                self._log("activity_opened", {"activity": self.activity.id,
                                              "officer": officer or None,
                                              "unassigned": not officer})
            case StartRecording():
                facts = self.pipeline.start_recording(self.hw.clock.monotonic(), self.activity)
                self._log("recording_started", facts)
            case StopRecording():
                facts = self.pipeline.stop_recording(self.hw.clock.monotonic())
                self._log("recording_stopped", facts)
            case TakePhoto():
                self._take_photo()
            case AddMarker(incident):
                facts = self.pipeline.add_marker(incident, self.activity)
                self._log("incident_marker" if incident else "marker", facts)
            case _:
                raise AssertionError(f"unhandled action {action!r}")

    def _start_capture(self) -> None:
        if self._camera_on:
            return
        self._capture_errors.clear()
        for part, start in (("camera", self.hw.camera.start), ("microphone", self.hw.microphone.start)):
            try:
                if part == "camera":
                    start(self._sinks, self._stamp_frame)
                else:
                    start(self._sinks)
            except HardwareError as exc:
                self._capture_errors[part] = str(exc)
                self._log("hardware_error", {"part": part, "error": str(exc)})
        self._camera_on = True

    def _stop_capture(self) -> None:
        if not self._camera_on:
            return
        self._camera_on = False
        for part, stop in (("camera", self.hw.camera.stop), ("microphone", self.hw.microphone.stop)):
            try:
                stop()
            except HardwareError as exc:
                self._log("hardware_error", {"part": part, "error": str(exc)})

    def _take_photo(self) -> None:
        try:
            still = self.hw.camera.capture_still(self._stamp_still)
        except HardwareError as exc:
            self._log("hardware_error", {"part": "camera", "error": str(exc)})
            return
        assert self.activity is not None  # the core opens one before a photo
        self._log("photo", self.pipeline.save_photo(still, self.activity))

    # --- stamp (camera thread) ----------------------------------------------------------

    def _stamp_lines(self, timestamp_us: int) -> tuple[str, ...]:
        at = time_at(self.hw.clock, timestamp_us / 1e6)
        fix = self.hw.gnss.last_fix
        if fix is not None and not fix.has_position:
            fix = self._last_position
        elif fix is not None:
            self._last_position = fix
        age = None if fix is None else at.monotonic - fix.received_at
        device = self.config.device.device
        return stamp_lines(at, device.id, device.officer, fix, age,
                           self.core.state is State.RECORDING)

    def _stamp_frame(self, frame: np.ndarray, timestamp_us: int) -> None:
        self._video_stamper.set_lines(self._stamp_lines(timestamp_us))
        self._video_stamper.apply(frame)

    def _stamp_still(self, frame: np.ndarray, timestamp_us: int) -> None:
        self._still_stamper.set_lines(self._stamp_lines(timestamp_us))
        self._still_stamper.apply(frame)

    def time_quality(self) -> dict[str, Any]:
        """Where the wall time comes from and how good it is, for every evidence record."""
        clock = self.hw.clock
        quality: dict[str, Any] = {"source": str(clock.source)}
        if self._last_sync is not None:
            quality["last_correction_age_s"] = round(clock.monotonic() - self._last_sync[0], 1)
            quality["last_correction_s"] = round(self._last_sync[1], 3)
        if self._clock_reading is not None and self._clock_reading.offset_s is not None:
            quality["last_offset_s"] = round(self._clock_reading.offset_s, 3)
            quality["reference"] = str(self._clock_reading.reference)
        return quality

    def _finish_probe(self, now: float) -> SelfCheckReport:
        probe, self._probe = self._probe, None
        assert probe is not None
        probe_s = now - probe.started
        power = storage = None
        power_error = storage_error = ""
        try:
            power = self.hw.power.read()
        except HardwareError as exc:
            power_error = str(exc)
        try:
            storage = self.hw.storage.read()
        except HardwareError as exc:
            storage_error = str(exc)
        gnss = self.hw.gnss
        fix = gnss.last_fix
        fix_age = None if fix is None else now - fix.received_at
        audio = self.config.device.audio
        readings = SelfCheckReadings(
            power=power, power_error=power_error, storage=storage, storage_error=storage_error,
            clock=self._clock_reading or ClockReading(None, None),
            probe_seconds=round(probe_s, 3),
            camera_frames=probe.frames,
            camera_error=self._capture_errors.get("camera", "" if self._camera_on else "camera off"),
            microphone_blocks=probe.blocks,
            microphone_expected_blocks=int(probe_s * 1000 // audio.block_ms),
            microphone_dbfs=probe.level_dbfs(),
            microphone_error=self._capture_errors.get("microphone", ""),
            gnss_sentences=gnss.stats.sentences, gnss_fix=fix, gnss_fix_age_s=fix_age)
        if self._clock_reading is not None and self._clock_reading.corrected:
            self._clock_reading = ClockReading(0.0, self._clock_reading.reference, False)
        report = evaluate(readings, self.config.device, self.config.policy.selfcheck,
                          probe.reason, self.hw.clock.now())
        self.reports.append(report)
        return report

