"""The agent's edge: turns hardware into events for the core and carries out its actions.

``Agent.step`` is one pass of the loop: poll buttons, GNSS, power and storage; finish a
self-check whose probe window has passed; hand each event to the core; do what it
returns; advance the indicators. On the recorder ``run`` calls it every few milliseconds;
the simulator calls it once per simulated frame, in virtual time. Camera frames and audio
blocks arrive through the sinks between steps (from the camera's thread on a Pi, from the
simulator's tick in simulation).

A part that fails is logged and the agent goes on: nothing here stops the camera. The
edge watches the parts: a camera without usable frames, a microphone without audio or with
only digital silence, the wall clock stepping against the monotonic one, garbage on the
GNSS line or from the camera (counted, logged at most every ``GARBAGE_LOG_PERIOD_S``).
What it logs about a fault is also stamped into the open segment's metadata.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from device.clock import TimeSource
from device.gnss import GnssFix
from device.hardware import Hardware, HardwareError
from firmware_py.agent.core import AgentCore, State
from firmware_py.agent.docking import Docking
from firmware_py.agent.events import (Action, ActivityContinued, AddMarker, BeginSelfCheck,
                                      Booted, ButtonGesture, ClockOffsetMeasured, CorrectClock,
                                      EndActivity, Event, GnssUpdate, InterruptionClosed,
                                      InterruptionOpened, InterruptionUpdated, Log,
                                      OpenActivity, PowerRestored, PowerUpdate, RaiseAlert,
                                      SelfCheckDone, ShowSignal, Speak, StartCamera,
                                      StartRecording, StartSync, StopCamera, StopRecording,
                                      StopSync, StorageUpdate, TakePhoto, Tick)
from firmware_py.agent.selfcheck import (ClockReading, SelfCheckReadings,
                                         SelfCheckReport, evaluate, recording_hours_free)
from firmware_py.agent.signals import SignalDriver
from firmware_py.agent.watchdogs import (CameraWatch, ClockWatch, GarbageWatch, MicrophoneWatch,
                                         SelfCheckProbe, Sinks)
from firmware_py.agent.startup import (ClockMemory, Heartbeat, cut_recording_files, power_cut,
                                       recover_seals)
from firmware_py.config import Config
from firmware_py.evidence.audit import AuditLog
from firmware_py.evidence.keys import DeviceIdentity, device_identity
from firmware_py.evidence.seal import Sealer, plain_file
from firmware_py.evidence.store import EvidenceStore
from firmware_py.fieldwork.activity import ActivityRecord, find_open_activity
from firmware_py.fieldwork.interruptions import Interruption
from firmware_py.fieldwork.speech import Clip, PhraseRenderer
from firmware_py.fieldwork.workrecord import work_record, write_work_record
from firmware_py.paths import DeviceLayout
from firmware_py.recording.metadata import time_at
from firmware_py.recording.pipeline import Recorder, RecordingPipeline
from firmware_py.recording.stamp import Stamper, stamp_lines

log = logging.getLogger(__name__)

POWER_PERIOD_S = 1.0
STORAGE_PERIOD_S = 5.0
TICK_PERIOD_S = 1.0

# Audit entries that also go into the metadata of the segment being written (R10.2), so a
# fault is on record beside the media it concerns.
STAMPED_IN_METADATA = frozenset({
    "camera_stalled", "camera_resumed", "camera_garbage", "microphone_failed",
    "microphone_recovered", "gnss_lost", "gnss_fix", "gnss_garbage", "clock_jump",
    "clock_corrected", "battery_low", "storage_low", "storage_full", "hardware_error"})


class Agent:
    def __init__(self, config: Config, hardware: Hardware, audit: AuditLog,
                 pipeline: RecordingPipeline | None = None,
                 identity: DeviceIdentity | None = None, *,
                 docking: Docking | None = None) -> None:
        self.config = config
        self.docking = docking  # told when the device is docked and undocked (dock sync)
        self.hw = hardware
        self.audit = audit
        self.root = hardware.storage.path.parent
        self.identity = identity or device_identity(self.root, config.device.device.id)
        self.store = EvidenceStore(hardware.storage.path, config.device.device.id)
        self.layout = DeviceLayout(self.root, hardware.storage.path)
        self.clock_memory = ClockMemory(hardware.clock, self.layout.clock_state)
        self.heartbeat = Heartbeat(self.layout.heartbeat)
        self.sealer = Sealer(self.identity, self.store)
        audit.sign_with(self.identity.signing_key.sign, self.identity.key_id)
        self.pipeline: RecordingPipeline = pipeline or Recorder(
            config.device, hardware.clock, self.store, self.sealer, self.time_quality)
        self.activity: ActivityRecord | None = None
        self.speech = PhraseRenderer(self.layout.speech_cache,
                                     config.device.audio.sample_rate)
        self._clips: dict[str, Clip] = {}
        self.camera_watch = CameraWatch(config.policy.stops.camera_stall_s, config.device.video.fps)
        self.microphone_watch = MicrophoneWatch(config.policy.warnings.microphone_fault_s)
        self.clock_watch = ClockWatch()
        self.garbage_watch = GarbageWatch()
        stamp = config.device.stamp
        video, photo = config.device.video, config.device.photo
        self._video_stamper = Stamper(video.width, video.height, stamp.position, stamp.font_px)
        self._still_stamper = Stamper(photo.width, photo.height, stamp.position, stamp.font_px)
        self._last_sync: tuple[float, float] | None = None  # (monotonic, offset before)
        self._last_position: GnssFix | None = None
        self._stamp_key: tuple[int, int, bool] | None = None
        self._stamp_text: tuple[str, ...] = ()
        self.core = AgentCore(config)
        self.signals = SignalDriver(hardware.indicators)
        self.reports: list[SelfCheckReport] = []
        self.log_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._sinks = Sinks(self.pipeline, self.camera_watch, self.microphone_watch)
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
        # Render the phrase scripts before anyone presses record, so the announcement
        # never waits for the speech engine.
        for script in self._scripts():
            self._clip(script)
        resumed_clock = self.clock_memory.resume()
        self._dispatch(Booted(self.hw.clock.monotonic()))
        if resumed_clock is not None:
            self._log("clock_correction_resumed", resumed_clock)
        for kind, facts in recover_seals(self.store, self.sealer,
                                         self.config.device.device.officer or None):
            self._log(kind, facts)
        self._continue()

    def _continue(self) -> None:
        """Take up what the last run left (``firmware_py.agent.startup``): an activity the officer
        has not ended goes on, and a power cut is logged — with an automatic interruption
        (Art. 12 (1)) when it cut a recording short. Runs after ``_recover`` has sealed
        what the cut left open, so the cut recording's files are known by their seals."""
        now = self.hw.clock.now()
        left = find_open_activity(self.store.root)
        cut = power_cut(self.audit.previous_run_end, left, now, self.heartbeat.last())
        if left is not None:
            self.activity = ActivityRecord.reopen(left, self.hw.clock)
            facts = {"activity": left.activity.id, "recordings": len(left.recordings),
                     "interruptions": left.last_number, "after_power_cut": cut is not None}
            self.activity.append("activity_resumed", facts)
            self._log("activity_resumed", facts)
            self._dispatch(ActivityContinued(now.monotonic, left.last_number,
                                             left.interruption_now(now)))
        if cut is None:
            return
        facts = cut.to_json()
        if self.activity is not None and left is not None and cut.recording:
            # The recording's stop, as far as the files tell it (its log line never came).
            stopped = {"activity": left.activity.id, "reason": "power_cut", "cut_short": True,
                       "last_alive_utc": facts["last_alive_utc"],
                       "files": cut_recording_files(left)}
            self.activity.recordings.append(stopped)
            self.activity.append("recording_stopped", stopped)
            facts["files"] = stopped["files"]
        if self.activity is not None:
            self.activity.append("power_cut", facts)
        self._log("power_cut", facts)
        self._dispatch(PowerRestored(now.monotonic, cut.lost_at, cut.off_s, cut.recording,
                                     self._poll("power", self.hw.power.read, None)))

    def step(self) -> None:
        with self._lock:
            now = self.hw.clock.monotonic()
            jump = self.clock_watch.check(self.hw.clock.now(), self.hw.clock.correction_s)
            if jump is not None:
                self._log("clock_jump", jump)
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
                self.clock_memory.save()  # a correction by GNSS or by the dock outlives a reboot
                reading = self._poll("power", self.hw.power.read, None)
                if reading is not None:
                    self._dispatch(PowerUpdate(reading, now))
            self.heartbeat.beat(now, self.hw.clock.now().utc)
            if now >= self._next_storage:
                self._next_storage = now + STORAGE_PERIOD_S
                reading = self._poll("storage", self.hw.storage.read, None)
                if reading is not None:
                    reserve = self.config.policy.stops.storage_reserve_mb * 1e6
                    hours = recording_hours_free(reading, self.config.device, reserve)
                    self._dispatch(StorageUpdate(reading, hours, now))
            self._watch(now)
            if self._sinks.probe is not None and now >= self._sinks.probe.ends:
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
                self._execute(StopRecording("shutdown"))
            self._log("shutdown", {"state": str(self.core.state)})
            if self._camera_on:
                self._execute(StopCamera())
            self.pipeline.close()
            if self.activity is not None:
                self.activity.suspend()

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
        if kind in STAMPED_IN_METADATA:
            self.pipeline.note({"kind": kind, "time": self.hw.clock.now().to_json(), **fields})
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
                self._sinks.probe = SelfCheckProbe(reason, now, now + probe_s)
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
                activity = self.store.open_activity(self.hw.clock.now().utc)
                self.activity = ActivityRecord(activity, self.hw.clock, self.config.device,
                                               self.config.policy)
                self._log("activity_opened", {"activity": activity.id,
                                              "matter": self.activity.header["matter"],
                                              "officer": self.activity.header["officer"],
                                              "unassigned": self.activity.header["unassigned"]})
            case EndActivity():
                assert self.activity is not None
                summary = self.activity.close()
                path = self.activity.path
                seal = self.sealer.seal("activity", path / "activity",
                                        [("record", plain_file("record", path / "activity.json"))],
                                        {"activity": summary["id"], "officer": summary["officer"]},
                                        start=self.activity.opened, end=self.hw.clock.now())
                summary["manifest"] = seal.manifest_path.name
                self._log("activity_ended", {"activity": summary["id"],
                                             "recordings": len(summary["recordings"]),
                                             "photos": len(summary["photos"]),
                                             "interruptions": len(summary["interruptions"]),
                                             "long_term": summary["long_term"]})
                self.activity = None
            case StartRecording(resumed):
                assert self.activity is not None
                facts = self.pipeline.start_recording(self.hw.clock.monotonic(),
                                                      self.activity.activity)
                facts["resumed"] = resumed
                self.activity.append("recording_started", facts)
                self._log("recording_started", facts)
            case StopRecording(reason):
                facts = self.pipeline.stop_recording(self.hw.clock.monotonic(), reason)
                facts["reason"] = reason
                if self.activity is not None:
                    self.activity.recordings.append(facts)
                    self.activity.append("recording_stopped", facts)
                self._log("recording_stopped", facts)
            case Speak(script):
                self._speak(script)
            case InterruptionOpened(interruption):
                self._interruption("interruption", interruption)
            case InterruptionUpdated(interruption):
                self._interruption("interruption_reason", interruption)
            case InterruptionClosed(interruption):
                self._close_interruption(interruption)
            case TakePhoto():
                self._take_photo()
            case StartSync():
                if self.docking is not None:
                    self._tell_docking("docked", self.docking.docked)
            case StopSync():
                if self.docking is not None:
                    self._tell_docking("undocked", self.docking.undocked)
            case AddMarker(incident):
                facts = self.pipeline.add_marker(incident, self.activity.activity if self.activity else None)
                facts["activity"] = self.activity.id if self.activity else None
                if self.activity is not None:
                    self.activity.markers += not incident
                    self.activity.incidents += incident
                    self.activity.append("marker", facts)
                self._log("incident_marker" if incident else "marker", facts)
            case _:
                raise AssertionError(f"unhandled action {action!r}")

    def _tell_docking(self, call: str, hook: Callable[[], None]) -> None:
        """Tell the docking hook; a sync that fails is logged and the agent goes on."""
        try:
            hook()
        except Exception as exc:  # the dock link must never stop the device
            log.exception("docking hook %s failed", call)
            self._log("sync_error", {"call": call, "error": f"{type(exc).__name__}: {exc}"})

    def _start_capture(self) -> None:
        if self._camera_on:
            return
        self._capture_errors.clear()
        now = self.hw.clock.monotonic()
        self.camera_watch.start(now)  # a camera that never starts stalls too
        self.microphone_watch.start(now)  # ... and so does a microphone
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
        self.camera_watch.stop()
        self.microphone_watch.stop()
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
        facts = self.pipeline.save_photo(still, self.activity.activity)
        self.activity.photos.append(facts["file"])
        self.activity.append("photo", facts)
        self._log("photo", facts)

    # --- speech, interruptions, camera watch ----------------------------------------------

    def _scripts(self) -> dict[str, tuple]:
        policy = self.config.policy
        scripts = {"announcement": policy.announcement.phrases,
                   "prompt": policy.interruption.prompt}
        for key, reason in policy.interruption.reasons.items():
            if reason.spoken:
                scripts[f"reason:{key}"] = reason.spoken
        return scripts

    def _clip(self, script: str) -> Clip | None:
        if script not in self._clips:
            phrases = self._scripts().get(script)
            if not phrases:
                return None
            self._clips[script] = self.speech.script(phrases, self.config.policy.announcement.gap_s)
        return self._clips[script]

    def _speak(self, script: str) -> None:
        clip = self._clip(script)
        if clip is None:
            return
        try:
            self.hw.speaker.play(clip.samples, clip.sample_rate)
        except HardwareError as exc:
            self._log("hardware_error", {"part": "speaker", "error": str(exc)})
            return
        start = self.hw.clock.now()
        parts = [{"language": p.language, "text": p.text, "start_s": round(p.start_s, 3),
                  "duration_s": round(p.duration_s, 3), "source": p.source} for p in clip.parts]
        self._log("spoken", {"script": script, "duration_s": round(clip.duration_s, 3),
                             "sources": sorted({p["source"] for p in parts})})
        if script == "announcement":
            # R8.4: the announcement, then the window for the officer's statement.
            window = self.config.policy.announcement.statement_window_s
            end_of_speech = start.utc + clip.duration_s
            self.pipeline.note({"kind": "announcement", "time": start.to_json(),
                                "duration_s": round(clip.duration_s, 3), "phrases": parts})
            self.pipeline.note({"kind": "statement_window", "time": start.to_json(),
                                "start_utc": round(end_of_speech, 3),
                                "end_utc": round(end_of_speech + window, 3),
                                "duration_s": window,
                                "purpose": "officer states purpose, task and officers (Art. 8)"})

    def _interruption(self, kind: str, interruption: Interruption) -> None:
        facts = interruption.to_json()
        facts["activity"] = self.activity.id if self.activity else None
        if self.activity is not None:
            self.activity.append(kind, facts)
        self._log(kind, facts)

    def _close_interruption(self, interruption: Interruption) -> None:
        assert self.activity is not None
        interruption = replace(interruption, activity=self.activity.id)
        stopped = time_at(self.hw.clock, interruption.stopped_at)
        resumed = None if interruption.resumed_at is None else time_at(self.hw.clock, interruption.resumed_at)
        record = work_record(interruption, self.activity.header, stopped, resumed,
                             self.config.device, self.config.policy.interruption)
        json_path, text_path = write_work_record(self.activity.path, record)
        self.sealer.seal("work_record", json_path.with_suffix(""),
                         [("record", plain_file("record", json_path)),
                          ("text", plain_file("text", text_path))],
                         {"activity": self.activity.id, "officer": record["officer"],
                          "interruption": interruption.number}, start=stopped, end=resumed)
        self.activity.interruptions.append(interruption.to_json())
        self.activity.work_records.append(json_path.name)
        facts = {**interruption.to_json(), "work_record": json_path.name}
        self.activity.append("interruption_closed", facts)
        self._log("interruption_closed", facts)

    def _watch(self, now: float) -> None:
        """Ask the watchdogs (camera, microphone, garbage input) once a step."""
        for event in (self.camera_watch.check(now, self.pipeline.rejected_frames),
                      self.microphone_watch.check(now)):
            if event is not None:
                self._dispatch(event)
        stats = self.hw.gnss.stats
        counts = {"gnss": (stats.malformed + stats.bad_checksum + stats.overlong, stats.last_error),
                  "camera": (self.pipeline.rejected_frames, self.pipeline.last_rejection)}
        for kind, facts in self.garbage_watch.check(now, counts):
            self._log(kind, facts)

    # --- stamp (camera thread) ----------------------------------------------------------

    def _stamp_lines(self, timestamp_us: int) -> tuple[str, ...]:
        at = time_at(self.hw.clock, timestamp_us / 1e6)
        fix = self.hw.gnss.last_fix
        if fix is not None and not fix.has_position:
            fix = self._last_position
        elif fix is not None:
            self._last_position = fix
        recording = self.core.state is State.RECORDING
        # The text changes at most once a second; frames come 30 times a second.
        key = (int(at.utc), id(fix), recording)
        if key == self._stamp_key:
            return self._stamp_text
        age = None if fix is None else at.monotonic - fix.received_at
        device = self.config.device.device
        self._stamp_key = key
        self._stamp_text = stamp_lines(at, device.id, device.officer, fix, age, recording)
        return self._stamp_text

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
        probe, self._sinks.probe = self._sinks.probe, None
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

