"""What the indicators mean: one table from agent states and warnings to light, sound, touch.

A *signal* is the steady state shown until the next one (ready, recording, docked…); an
*alert* is a short one-off pattern played over it (record started, self-check failed…).
The table is data so the README can print it and a unit can read it without the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from device.indicators import Blink, Output, Program


class Signal(StrEnum):
    BOOTING = "booting"
    CHECKING = "checking"
    READY = "ready"  # pre-event buffer off
    BUFFERING = "buffering"  # ready, pre-event buffer filling
    RECORDING = "recording"
    REASON_NEEDED = "reason_needed"  # after a stop: the officer may give Art. 12's reason
    POWER_SAVE = "power_save"  # battery at cut-off: camera off until charged
    DOCKED = "docked"
    UNENROLLED = "unenrolled"  # booted without enrolment: records nothing (R18.3)


class Alert(StrEnum):
    RECORD_STARTED = "record_started"
    RECORD_STOPPED = "record_stopped"
    PHOTO_TAKEN = "photo_taken"
    MARKER_ADDED = "marker_added"
    INCIDENT_MARKED = "incident_marked"
    SELFCHECK_PASSED = "selfcheck_passed"
    SELFCHECK_FAILED = "selfcheck_failed"
    BATTERY_LOW = "battery_low"
    STORAGE_LOW = "storage_low"
    GNSS_LOST = "gnss_lost"
    GNSS_REGAINED = "gnss_regained"
    REMINDER = "reminder"
    REASON_PRESS = "reason_press"
    REASON_CHOSEN = "reason_chosen"
    INTERRUPTION_AUTOMATIC = "interruption_automatic"
    CAMERA_FAULT = "camera_fault"
    MICROPHONE_FAULT = "microphone_fault"
    FAULT_CLEARED = "fault_cleared"
    ACTIVITY_ENDED = "activity_ended"
    REFUSED = "refused"


@dataclass(frozen=True)
class Pattern:
    programs: dict[Output, Program]
    meaning: str


def _beeps(n: int, on: float = 0.1, off: float = 0.1) -> Blink:
    return Blink(on, off, n)


SIGNALS: dict[Signal, Pattern] = {
    Signal.BOOTING: Pattern({Output.LED_BLUE: Blink(0.1, 0.1)}, "starting up"),
    Signal.CHECKING: Pattern({Output.LED_BLUE: Blink(0.25, 0.25)}, "self-check running"),
    Signal.READY: Pattern({Output.LED_GREEN: True}, "ready, pre-event buffer off"),
    Signal.BUFFERING: Pattern({Output.LED_GREEN: Blink(0.2, 1.8)},
                              "ready, pre-event buffer holding the last seconds"),
    Signal.RECORDING: Pattern({Output.LED_RED: True}, "recording (R9.2)"),
    Signal.REASON_NEEDED: Pattern({Output.LED_RED: Blink(0.5, 0.5), Output.LED_GREEN: Blink(0.5, 0.5)},
                                  "stopped inside an activity: give the reason (marker presses)"),
    Signal.POWER_SAVE: Pattern({Output.LED_RED: Blink(0.1, 4.9)},
                               "battery at cut-off: recording impossible until charged"),
    Signal.DOCKED: Pattern({Output.LED_BLUE: True}, "in the dock: charging and syncing"),
    Signal.UNENROLLED: Pattern({Output.LED_RED: Blink(1.0, 1.0), Output.LED_BLUE: Blink(0.1, 1.9)},
                               "not enrolled: records nothing until enrolled at the dock "
                               "(said once by voice at boot)"),
}

ALERTS: dict[Alert, Pattern] = {
    Alert.RECORD_STARTED: Pattern({Output.BUZZER: _beeps(1, 0.3), Output.VIBRATION: _beeps(1, 0.3)},
                                  "one long beep and buzz"),
    Alert.RECORD_STOPPED: Pattern({Output.BUZZER: _beeps(2), Output.VIBRATION: _beeps(2)},
                                  "two short beeps and buzzes"),
    Alert.PHOTO_TAKEN: Pattern({Output.BUZZER: _beeps(1, 0.05)}, "one click"),
    Alert.MARKER_ADDED: Pattern({Output.VIBRATION: _beeps(1, 0.15)}, "one short buzz"),
    Alert.INCIDENT_MARKED: Pattern({Output.VIBRATION: _beeps(3, 0.15)}, "three short buzzes"),
    Alert.SELFCHECK_PASSED: Pattern({Output.LED_GREEN: _beeps(3, 0.2, 0.2)},
                                    "green flashes three times"),
    Alert.SELFCHECK_FAILED: Pattern({Output.LED_RED: _beeps(5, 0.2, 0.2),
                                     Output.BUZZER: _beeps(3, 0.4, 0.2)},
                                    "red flashes five times, three long beeps"),
    Alert.BATTERY_LOW: Pattern({Output.LED_RED: _beeps(2, 0.1, 0.4), Output.BUZZER: _beeps(2, 0.1, 0.4)},
                               "two slow red flashes and beeps"),
    Alert.STORAGE_LOW: Pattern({Output.LED_RED: _beeps(3, 0.1, 0.4), Output.BUZZER: _beeps(3, 0.1, 0.4)},
                               "three slow red flashes and beeps"),
    Alert.GNSS_LOST: Pattern({Output.LED_BLUE: _beeps(2, 0.5, 0.5)}, "blue flashes twice"),
    Alert.GNSS_REGAINED: Pattern({Output.LED_BLUE: _beeps(1, 0.5)}, "blue flashes once"),
    Alert.REMINDER: Pattern({Output.BUZZER: _beeps(1, 0.05)}, "a short chirp while recording"),
    Alert.REASON_PRESS: Pattern({Output.VIBRATION: _beeps(1, 0.1)}, "a tick per reason press"),
    Alert.REASON_CHOSEN: Pattern({Output.BUZZER: _beeps(2, 0.05, 0.05), Output.VIBRATION: _beeps(1, 0.4)},
                                 "double chirp and a long buzz: reason recorded"),
    Alert.INTERRUPTION_AUTOMATIC: Pattern({Output.LED_RED: _beeps(4, 0.15, 0.15),
                                           Output.BUZZER: _beeps(4, 0.15, 0.15),
                                           Output.VIBRATION: _beeps(2, 0.5, 0.2)},
                                          "the device stopped by itself (Art. 12 (1))"),
    Alert.CAMERA_FAULT: Pattern({Output.LED_RED: _beeps(3, 0.3, 0.3), Output.BUZZER: _beeps(3, 0.3, 0.3)},
                                "no usable picture: sound is still recorded"),
    Alert.MICROPHONE_FAULT: Pattern({Output.LED_RED: _beeps(2, 0.3, 0.3),
                                     Output.VIBRATION: _beeps(2, 0.3, 0.3)},
                                    "no sound: the picture is still recorded"),
    Alert.FAULT_CLEARED: Pattern({Output.LED_GREEN: _beeps(1, 0.3), Output.BUZZER: _beeps(1, 0.05)},
                                 "camera or microphone works again"),
    Alert.ACTIVITY_ENDED: Pattern({Output.BUZZER: _beeps(3, 0.1, 0.1), Output.VIBRATION: _beeps(1, 0.6)},
                                  "three chirps and a long buzz"),
    Alert.REFUSED: Pattern({Output.BUZZER: _beeps(1, 0.8)}, "one long low beep: cannot do that now"),
}


def table_markdown() -> str:
    """The README's indicator table."""
    rows = ["| kind | name | LEDs, buzzer, vibration | meaning |", "|---|---|---|---|"]
    for kind, table in (("state", SIGNALS), ("alert", ALERTS)):
        for name, pattern in table.items():
            parts = []
            for output, program in pattern.programs.items():
                if program is True:
                    parts.append(f"{output} steady")
                elif isinstance(program, Blink):
                    times = "repeating" if program.count is None else f"×{program.count}"
                    parts.append(f"{output} {program.on_s:g}s on/{program.off_s:g}s off {times}")
            rows.append(f"| {kind} | {name} | {', '.join(parts)} | {pattern.meaning} |")
    return "\n".join(rows)


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
