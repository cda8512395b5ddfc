"""Contract of the inputs protocol (``device.inputs.Inputs``): one script of contacts —
a press, a bouncing press, a hold, a glitch, two buttons overlapping — played on each way
the buttons are read, and the same gestures must come out at the same times:

- **sim**: the simulator's buttons (``SimButtons``: gpiozero's ``MockFactory`` pins
  driven from the scenario, callbacks on the same thread) in virtual time;
- **threaded**: ``GpioInputs`` with *no* pin factory handed in, so gpiozero chooses its
  default the way it does on the Pi (there from ``GPIOZERO_PIN_FACTORY=lgpio``, the
  unit's; here ``mock``), the contacts made by another thread in real time and the
  edges timed on the system's monotonic clock — as lgpio's callback thread delivers them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from device.backends.gpio import GpioInputs
from device.inputs import Button, ButtonEvent, Gesture, Inputs
from simulator.buttons import DEFAULT_BUTTON_PINS, SimButtons
from simulator.clock import VirtualClock

REC, PHOTO = Button.RECORD, Button.PHOTO
LONG_PRESS_S = 0.6
STEP_S = 0.005  # how often the agent's loop polls


@dataclass(frozen=True)
class Contact:
    at: float  # seconds after the script starts
    button: Button
    closed: bool


SCRIPT = (
    # a press
    Contact(0.00, REC, True), Contact(0.25, REC, False),
    # a press whose contact bounces as it closes and as it opens
    Contact(0.50, REC, True), Contact(0.502, REC, False), Contact(0.504, REC, True),
    Contact(0.75, REC, False), Contact(0.753, REC, True), Contact(0.756, REC, False),
    # a hold past the long-press time, released later
    Contact(1.00, PHOTO, True), Contact(1.90, PHOTO, False),
    # a glitch shorter than the debounce time
    Contact(2.10, REC, True), Contact(2.106, REC, False),
    # two buttons overlapping
    Contact(2.30, REC, True), Contact(2.40, PHOTO, True), Contact(2.50, REC, False),
    Contact(2.60, PHOTO, False),
)
END_S = 2.9
# (gesture, button, at): a press is reported at its release, a long press at its threshold.
EXPECTED = [
    (Gesture.PRESS, REC, 0.25), (Gesture.PRESS, REC, 0.756),
    (Gesture.LONG_PRESS, PHOTO, 1.00 + LONG_PRESS_S),
    (Gesture.PRESS, REC, 2.50), (Gesture.PRESS, PHOTO, 2.60),
]


def play_virtual() -> list[tuple[ButtonEvent, float]]:
    """The script on the simulator's buttons, in virtual time: (gesture, when polled)."""
    clock = VirtualClock(0.0)
    pins = SimButtons()
    inputs = GpioInputs(pins.button_pins, clock, LONG_PRESS_S, pin_factory=pins.factory)
    seen, pending = [], list(SCRIPT)
    try:
        assert isinstance(inputs, Inputs)
        while clock.now < END_S:
            target = round(clock.now + STEP_S, 6)
            # Contacts between two polls land at their own virtual time.
            while pending and pending[0].at <= target:
                contact = pending.pop(0)
                clock.advance_to(max(clock.now, contact.at))
                (pins.press if contact.closed else pins.release)(contact.button)
            clock.advance_to(target)
            seen += [(event, clock.now) for event in inputs.poll()]
    finally:
        inputs.close()
        pins.close()
    return seen


def play_threaded(monkeypatch) -> list[tuple[ButtonEvent, float]]:
    """The script made by a thread on real time, polled from this one as the loop does."""
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setattr(Device, "pin_factory", None)
    inputs = GpioInputs(dict(DEFAULT_BUTTON_PINS), time.monotonic, LONG_PRESS_S)
    factory = Device.pin_factory
    assert isinstance(factory, MockFactory)  # gpiozero's own choice, from the environment
    start = time.monotonic() + 0.05
    seen = []

    def wire() -> None:
        for contact in SCRIPT:
            time.sleep(max(0.0, start + contact.at - time.monotonic()))
            pin = factory.pin(DEFAULT_BUTTON_PINS[contact.button])
            pin.drive_low() if contact.closed else pin.drive_high()

    thread = threading.Thread(target=wire, name="contacts")
    try:
        thread.start()
        while time.monotonic() < start + END_S:
            seen += [(event, time.monotonic()) for event in inputs.poll()]
            time.sleep(STEP_S)
        thread.join()
        # The script's times are relative to its start.
        return [(ButtonEvent(e.button, e.gesture, e.at - start), polled - start)
                for e, polled in seen]
    finally:
        inputs.close()
        factory.reset()
        Device.pin_factory = None


@pytest.mark.parametrize("play, slack_s", [
    (lambda monkeypatch: play_virtual(), 1e-6),
    pytest.param(play_threaded, 0.03, marks=pytest.mark.realtime)], ids=["sim", "threaded"])
def test_every_input_backend_makes_the_same_gestures_of_the_same_contacts(play, slack_s,
                                                                          monkeypatch):
    seen = play(monkeypatch)
    got = [(e.gesture, e.button) for e, _ in seen]
    assert got == [(gesture, button) for gesture, button, _ in EXPECTED], seen
    for (event, polled), (_, _, at) in zip(seen, EXPECTED):
        assert event.at == pytest.approx(at, abs=slack_s), (event, at)
        # Seen by the first poll once it is certain: a press once the debounce time has
        # passed after its release, a long press while the button is still held.
        assert polled - event.at <= 0.02 + 2 * STEP_S + slack_s, (event, polled)
    long_press_polled = next(p for e, p in seen if e.gesture is Gesture.LONG_PRESS)
    assert long_press_polled < 1.90  # before the photo button was let go
