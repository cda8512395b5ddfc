"""The gpiozero backends on MockFactory pins, in virtual time."""

from __future__ import annotations

import itertools
import logging
import threading

import gpiozero
import pytest

from device.backends.gpio import GpioIndicators, GpioInputs
from device.hardware import HardwareError
from device.indicators import Blink, Output
from device.inputs import Button, ButtonEvent, Gesture
from simulator.buttons import SimButtons
from simulator.clock import VirtualClock

REC, PHOTO, MARKER = Button.RECORD, Button.PHOTO, Button.MARKER
GREEN, RED, BLUE = Output.LED_GREEN, Output.LED_RED, Output.LED_BLUE


def press(gesture_button: Button, at: float) -> ButtonEvent:
    return ButtonEvent(gesture_button, Gesture.PRESS, at)


def long_press(gesture_button: Button, at: float) -> ButtonEvent:
    return ButtonEvent(gesture_button, Gesture.LONG_PRESS, at)


@pytest.fixture
def sim():
    sim = SimButtons()
    yield sim
    sim.close()


@pytest.fixture
def clock():
    return VirtualClock(100.0)


@pytest.fixture
def inputs(sim, clock):
    inputs = GpioInputs(sim.button_pins, clock, long_press_s=1.5, pin_factory=sim.factory)
    yield inputs
    inputs.close()


def at(clock: VirtualClock, t: float) -> None:
    clock.advance_to(100.0 + t)


# --- buttons -----------------------------------------------------------------------------

def test_short_press_is_reported_after_release(sim, clock, inputs):
    sim.press(REC)
    at(clock, 0.3)
    assert inputs.poll() == []  # still held
    sim.release(REC)
    assert inputs.poll() == []  # release not yet past the debounce time
    at(clock, 0.32)
    assert inputs.poll() == [press(REC, 100.3)]
    at(clock, 5.0)
    assert inputs.poll() == []


def test_long_press_reported_once_at_threshold_nothing_on_release(sim, clock, inputs):
    sim.press(REC)
    at(clock, 1.25)
    assert inputs.poll() == []
    at(clock, 1.5)
    assert inputs.poll() == [long_press(REC, 101.5)]
    at(clock, 2.0)
    assert inputs.poll() == []
    at(clock, 3.0)
    sim.release(REC)
    at(clock, 4.0)
    assert inputs.poll() == []


def test_long_press_seen_late_keeps_its_threshold_time(sim, clock, inputs):
    sim.press(MARKER)
    at(clock, 7.0)
    assert inputs.poll() == [long_press(MARKER, 101.5)]
    # Pressed and released between two polls, held long enough: still a long press.
    at(clock, 10.0)
    sim.release(MARKER)
    at(clock, 20.0)
    sim.press(MARKER)
    at(clock, 22.0)
    sim.release(MARKER)
    at(clock, 23.0)
    assert inputs.poll() == [long_press(MARKER, 121.5)]


def test_press_just_short_of_long_press_is_a_press(sim, clock, inputs):
    sim.press(PHOTO)
    at(clock, 1.25)
    sim.release(PHOTO)
    at(clock, 1.5)  # the threshold passes while the release is being confirmed
    assert inputs.poll() == [press(PHOTO, 101.25)]


def test_contact_bounce_gives_one_press(sim, clock, inputs):
    closing = [(0.0, sim.press), (0.002, sim.release), (0.004, sim.press),
               (0.006, sim.release), (0.008, sim.press)]
    opening = [(0.5, sim.release), (0.503, sim.press), (0.506, sim.release)]
    for t, action in closing:
        at(clock, t)
        action(REC)
    at(clock, 0.1)
    assert inputs.poll() == []
    for t, action in opening:
        at(clock, t)
        action(REC)
    at(clock, 0.51)
    assert inputs.poll() == []
    at(clock, 0.6)
    assert inputs.poll() == [press(REC, 100.506)]


def test_bounce_during_hold_does_not_break_long_press(sim, clock, inputs):
    sim.press(REC)
    at(clock, 1.0)
    sim.release(REC)
    at(clock, 1.01)
    sim.press(REC)
    at(clock, 1.5)
    assert inputs.poll() == [long_press(REC, 101.5)]
    at(clock, 2.0)
    sim.release(REC)
    at(clock, 2.01)
    sim.press(REC)
    at(clock, 2.02)
    sim.release(REC)
    at(clock, 3.0)
    assert inputs.poll() == []


def test_glitch_shorter_than_debounce_is_ignored(sim, clock, inputs):
    sim.press(PHOTO)
    at(clock, 0.005)
    sim.release(PHOTO)
    at(clock, 1.0)
    assert inputs.poll() == []


def test_two_buttons_interleaved(sim, clock, inputs):
    sim.press(REC)
    at(clock, 0.5)
    sim.press(PHOTO)
    at(clock, 0.8)
    sim.release(PHOTO)
    at(clock, 1.0)
    sim.press(MARKER)
    at(clock, 1.2)
    sim.release(MARKER)
    at(clock, 2.0)
    assert inputs.poll() == [press(PHOTO, 100.8), press(MARKER, 101.2), long_press(REC, 101.5)]
    sim.release(REC)
    at(clock, 3.0)
    assert inputs.poll() == []


def test_button_held_at_start_is_ignored_until_released(sim, clock):
    sim.press(REC)
    inputs = GpioInputs(sim.button_pins, clock, pin_factory=sim.factory)
    try:
        at(clock, 3.0)
        sim.release(REC)
        at(clock, 4.0)
        assert inputs.poll() == []
        sim.press(REC)
        at(clock, 4.25)
        sim.release(REC)
        at(clock, 4.5)
        assert inputs.poll() == [press(REC, 104.25)]
    finally:
        inputs.close()


def test_edges_from_many_threads_are_all_counted(sim):
    # Each clock read moves time on, so every edge gets its own increasing timestamp.
    ticks = itertools.count()
    lock = threading.Lock()

    def monotonic() -> float:
        with lock:
            return next(ticks) * 0.05

    inputs = GpioInputs(sim.button_pins, monotonic, pin_factory=sim.factory)
    cycles = 200

    def hammer(button: Button) -> None:
        for _ in range(cycles):
            sim.press(button)
            sim.release(button)

    threads = [threading.Thread(target=hammer, args=(b,)) for b in Button]
    events: list[ButtonEvent] = []
    try:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            events += inputs.poll()
        for thread in threads:
            thread.join()
        events += inputs.poll()
        events += inputs.poll()  # confirms the last releases
    finally:
        inputs.close()
    for button in Button:
        assert sum(1 for e in events if e.button is button) == cycles


def test_unopenable_button_pin_names_button_and_pin(sim, clock):
    with pytest.raises(HardwareError, match=r"photo.*GPIO 99"):
        GpioInputs({REC: 17, PHOTO: 99}, clock, pin_factory=sim.factory)
    # The button opened before the failure was released again.
    GpioInputs({REC: 17}, clock, pin_factory=sim.factory).close()


def test_pin_conflict_is_a_hardware_error(sim, clock, inputs):
    with pytest.raises(HardwareError, match=r"led_red.*GPIO 17.*in use"):
        GpioIndicators({GREEN: 5, RED: 17}, pin_factory=sim.factory)
    # The LED opened before the failure was closed again.
    GpioIndicators({GREEN: 5}, pin_factory=sim.factory).close()


def test_poll_after_close_is_empty(sim, clock, inputs):
    sim.press(REC)
    inputs.close()
    inputs.close()
    at(clock, 5.0)
    assert inputs.poll() == []


# --- indicators --------------------------------------------------------------------------

@pytest.fixture
def indicators(sim):
    indicators = GpioIndicators(sim.output_pins, pin_factory=sim.factory)
    yield indicators
    indicators.close()


def lit(sim: SimButtons, output: Output) -> bool:
    return sim.output_state(output)


def test_blink_runs_at_exact_virtual_times(sim, indicators):
    indicators.set(GREEN, Blink(0.25, 0.75))
    assert lit(sim, GREEN)  # a blink starts on
    indicators.update(10.0)  # ...and its clock starts here
    seen = {}
    for t in (10.0, 10.125, 10.25, 10.5, 10.999, 11.0, 11.25, 12.0):
        indicators.update(t)
        seen[t] = (lit(sim, GREEN), indicators.state()[GREEN])
    assert seen == {10.0: (True, True), 10.125: (True, True), 10.25: (False, False),
                    10.5: (False, False), 10.999: (False, False), 11.0: (True, True),
                    11.25: (False, False), 12.0: (True, True)}


def test_count_limited_program_ends_off(sim, indicators):
    indicators.set(Output.BUZZER, Blink(0.5, 0.5, count=2), now=0.0)
    states = []
    for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 100.0):
        indicators.update(t)
        states.append(lit(sim, Output.BUZZER))
    assert states == [True, False, True, False, False, False, False]
    # Setting it again plays it again.
    indicators.set(Output.BUZZER, Blink(0.5, 0.5, count=2), now=200.0)
    indicators.update(200.0)
    assert lit(sim, Output.BUZZER)


def test_set_with_now_anchors_the_program(sim, indicators):
    indicators.set(RED, Blink(1.0, 1.0), now=5.0)
    indicators.update(6.5)
    assert not lit(sim, RED)
    indicators.update(7.0)
    assert lit(sim, RED)


def test_reasserting_an_endless_program_keeps_its_phase(sim, indicators):
    indicators.set(BLUE, Blink(0.5, 0.5), now=0.0)
    indicators.update(0.75)
    indicators.set(BLUE, Blink(0.5, 0.5), now=0.75)
    indicators.update(0.75)
    assert not lit(sim, BLUE)
    indicators.set(BLUE, Blink(0.25, 0.25), now=0.75)  # a different program restarts
    assert lit(sim, BLUE)


def test_steady_programs_and_pin_written_only_on_change(sim, indicators, monkeypatch):
    writes = []
    original_on, original_off = gpiozero.LED.on, gpiozero.LED.off
    monkeypatch.setattr(gpiozero.LED, "on", lambda self: (writes.append("on"), original_on(self)))
    monkeypatch.setattr(gpiozero.LED, "off",
                        lambda self: (writes.append("off"), original_off(self)))
    indicators.set(GREEN, True)
    assert lit(sim, GREEN)
    for t in range(10):
        indicators.update(float(t))
    indicators.set(GREEN, False)
    indicators.update(11.0)
    assert not lit(sim, GREEN)
    assert writes == ["on", "off"]


def test_unwired_outputs_are_accepted_and_logged_once(sim, caplog):
    caplog.set_level(logging.INFO, logger="device.backends.gpio")
    indicators = GpioIndicators({GREEN: 5, Output.VIBRATION: -1}, pin_factory=sim.factory)
    try:
        assert indicators.wired == {GREEN}
        for _ in range(3):
            indicators.set(Output.VIBRATION, Blink(0.25, 0.25))
            indicators.set(Output.BUZZER, True)
        indicators.update(1.0)
        assert indicators.state()[Output.VIBRATION] is False
        assert indicators.state()[Output.BUZZER] is False
        assert not lit(sim, Output.VIBRATION)
        assert len([r for r in caplog.records if "not fitted" in r.message]) == 2
    finally:
        indicators.close()


def test_bad_program_is_rejected(indicators):
    with pytest.raises(TypeError):
        indicators.set(GREEN, 1)  # type: ignore[arg-type]


def test_close_turns_everything_off_and_releases_pins(sim, indicators):
    for output in Output:
        indicators.set(output, True)
    assert all(sim.led_states().values())
    indicators.close()
    indicators.close()
    assert not any(sim.led_states().values())
    indicators.set(GREEN, True)  # ignored after close
    indicators.update(1.0)
    assert not lit(sim, GREEN)
    GpioIndicators(sim.output_pins, pin_factory=sim.factory).close()
