"""The bundle of parts the agent runs on, whichever backend provides them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from device.camera import Camera
from device.clock import Clock
from device.gnss import Gnss
from device.indicators import Indicators
from device.inputs import Inputs
from device.microphone import Microphone
from device.power import Power
from device.rtc import Rtc
from device.speaker import Speaker
from device.storage import Storage

log = logging.getLogger(__name__)


class HardwareError(RuntimeError):
    """A part could not be opened or stopped working; the message names the part."""


@dataclass
class Hardware:
    """Every part the agent touches. ``close`` releases them in reverse order of need."""

    clock: Clock
    camera: Camera
    microphone: Microphone
    speaker: Speaker
    inputs: Inputs
    indicators: Indicators
    gnss: Gnss
    power: Power
    storage: Storage
    rtc: Rtc | None = None  # the battery-backed clock, where the recorder has one
    on_close: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        parts = (self.camera, self.microphone, self.speaker, self.gnss, self.inputs,
                 self.indicators) + ((self.rtc,) if self.rtc is not None else ())
        for part in parts:
            try:
                part.close()
            except Exception:  # closing must go on for the other parts
                log.exception("closing %s failed", type(part).__name__)
        for hook in reversed(self.on_close):
            hook()
        self.on_close.clear()
