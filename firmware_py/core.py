"""The agent core: a pure state machine from events to actions (DESIGN.md, after h11).

States and the events that move between them:

    BOOTING --Booted--> CHECKING --SelfCheckDone--> READY
    READY --record press--> RECORDING --record press--> READY
    CHECKING --record press--> RECORDING   (a self-check never blocks recording, R7.6)
    READY/CHECKING --on external power--> DOCKED --off external power--> CHECKING (R7.1)

The core holds no hardware, files or threads: a test feeds it a list of events and reads
the actions back. The edge (``firmware_py.agent``) turns hardware into events and carries
out the actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from device.clock import TimeSource
from device.inputs import Button, Gesture
from firmware_py.config import Config
from firmware_py.events import (Action, AddMarker, BeginSelfCheck, Booted, ButtonGesture,
                                ClockOffsetMeasured, CorrectClock, Event, GnssUpdate, Log,
                                OpenActivity, PowerUpdate, RaiseAlert, SelfCheckDone, ShowSignal,
                                StartCamera, StartRecording, StopCamera, StopRecording,
                                StorageUpdate, TakePhoto, Tick)
from firmware_py.selfcheck import CheckReason
from firmware_py.signals import Alert, Signal


class State(StrEnum):
    BOOTING = "booting"
    CHECKING = "checking"
    READY = "ready"
    RECORDING = "recording"
    DOCKED = "docked"


class ProtocolError(RuntimeError):
    """An event arrived that the current state cannot take (a bug in the edge)."""


@dataclass
class GnssStatus:
    has_fix: bool = False
    last_fix_at: float | None = None
    lost_reported: bool = False


class AgentCore:
    def __init__(self, config: Config) -> None:
        self._config = config
        self.state = State.BOOTING
        self.self_check_running = False
        self.activity_open = False
        self.recordings = 0
        self.docked = False
        self.gnss = GnssStatus()
        self._battery_warned = False
        self._storage_warned = False
        self.clock_source: TimeSource = TimeSource.RTC

    # --- entry point ----------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
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
            case Tick():
                return self._tick(event)
        raise ProtocolError(f"unknown event {event!r}")

    # --- states ---------------------------------------------------------------------------

    def _idle_signal(self) -> Signal:
        return Signal.BUFFERING if self._config.device.recording.pre_event_seconds > 0 else Signal.READY

    def _enter(self, state: State) -> list[Action]:
        previous, self.state = self.state, state
        actions: list[Action] = [Log("state", {"from": str(previous), "to": str(state)})]
        signal = {State.CHECKING: Signal.CHECKING, State.READY: self._idle_signal(),
                  State.RECORDING: Signal.RECORDING, State.DOCKED: Signal.DOCKED}.get(state)
        if signal is not None:
            actions.append(ShowSignal(signal))
        return actions

    def _start_check(self, reason: CheckReason) -> list[Action]:
        if self.self_check_running:
            return []
        self.self_check_running = True
        return [BeginSelfCheck(reason)]

    def _booted(self, event: Booted) -> list[Action]:
        if self.state is not State.BOOTING:
            raise ProtocolError(f"Booted in state {self.state}")
        actions: list[Action] = [Log("boot", {"device": self._config.device.device.id,
                                              "officer": self._config.device.device.officer or None}),
                                 StartCamera()]
        actions += self._enter(State.CHECKING)
        actions += self._start_check(CheckReason.BOOT)
        return actions

    def _self_check_done(self, event: SelfCheckDone) -> list[Action]:
        self.self_check_running = False
        report = event.report
        actions: list[Action] = [
            Log("selfcheck", report.to_json()),
            RaiseAlert(Alert.SELFCHECK_PASSED if report.passed else Alert.SELFCHECK_FAILED),
        ]
        if self.state is State.CHECKING:
            actions += self._enter(State.READY)
        return actions

    # --- buttons --------------------------------------------------------------------------

    def _button(self, event: ButtonGesture) -> list[Action]:
        gesture = event.event
        actions: list[Action] = [Log("button", {"button": str(gesture.button),
                                                "gesture": str(gesture.gesture)})]
        if self.state in (State.BOOTING, State.DOCKED):
            # No recording from the dock (the camera is off there) nor before boot ends.
            return actions + [Log("button_ignored", {"state": str(self.state)})]
        if gesture.button is Button.RECORD and gesture.gesture is Gesture.PRESS:
            actions += self._stop() if self.state is State.RECORDING else self._record()
        elif gesture.button is Button.PHOTO:
            actions += self._with_activity([TakePhoto(), RaiseAlert(Alert.PHOTO_TAKEN)])
        elif gesture.button is Button.MARKER:
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
        return [OpenActivity()] + actions + self._start_check(CheckReason.FIRST_RECORDING)

    def _record(self) -> list[Action]:
        actions = self._with_activity([StartRecording(), RaiseAlert(Alert.RECORD_STARTED)])
        self.recordings += 1
        return actions + self._enter(State.RECORDING)

    def _stop(self) -> list[Action]:
        actions: list[Action] = [StopRecording(), RaiseAlert(Alert.RECORD_STOPPED)]
        if self.docked:
            return actions + [StopCamera()] + self._enter(State.DOCKED)
        return actions + self._enter(State.READY)

    # --- sensors --------------------------------------------------------------------------

    def _gnss(self, event: GnssUpdate) -> list[Action]:
        if event.fix.has_position:
            self.gnss.last_fix_at = event.at
            if not self.gnss.has_fix:
                self.gnss.has_fix = True
                regained = self.gnss.lost_reported
                self.gnss.lost_reported = False
                return [Log("gnss_fix", {"latitude": event.fix.latitude,
                                         "longitude": event.fix.longitude,
                                         "satellites": event.fix.satellites})] + (
                    [RaiseAlert(Alert.GNSS_REGAINED)] if regained else [])
        return self._tick(Tick(event.at))

    def _clock_offset(self, event: ClockOffsetMeasured) -> list[Action]:
        if abs(event.offset_s) <= self._config.policy.selfcheck.clock_correct_above_s:
            self.clock_source = event.source
            return []
        self.clock_source = event.source
        return [CorrectClock(event.source, event.reference_utc, event.at)]

    def _power(self, event: PowerUpdate) -> list[Action]:
        actions: list[Action] = []
        reading = event.reading
        if reading.external_power and not self.docked:
            self.docked = True
            actions.append(Log("docked", {"battery_percent": reading.capacity_percent}))
            if self.state in (State.READY, State.CHECKING):
                actions += [StopCamera()] + self._enter(State.DOCKED)
        elif not reading.external_power and self.docked:
            self.docked = False
            actions.append(Log("undocked", {"battery_percent": reading.capacity_percent}))
            if self.state is State.DOCKED:
                actions += [StartCamera()] + self._enter(State.CHECKING)
                actions += self._start_check(CheckReason.LEFT_DOCK)
        low = self._config.policy.warnings.battery_low_percent
        if not reading.external_power and reading.capacity_percent < low:
            if not self._battery_warned:
                self._battery_warned = True
                actions += [Log("battery_low", {"percent": reading.capacity_percent,
                                                "threshold": low}),
                            RaiseAlert(Alert.BATTERY_LOW)]
        elif reading.capacity_percent >= low + 5 or reading.external_power:
            self._battery_warned = False  # hysteresis: warn again only after a real recharge
        return actions

    def _storage(self, event: StorageUpdate) -> list[Action]:
        minutes = event.hours_free * 60
        low = self._config.policy.warnings.storage_low_minutes
        if minutes < low and not self._storage_warned:
            self._storage_warned = True
            return [Log("storage_low", {"minutes_free": round(minutes, 1), "threshold": low}),
                    RaiseAlert(Alert.STORAGE_LOW)]
        if minutes >= low * 1.1:
            self._storage_warned = False
        return []

    def _tick(self, event: Tick) -> list[Action]:
        g = self.gnss
        limit = self._config.policy.warnings.gnss_lost_after_s
        if g.has_fix and g.last_fix_at is not None and event.at - g.last_fix_at > limit:
            g.has_fix = False
            g.lost_reported = True
            return [Log("gnss_lost", {"last_fix_age_s": round(event.at - g.last_fix_at, 1)}),
                    RaiseAlert(Alert.GNSS_LOST)]
        return []
