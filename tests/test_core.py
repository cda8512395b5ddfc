"""Agent core as a pure state machine: events in, actions out, no hardware."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from device.clock import TimeSource, Timestamp
from device.gnss import GnssFix
from device.inputs import Button, ButtonEvent, Gesture
from device.power import ChargeStatus, PowerReading
from device.storage import StorageReading
from firmware_py.agent.core import AgentCore, TransitionError as ProtocolError, State
from firmware_py.agent.events import (AddMarker, BeginSelfCheck, Booted, ButtonGesture, OpenActivity,
                                ClockOffsetMeasured, CorrectClock, GnssUpdate, Log,
                                PowerUpdate, RaiseAlert, SelfCheckDone, ShowSignal,
                                StartCamera, StartRecording, StopCamera, StopRecording,
                                StorageUpdate, TakePhoto, Tick, MicrophoneFailed,
                                MicrophoneRecovered, StartSync, StopSync)
from firmware_py.agent.selfcheck import CheckReason, SelfCheckReport, Check, Status
from firmware_py.agent.signals import Alert, Signal

AT = Timestamp(1_800_000_000.0, 28800, 1.0, TimeSource.RTC)


def report(passed: bool, reason=CheckReason.BOOT) -> SelfCheckReport:
    status = Status.PASS if passed else Status.FAIL
    return SelfCheckReport(reason, AT, (Check("battery", status, "x"),))


def press(button=Button.RECORD, gesture=Gesture.PRESS, at=5.0):
    return ButtonGesture(ButtonEvent(button, gesture, at))


def kinds(actions):
    return [type(a) for a in actions if not isinstance(a, Log)]


def logs(actions):
    return [a.kind for a in actions if isinstance(a, Log)]


def ready(config) -> AgentCore:
    core = AgentCore(config)
    core.handle(Booted(0.0))
    core.handle(SelfCheckDone(report(True)))
    return core


@pytest.mark.req("R7.1", "R7.6")
def test_boot_starts_camera_and_self_check(config):
    core = AgentCore(config)
    actions = core.handle(Booted(0.0))
    assert StartCamera in kinds(actions)
    assert BeginSelfCheck(CheckReason.BOOT) in actions
    assert ShowSignal(Signal.CHECKING) in actions
    assert core.state is State.CHECKING
    actions = core.handle(SelfCheckDone(report(True)))
    assert core.state is State.READY
    assert ShowSignal(Signal.BUFFERING) in actions  # pre-event buffer on by default
    assert RaiseAlert(Alert.SELFCHECK_PASSED) in actions
    assert "selfcheck" in logs(actions)


@pytest.mark.req("R7.6")
def test_failed_self_check_warns_and_still_reaches_ready(config):
    core = AgentCore(config)
    core.handle(Booted(0.0))
    actions = core.handle(SelfCheckDone(report(False)))
    assert RaiseAlert(Alert.SELFCHECK_FAILED) in actions
    assert core.state is State.READY
    assert StartRecording in kinds(core.handle(press()))


@pytest.mark.req("R7.6")
def test_record_during_self_check_is_never_blocked(config):
    core = AgentCore(config)
    core.handle(Booted(0.0))
    actions = core.handle(press())
    assert StartRecording in kinds(actions) and core.state is State.RECORDING
    core.handle(SelfCheckDone(report(False)))
    assert core.state is State.RECORDING  # the check's result does not stop the recording


@pytest.mark.req("R7.1")
def test_record_toggles_and_first_recording_checks_once(config):
    core = ready(config)
    actions = core.handle(press())
    assert kinds(actions)[:3] == [OpenActivity, StartRecording, RaiseAlert]
    assert BeginSelfCheck(CheckReason.FIRST_RECORDING) in actions
    assert OpenActivity() in actions
    assert ShowSignal(Signal.RECORDING) in actions
    actions = core.handle(press())
    assert StopRecording in kinds(actions) and core.state is State.READY
    core.handle(SelfCheckDone(report(True)))
    actions = core.handle(press())
    assert not any(isinstance(a, BeginSelfCheck) for a in actions)  # same activity


@pytest.mark.req("R11.1", "R11.2", "R16.1")
def test_photo_and_markers(config):
    core = ready(config)
    assert TakePhoto in kinds(core.handle(press(Button.PHOTO)))
    assert AddMarker(False) in core.handle(press(Button.MARKER))
    actions = core.handle(press(Button.MARKER, Gesture.LONG_PRESS))
    assert AddMarker(True) in actions and RaiseAlert(Alert.INCIDENT_MARKED) in actions


def test_long_press_of_record_does_not_toggle(config):
    core = ready(config)
    core.handle(press(Button.RECORD, Gesture.LONG_PRESS))
    assert core.state is State.READY


@pytest.mark.req("R7.1")
def test_dock_and_undock(config):
    core = ready(config)
    actions = core.handle(PowerUpdate(PowerReading(60, ChargeStatus.CHARGING, True), 10.0))
    assert StopCamera in kinds(actions) and core.state is State.DOCKED
    assert "button_ignored" in logs(core.handle(press()))
    actions = core.handle(PowerUpdate(PowerReading(95, ChargeStatus.DISCHARGING, False), 20.0))
    assert StartCamera in kinds(actions)
    assert BeginSelfCheck(CheckReason.LEFT_DOCK) in actions  # R7.1
    assert core.state is State.CHECKING


def test_docking_while_recording_keeps_recording(config):
    core = ready(config)
    core.handle(press())
    core.handle(PowerUpdate(PowerReading(60, ChargeStatus.CHARGING, True), 10.0))
    assert core.state is State.RECORDING
    actions = core.handle(press())
    assert StopRecording in kinds(actions) and StopCamera in kinds(actions)
    assert core.state is State.DOCKED


def on_power(percent: float, at: float) -> PowerUpdate:
    return PowerUpdate(PowerReading(percent, ChargeStatus.CHARGING, True), at)


def off_power(percent: float, at: float) -> PowerUpdate:
    return PowerUpdate(PowerReading(percent, ChargeStatus.DISCHARGING, False), at)


@pytest.mark.req("R13.1")
def test_docking_starts_the_sync_once_and_undocking_stops_it(config):
    core = ready(config)
    actions = core.handle(on_power(60, 10.0))
    assert kinds(actions).count(StartSync) == 1 and StopSync not in kinds(actions)
    for at in (11.0, 12.0, 13.0):  # still on the dock: no second start
        assert StartSync not in kinds(core.handle(on_power(61, at)))
    actions = core.handle(off_power(95, 20.0))
    assert kinds(actions).count(StopSync) == 1 and StartSync not in kinds(actions)
    assert StopSync not in kinds(core.handle(off_power(94, 21.0)))
    assert kinds(core.handle(on_power(90, 30.0))).count(StartSync) == 1  # docked again


@pytest.mark.req("R13.1")
@pytest.mark.parametrize("setup", ["checking", "recording", "power_save"])
def test_docking_starts_the_sync_in_any_state(config, setup):
    core = AgentCore(config)
    core.handle(Booted(0.0))
    if setup == "recording":
        core.handle(press())
    elif setup == "power_save":
        core.handle(SelfCheckDone(report(True)))
        core.handle(off_power(config.policy.stops.battery_cutoff_percent, 2.0))
        assert core.state is State.POWER_SAVE
    before = core.state
    actions = core.handle(on_power(60, 10.0))
    assert kinds(actions).count(StartSync) == 1
    if before is State.RECORDING:  # the sync takes sealed files; the recording goes on
        assert core.state is State.RECORDING and StopRecording not in kinds(actions)
    assert kinds(core.handle(off_power(60, 20.0))).count(StopSync) == 1


def test_no_sync_without_external_power(config):
    core = ready(config)
    for at, percent in enumerate((90, 50, 20, 14, 3), start=1):
        actions = core.handle(off_power(percent, float(at)))
        assert StartSync not in kinds(actions) and StopSync not in kinds(actions)


def test_battery_low_warns_once_until_recharged(config):
    core = ready(config)
    low = PowerUpdate(PowerReading(14.0, ChargeStatus.DISCHARGING, False), 1.0)
    assert RaiseAlert(Alert.BATTERY_LOW) in core.handle(low)
    assert core.handle(low) == []
    core.handle(PowerUpdate(PowerReading(15.0, ChargeStatus.DISCHARGING, False), 2.0))
    assert core.handle(low) == []  # 15 % is not a recharge: hysteresis
    core.handle(PowerUpdate(PowerReading(21.0, ChargeStatus.DISCHARGING, False), 3.0))
    assert RaiseAlert(Alert.BATTERY_LOW) in core.handle(low)


def test_storage_low_warns_at_threshold(config):
    core = ready(config)
    reading = StorageReading("/e", 10**12, 10**9)  # above the 100 MB reserve
    assert core.handle(StorageUpdate(reading, 0.5, 1.0)) == []  # 30 min: not below
    actions = core.handle(StorageUpdate(reading, 29.9 / 60, 2.0))
    assert RaiseAlert(Alert.STORAGE_LOW) in actions and "storage_low" in logs(actions)


def fix(valid: bool, at: float) -> GnssFix:
    return GnssFix(received_at=at, time_utc=datetime(2027, 1, 1, tzinfo=timezone.utc),
                   valid=valid, latitude=33.0 if valid else None,
                   longitude=113.0 if valid else None, quality=1 if valid else 0)


def test_gnss_lost_after_policy_age_and_regained(config):
    core = ready(config)
    assert "gnss_fix" in logs(core.handle(GnssUpdate(fix(True, 1.0), 1.0)))
    assert core.handle(Tick(11.0)) == []  # exactly 10 s: not yet lost
    actions = core.handle(GnssUpdate(fix(False, 11.5), 11.5))
    assert RaiseAlert(Alert.GNSS_LOST) in actions
    actions = core.handle(GnssUpdate(fix(True, 20.0), 20.0))
    assert RaiseAlert(Alert.GNSS_REGAINED) in actions


@pytest.mark.req("R7.4")
def test_clock_corrected_only_above_threshold(config):
    core = ready(config)
    reference = 1.8e9  # 2027: after the firmware's build date (a 2001 time is never applied)
    assert core.handle(ClockOffsetMeasured(TimeSource.GNSS, 0.5, reference, 3.0)) == []
    actions = core.handle(ClockOffsetMeasured(TimeSource.GNSS, -0.51, reference, 3.0))
    assert actions == [CorrectClock(TimeSource.GNSS, reference, 3.0)]


def test_booted_twice_is_a_protocol_error(config):
    core = ready(config)
    with pytest.raises(ProtocolError):
        core.handle(Booted(1.0))


# --- activities and interruptions (Art. 12) ------------------------------------------------

from firmware_py.agent.events import (CameraResumed, CameraStalled, EndActivity, Speak)
from firmware_py.agent.events import CloseInterruption as InterruptionClosed
from firmware_py.agent.events import RecordInterruption as InterruptionOpened
from firmware_py.agent.events import UpdateInterruption as InterruptionUpdated


def recording(config) -> AgentCore:
    core = ready(config)
    core.handle(press(at=5.0))
    return core


def find(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


@pytest.mark.req("R8.3", "R12.1")
def test_stop_inside_activity_is_an_interruption_with_a_prompt(config):
    core = recording(config)
    actions = core.handle(press(at=20.0))
    opened = find(actions, InterruptionOpened)[0].interruption
    assert (opened.number, opened.reason, opened.chosen_by) == (1, "pending", "pending")
    assert Speak("prompt") in actions and ShowSignal(Signal.REASON_NEEDED) in actions
    assert core.activity_open  # a stop never ends the activity (R8.3)


@pytest.mark.req("R12.2")
@pytest.mark.parametrize("presses, reason", [(1, "weather"), (2, "obstruction"), (3, "force_majeure")])
def test_marker_presses_choose_the_reason(config, presses, reason):
    core = recording(config)
    core.handle(press(at=20.0))
    for i in range(presses):
        actions = core.handle(press(Button.MARKER, at=22.0 + i * 0.5))
        assert not find(actions, AddMarker)  # during the prompt a press counts, not marks
    last = 22.0 + (presses - 1) * 0.5
    assert not find(core.handle(Tick(last + 2.0)), InterruptionUpdated)  # still counting
    actions = core.handle(Tick(last + 2.6))
    chosen = find(actions, InterruptionUpdated)[0].interruption
    assert (chosen.reason, chosen.chosen_by) == (reason, "officer")  # unassigned device
    assert Speak(f"reason:{reason}") in actions
    actions = core.handle(press(at=60.0))
    closed = find(actions, InterruptionClosed)[0].interruption
    assert closed.reason == reason and closed.off_s == pytest.approx(40.0)


@pytest.mark.req("R12.2")
def test_no_gesture_leaves_the_reason_pending_for_the_dock(config):
    core = recording(config)
    core.handle(press(at=20.0))
    assert core.handle(Tick(49.0)) == []
    actions = core.handle(Tick(50.5))
    assert "interruption_reason_pending" in logs(actions)
    assert find(core.handle(press(Button.MARKER, at=55.0)), AddMarker)  # a marker again
    closed = find(core.handle(press(at=70.0)), InterruptionClosed)[0].interruption
    assert closed.reason == "pending"


def test_unknown_press_count_is_left_pending(config):
    core = recording(config)
    core.handle(press(at=20.0))
    for i in range(5):
        core.handle(press(Button.MARKER, at=21.0 + i * 0.3))
    actions = core.handle(Tick(26.0))
    assert "interruption_reason_unrecognised" in logs(actions)
    assert core.interruption.reason == "pending"


@pytest.mark.req("R12.2")
def test_presses_then_immediate_resume_still_count(config):
    core = recording(config)
    core.handle(press(at=20.0))
    core.handle(press(Button.MARKER, at=21.0))
    actions = core.handle(press(at=21.5))  # resumed before the quiet pause
    closed = find(actions, InterruptionClosed)[0].interruption
    assert closed.reason == "weather"


@pytest.mark.req("R8.3")
def test_end_activity_is_a_long_press_and_closes_an_open_interruption(config):
    core = recording(config)
    actions = core.handle(press(Button.RECORD, Gesture.LONG_PRESS, at=30.0))
    assert find(actions, StopRecording)[0].reason == "activity_end"
    assert not find(actions, InterruptionOpened)  # ending is not an interruption
    assert EndActivity() in actions and not core.activity_open
    core = recording(config)
    core.handle(press(at=20.0))
    actions = core.handle(press(Button.RECORD, Gesture.LONG_PRESS, at=40.0))
    closed = find(actions, InterruptionClosed)[0].interruption
    assert closed.closed_by == "activity_end" and closed.off_s == pytest.approx(20.0)
    assert "end_activity_ignored" in logs(core.handle(press(Button.RECORD, Gesture.LONG_PRESS, at=50.0)))


@pytest.mark.req("R12.1", "R12.2")
def test_battery_cutoff_stops_cleanly_as_reason_one(config):
    core = recording(config)
    actions = core.handle(PowerUpdate(PowerReading(3.0, ChargeStatus.DISCHARGING, False), 30.0))
    assert find(actions, StopRecording)[0].reason == "battery_cutoff"
    auto = find(actions, InterruptionOpened)[0].interruption
    assert (auto.reason, auto.chosen_by, auto.automatic) == ("device", "device", True)
    assert Speak("prompt") not in actions  # the device knows the reason
    assert core.state is State.POWER_SAVE and StopCamera in kinds(actions)
    assert "button_ignored" in logs(core.handle(press(at=40.0)))


@pytest.mark.req("R12.2")
def test_storage_full_stops_and_refuses_until_space_returns(config):
    core = recording(config)
    full = StorageReading("/e", 10**12, 50_000_000)
    actions = core.handle(StorageUpdate(full, 0.05, 30.0))
    assert find(actions, StopRecording)[0].reason == "storage_full"
    assert find(actions, InterruptionOpened)[0].interruption.automatic
    assert "record_refused" in logs(core.handle(press(at=35.0)))
    core.handle(StorageUpdate(StorageReading("/e", 10**12, 10**10), 10.0, 40.0))
    assert StartRecording(resumed=True) in core.handle(press(at=45.0))


@pytest.mark.req("R12.2")
def test_camera_stall_interrupts_the_picture_while_sound_records_on(config):
    core = recording(config)
    actions = core.handle(CameraStalled(30.0, last_frame_at=27.0))
    assert not find(actions, StopRecording) and core.state is State.RECORDING
    assert RaiseAlert(Alert.CAMERA_FAULT) in actions
    gap = find(actions, InterruptionOpened)[0].interruption
    assert gap.automatic and gap.stopped_at == 27.0 and gap.detail.startswith("camera")
    actions = core.handle(CameraResumed(38.0))
    assert not find(actions, StartRecording)  # it never stopped
    closed = find(actions, InterruptionClosed)[0].interruption
    assert closed.closed_by == "resumed_by_device" and closed.off_s == pytest.approx(11.0)
    # A stop while the picture is still gone closes that gap before the officer's own.
    core.handle(CameraStalled(50.0, last_frame_at=47.0))
    actions = core.handle(press(at=52.0))
    closed = find(actions, InterruptionClosed)[0].interruption
    assert closed.closed_by == "recording_stopped" and closed.off_s == pytest.approx(5.0)
    assert find(actions, InterruptionOpened)[0].interruption.reason == "pending"


def test_microphone_fault_is_logged_and_signalled_and_recording_goes_on(config):
    core = recording(config)
    actions = core.handle(MicrophoneFailed("silent", 20.0, 22.0))
    assert "microphone_failed" in logs(actions) and RaiseAlert(Alert.MICROPHONE_FAULT) in actions
    assert core.state is State.RECORDING and not find(actions, StopRecording)
    actions = core.handle(MicrophoneRecovered("silent", 20.0, 30.0))
    assert "microphone_recovered" in logs(actions) and RaiseAlert(Alert.FAULT_CLEARED) in actions


def test_warnings_come_once_at_each_threshold(config):
    core = ready(config)  # battery thresholds 15 and 8 %, storage 30, 10 and 3 minutes
    def alerts(event):
        return [a.alert for a in core.handle(event) if isinstance(a, RaiseAlert)]
    battery = [alerts(PowerUpdate(PowerReading(p, ChargeStatus.DISCHARGING, False), 1.0))
               for p in (16, 14, 12, 7, 6)]
    assert battery == [[], [Alert.BATTERY_LOW], [], [Alert.BATTERY_LOW], []]
    space = StorageReading("/e", 10**12, 10**10)
    storage = [alerts(StorageUpdate(space, m / 60, 2.0)) for m in (40, 29, 20, 9, 2)]
    assert storage == [[], [Alert.STORAGE_LOW], [], [Alert.STORAGE_LOW], [Alert.STORAGE_LOW]]


def test_reminder_tone_while_recording(config):
    core = recording(config)  # started at 5 s; reminder every 300 s
    assert RaiseAlert(Alert.REMINDER) not in core.handle(Tick(304.0))
    assert RaiseAlert(Alert.REMINDER) in core.handle(Tick(305.5))
    assert RaiseAlert(Alert.REMINDER) not in core.handle(Tick(306.5))


@pytest.mark.req("R5.3")
def test_only_the_record_button_starts_a_recording(config):
    """R5.3: no remote, scheduled or covert start; every other event leaves it off."""
    core = ready(config)
    events = [Tick(10.0), PowerUpdate(PowerReading(80, ChargeStatus.CHARGING, True), 11.0),
              PowerUpdate(PowerReading(80, ChargeStatus.DISCHARGING, False), 12.0),
              SelfCheckDone(report(True)), GnssUpdate(fix(True, 13.0), 13.0),
              ClockOffsetMeasured(TimeSource.GNSS, 5.0, 1e9, 14.0),
              StorageUpdate(StorageReading("/e", 10**12, 10**11), 100.0, 15.0),
              CameraResumed(16.0), CameraStalled(17.0),
              press(Button.PHOTO, at=18.0), press(Button.MARKER, at=19.0),
              press(Button.MARKER, Gesture.LONG_PRESS, at=20.0)]
    for event in events:
        assert not find(core.handle(event), StartRecording), event
    assert core.state is not State.RECORDING


# --- the transition table ------------------------------------------------------------------

from firmware_py.agent.core import TRANSITIONS, TransitionError, Trigger


def test_an_illegal_transition_is_refused(config):
    core = AgentCore(config)
    with pytest.raises(TransitionError):
        core._enter(Trigger.RECORD)  # from BOOTING: not in the table
    assert core.state is State.BOOTING


def test_every_state_but_booting_is_reached_and_left(config):
    sources = {state for state, _ in TRANSITIONS}
    targets = set(TRANSITIONS.values())
    assert targets == set(State) - {State.BOOTING}
    assert sources == set(State)
