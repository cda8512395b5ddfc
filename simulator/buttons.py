"""Simulated buttons and indicator pins: gpiozero's ``MockFactory`` with the device's pin map.

The simulator runs the real ``device.backends.gpio`` backends on these mock pins: a scenario
presses a button by driving its pin low (buttons are active low with the pull-up on),
and the timeline reads the LEDs, buzzer and vibration motor back from their pins. The
mock pins call gpiozero's callbacks synchronously, so a press is seen at the virtual time
it is made.
"""

from __future__ import annotations

import logging
from typing import Mapping

from gpiozero.pins.mock import MockFactory

from device.indicators import Output
from device.inputs import Button

log = logging.getLogger(__name__)

# The defaults of config/device.toml ([buttons], [indicators]).
DEFAULT_BUTTON_PINS: dict[Button, int] = {Button.RECORD: 17, Button.PHOTO: 27,
                                          Button.MARKER: 22}
DEFAULT_OUTPUT_PINS: dict[Output, int] = {Output.LED_GREEN: 5, Output.LED_RED: 6,
                                          Output.LED_BLUE: 13, Output.BUZZER: 19,
                                          Output.VIBRATION: 26}


class SimButtons:
    """Mock GPIO pins for the buttons and outputs; hand ``factory`` to the gpio backends."""

    def __init__(self, buttons: Mapping[Button, int] | None = None,
                 outputs: Mapping[Output, int] | None = None) -> None:
        self._factory = MockFactory()
        self._buttons = dict(DEFAULT_BUTTON_PINS if buttons is None else buttons)
        self._outputs = {output: pin for output, pin in
                         (DEFAULT_OUTPUT_PINS if outputs is None else outputs).items()
                         if pin >= 0}

    @property
    def factory(self) -> MockFactory:
        return self._factory

    @property
    def button_pins(self) -> dict[Button, int]:
        return dict(self._buttons)

    @property
    def output_pins(self) -> dict[Output, int]:
        return dict(self._outputs)

    def press(self, button: Button) -> None:
        """Close the contact: the pin goes low against its pull-up."""
        self._factory.pin(self._buttons[button]).drive_low()
        log.debug("pressed %s", button)

    def release(self, button: Button) -> None:
        self._factory.pin(self._buttons[button]).drive_high()
        log.debug("released %s", button)

    def is_pressed(self, button: Button) -> bool:
        return not self._factory.pin(self._buttons[button]).state

    def output_state(self, output: Output | int) -> bool:
        """Whether an output pin (by output, or by GPIO number) is driven high."""
        pin = self._outputs[output] if isinstance(output, Output) else output
        return bool(self._factory.pin(pin).state)

    def led_states(self) -> dict[Output, bool]:
        """The state of every wired output pin (LEDs, buzzer, vibration)."""
        return {output: self.output_state(output) for output in self._outputs}

    def close(self) -> None:
        """Forget every mock pin and reservation (the devices should be closed first)."""
        self._factory.reset()
