"""The agent core: a pure state machine from events to actions (DESIGN.md, after h11).

The states and what moves between them are the table ``TRANSITIONS`` (as h11's
``_state.py`` holds its own): (state, trigger) → next state. ``_enter`` takes a trigger,
looks the move up and raises ``TransitionError`` on one the table does not have:

    BOOTING --booted--> CHECKING --self_check_done--> READY
    READY/CHECKING --record--> RECORDING          (a self-check never blocks recording, R7.6)
    RECORDING --stop--> READY                     (inside an activity: an interruption; also
                                                   the end of the activity (R8.3), a battery
                                                   cut-off or full storage (Art. 12 (1)))
    RECORDING --stop_on_dock--> DOCKED            (a recording stopped on external power)
    READY/CHECKING/POWER_SAVE --dock--> DOCKED --undock--> CHECKING (R7.1)
    READY/CHECKING --battery_cutoff--> POWER_SAVE
    A camera stall changes no state: sound goes on, the picture's gap is an automatic
    interruption until frames return.

On external power, in any state, the core asks the edge to sync with the dock (StartSync:
the sync takes only sealed files, so a recording going on is no obstacle); off it, to end
the sync session (StopSync).

Activities (R5.2): the first recording or photo opens one; only the explicit end-activity
gesture (a long press of record) closes it. Every stop in between is an interruption
(R12.1) whose reason the officer gives with marker presses after the voice prompt, or the
device records itself. Recording starts only from the record button (R5.3): no event from
outside — dock, network, timer — can start it, and nothing restarts it by itself but the
officer's own recording when the power comes back soon after a cut (``_power_restored``).

Faults of a part are told to the officer and logged; the edge also stamps them into the
metadata of the segment being written. Warnings come at each of the policy's thresholds
(battery charge, recording time left on the storage), once each until a recharge or freed
space re-arms them.

The core holds no hardware, files or threads: a test feeds it events and reads actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Callable

from device.clock import TimeSource
from device.timetrust import BUILD_UTC
from device.inputs import Button, Gesture
from firmware_py.config import Config
from firmware_py.agent.events import (Action, AddMarker, BeginSelfCheck, Booted, ButtonGesture,
                                CameraResumed, CameraStalled, ClockOffsetMeasured,
                                CorrectClock, EndActivity, Event, GnssUpdate,
                                CloseInterruption, RecordInterruption, UpdateInterruption,
                                Log, MicrophoneFailed, MicrophoneRecovered, OpenActivity,
                                PowerUpdate, RaiseAlert, SelfCheckDone,
                                ShowSignal, Speak, StartCamera, StartRecording, StartSync,
                                StopCamera, StopRecording, StopSync, StorageUpdate, TakePhoto,
                                Tick)
from firmware_py.fieldwork.interruptions import DEVICE, PENDING, Interruption
from firmware_py.agent.selfcheck import CheckReason, recording_hours_left
from firmware_py.agent.signals import Alert, Signal
from firmware_py.agent.events import ActivityContinued, PowerRestored

# The storage stop comes while this much recording still fits above the reserve: twice the
# edge's storage check period (agent.STORAGE_PERIOD_S), so media never eats into the reserve.
STORAGE_STOP_LEAD_S = 10.0


def warning_due(value: float, thresholds: tuple[float, ...], warned: float | None,
                rearm_at: Callable[[float], float]) -> tuple[float | None, float | None]:
    """The threshold ``value`` has newly fallen below (or None), and the lowest one warned.

    ``warned`` is the lowest threshold announced so far; every one above it counts as
    announced too. Once ``value`` climbs to ``rearm_at(warned)`` the thresholds it is back
    above are announced again the next time they are crossed.
    """
    if warned is not None and value >= rearm_at(warned):
        still_below = [t for t in thresholds if value < t]
        warned = min(still_below) if still_below else None
    crossed = [t for t in thresholds if value < t and (warned is None or t < warned)]
    if not crossed:
        return None, warned
    return min(crossed), min(crossed)


class State(StrEnum):
    BOOTING = "booting"
    CHECKING = "checking"
    READY = "ready"
    RECORDING = "recording"
    POWER_SAVE = "power_save"
    DOCKED = "docked"


class TransitionError(RuntimeError):
    """An event arrived that the current state cannot take (a bug in the edge), or a move
    the transition table does not allow (a bug in the core)."""


class Trigger(StrEnum):
    """What moves the core from one state to another."""

    BOOTED = "booted"
    SELF_CHECK_DONE = "self_check_done"
    RECORD = "record"
    STOP = "stop"  # the recording ended, off the dock
    STOP_ON_DOCK = "stop_on_dock"  # the recording ended on external power
    DOCK = "dock"
    UNDOCK = "undock"
    BATTERY_CUTOFF = "battery_cutoff"


TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.BOOTING, Trigger.BOOTED): State.CHECKING,
    (State.CHECKING, Trigger.SELF_CHECK_DONE): State.READY,
    (State.READY, Trigger.RECORD): State.RECORDING,
    (State.CHECKING, Trigger.RECORD): State.RECORDING,
    (State.RECORDING, Trigger.STOP): State.READY,
    (State.RECORDING, Trigger.STOP_ON_DOCK): State.DOCKED,
    (State.READY, Trigger.DOCK): State.DOCKED,
    (State.CHECKING, Trigger.DOCK): State.DOCKED,
    (State.POWER_SAVE, Trigger.DOCK): State.DOCKED,
    (State.DOCKED, Trigger.UNDOCK): State.CHECKING,
    (State.READY, Trigger.BATTERY_CUTOFF): State.POWER_SAVE,
    (State.CHECKING, Trigger.BATTERY_CUTOFF): State.POWER_SAVE,
}
"""Every move between states; any other is a ``TransitionError``."""


@dataclass
class GnssStatus:
    has_fix: bool = False
    last_fix_at: float | None = None
    lost_reported: bool = False
    last_position: tuple[float, float] | None = None  # (lat, lon) of the last fix


@dataclass
class ReasonPrompt:
    """The officer's marker presses after a stop, counted until a quiet pause."""

    until: float
    presses: int = 0
    last_press_at: float | None = None


class AgentCore:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._policy = config.policy
        self.state = State.BOOTING
        self.self_check_running = False
        self.activity_open = False
        self.activity_number = 0
        self.interruptions = 0
        self.interruption: Interruption | None = None
        self.prompt: ReasonPrompt | None = None
        self.recordings = 0
        self.recording_since: float | None = None
        self._next_reminder: float | None = None
        self.docked = False
        self.camera_stalled = False
        self.gnss = GnssStatus()
        self._battery_warned: float | None = None  # lowest threshold announced
        self._storage_warned: float | None = None
        self.microphone_fault: str | None = None
        self.storage_full = False
        self.battery_percent: float | None = None
        self.clock_source: TimeSource = TimeSource.RTC
        self._now = 0.0

    @property
    def officer(self) -> str:
        """Who chose a reason: the assigned officer, or "officer" while unassigned."""
        return self._config.device.device.officer or "officer"

    # --- entry point ----------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        at = getattr(event, "at", None)
        if isinstance(at, (int, float)):
            self._now = max(self._now, float(at))
        elif isinstance(event, ButtonGesture):
            self._now = max(self._now, event.event.at)
        match event:
            case Booted():
                return self._booted(event)
            case SelfCheckDone():
                return self._self_check_done(event)
            case ButtonGesture():
                return self._button(event)
            case GnssUpdate():
                return self._gnss(event)
            case ClockOffsetMeasured():
                return self._clock_offset(event)
            case PowerUpdate():
                return self._power(event)
            case StorageUpdate():
                return self._storage(event)
            case CameraStalled():
                return self._camera_stalled(event)
            case CameraResumed():
                return self._camera_resumed(event)
            case MicrophoneFailed():
                return self._microphone_failed(event)
            case MicrophoneRecovered():
                return self._microphone_recovered(event)
            case Tick():
                return self._tick(event)
            case ActivityContinued():
                return self._activity_continued(event)
            case PowerRestored():
                return self._power_restored(event)
        raise TransitionError(f"unknown event {event!r}")

    # --- states ---------------------------------------------------------------------------

    def _idle_signal(self) -> Signal:
        if self.interruption is not None and self.prompt is not None:
            return Signal.REASON_NEEDED
        return Signal.BUFFERING if self._config.device.recording.pre_event_seconds > 0 else Signal.READY

    def _can(self, trigger: Trigger) -> bool:
        return (self.state, trigger) in TRANSITIONS

    def _enter(self, trigger: Trigger) -> list[Action]:
        """Move as the table says for ``trigger``: the state line and the new signal."""
        state = TRANSITIONS.get((self.state, trigger))
        if state is None:
            raise TransitionError(f"{trigger} in state {self.state}")
        previous, self.state = self.state, state
        return [Log("state", {"from": str(previous), "to": str(state)})] + self._signal()

    def _signal(self) -> list[Action]:
        """The signal of the present state (READY's changes with a reason asked for)."""
        signal = {State.CHECKING: Signal.CHECKING, State.READY: self._idle_signal(),
                  State.RECORDING: Signal.RECORDING, State.DOCKED: Signal.DOCKED,
                  State.POWER_SAVE: Signal.POWER_SAVE}.get(self.state)
        return [ShowSignal(signal)] if signal is not None else []

    def _start_check(self, reason: CheckReason) -> list[Action]:
        if self.self_check_running:
            return []
        self.self_check_running = True
        return [BeginSelfCheck(reason)]

    def _booted(self, event: Booted) -> list[Action]:
        if not self._can(Trigger.BOOTED):
            raise TransitionError(f"Booted in state {self.state}")
        device = self._config.device.device
        actions: list[Action] = [Log("boot", {"device": device.id, "unit": device.unit,
                                              "officer": device.officer or None,
                                              "unassigned": not device.officer}),
                                 StartCamera()]
        actions += self._enter(Trigger.BOOTED)
        actions += self._start_check(CheckReason.BOOT)
        return actions

    def _self_check_done(self, event: SelfCheckDone) -> list[Action]:
        self.self_check_running = False
        report = event.report
        actions: list[Action] = [
            Log("selfcheck", report.to_json()),
            RaiseAlert(Alert.SELFCHECK_PASSED if report.passed else Alert.SELFCHECK_FAILED),
        ]
        if self._can(Trigger.SELF_CHECK_DONE):
            actions += self._enter(Trigger.SELF_CHECK_DONE)
        return actions

    # --- buttons --------------------------------------------------------------------------

    def _button(self, event: ButtonGesture) -> list[Action]:
        gesture = event.event
        actions: list[Action] = [Log("button", {"button": str(gesture.button),
                                                "gesture": str(gesture.gesture)})]
        if self.state in (State.BOOTING, State.DOCKED, State.POWER_SAVE):
            # No recording from the dock (camera off), before boot ends, or on a flat battery.
            return actions + [Log("button_ignored", {"state": str(self.state)}),
                              RaiseAlert(Alert.REFUSED)]
        match (gesture.button, gesture.gesture):
            case (Button.RECORD, Gesture.PRESS):
                actions += self._stop("stop") if self.state is State.RECORDING else self._record()
            case (Button.RECORD, Gesture.LONG_PRESS):
                actions += self._end_activity()
            case (Button.PHOTO, _):
                actions += self._with_activity([TakePhoto(), RaiseAlert(Alert.PHOTO_TAKEN)])
            case (Button.MARKER, Gesture.PRESS) if self.prompt is not None:
                actions += self._reason_press(gesture.at)
            case (Button.MARKER, _):
                incident = gesture.gesture is Gesture.LONG_PRESS
                actions += [AddMarker(incident),
                            RaiseAlert(Alert.INCIDENT_MARKED if incident else Alert.MARKER_ADDED)]
        return actions

    def _with_activity(self, actions: list[Action]) -> list[Action]:
        """A recording or photo belongs to an activity (R5.2). The first one opens it, and
        after its own actions (capture comes first) asks for the self-check R7.1 wants
        before an activity's first recording."""
        if self.activity_open:
            return actions
        self.activity_open = True
        self.activity_number += 1
        self.interruptions = 0
        return [OpenActivity()] + actions + self._start_check(CheckReason.FIRST_RECORDING)

    def _record(self) -> list[Action]:
        if self.storage_full:
            return [Log("record_refused", {"why": "storage full: no space left to record"}),
                    RaiseAlert(Alert.REFUSED)]
        resumed = self.activity_open
        actions = self._with_activity([StartRecording(resumed=resumed),
                                       RaiseAlert(Alert.RECORD_STARTED),
                                       Speak("announcement")])
        actions += self._close_interruption("resumed")
        if self.camera_stalled:  # sound only until the camera delivers again
            actions += [Log("camera_stalled", {"recording": True, "at_start": True}),
                        RaiseAlert(Alert.CAMERA_FAULT)]
        if self.microphone_fault is not None:  # picture only until sound returns
            actions += [Log("microphone_failed", {"fault": self.microphone_fault,
                                                  "recording": True, "at_start": True}),
                        RaiseAlert(Alert.MICROPHONE_FAULT)]
        self.recordings += 1
        self.recording_since = self._now
        interval = self._policy.warnings.reminder_interval_s
        self._next_reminder = self._now + interval if interval > 0 else None
        return actions + self._enter(Trigger.RECORD)

    def _stop(self, reason: str, detail: str = "") -> list[Action]:
        """End the recording; inside an activity that is an interruption (R12.1)."""
        actions: list[Action] = [StopRecording(reason), RaiseAlert(Alert.RECORD_STOPPED)]
        self.recording_since = None
        if self.interruption is not None and self.interruption.automatic:
            # A gap in the picture (camera stall) ends when the recording does.
            actions += self._close_interruption(
                "activity_end" if reason == "activity_end" else "recording_stopped")
        automatic = reason not in ("stop", "activity_end")
        if self.activity_open and reason != "activity_end":
            self.interruptions += 1
            if automatic:
                interruption = Interruption("", self.interruptions, self._now,
                                            self._reason_key(1), DEVICE, detail)
                actions.append(RaiseAlert(Alert.INTERRUPTION_AUTOMATIC))
            else:
                interruption = Interruption("", self.interruptions, self._now, PENDING, PENDING)
                self.prompt = ReasonPrompt(self._now + self._policy.interruption.prompt_window_s)
                actions.append(Speak("prompt"))
            self.interruption = interruption
            actions.append(RecordInterruption(interruption))
        if self.docked:
            return actions + [StopCamera()] + self._enter(Trigger.STOP_ON_DOCK)
        return actions + self._enter(Trigger.STOP)

    def _end_activity(self) -> list[Action]:
        if not self.activity_open:
            return [Log("end_activity_ignored", {"why": "no activity open"}), RaiseAlert(Alert.REFUSED)]
        actions: list[Action] = []
        if self.state is State.RECORDING:
            actions += self._stop("activity_end")
        actions += self._close_interruption("activity_end")
        self.activity_open = False
        actions += [EndActivity(), RaiseAlert(Alert.ACTIVITY_ENDED)]
        if self.state is State.READY:
            actions += self._signal()  # the signal drops "reason needed"
        return actions

    # --- interruptions --------------------------------------------------------------------

    def _reason_key(self, code: int) -> str:
        return next(k for k, r in self._policy.interruption.reasons.items() if r.code == code)

    def _reason_press(self, at: float) -> list[Action]:
        prompt = self.prompt
        assert prompt is not None
        prompt.presses += 1
        prompt.last_press_at = at
        return [RaiseAlert(Alert.REASON_PRESS)]

    def _settle_prompt(self, now: float) -> list[Action]:
        """Confirm the press count after a quiet pause, or leave the reason pending."""
        prompt, interruption = self.prompt, self.interruption
        if prompt is None or interruption is None:
            return []
        quiet = self._policy.interruption.confirm_after_s
        if prompt.last_press_at is not None and now - prompt.last_press_at >= quiet:
            return self._choose(prompt.presses)
        if prompt.last_press_at is None and now >= prompt.until:
            self.prompt = None
            return [Log("interruption_reason_pending", {"number": interruption.number,
                                                        "why": "no reason given on the device; "
                                                               "to be given at the dock"})] + (
                self._signal() if self.state is State.READY else [])
        return []

    def _choose(self, presses: int) -> list[Action]:
        interruption = self.interruption
        assert interruption is not None
        self.prompt = None
        chosen = [k for k, r in self._policy.interruption.reasons.items() if r.presses == presses]
        actions: list[Action]
        if not chosen:
            actions = [Log("interruption_reason_unrecognised",
                           {"number": interruption.number, "presses": presses,
                            "why": "no reason has that many presses; left pending for the dock"}),
                       RaiseAlert(Alert.REFUSED)]
        else:
            self.interruption = interruption.with_reason(chosen[0], self.officer)
            actions = [UpdateInterruption(self.interruption), RaiseAlert(Alert.REASON_CHOSEN),
                       Speak(f"reason:{chosen[0]}")]
        if self.state is State.READY:
            actions += self._signal()
        return actions

    def _close_interruption(self, by: str) -> list[Action]:
        interruption = self.interruption
        if interruption is None:
            return []
        actions: list[Action] = []
        if self.prompt is not None and self.prompt.presses:
            actions += self._choose(self.prompt.presses)  # pressed, then resumed at once
            interruption = self.interruption
            assert interruption is not None
        self.prompt = None
        self.interruption = None
        return actions + [CloseInterruption(interruption.closed(self._now, by))]

    # --- automatic stops (Art. 12 (1)) -----------------------------------------------------

    def _camera_stalled(self, event: CameraStalled) -> list[Action]:
        """No usable picture: the recording goes on with sound; the gap in the picture is
        an automatic interruption (Art. 12 (1)) from the last usable frame on."""
        self.camera_stalled = True
        facts: dict[str, object] = {"recording": self.state is State.RECORDING,
                                    "invalid_frames": event.invalid_frames}
        if event.last_frame_at is not None:
            facts["last_frame_age_s"] = round(event.at - event.last_frame_at, 3)
        if self.state is not State.RECORDING:
            return [Log("camera_stalled", facts)]
        stall = self._policy.stops.camera_stall_s
        what = "no frames" if not event.invalid_frames else (
            f"only garbage ({event.invalid_frames} invalid frames)")
        self.interruptions += 1
        stopped_at = event.last_frame_at if event.last_frame_at is not None else self._now
        interruption = Interruption("", self.interruptions, stopped_at, self._reason_key(1),
                                    DEVICE, f"camera: {what} for {stall:g} s; sound recorded on")
        self.interruption = interruption
        return [Log("camera_stalled", facts), RaiseAlert(Alert.CAMERA_FAULT),
                RecordInterruption(interruption)]

    def _camera_resumed(self, event: CameraResumed) -> list[Action]:
        self.camera_stalled = False
        interruption = self.interruption
        recording = self.state is State.RECORDING
        actions: list[Action] = [Log("camera_resumed", {"recording": recording})]
        if recording:
            actions.append(RaiseAlert(Alert.FAULT_CLEARED))
        if recording and interruption is not None and interruption.detail.startswith("camera"):
            actions += self._close_interruption("resumed_by_device")
        return actions

    def _microphone_failed(self, event: MicrophoneFailed) -> list[Action]:
        """No sound: the picture is still recorded; logged and signalled, no interruption."""
        self.microphone_fault = event.fault
        return [Log("microphone_failed", {"fault": event.fault,
                                          "for_s": round(event.at - event.since, 3),
                                          "recording": self.state is State.RECORDING}),
                RaiseAlert(Alert.MICROPHONE_FAULT)]

    def _microphone_recovered(self, event: MicrophoneRecovered) -> list[Action]:
        self.microphone_fault = None
        return [Log("microphone_recovered", {"fault": event.fault,
                                             "lasted_s": round(event.at - event.since, 3),
                                             "recording": self.state is State.RECORDING}),
                RaiseAlert(Alert.FAULT_CLEARED)]

    # --- after a restart ------------------------------------------------------------------

    def _activity_continued(self, event: ActivityContinued) -> list[Action]:
        """The activity the last run left open goes on; so does an interruption in it."""
        self.activity_open = True
        self.activity_number += 1
        self.interruptions = event.last_number
        self.interruption = event.interruption
        self.prompt = None  # a reason not given before the restart stays pending (dock)
        return []

    def _power_restored(self, event: PowerRestored) -> list[Action]:
        """The power went while recording in an activity: an automatic interruption with
        reason (1), from the last sign of life on (Art. 12, R12.2).

        The recording then resumes by itself, announced, when the device is back in the
        field within ``stops.power_cut_resume_within_s`` — a loose battery contact, a brown-out,
        a battery swap on the spot. The officer had chosen to record the whole process
        (Art. 8) and did not stop; waiting for a press would only widen the gap, which a
        court must be given reasons for (Art. 12), while the officer may not even have
        noticed the reboot. It is no covert start (R5.3): the announcement plays and the red
        LED shows, as at every start, and the work record says the device resumed. After
        a longer outage the scene has likely changed (battery replaced back at the
        office), so nothing records that the officer has not started (Art. 5): the
        interruption stays open until the officer resumes or ends the activity. Nor does
        it resume on the dock or with the battery at its cut-off.
        """
        if not (event.recording and self.activity_open):
            return []
        actions: list[Action] = []
        if self.interruption is not None:
            if not self.interruption.automatic:
                return []  # the log says both recording and stopped: leave it as it is
            # A gap in the picture (camera stall) ended with the recording the cut ended.
            gap, self.interruption = self.interruption, None
            actions.append(CloseInterruption(gap.closed(event.lost_at, "recording_stopped")))
        self.interruptions += 1
        interruption = Interruption("", self.interruptions, event.lost_at, self._reason_key(1),
                                    DEVICE, f"power lost while recording; back after "
                                    f"{event.off_s:.0f} s")
        self.interruption = interruption
        actions += [RaiseAlert(Alert.INTERRUPTION_AUTOMATIC), RecordInterruption(interruption)]
        reading = event.power
        cutoff = self._policy.stops.battery_cutoff_percent
        within = self._policy.stops.power_cut_resume_within_s
        if event.off_s > within:
            why = f"power off for {event.off_s:.0f} s (resumes by itself within " \
                  f"{within:g} s): the officer resumes"
        elif reading is not None and reading.external_power:
            why = "back on external power (docked): no recording from the dock"
        elif reading is not None and reading.capacity_percent <= cutoff:
            why = f"battery at {reading.capacity_percent:g} % (cut-off {cutoff:g} %)"
        else:
            actions += self._close_interruption("resumed_by_device")
            return actions + self._record()
        return actions + [Log("recording_not_resumed", {"why": why})]

    # --- sensors --------------------------------------------------------------------------

    def _gnss(self, event: GnssUpdate) -> list[Action]:
        if event.fix.has_position:
            self.gnss.last_fix_at = event.at
            assert event.fix.latitude is not None and event.fix.longitude is not None
            self.gnss.last_position = (event.fix.latitude, event.fix.longitude)
            if not self.gnss.has_fix:
                self.gnss.has_fix = True
                regained = self.gnss.lost_reported
                self.gnss.lost_reported = False
                return [Log("gnss_fix", {"latitude": event.fix.latitude,
                                         "longitude": event.fix.longitude,
                                         "satellites": event.fix.satellites})] + (
                    [RaiseAlert(Alert.GNSS_REGAINED)] if regained else [])
        return self._gnss_age(event.at)

    def _clock_offset(self, event: ClockOffsetMeasured) -> list[Action]:
        if not event.reference_utc >= BUILD_UTC:
            # Never a time before the firmware was built (a GPS week-rollover date, a
            # receiver's default date): logged, never applied (DESIGN.md, "Time").
            return [Log("clock_time_rejected", {
                "source": str(event.source), "reference": _iso_or_repr(event.reference_utc),
                "reason": "before the firmware's build date"})]
        self.clock_source = event.source
        if abs(event.offset_s) <= self._policy.selfcheck.clock_correct_above_s:
            return []
        return [CorrectClock(event.source, event.reference_utc, event.at)]

    def _power(self, event: PowerUpdate) -> list[Action]:
        actions: list[Action] = []
        reading = event.reading
        self.battery_percent = reading.capacity_percent
        if reading.external_power and not self.docked:
            self.docked = True
            actions.append(Log("docked", {"battery_percent": reading.capacity_percent,
                                          "activity_open": self.activity_open}))
            actions.append(StartSync())  # in any state: the sync takes only sealed files
            if self._can(Trigger.DOCK):
                if self.state is not State.POWER_SAVE:
                    actions.append(StopCamera())
                actions += self._enter(Trigger.DOCK)
        elif not reading.external_power and self.docked:
            self.docked = False
            actions.append(Log("undocked", {"battery_percent": reading.capacity_percent}))
            actions.append(StopSync())
            if self._can(Trigger.UNDOCK):
                actions += [StartCamera()] + self._enter(Trigger.UNDOCK)
                actions += self._start_check(CheckReason.LEFT_DOCK)
        cutoff = self._policy.stops.battery_cutoff_percent
        if not reading.external_power and reading.capacity_percent <= cutoff:
            if self.state is State.RECORDING:
                actions += self._stop("battery_cutoff",
                                      f"battery at {reading.capacity_percent:g} % (cut-off {cutoff:g} %)")
            if self._can(Trigger.BATTERY_CUTOFF):
                actions += [Log("power_save", {"battery_percent": reading.capacity_percent}),
                            StopCamera()] + self._enter(Trigger.BATTERY_CUTOFF)
        if reading.external_power:
            self._battery_warned = None
            return actions
        # Hysteresis: a threshold warns again only after a recharge 5 points above it.
        threshold, self._battery_warned = warning_due(
            reading.capacity_percent, self._policy.warnings.battery_low_percent,
            self._battery_warned, lambda t: t + 5)
        if threshold is not None:
            percent = reading.capacity_percent
            usable = max(0.0, percent - cutoff) / percent if percent > 0 else 0.0
            minutes = recording_hours_left(reading, self._config.device) * 60 * usable
            actions += [Log("battery_low", {"percent": percent, "threshold": threshold,
                                            "recording_minutes_to_cutoff": round(minutes, 1)}),
                        RaiseAlert(Alert.BATTERY_LOW)]
        return actions

    def _storage(self, event: StorageUpdate) -> list[Action]:
        actions: list[Action] = []
        reserve = self._policy.stops.storage_reserve_mb * 1e6
        minutes = event.hours_free * 60  # recording time left above the reserve
        threshold, self._storage_warned = warning_due(
            minutes, self._policy.warnings.storage_low_minutes, self._storage_warned,
            lambda t: t * 1.1)
        if threshold is not None:
            actions += [Log("storage_low", {"minutes_left": round(minutes, 2),
                                            "threshold": threshold,
                                            "free_bytes": event.reading.free_bytes}),
                        RaiseAlert(Alert.STORAGE_LOW)]
        # Stop while some seconds still fit above the reserve: what the recording writes
        # until the next check, and the closing writes, never reach into the reserve.
        full = (event.reading.free_bytes <= reserve
                or minutes * 60 < STORAGE_STOP_LEAD_S)
        if full and not self.storage_full:
            actions.append(Log("storage_full", {"free_bytes": event.reading.free_bytes,
                                                "reserve_bytes": int(reserve),
                                                "seconds_left": round(minutes * 60, 1)}))
            if self.state is State.RECORDING:
                actions += self._stop("storage_full", f"storage full: "
                                      f"{event.reading.free_bytes / 1e6:.0f} MB left, "
                                      f"reserve {reserve / 1e6:.0f} MB")
        self.storage_full = full
        return actions

    def _tick(self, event: Tick) -> list[Action]:
        actions = self._gnss_age(event.at)
        actions += self._settle_prompt(event.at)
        if (self.state is State.RECORDING and self._next_reminder is not None
                and event.at >= self._next_reminder):
            self._next_reminder += self._policy.warnings.reminder_interval_s
            actions.append(RaiseAlert(Alert.REMINDER))
        return actions

    def _gnss_age(self, now: float) -> list[Action]:
        g = self.gnss
        limit = self._policy.warnings.gnss_lost_after_s
        if g.has_fix and g.last_fix_at is not None and now - g.last_fix_at > limit:
            g.has_fix = False
            g.lost_reported = True
            lat, lon = g.last_position or (None, None)
            return [Log("gnss_lost", {"last_fix_age_s": round(now - g.last_fix_at, 1),
                                      "last_lat": lat, "last_lon": lon}),
                    RaiseAlert(Alert.GNSS_LOST)]
        return []


def _iso_or_repr(utc: float) -> str:
    try:
        return datetime.fromtimestamp(utc, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return repr(utc)
