"""The agent's edge: turns hardware into events for the core and carries out its actions.

``Agent.step`` is one pass of the loop: poll buttons, GNSS, power and storage; finish a
self-check whose probe window has passed; hand each event to the core; do what it
returns; advance the indicators. On the recorder ``run`` calls it every few milliseconds;
the simulator calls it once per simulated frame, in virtual time. Camera frames and audio
blocks arrive through the sinks between steps (from the camera's thread on a Pi, from the
simulator's tick in simulation).

A part that fails is logged and the agent goes on: nothing here stops the camera. The
edge watches the parts (``firmware_py.agent.watchdogs``): a camera without usable frames,
a microphone without audio or with only digital silence, the wall clock stepping against
the monotonic one, garbage on the GNSS line or from the camera. What it logs about a fault
is also stamped into the open segment's metadata.

Each action the core returns has one handler method (``Agent._handlers``: action type →
handler). The agent receives its parts — store, sealer, pipeline, speech, stamps, core,
signals, docking hook — from ``firmware_py.agent.assembly.assemble``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable

from device.clock import TimeSource
from device.gnss import GnssFix
from device.hardware import Hardware, HardwareError
from device.timetrust import TimeTrust, TimeVerdict
from firmware_py.agent.core import AgentCore, State
from firmware_py.agent.docking import Docking
from firmware_py.agent.events import (Action, ActivityContinued, AddMarker, BeginSelfCheck,
                                      Booted, ButtonGesture, ClockOffsetMeasured, CorrectClock,
                                      EndActivity, Event, GnssUpdate, CloseInterruption,
                                      RecordInterruption, UpdateInterruption, Log,
                                      OpenActivity, PowerRestored, PowerUpdate, RaiseAlert,
                                      SelfCheckDone, ShowSignal, Speak, StartCamera,
                                      StartRecording, StartSync, StopCamera, StopRecording,
                                      StopSync, StorageUpdate, TakePhoto, Tick)
from firmware_py.agent.rtckeeping import RtcKeeper
from firmware_py.agent.selfcheck import (SelfCheckReadings, SelfCheckReport, evaluate,
                                         recording_hours_free)
from firmware_py.agent.signals import SignalDriver
from firmware_py.agent.startup import (ClockMemory, Heartbeat, TrustedTimeMemory,
                                       cut_recording_files, power_cut, recover_seals)
from firmware_py.agent.supervision import ServiceNotifier
from firmware_py.agent.timekeeping import TimeKeeping
from firmware_py.agent.watchdogs import (CameraWatch, ClockWatch, GarbageWatch, MicrophoneWatch,
                                         SelfCheckProbe, Sinks)
from firmware_py.config import Config
from firmware_py.evidence.audit import AuditLog
from firmware_py.evidence.seal import Sealer, plain_file
from firmware_py.evidence.store import EvidenceStore
from firmware_py.fieldwork.activity import ActivityLogWriter, find_open_activity
from firmware_py.fieldwork.interruptions import Interruption
from firmware_py.fieldwork.speech import PolicyClips
from firmware_py.fieldwork.workrecord import work_record, write_work_record
from firmware_py.paths import DeviceLayout
from firmware_py.recording.metadata import time_at
from firmware_py.recording.pipeline import RecordingPipeline
from firmware_py.recording.stamp import FrameStamps

log = logging.getLogger(__name__)

POWER_PERIOD_S = 1.0
STORAGE_PERIOD_S = 5.0
TICK_PERIOD_S = 1.0

# Audit entries that also go into the metadata of the segment being written (R10.2), so a
# fault is on record beside the media it concerns.
STAMPED_IN_METADATA = frozenset({
    "camera_stalled", "camera_resumed", "camera_garbage", "microphone_failed",
    "microphone_recovered", "gnss_lost", "gnss_fix", "gnss_garbage", "gnss_time_rejected",
    "clock_jump", "clock_corrected", "battery_low", "storage_low", "storage_full", "hardware_error"})


class Agent:
    """The edge: runs the core against the hardware. Built by
    ``firmware_py.agent.assembly.assemble``, which makes its parts."""

    def __init__(self, config: Config, hardware: Hardware, audit: AuditLog, *,
                 layout: DeviceLayout, store: EvidenceStore, sealer: Sealer,
                 pipeline: RecordingPipeline, speech: PolicyClips, stamps: FrameStamps,
                 core: AgentCore, signals: SignalDriver, time: TimeKeeping,
                 docking: Docking | None = None) -> None:
        self.config = config
        self.hw = hardware
        self.audit = audit
        self.layout = layout
        self.store = store
        self.sealer = sealer
        self.pipeline = pipeline
        self.speech = speech
        self.stamps = stamps
        self.core = core
        self.signals = signals
        self.time = time
        self.docking = docking  # told when the device is docked and undocked (dock sync)
        self.clock_memory = ClockMemory(hardware.clock, layout.clock_state)
        self.heartbeat = Heartbeat(layout.heartbeat)
        self.trusted_time = TrustedTimeMemory(layout.trusted_time)
        self.time_trust = TimeTrust(self.trusted_time.load())
        self.rtc = None if hardware.rtc is None else RtcKeeper(
            hardware.rtc, hardware.clock, config.device.clock, layout.rtc_state,
            lambda: self.time_trust.floor)
        self._time_rejected: tuple[str, float] | None = None  # (reason, monotonic) last logged
        self._time_rejections = 0
        self.camera_watch = CameraWatch(config.policy.stops.camera_stall_s, config.device.video.fps)
        self.microphone_watch = MicrophoneWatch(config.policy.warnings.microphone_fault_s)
        self.clock_watch = ClockWatch()
        self.garbage_watch = GarbageWatch()
        self.sinks = Sinks(pipeline, self.camera_watch, self.microphone_watch)
        self.activity: ActivityLogWriter | None = None
        self.reports: list[SelfCheckReport] = []
        self.log_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            Log: self._do_log, ShowSignal: self._show_signal, RaiseAlert: self._raise_alert,
            StartCamera: self._start_capture, StopCamera: self._stop_capture,
            BeginSelfCheck: self._begin_self_check, CorrectClock: self._correct_clock,
            OpenActivity: self._open_activity, EndActivity: self._end_activity,
            StartRecording: self._start_recording, StopRecording: self._stop_recording,
            Speak: self._speak, TakePhoto: self._take_photo, AddMarker: self._add_marker,
            RecordInterruption: self._open_interruption,
            UpdateInterruption: self._update_interruption,
            CloseInterruption: self._close_interruption,
            StartSync: self._start_sync, StopSync: self._stop_sync,
        }
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
        self.speech.prepare()
        resumed_clock = self.clock_memory.resume()
        self._dispatch(Booted(self.hw.clock.monotonic()))
        if resumed_clock is not None:
            self._log("clock_correction_resumed", resumed_clock)
        if self.rtc is not None:  # after the resumed correction: the RTC is checked against it
            self._rtc_entries(self.rtc.at_boot())
        for kind, facts in recover_seals(self.store, self.sealer,
                                         self.config.device.device.officer or None):
            self._log(kind, facts)
        self._continue()

    def _continue(self) -> None:
        """Take up what the last run left (``firmware_py.agent.startup``): an activity the officer
        has not ended goes on, and a power cut is logged — with an automatic interruption
        (Art. 12 (1)) when it cut a recording short. Runs after ``recover_seals`` has sealed
        what the cut left open, so the cut recording's files are known by their seals."""
        now = self.hw.clock.now()
        left = find_open_activity(self.store.root)
        cut = power_cut(self.audit.previous_run_end, left, now, self.heartbeat.last())
        if left is not None:
            self.activity = ActivityLogWriter.reopen(left, self.hw.clock)
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
                    self._gnss_time(fix)
            if now >= self._next_power:
                self._next_power = now + POWER_PERIOD_S
                self.clock_memory.save()  # a correction by GNSS or by the dock outlives a reboot
                if self.hw.clock.source is not TimeSource.RTC:
                    stamp = self.hw.clock.now()
                    self.trusted_time.save(stamp.utc, stamp.monotonic, str(stamp.source))
                    self._rtc_trusted(stamp.source)  # corrected by GNSS or the dock
                reading = self._poll("power", self.hw.power.read, None)
                if reading is not None:
                    self._dispatch(PowerUpdate(reading, now))
            self.heartbeat.beat(now, lambda: self.hw.clock.now().utc)
            if now >= self._next_storage:
                self._next_storage = now + STORAGE_PERIOD_S
                reading = self._poll("storage", self.hw.storage.read, None)
                if reading is not None:
                    reserve = self.config.policy.stops.storage_reserve_mb * 1e6
                    hours = recording_hours_free(reading, self.config.device, reserve)
                    self._dispatch(StorageUpdate(reading, hours, now))
            if self.rtc is not None:  # a pending RTC write waits for a whole second
                self._rtc_entries(self.rtc.tick())
            self._watch(now)
            if self.sinks.probe is not None and now >= self.sinks.probe.ends:
                self._dispatch(SelfCheckDone(self._finish_probe(now)))
            if now >= self._next_tick:
                self._next_tick = now + TICK_PERIOD_S
                self._dispatch(Tick(now))
            self.signals.update(now)

    def _gnss_time(self, fix: GnssFix) -> None:
        """Measure the clock against a GNSS time the device can trust (``TimeTrust``: not
        before the build date or the last trusted time, week rollover corrected, confirmed
        by consecutive epochs); an implausible time is logged and ignored."""
        assert fix.time_utc is not None
        clock = self.hw.clock
        verdict = self.time_trust.check(fix.time_utc.timestamp(), fix.received_at,
                                        clock.now().utc)
        if not verdict.plausible:
            self._log_time_rejected(verdict, fix.received_at)
            return
        if not verdict.accepted:
            return  # plausible, not yet confirmed
        reference = verdict.utc
        offset = clock.offset_from(reference, fix.received_at)
        self.time.measured(TimeSource.GNSS, offset)
        self._dispatch(ClockOffsetMeasured(TimeSource.GNSS, offset, reference, fix.received_at))
        now = clock.monotonic()
        true_now = reference + (now - fix.received_at)
        self.time_trust.trusted(true_now)
        self.trusted_time.save(true_now, now, str(TimeSource.GNSS))
        self._rtc_trusted(TimeSource.GNSS)

    def _rtc_trusted(self, source: TimeSource) -> None:
        """The clock agrees with a trusted time now: the RTC is written when due."""
        if self.rtc is not None:
            self._rtc_entries(self.rtc.trusted(source))

    def _rtc_entries(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        for kind, facts in entries:
            self._log(kind, facts)
        assert self.rtc is not None
        self.time.rtc_problem = self.rtc.problem

    def _log_time_rejected(self, verdict: TimeVerdict, at: float) -> None:
        """Audit an implausible GNSS time: when the reason changes, else once a minute."""
        self._time_rejections += 1
        last = self._time_rejected
        if last is not None and last[0] == verdict.reason and at - last[1] < 60.0:
            return
        self._time_rejected = (verdict.reason, at)
        self._log("gnss_time_rejected", {**verdict.to_json(), "source": str(TimeSource.GNSS),
                                         "rejected_so_far": self._time_rejections})

    def run(self, stop: threading.Event, period_s: float = 0.01,
            supervisor: ServiceNotifier | None = None) -> None:
        """The real-time loop on the recorder, until ``stop`` is set. Under systemd
        (``supervisor``) it says READY once started and pings the watchdog after each
        step, so a step that never returns gets the recorder restarted."""
        self.start()
        if supervisor is not None:
            supervisor.ready(f"{self.config.device.device.id}: {self.core.state}")
        while not stop.wait(period_s):
            self.step()
            if supervisor is not None:
                supervisor.alive()
        if supervisor is not None:
            supervisor.stopping()

    def close(self) -> None:
        with self._lock:
            if self.core.state is State.RECORDING:
                self._stop_recording(StopRecording("shutdown"))
            self._log("shutdown", {"state": str(self.core.state)})
            if self._camera_on:
                self._stop_capture()
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

    def _execute(self, action: Action) -> None:
        handler = self._handlers.get(type(action))
        if handler is None:
            raise AssertionError(f"unhandled action {action!r}")
        handler(action)

    # --- actions --------------------------------------------------------------------------

    def _do_log(self, action: Log) -> None:
        self._log(action.kind, action.fields)

    def _show_signal(self, action: ShowSignal) -> None:
        self.signals.show(action.signal)

    def _raise_alert(self, action: RaiseAlert) -> None:
        self.signals.alert(action.alert)

    def _begin_self_check(self, action: BeginSelfCheck) -> None:
        now = self.hw.clock.monotonic()
        probe_s = self.config.policy.selfcheck.probe_seconds
        self.sinks.probe = SelfCheckProbe(action.reason, now, now + probe_s)
        self.time.check_started()
        self._log("selfcheck_started", {"reason": str(action.reason)})

    def _correct_clock(self, action: CorrectClock) -> None:
        correction = self.hw.clock.correct(action.reference_utc, action.at, action.source)
        self.time.corrected(action.source, correction.offset_before_s)
        self._log("clock_corrected", {"source": str(action.source),
                                      "offset_before_s": round(correction.offset_before_s, 3)})

    def _open_activity(self, action: OpenActivity) -> None:
        activity = self.store.open_activity(self.hw.clock.now().utc)
        self.activity = ActivityLogWriter(activity, self.hw.clock, self.config.device,
                                       self.config.policy)
        self._log("activity_opened", {"activity": activity.id,
                                      "matter": self.activity.header["matter"],
                                      "officer": self.activity.header["officer"],
                                      "unassigned": self.activity.header["unassigned"]})

    def _end_activity(self, action: EndActivity) -> None:
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

    def _start_recording(self, action: StartRecording) -> None:
        assert self.activity is not None
        facts = self.pipeline.start_recording(self.hw.clock.monotonic(), self.activity.activity)
        facts["resumed"] = action.resumed
        self.activity.append("recording_started", facts)
        self._log("recording_started", facts)

    def _stop_recording(self, action: StopRecording) -> None:
        facts = self.pipeline.stop_recording(self.hw.clock.monotonic(), action.reason)
        facts["reason"] = action.reason
        if self.activity is not None:
            self.activity.recordings.append(facts)
            self.activity.append("recording_stopped", facts)
        self._log("recording_stopped", facts)

    def _add_marker(self, action: AddMarker) -> None:
        incident = action.incident
        facts = self.pipeline.add_marker(incident, self.activity.activity if self.activity else None)
        facts["activity"] = self.activity.id if self.activity else None
        if self.activity is not None:
            self.activity.markers += not incident
            self.activity.incidents += incident
            self.activity.append("marker", facts)
        self._log("incident_marker" if incident else "marker", facts)

    def _start_sync(self, action: StartSync) -> None:
        if self.docking is not None:
            self._tell_docking("docked", self.docking.docked)

    def _stop_sync(self, action: StopSync) -> None:
        if self.docking is not None:
            self._tell_docking("undocked", self.docking.undocked)

    def _tell_docking(self, call: str, hook: Callable[[], None]) -> None:
        """Tell the docking hook; a sync that fails is logged and the agent goes on."""
        try:
            hook()
        except Exception as exc:  # the dock link must never stop the device
            log.exception("docking hook %s failed", call)
            self._log("sync_error", {"call": call, "error": f"{type(exc).__name__}: {exc}"})

    def _start_capture(self, action: StartCamera | None = None) -> None:
        if self._camera_on:
            return
        self._capture_errors.clear()
        now = self.hw.clock.monotonic()
        self.camera_watch.start(now)  # a camera that never starts stalls too
        self.microphone_watch.start(now)  # ... and so does a microphone
        for part, start in (("camera", self.hw.camera.start), ("microphone", self.hw.microphone.start)):
            try:
                if part == "camera":
                    start(self.sinks, self.stamps.frame)
                else:
                    start(self.sinks)
            except HardwareError as exc:
                self._capture_errors[part] = str(exc)
                self._log("hardware_error", {"part": part, "error": str(exc)})
        self._camera_on = True

    def _stop_capture(self, action: StopCamera | None = None) -> None:
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

    def _take_photo(self, action: TakePhoto) -> None:
        try:
            still = self.hw.camera.capture_still(self.stamps.still)
        except HardwareError as exc:
            self._log("hardware_error", {"part": "camera", "error": str(exc)})
            return
        assert self.activity is not None  # the core opens one before a photo
        facts = self.pipeline.save_photo(still, self.activity.activity)
        self.activity.photos.append(facts["file"])
        self.activity.append("photo", facts)
        self._log("photo", facts)

    # --- speech, interruptions, watchdogs ----------------------------------------------------

    def _speak(self, action: Speak) -> None:
        script = action.script
        clip = self.speech.clip(script)
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

    def _open_interruption(self, action: RecordInterruption) -> None:
        self._interruption("interruption", action.interruption)

    def _update_interruption(self, action: UpdateInterruption) -> None:
        self._interruption("interruption_reason", action.interruption)

    def _interruption(self, kind: str, interruption: Interruption) -> None:
        facts = interruption.to_json()
        facts["activity"] = self.activity.id if self.activity else None
        if self.activity is not None:
            self.activity.append(kind, facts)
        self._log(kind, facts)

    def _close_interruption(self, action: CloseInterruption) -> None:
        assert self.activity is not None
        interruption = replace(action.interruption, activity=self.activity.id)
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

    def _finish_probe(self, now: float) -> SelfCheckReport:
        probe, self.sinks.probe = self.sinks.probe, None
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
            clock=self.time.reading_for_check(),
            probe_seconds=round(probe_s, 3),
            camera_frames=probe.frames,
            camera_error=self._capture_errors.get("camera", "" if self._camera_on else "camera off"),
            microphone_blocks=probe.blocks,
            microphone_expected_blocks=int(probe_s * 1000 // audio.block_ms),
            microphone_dbfs=probe.level_dbfs(),
            microphone_error=self._capture_errors.get("microphone", ""),
            gnss_sentences=gnss.stats.sentences, gnss_fix=fix, gnss_fix_age_s=fix_age)
        report = evaluate(readings, self.config.device, self.config.policy.selfcheck,
                          probe.reason, self.hw.clock.now())
        self.reports.append(report)
        return report

