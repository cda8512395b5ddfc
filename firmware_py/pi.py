"""Wiring of the real backends on a Raspberry Pi-class recorder (``hardware = "pi"``).

Hardware-only libraries are imported inside this function, so the rest of the package
loads on any machine.
"""

from __future__ import annotations

from pathlib import Path

from device.clock import DeviceClock
from device.hardware import Hardware
from device.indicators import Output
from device.inputs import Button
from device.missing import MissingPart
from firmware_py.config import DeviceConfig

# The picamera2 and sounddevice backends are not in this build yet. Until they are, those
# parts report themselves as missing: the self-check fails them by name and the rest of
# the recorder (buttons, GNSS, power, storage, clock) runs on the real hardware.
NOT_YET = "no backend in this build yet (picamera2/sounddevice backends are planned)"


def build_pi_hardware(device: DeviceConfig, evidence: Path) -> Hardware:
    """Open every part of a real recorder; raises HardwareError naming a part that fails."""
    from device.gpio import GpioIndicators, GpioInputs
    from device.nmea import SerialGnss
    from device.statvfs_storage import StatvfsStorage
    from device.sysfs_power import SysfsPower

    b, i = device.buttons, device.indicators
    clock = DeviceClock(utc_offset_s=device.device.utc_offset_s)
    pins = {Output.LED_GREEN: i.led_green_pin, Output.LED_RED: i.led_red_pin,
            Output.LED_BLUE: i.led_blue_pin, Output.BUZZER: i.buzzer_pin,
            Output.VIBRATION: i.vibration_pin}
    return Hardware(
        clock=clock,
        camera=MissingPart("camera", NOT_YET),
        microphone=MissingPart("microphone", NOT_YET),
        speaker=MissingPart("speaker", NOT_YET),
        inputs=GpioInputs({Button.RECORD: b.record_pin, Button.PHOTO: b.photo_pin,
                           Button.MARKER: b.marker_pin}, clock.monotonic, b.long_press_s),
        indicators=GpioIndicators({o: p for o, p in pins.items() if p >= 0}),
        gnss=SerialGnss(device.gnss.port, device.gnss.baudrate, clock.monotonic),
        power=SysfsPower(device.power.sysfs_root, device.power.battery or None),
        storage=StatvfsStorage(evidence),
    )
