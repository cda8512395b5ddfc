"""gpiozero backends for the buttons (``Inputs``) and the indicators (``Indicators``).

Buttons: gpiozero only records edges here. Its own hold machinery (``hold_time`` /
``when_held``) runs on a real-time thread, which would not follow the device clock and
could not run in virtual time, so the gestures are recognised in ``poll()`` from edge
timestamps taken with the ``monotonic`` callable handed in. Edges arrive on gpiozero's
callback threads on real pins, so they pass through a locked queue; everything else runs
on the thread that polls.

Indicators: programs are advanced by ``update(now)`` from the agent's loop; a pin is only
written when its state changes. Outputs missing from the pin map (a device without a
vibration motor, or pin -1 in the configuration) are accepted and ignored.

On the simulator the same classes run on gpiozero's ``MockFactory`` (``simulator.buttons``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import gpiozero

from device.hardware import HardwareError
from device.indicators import Blink, Output, Program
from device.inputs import Button, ButtonEvent, Gesture

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE_S = 0.02
# Times are sums of float seconds (100.32 - 100.3 < 0.02): compare with this slack so a
# poll exactly at a threshold counts as reaching it.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Edge:
    button: Button
    pressed: bool
    at: float


@dataclass(slots=True)
class _Tracker:
    """Gesture state of one button between polls."""

    pressed_at: float | None = None  # start of the current (debounced) press
    released_at: float | None = None  # a release not yet confirmed by the debounce time
    long_reported: bool = False


class GpioInputs:
    """The buttons on GPIO pins (active low, internal pull-up); see ``device.inputs``.

    A release is only believed once the contact has stayed open for ``debounce_s``: a
    re-close within that time is contact bounce and the press goes on. A press that opens
    again within ``debounce_s`` and stays open is a glitch and is dropped. A PRESS is
    therefore reported at the first poll at least ``debounce_s`` after the release, with
    ``at`` = the release time.
    """

    def __init__(self, pins: Mapping[Button, int], monotonic: Callable[[], float],
                 long_press_s: float = 1.5, pin_factory: Any = None,
                 debounce_s: float = DEFAULT_DEBOUNCE_S) -> None:
        if long_press_s <= 0:
            raise ValueError(f"long_press_s must be positive, got {long_press_s}")
        if not 0 <= debounce_s < long_press_s:
            raise ValueError(f"debounce_s must be in [0, long_press_s), got {debounce_s}")
        self._monotonic = monotonic
        self._long_press_s = long_press_s
        self._debounce_s = debounce_s
        self._lock = threading.Lock()
        self._edges: deque[_Edge] = deque()
        self._trackers = {button: _Tracker() for button in pins}
        self._devices: dict[Button, gpiozero.Button] = {}
        self._closed = False
        for button, pin in pins.items():
            try:
                # hold_time=0: gpiozero's hold thread then lets go at once on every press
                # instead of sleeping in a hold_time wait, which would stall close() for
                # up to a second; when_held stays unset, so it never does anything.
                device = gpiozero.Button(pin, pull_up=True, bounce_time=None, hold_time=0,
                                         pin_factory=pin_factory)
            except Exception as exc:  # gpiozero, lgpio and OS errors all mean "no button"
                self.close()
                raise HardwareError(f"button {button} on GPIO {pin} cannot be opened: "
                                    f"{exc}") from exc
            device.when_pressed = self._edge_callback(button, True)
            device.when_released = self._edge_callback(button, False)
            if device.is_pressed:
                # A button held (or stuck) at start must not become a gesture; its
                # release without a press is ignored.
                log.warning("button %s on GPIO %s is pressed at start; ignored until "
                            "released", button, pin)
            self._devices[button] = device

    def _edge_callback(self, button: Button, pressed: bool) -> Callable[[], None]:
        def on_edge() -> None:
            # Stamp and enqueue under one lock so edges from different callback threads
            # stay in timestamp order.
            with self._lock:
                self._edges.append(_Edge(button, pressed, self._monotonic()))
        return on_edge

    def poll(self) -> list[ButtonEvent]:
        """Gestures recognised since the last poll, oldest first."""
        if self._closed:
            return []
        with self._lock:
            edges = list(self._edges)
            self._edges.clear()
        # Read the time after draining so no drained edge lies in the future.
        now = self._monotonic()
        events: list[ButtonEvent] = []
        for edge in edges:
            tracker = self._trackers[edge.button]
            self._settle(edge.button, tracker, edge.at, events)
            self._apply(tracker, edge)
        for button, tracker in self._trackers.items():
            self._settle(button, tracker, now, events)
        events.sort(key=lambda event: event.at)
        return events

    def _apply(self, tracker: _Tracker, edge: _Edge) -> None:
        if edge.pressed:
            if tracker.pressed_at is None:
                tracker.pressed_at = edge.at
                tracker.long_reported = False
            else:
                tracker.released_at = None  # re-closed within the debounce: a bounce
        elif tracker.pressed_at is not None and tracker.released_at is None:
            tracker.released_at = edge.at
        # A release with no press (held at start) is ignored.

    def _settle(self, button: Button, tracker: _Tracker, t: float,
                events: list[ButtonEvent]) -> None:
        """Report what is certain at time ``t``, given no edge since the last one."""
        if tracker.pressed_at is None:
            return
        long_at = tracker.pressed_at + self._long_press_s
        held_until = t if tracker.released_at is None else tracker.released_at
        if not tracker.long_reported and held_until >= long_at - _EPS:
            events.append(ButtonEvent(button, Gesture.LONG_PRESS, long_at))
            tracker.long_reported = True
        if tracker.released_at is None or t - tracker.released_at < self._debounce_s - _EPS:
            return
        held = tracker.released_at - tracker.pressed_at
        if not tracker.long_reported:
            if held >= self._debounce_s - _EPS:
                events.append(ButtonEvent(button, Gesture.PRESS, tracker.released_at))
            else:
                log.debug("button %s: %.3f s glitch ignored", button, held)
        tracker.pressed_at = tracker.released_at = None
        tracker.long_reported = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        devices = list(self._devices.values())
        self._devices.clear()
        _wake_hold_threads(devices)
        for device in devices:
            try:
                device.close()
            except Exception:  # the other buttons must still be released
                log.exception("closing %r failed", device)


def _wake_hold_threads(devices: list[gpiozero.Button]) -> None:
    """Tell every gpiozero hold thread to stop before joining any of them.

    Each thread polls its stop flag every 0.1 s, so closing buttons one by one would take
    0.1 s each; gpiozero's own shutdown sets all flags first for the same reason. This
    reaches into gpiozero 2.0 internals and degrades to the slow path if they change.
    """
    for device in devices:
        thread = getattr(device, "_hold_thread", None)
        try:
            thread.stopping.set()
            thread.holding.set()
        except AttributeError:
            pass


@dataclass(slots=True)
class _Channel:
    """One wired output and its running program."""

    device: Any  # gpiozero.LED, Buzzer or DigitalOutputDevice
    pin: int
    program: Program = False
    started: float | None = None  # None: the program's clock starts at the next update
    on: bool = False


_DEVICE_CLASSES: dict[Output, type] = {
    Output.LED_GREEN: gpiozero.LED,
    Output.LED_RED: gpiozero.LED,
    Output.LED_BLUE: gpiozero.LED,
    Output.BUZZER: gpiozero.Buzzer,
    Output.VIBRATION: gpiozero.DigitalOutputDevice,
}


class GpioIndicators:
    """LEDs, buzzer and vibration motor on GPIO pins (active high); see ``device.indicators``.

    ``set(output, program)`` drives the pin at once to the program's first state (a Blink
    starts on) and starts the program's clock at ``now`` if given, else at the next
    ``update(now)`` — so ``set`` then ``update(t)`` runs the program from ``t``.
    Setting the program an output already runs, when that program has no end (steady or
    an endless blink), changes nothing: the agent may re-assert its signals every tick
    without restarting their phase. A count-limited program is always restarted.
    """

    def __init__(self, pins: Mapping[Output, int], pin_factory: Any = None) -> None:
        self._channels: dict[Output, _Channel] = {}
        self._unwired_reported: set[Output] = set()
        self._closed = False
        for output, pin in pins.items():
            if pin is None or pin < 0:
                continue  # -1 in the configuration: not fitted
            try:
                device = _DEVICE_CLASSES[output](pin, initial_value=False,
                                                 pin_factory=pin_factory)
            except Exception as exc:  # gpiozero, lgpio and OS errors all mean "no output"
                self.close()
                raise HardwareError(f"indicator {output} on GPIO {pin} cannot be opened: "
                                    f"{exc}") from exc
            self._channels[output] = _Channel(device, pin)

    @property
    def wired(self) -> frozenset[Output]:
        return frozenset(self._channels)

    def set(self, output: Output, program: Program, now: float | None = None) -> None:
        """Replace the program of one output; its clock starts at ``now`` or the next update."""
        if not isinstance(program, (bool, Blink)):
            raise TypeError(f"program must be a bool or a Blink, got {program!r}")
        channel = self._channels.get(output)
        if channel is None:
            if output not in self._unwired_reported:
                self._unwired_reported.add(output)
                log.info("indicator %s is not fitted; its programs are ignored", output)
            return
        if self._closed:
            return
        endless = isinstance(program, bool) or program.count is None
        if endless and _same_program(program, channel.program):
            return
        channel.program = program
        channel.started = now
        self._drive(output, channel, program if isinstance(program, bool) else program.is_on(0.0))

    def update(self, now: float) -> None:
        """Advance every blink program to monotonic time ``now``."""
        if self._closed:
            return
        for output, channel in self._channels.items():
            program = channel.program
            if isinstance(program, bool):
                wanted = program
            else:
                if channel.started is None:
                    channel.started = now
                wanted = program.is_on(now - channel.started)
            self._drive(output, channel, wanted)

    def _drive(self, output: Output, channel: _Channel, on: bool) -> None:
        if on == channel.on:
            return
        if on:
            channel.device.on()
        else:
            channel.device.off()
        channel.on = on
        log.debug("indicator %s %s", output, "on" if on else "off")

    def state(self) -> dict[Output, bool]:
        """Whether each output is on at this moment; outputs not fitted are always off."""
        return {output: (channel.on if (channel := self._channels.get(output)) else False)
                for output in Output}

    def close(self) -> None:
        """Turn every output off and release the pins."""
        if self._closed:
            return
        self._closed = True
        for output, channel in self._channels.items():
            try:
                channel.device.off()
                channel.on = False
                channel.device.close()
            except Exception:  # the other outputs must still be turned off
                log.exception("closing indicator %s failed", output)


def _same_program(a: Program, b: Program) -> bool:
    # Compare types first so a steady program never matches a Blink by some __eq__ quirk.
    return type(a) is type(b) and a == b
